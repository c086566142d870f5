"""Is this worker's accelerator usable? A probe in a child process at worker start (CUDA must not be initialised
in the Celery parent before it forks), and a count of consecutive device errors shared by the parent and its
pool children, so a worker on a broken GPU stops taking jobs instead of failing every one it takes.

`python -m workers.device_health cuda:0` runs the probe by hand; it exits 0 and prints the device when usable.
"""

from __future__ import annotations

import logging
import multiprocessing
import subprocess
import sys
from typing import Any

logger = logging.getLogger(__name__)

EXIT_DEVICE = 4  # exit status of a worker whose device failed its start probe or too many tasks in a row
PROBE_TIMEOUT_SECONDS = 180.0  # CUDA's first initialisation on a big node can take a minute
# What the worker image's torch needs (deploy/docker/requirements-gpu.txt: CUDA 13 wheels).
DRIVER_REQUIREMENT = "the worker image's torch is built for CUDA 13 and needs an NVIDIA driver >= 580"
# Messages of errors that mean the device (or its driver) is broken, not the job's input. Out-of-memory is
# not one of them: it is the job's size (error code out_of_memory).
_DEVICE_ERROR_MARKS = (
    "CUDA error",
    "CUBLAS_STATUS",
    "CUDNN_STATUS",
    "cuDNN error",
    "NCCL error",
    "CUDA driver",
)


def is_device_error(exc: BaseException) -> bool:
    """A torch.AcceleratorError, or a RuntimeError of the CUDA runtime (older torch raises those)."""
    if type(exc).__name__ == "OutOfMemoryError":
        return False
    if type(exc).__name__ == "AcceleratorError":
        return True
    return isinstance(exc, RuntimeError) and any(mark in str(exc) for mark in _DEVICE_ERROR_MARKS)


class DeviceHealth:
    """Consecutive device errors of one worker: created in the parent before the pool forks, so the children's
    counts and the `failed` event are shared (multiprocessing primitives, fork context)."""

    def __init__(self, max_errors: int) -> None:
        context = multiprocessing.get_context("fork")
        self.max_errors = max_errors
        self._count = context.Value("i", 0)
        self.failed = (
            context.Event()
        )  # set once max_errors device errors came in a row; the watchdog waits on it

    def record_error(self) -> int:
        with self._count.get_lock():
            self._count.value += 1
            count = self._count.value
        if self.max_errors and count >= self.max_errors:
            self.failed.set()
        return count

    def record_success(self) -> None:
        with self._count.get_lock():
            self._count.value = 0


def probe(device: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> tuple[bool, str]:
    """(usable, what the probe said) for a torch device, from a child process that allocates and computes on it."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "workers.device_health", device],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, f"the probe of {device} did not finish within {timeout:.0f} s (a hung driver?)"
    said = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode == 0, " | ".join(line.strip() for line in said[-6:]) or f"exit {proc.returncode}"


def _probe_here(device: str) -> str:
    """Allocate, multiply and synchronise on `device`; the device's description, or raise."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"CUDA is not available to torch {torch.__version__} (CUDA {torch.version.cuda}); "
                f"{DRIVER_REQUIREMENT}, and the pod needs an nvidia.com/gpu"
            )
        index = torch.device(device).index or 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"{device}: this node has {torch.cuda.device_count()} CUDA device(s)")
    x = torch.ones((256, 256), device=device)
    value = float((x @ x).sum())
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    if value != 256.0**3:
        raise RuntimeError(f"{device} computed {value} for a product whose sum is {256**3}")
    if device.startswith("cuda"):
        return f"{device}: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"{device}: torch {torch.__version__}"


def main(argv: list[str]) -> int:
    device = argv[0] if argv else "cuda"
    try:
        print(_probe_here(device))
    except Exception as exc:  # any failure means unusable; the message is the operator's clue
        print(f"device {device} is not usable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def check_at_start(settings: Any) -> bool:
    """False (after logging why) when the worker's configured CUDA device cannot run a matrix product."""
    if not settings.device.startswith("cuda"):
        return True
    usable, said = probe(settings.device)
    if usable:
        logger.info("device probe: %s", said)
    else:
        logger.error("device probe failed, not starting: %s (%s)", said, DRIVER_REQUIREMENT)
    return usable


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
