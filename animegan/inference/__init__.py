"""Inference: image decoding/encoding, the Stylizer (sizes, batches, precision, compile) and tiling."""

from animegan.inference.imageio import DEFAULT_MAX_PIXELS, encode_image, load_image
from animegan.inference.stylizer import InferenceOptions, Stylizer, default_batch_size, reference_size

__all__ = [
    "default_batch_size",
    "DEFAULT_MAX_PIXELS",
    "InferenceOptions",
    "Stylizer",
    "encode_image",
    "load_image",
    "reference_size",
]
