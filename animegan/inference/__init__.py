"""Inference: image decoding/encoding, the Stylizer (sizes, batches, precision, compile) and tiling."""

from animegan.inference.imageio import DEFAULT_MAX_PIXELS, encode_image, load_image
from animegan.inference.stylizer import InferenceOptions, Stylizer, reference_size

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "InferenceOptions",
    "Stylizer",
    "encode_image",
    "load_image",
    "reference_size",
]
