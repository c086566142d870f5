"""What this machine runs natively: whether bf16 is fast here, and the precision "auto" resolves to.

bf16 is native on CUDA and on CPUs with AMX or AVX512-BF16. Elsewhere (an AVX2-only CPU) torch emulates it:
measured on an AVX2-only AMD EPYC, one bf16-autocast forward of the full v2 generator at 256 px did not finish
in 300 s against 1.0 s in fp32, so "auto" must never pick it there.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16 on this CPU (Linux flags); elsewhere bf16 is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def bf16_is_native(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16())


@functools.cache
def _warn_emulated_bf16_once() -> None:
    logger.warning(
        "bf16 was asked for on a CPU without AMX or AVX512-BF16: torch emulates it there, hundreds of times "
        "slower than fp32 (a v2 generator's 256 px forward took over 300 s against 1 s in fp32 on an AVX2-only "
        "EPYC); use precision 'auto' or 'fp32'"
    )


def resolve_training_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where bf16 is native, else 'fp32'; an explicit 'bf16' on an emulating CPU warns once."""
    if precision == "auto":
        return "bf16" if bf16_is_native(device) else "fp32"
    if precision == "bf16" and not bf16_is_native(device):
        _warn_emulated_bf16_once()
    return precision
