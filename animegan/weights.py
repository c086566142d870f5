"""Generator weights files: our safetensors export, bryandlee/animegan2-pytorch .pt files, training checkpoints,
and the original AnimeGAN and AnimeGANv2 TensorFlow checkpoints (read without TensorFlow, animegan/tfcheckpoint.py);
for inference also ONNX graphs (load_inference_model; animegan/inference/onnx_generator.py).

The export loads without unpickling anything; .pt files are read with torch.load(weights_only=True) only.
"""

from __future__ import annotations

import json
import logging
import pickle
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from animegan.atomic import atomic_path
from animegan.config import GeneratorConfig
from animegan.errors import ConfigError, WeightsError
from animegan.nn import build_generator, generator_v1, generator_v2
from animegan.nn.tf_names import TF_SCOPE
from animegan.tfcheckpoint import checkpoint_prefix, read_checkpoint

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "animegan-generator"
EXPORT_FORMAT_VERSION = 1
ACCEPTED = (
    "our generator export (.safetensors, from `animegan import-weights` or training), "
    "a training checkpoint (.pt), a bryandlee/animegan2-pytorch v2 state dict (.pt), "
    "or an original AnimeGAN / AnimeGANv2 TensorFlow checkpoint (its folder, PREFIX or PREFIX.index)"
)
# The port's GroupNorm keeps PyTorch's default epsilon; the TF original used 1e-12 (spec section 4.1).
BRYANDLEE_NORM_EPS = 1e-5
BRYANDLEE_TENSORS = 77


@dataclass
class LoadedGenerator:
    """A generator ready for inference, with the config and metadata its file carried."""

    model: nn.Module  # eval mode, on the requested device
    config: GeneratorConfig  # the architecture it was built from
    metadata: dict[str, Any] = field(default_factory=dict)  # name, arch, created, source, step, format


