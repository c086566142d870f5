"""Export a generator to ONNX: one float32 NCHW input of dynamic batch, height and width, opset 17 or newer,
and the pre/post-processing written into the model's metadata (metadata_props) so any runtime can use it.

The TorchScript exporter (`dynamo=False`) is chosen on purpose: torch 2.13's default dynamo exporter needs
onnxscript (and onnx-ir) on every exporting host and turns the generators' Python-level size rules into
symbolic-shape guards; the trace needs only the `onnx` package, its dynamic_axes give the free batch, height
and width, and its graph matches torch fp32 within 2e-5 on tiny models (tests/animegan/test_onnx.py). It is
deprecated in torch 2.13 but present; when it goes, `dynamo=True` with `dynamic_shapes` is the replacement.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from animegan.atomic import atomic_path
from animegan.config import GeneratorConfig
from animegan.errors import ConfigError, WeightsError
from animegan.onnx_graph import MAX_OPSET, META_PREFIX, MIN_EXPORT_OPSET

logger = logging.getLogger(__name__)

ONNX_FORMAT = "animegan-generator-onnx"
ONNX_FORMAT_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "image", "stylized"
# Traced at sides that are multiples of 4: the generators' own pad-to-4 step (pad_to_native) computes its pad
# widths in Python, which a trace would freeze at the traced size, so the graph leaves that step to the caller.
TRACE_SIZE = (64, 64)
INPUT_MULTIPLE = 4
PREPROCESS = (
    "RGB image as float32 (B, 3, H, W), NCHW; x = pixel / 127.5 - 1 (range [-1, 1]); H and W multiples of 4, "
    "at least 8 (pad other sizes bottom/right by reflection and crop the output back); no mean/std "
    "normalisation, no BGR swap"
)
POSTPROCESS = (
    "output float32 (B, 3, H, W) RGB in [-1, 1] (tanh), the input's size; "
    "pixel = clip(round((y + 1) * 127.5), 0, 255) as uint8"
)


def export_onnx(
    generator: nn.Module,
    path: str | Path,
    opset: int = MIN_EXPORT_OPSET,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `generator` (fp32, any device) as an ONNX file at `path`; returns the path."""
    import onnx  # the exporter's own dependency; only exporting needs it

    path = Path(path)
    if not MIN_EXPORT_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset={opset}; export with opset {MIN_EXPORT_OPSET}..{MAX_OPSET}")
    config = getattr(generator, "config", None)
    if not isinstance(config, GeneratorConfig):
        raise WeightsError(f"cannot export to {path}: the module has no GeneratorConfig at .config")
    # A copy: the caller's generator (a worker's cached model, maybe on a GPU or in bf16) stays as it is.
    model = copy.deepcopy(generator).to("cpu", torch.float32).eval()
    dummy = torch.zeros(1, 3, *TRACE_SIZE)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The trace warns about each Python-level size comparison it records as a constant; the two that
        # matter (pad, crop) are traced through, and the export is checked against torch in the tests.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
        )
        proto = onnx.load(str(tmp))
        info = {"name": path.stem, "arch": config.arch, **(metadata or {})}
        props = {
            "format": ONNX_FORMAT,
            "format_version": str(ONNX_FORMAT_VERSION),
            "layout": "NCHW",
            "input_range": "[-1, 1]",
            "input_multiple": str(INPUT_MULTIPLE),
            "preprocess": PREPROCESS,
            "postprocess": POSTPROCESS,
            "arch": config.arch,
            "config": json.dumps(config.to_dict(), sort_keys=True),
            "metadata": json.dumps(info, sort_keys=True, default=str),
            "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        onnx.helper.set_model_props(proto, {f"{META_PREFIX}{k}": v for k, v in props.items()})
        proto.doc_string = f"AnimeGAN {config.arch} generator. Input: {PREPROCESS}. Output: {POSTPROCESS}."
        proto.producer_name, proto.producer_version = "animegan", torch.__version__
        onnx.save(proto, str(tmp))
    logger.info("exported %s generator to %s (opset %d)", config.arch, path, opset)
    return path
