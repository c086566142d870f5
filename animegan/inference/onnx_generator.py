"""An ONNX generator run by onnxruntime behind the torch module interface the Stylizer drives: ours (NCHW) or
another project's (NHWC, as AnimeGANv3's releases), input and output float32 in [-1, 1].

It is an nn.Module without parameters so the Stylizer's sizing, batching, tiling, faces and video paths take it
as they take a torch generator; forward() converts (B, 3, H, W) tensors to the graph's layout and back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from animegan.config import GeneratorConfig
from animegan.errors import ConfigError, WeightsError
from animegan.onnx_graph import OnnxGraphError, describe_graph, fixed_batch, inspect_onnx, serving_layout

logger = logging.getLogger(__name__)

# Sides a graph of another project is padded to: its own rule is unknown (AnimeGANv3's test code takes
# multiples of 8, 16 for its tiny models); 32 satisfies those. Ours say theirs (animegan:input_multiple, 4).
FOREIGN_ALIGN = 32


class OnnxGenerator(nn.Module):
    """(B, 3, H, W) float32 in [-1, 1] -> (B, 3, H, W) float32 in [-1, 1] through an onnxruntime session."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort  # only where an ONNX model runs

        path = Path(path)
        info = inspect_onnx(path, path.name)
        self.layout = serving_layout(info, path.name)
        self.max_batch = fixed_batch(info)  # None: any batch size
        self.metadata = dict(info.metadata)
        self.ours = info.metadata.get("animegan:format") == "animegan-generator-onnx"
        multiple = info.metadata.get("animegan:input_multiple", "")
        self.align = int(multiple) if self.ours and multiple.isdigit() else FOREIGN_ALIGN
        self.description: dict[str, Any] = describe_graph(info, self.layout)
        # Our exports carry the generator's config (sizes the Stylizer's memory estimate); others: None.
        self.config = _exported_config(info.metadata)
        options = ort.SessionOptions()
        # The process's torch thread count (the worker's and the CLI's setting) bounds onnxruntime's too.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own (unexported) exception types for a bad graph
            raise OnnxGraphError(f"{path.name}: onnxruntime cannot load the graph: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        logger.info("onnx generator %s: layout %s, opset %d", path.name, self.layout, info.opset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"OnnxGenerator: expected (B, 3, H, W), got {tuple(x.shape)}")
        array = x.detach().float().cpu().numpy()
        if self.layout == "NHWC":
            array = array.transpose(0, 2, 3, 1)
        try:
            out = self.session.run(None, {self.input_name: np.ascontiguousarray(array)})[0]
        except Exception as exc:  # a graph that refuses this size or batch at run time
            raise WeightsError(f"the ONNX graph failed on input {tuple(array.shape)}: {exc}") from exc
        if self.layout == "NHWC":
            out = out.transpose(0, 3, 1, 2)
        if out.ndim != 4 or out.shape[1] != 3:
            raise WeightsError(
                f"the ONNX graph returned shape {out.shape}, not a {self.layout} RGB image batch"
            )
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(x.device)


def _exported_config(metadata: dict[str, str]) -> GeneratorConfig | None:
    raw = metadata.get("animegan:config")
    if raw is None:
        return None
    try:
        return GeneratorConfig.from_dict(json.loads(raw))
    except (ValueError, TypeError, ConfigError):
        logger.warning("ignoring an unreadable animegan:config in the ONNX metadata")
        return None


def is_onnx_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"
