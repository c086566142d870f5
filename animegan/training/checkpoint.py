"""Training checkpoints: a self-describing, weights-only-loadable dict written atomically (tmp + rename).

Layout (format "animegan-train", version 1): format, format_version, step, epoch, phase, config (TrainConfig
dict), generator_config (GeneratorConfig dict), generator / discriminator (state dicts), optimizers
{init, g, d} (state dicts), data (stream states), rng {torch, cuda, numpy, python}. Plain types only.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from animegan.atomic import atomic_write
from animegan.errors import WeightsError

logger = logging.getLogger(__name__)

FORMAT = "animegan-train"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_path(run_dir: str | os.PathLike[str], step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Checkpoints of a run, oldest first (by step in the file name; temp files are ignored)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write state with format tags; a reader (or a crash) never sees a partial file under `path`."""
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    # fsync: a resume after a machine crash must find the whole checkpoint, not an empty file under its name.
    with atomic_write(path, fsync=True) as f:
        torch.save(payload, f)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with torch.load(weights_only=True) and check the format tags."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"training checkpoint {path} does not exist") from None
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise WeightsError(f"cannot read training checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise WeightsError(f"{path} is not an AnimeGAN training checkpoint (format tag missing)")
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise WeightsError(
            f"{path} has checkpoint format version {version}; this code reads version {FORMAT_VERSION}"
        )
    return state


def prune_checkpoints(run_dir: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints; returns the deleted paths."""
    old = list_checkpoints(run_dir)[:-keep] if keep > 0 else []
    for path in old:
        path.unlink(missing_ok=True)
        logger.debug("deleted old checkpoint %s", path)
    return old


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG the run may touch, as tensors / lists / ints (weights_only-safe)."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": np_state[1].tolist(),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
