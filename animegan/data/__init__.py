"""Training data: unpaired photo/style datasets and the reference edge smoothing of style images."""

from animegan.data.dataset import (
    IMAGE_EXTENSIONS,
    ImageSet,
    ShuffledStream,
    TrainBatch,
    UnpairedDataset,
    list_images,
    load_image_set,
    smooth_folder,
)
from animegan.data.edge_smooth import SmoothCache, edge_mask, gaussian_kernel_2d, smooth_edges

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSet",
    "ShuffledStream",
    "SmoothCache",
    "TrainBatch",
    "UnpairedDataset",
    "edge_mask",
    "gaussian_kernel_2d",
    "list_images",
    "load_image_set",
    "smooth_edges",
    "smooth_folder",
]