def sniff_format(path: Path) -> str:
    """'safetensors', 'torch-zip' (torch.save), 'pickle' (legacy torch.save) or 'unknown', from the bytes."""
    with open(path, "rb") as f:
        head = f.read(10)
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len <= 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def save_generator(
    path: str | Path,
    generator: nn.Module,
    metadata: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write the generator's tensors and config (+ name, arch, created, source, step) to one .safetensors file.

    dtype=torch.float16 stores floating tensors at half the size (a model shipped in git); they load as fp32.
    """
    path = Path(path)
    config = getattr(generator, "config", None)
    if not isinstance(config, GeneratorConfig):
        raise WeightsError(f"cannot export to {path}: the module has no GeneratorConfig at .config")
    info = {
        "name": path.stem,
        "arch": config.arch,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    info.update(metadata or {})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    header = {
        "format": EXPORT_FORMAT,
        "format_version": str(EXPORT_FORMAT_VERSION),
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "metadata": json.dumps(info, sort_keys=True, default=str),
    }
    with atomic_path(path) as tmp:  # readers never see a half-written export
        save_file(tensors, str(tmp), metadata=header)
    logger.info("exported generator %s (%s, %d tensors) to %s", info["name"], config.arch, len(tensors), path)
    return path


def _read_export(path: Path) -> tuple[dict[str, torch.Tensor], GeneratorConfig, dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        # Exports stored in half precision compute in fp32 like every other model.
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: unreadable safetensors file ({exc}); accepted: {ACCEPTED}") from exc
    if header.get("format") != EXPORT_FORMAT:
        raise WeightsError(
            f"{path}: a safetensors file without our header (format={header.get('format')!r}); "
            f"re-export it with `animegan import-weights` or the trainer; accepted: {ACCEPTED}"
        )
    version = int(header.get("format_version", "0"))
    if version > EXPORT_FORMAT_VERSION:
        raise WeightsError(
            f"{path}: export format version {version} is newer than this library's {EXPORT_FORMAT_VERSION}; upgrade animegan"
        )
    try:
        config = GeneratorConfig.from_dict(json.loads(header["config"]))
        metadata = json.loads(header.get("metadata", "{}"))
    except (KeyError, json.JSONDecodeError, ConfigError, TypeError) as exc:
        raise WeightsError(f"{path}: the export's config/metadata header is invalid ({exc})") from exc
    metadata["format"] = "safetensors export"
    return tensors, config, metadata


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path}: refused to unpickle it: it holds objects other than tensors and plain containers "
            f"({str(exc).splitlines()[0]}); accepted: {ACCEPTED}"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise WeightsError(f"{path}: unreadable torch file ({exc}); accepted: {ACCEPTED}") from exc


def is_bryandlee_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and "block_a.0.1.weight" in obj and "out_layer.0.weight" in obj


def bryandlee_config(state: dict[str, torch.Tensor], path: Path) -> GeneratorConfig:
    """The v2 config that reproduces the port: align_corners upsampling, GroupNorm eps 1e-5, its width."""
    if len(state) != BRYANDLEE_TENSORS:
        raise WeightsError(
            f"{path}: found {len(state)} tensors where the bryandlee v2 generator has {BRYANDLEE_TENSORS}; "
            "is it a different model?"
        )
    width = int(state["block_a.0.1.weight"].shape[0])
    return GeneratorConfig(
        arch="v2", base_channels=width, upsample="align_corners", norm_eps=BRYANDLEE_NORM_EPS
    )


def _from_checkpoint(
    obj: dict[str, Any], path: Path
) -> tuple[dict[str, torch.Tensor], GeneratorConfig, dict[str, Any]]:
    """The generator part of one of our training checkpoints (see animegan/training/checkpoint.py)."""
    state = obj.get("generator")
    config_dict = obj.get("generator_config")
    if config_dict is None and isinstance(obj.get("config"), dict):
        config_dict = obj["config"].get("generator")
    if not isinstance(state, dict) or not isinstance(config_dict, dict):
        keys = sorted(str(k) for k in obj)[:12]
        raise WeightsError(
            f"{path}: a torch file with keys {keys}, neither a bryandlee state dict (block_a.*, out_layer.*) "
            f"nor a training checkpoint (generator + generator_config); accepted: {ACCEPTED}"
        )
    try:
        config = GeneratorConfig.from_dict(config_dict)
    except (ConfigError, TypeError) as exc:
        raise WeightsError(f"{path}: the checkpoint's generator config is invalid ({exc})") from exc
    metadata = {
        "format": "training checkpoint",
        "arch": config.arch,
        "source": "checkpoint",
        "step": obj.get("step"),
    }
    return state, config, metadata


def _from_tf(prefix: Path) -> tuple[dict[str, torch.Tensor], GeneratorConfig, dict[str, Any]]:
    """The generator of an original AnimeGAN (v1) or AnimeGANv2 TF checkpoint, as the TF code computes it:
    legacy resize, TF's norm epsilons. Optimizer slots and the discriminator are skipped."""
    tensors = read_checkpoint(prefix)
    if f"{TF_SCOPE}/A/Conv/weights" in tensors:  # AG2 scopes A..E; AG1 has b1, b2, m, u2, u1
        state = generator_v2.state_dict_from_tf(tensors)
        arch, width = "v2", int(state["block_a.0.1.weight"].shape[0])  # 32 in the releases
    else:
        state = generator_v1.state_dict_from_tf(tensors)
        arch, width = "v1", int(state["b1.0.1.weight"].shape[0])  # 64 in the releases
    config = GeneratorConfig(arch=arch, base_channels=width, upsample="tf_legacy")
    metadata = {
        "format": f"tf {arch} checkpoint",
        "name": prefix.name,
        "arch": arch,
        "source": f"tf:{prefix.name}",
    }
    return state, config, metadata


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], GeneratorConfig, dict[str, Any]]:
    """(state dict, config, metadata) of any accepted file, without building a model."""
    path = Path(path)
    prefix = checkpoint_prefix(path)
    if prefix is not None:
        return _from_tf(prefix)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist (or is not a file); accepted: {ACCEPTED}")
    kind = sniff_format(path)
    if kind == "safetensors":
        return _read_export(path)
    if kind not in ("torch-zip", "pickle"):
        raise WeightsError(
            f"{path}: neither safetensors nor a torch file (first bytes do not match); accepted: {ACCEPTED}"
        )
    obj = _torch_load(path)
    if is_bryandlee_state_dict(obj):
        metadata = {
            "format": "bryandlee .pt",
            "name": path.stem,
            "arch": "v2",
            "source": f"bryandlee:{path.name}",
        }
        return obj, bryandlee_config(obj, path), metadata
    if isinstance(obj, dict):
        return _from_checkpoint(obj, path)
    raise WeightsError(
        f"{path}: a torch file holding a {type(obj).__name__}, not a dict; accepted: {ACCEPTED}"
    )


