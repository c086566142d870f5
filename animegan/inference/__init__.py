"""Inference: image decoding/encoding, the Stylizer (sizes, batches, precision, compile) and tiling.

The Stylizer's names load lazily (PEP 562): `animegan.inference.imageio` (Pillow and numpy only) must stay
importable without torch, for the command line and the image checks that run before any model does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from animegan.inference.imageio import DEFAULT_MAX_PIXELS, encode_image, load_image
from animegan.sizes import reference_size

if TYPE_CHECKING:
    from animegan.inference.stylizer import InferenceOptions, Stylizer, default_batch_size

_STYLIZER_NAMES = frozenset({"InferenceOptions", "Stylizer", "default_batch_size"})

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "InferenceOptions",
    "Stylizer",
    "default_batch_size",
    "encode_image",
    "load_image",
    "reference_size",
]


def __getattr__(name: str) -> Any:
    if name in _STYLIZER_NAMES:
        return getattr(importlib.import_module("animegan.inference.stylizer"), name)
    raise AttributeError(f"module 'animegan.inference' has no attribute {name!r}")
