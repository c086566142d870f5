"""Faults injected into a real worker process: put this folder on PYTHONPATH and Python runs it at start, in the
worker's parent, before the pool forks (so every child has them too). Each fault is switched on by one variable:

- FAULT_KILL_ON_INPUT=<text>: a child that reads an input whose key contains <text> is SIGKILLed at once, as the
  kernel's OOM killer takes one on a poison image: every delivery of that task dies at the same place.
- FAULT_SLOW_IMAGE_SECONDS=<s>: every input image takes <s> seconds more to read, a stand-in for a model of
  known speed (deadlines that pass mid-batch, queue ETAs from a known throughput).
- FAULT_DEVICE_ERROR=1: every forward pass raises torch.AcceleratorError, as CUDA does after an Xid error or on
  a driver too old for the wheel's CUDA.
- FAULT_NO_TORCH=1: torch, OpenCV and safetensors cannot be imported, as in the API image (the [api] extra),
  which the webhook workers run on.
"""

from __future__ import annotations

import os
import signal

_KILL_ON = os.environ.get("FAULT_KILL_ON_INPUT")
_DEVICE_ERROR = os.environ.get("FAULT_DEVICE_ERROR") == "1"
_SLOW_IMAGE = float(os.environ.get("FAULT_SLOW_IMAGE_SECONDS") or 0)

if _SLOW_IMAGE:
    import time

    import workers.jobs.batch as _slow_batch
    import workers.jobs.stylize as _slow_stylize

    _plain_read_image = _slow_stylize.read_image

    def _slow_read_image(ctx, key):  # type: ignore[no-untyped-def]
        time.sleep(_SLOW_IMAGE)
        return _plain_read_image(ctx, key)

    _slow_stylize.read_image = _slow_read_image
    _slow_batch.read_image = _slow_read_image

if os.environ.get("FAULT_NO_TORCH") == "1":
    import sys

    class _NotInTheApiImage:
        def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
            if name.split(".")[0] in ("torch", "cv2", "safetensors"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: the API image)", name=name)
            return None

    sys.meta_path.insert(0, _NotInTheApiImage())

if _KILL_ON:
    import workers.jobs.stylize as _stylize

    _read_image = _stylize.read_image

    def _poisoned_read_image(ctx, key):  # type: ignore[no-untyped-def]
        if _KILL_ON in key:
            os.kill(os.getpid(), signal.SIGKILL)
        return _read_image(ctx, key)

    _stylize.read_image = _poisoned_read_image
    import workers.jobs.batch as _batch

    _batch.read_image = _poisoned_read_image

if _DEVICE_ERROR:
    import torch

    from animegan.inference import stylizer as _stylizer_module

    def _broken_device(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise torch.AcceleratorError("CUDA error: an illegal memory access was encountered")

    _stylizer_module.Stylizer.stylize = _broken_device
    _stylizer_module.Stylizer.stylize_many = _broken_device