def build_loaded(state: dict[str, torch.Tensor], config: GeneratorConfig, path: Path) -> nn.Module:
    """Build the generator for `config` and load `state` strictly; WeightsError naming what mismatched."""
    model = build_generator(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        raise WeightsError(
            f"{path}: tensors do not fit a {config.arch} generator (base_channels={config.base_channels}): "
            f"missing {missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), "
            f"shape mismatches {shapes[:3]} ({len(shapes)})"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> LoadedGenerator:
    """Load any accepted weights file into an eval-mode generator on `device`."""
    path = Path(path)
    state, config, metadata = read_weights(path)
    model = build_loaded(state, config, path).to(device)
    model.requires_grad_(False)
    metadata.setdefault("name", path.stem)
    metadata.setdefault("arch", config.arch)
    return LoadedGenerator(model=model, config=config, metadata=metadata)


def load_inference_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """A model the Stylizer runs and its config: an ONNX graph (by its .onnx suffix) through onnxruntime, any
    other accepted file as a torch generator (load_generator)."""
    from animegan.inference.onnx_generator import OnnxGenerator, is_onnx_file

    if is_onnx_file(path):
        graph = OnnxGenerator(path)
        return graph, graph.description
    loaded = load_generator(path, device=device)
    return loaded.model, loaded.config.to_dict()


def import_weights(src: str | Path, dst: str | Path, name: str | None = None) -> LoadedGenerator:
    """Convert a bryandlee .pt, a training checkpoint or a TF checkpoint into our export at `dst`; returns what
    was written."""
    src = Path(src)
    loaded = load_generator(src)
    if loaded.metadata.get("format") == "safetensors export":
        raise WeightsError(f"{src} is already our safetensors export; nothing to import")
    metadata = {k: v for k, v in loaded.metadata.items() if k != "format" and v is not None}
    metadata["name"] = name or src.stem
    metadata.setdefault("source", f"import:{src.name}")
    save_generator(dst, loaded.model, metadata)
    return loaded


def describe(path: str | Path) -> dict[str, Any]:
    """What a weights file holds: format, arch, parameter count, config, metadata, tensors, bytes."""
    path = Path(path)
    state, config, metadata = read_weights(path)
    return {
        "path": str(path),
        "format": metadata.get("format"),
        "arch": config.arch,
        "params": int(sum(t.numel() for t in state.values() if t.is_floating_point())),
        "tensors": len(state),
        "bytes": _size(path),
        "config": config.to_dict(),
        "metadata": {k: v for k, v in metadata.items() if k != "format"},
    }


def _size(path: Path) -> int:
    """Bytes of a weights file, or of all files of a TF checkpoint (index and data shards)."""
    prefix = checkpoint_prefix(path)
    if prefix is None:
        return path.stat().st_size
    return sum(f.stat().st_size for f in prefix.parent.glob(f"{prefix.name}.*") if f.is_file())
