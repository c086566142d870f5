"""Frozen VGG19 feature extractor (conv4_4 before ReLU) for the content and style losses (spec §1.5).

Weights come from a local file, never a download: the Caffe `vgg19.npy` of the TF code or a torchvision state dict.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from animegan.errors import WeightsError

logger = logging.getLogger(__name__)

# VGG19 up to conv4_4: (name, in, out) per conv; "pool" is a 2x2 max-pool.
LAYERS: list[tuple[str, int, int] | str] = [
    ("conv1_1", 3, 64), ("conv1_2", 64, 64), "pool",
    ("conv2_1", 64, 128), ("conv2_2", 128, 128), "pool",
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256), "pool",
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512),
]  # fmt: skip
CONVS = [layer for layer in LAYERS if isinstance(layer, tuple)]
# Index of each conv in torchvision's `vgg19().features` (ReLUs and pools sit in between).
TORCHVISION_INDEX = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12, "conv3_3": 14,
    "conv3_4": 16, "conv4_1": 19, "conv4_2": 21, "conv4_3": 23, "conv4_4": 25,
}  # fmt: skip
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # AG1 tools/vgg19.py VGG_MEAN, on 0-255 BGR
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision weights: RGB in [0, 1], normalised
IMAGENET_STD = (0.229, 0.224, 0.225)
FORMATS = (
    "a Caffe VGG19 .npy in the machrisaa/tensorflow-vgg dict format ({'conv1_1': [W (3,3,cin,cout), b], ...}; "
    "the AnimeGAN release asset vgg19.npy) or a torchvision vgg19 state dict (.pth with features.N.weight/bias)"
)


def _load_npy(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    # The format is a pickled dict, so allow_pickle is required: only load files you trust.
    try:
        data = np.load(path, allow_pickle=True, encoding="latin1").item()
    except (ValueError, OSError, EOFError) as exc:
        raise WeightsError(
            f"cannot read VGG19 weights {path} as a .npy dict ({exc}); expected {FORMATS}"
        ) from exc
    if not isinstance(data, dict):
        raise WeightsError(
            f"VGG19 weights {path} hold a {type(data).__name__}, not a dict; expected {FORMATS}"
        )
    out = {}
    for name, _, _ in CONVS:
        entry = data.get(name)
        if not isinstance(entry, list | tuple) or len(entry) < 2 or np.ndim(entry[0]) != 4:
            raise WeightsError(
                f"VGG19 weights {path} lack layer {name!r} as [W (3,3,cin,cout), b]; expected {FORMATS}"
            )
        weight = torch.from_numpy(np.asarray(entry[0], dtype=np.float32)).permute(3, 2, 0, 1)  # HWIO -> OIHW
        out[name] = (weight, torch.from_numpy(np.asarray(entry[1], dtype=np.float32)))
    return out, "caffe"


def _load_torchvision(path: Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], str]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types (pickle, zip, RuntimeError) for a bad file
        raise WeightsError(
            f"cannot read VGG19 weights {path} with torch.load ({exc}); expected {FORMATS}"
        ) from exc
    if not isinstance(state, dict):
        raise WeightsError(
            f"VGG19 weights {path} hold a {type(state).__name__}, not a state dict; expected {FORMATS}"
        )
    out = {}
    for name, _, _ in CONVS:
        prefix = f"features.{TORCHVISION_INDEX[name]}"
        if f"{prefix}.weight" not in state or f"{prefix}.bias" not in state:
            raise WeightsError(f"VGG19 weights {path} lack {prefix}.weight/bias ({name}); expected {FORMATS}")
        out[name] = (state[f"{prefix}.weight"].float(), state[f"{prefix}.bias"].float())
    return out, "torchvision"


def load_vgg19_weights(path: str | Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], str]:
    """{conv name: (weight OIHW, bias)} up to conv4_4 and the preprocessing convention ("caffe"/"torchvision").

    The format is told by the file's content (numpy magic vs a torch archive), not by its suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"VGG19 weights file {path} does not exist; give a local copy of {FORMATS}")
    with path.open("rb") as f:
        magic = f.read(6)
    weights, convention = _load_npy(path) if magic == b"\x93NUMPY" else _load_torchvision(path)
    for name, cin, cout in CONVS:
        weight, bias = weights[name]
        if tuple(weight.shape) != (cout, cin, 3, 3) or tuple(bias.shape) != (cout,):
            raise WeightsError(
                f"VGG19 weights {path}: {name} has shapes {tuple(weight.shape)}/{tuple(bias.shape)}, "
                f"expected ({cout}, {cin}, 3, 3)/({cout},) in torch layout; expected {FORMATS}"
            )
    return weights, convention


class VGG19Features(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> conv4_4 before ReLU, (B, 512, ceil(H/8), ceil(W/8)); frozen, always eval."""

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        weights, self.convention = load_vgg19_weights(weights_path)
        layers: list[nn.Module] = []
        for layer in LAYERS:
            if layer == "pool":
                # TF max_pool 'SAME' 2x2/2: for odd sides it pads bottom/right, i.e. PyTorch's ceil_mode.
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                continue
            name, cin, cout = layer
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            conv.weight.data.copy_(weights[name][0])
            conv.bias.data.copy_(weights[name][1])
            layers.append(conv)
            if name != "conv4_4":
                layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        # Preprocessing as x * scale + shift on channels in the weights' order (BGR for Caffe).
        if self.convention == "caffe":
            scale = torch.full((3,), 127.5)
            shift = 127.5 - torch.tensor(CAFFE_BGR_MEAN)
        else:
            std = torch.tensor(IMAGENET_STD)
            scale = 0.5 / std
            shift = (0.5 - torch.tensor(IMAGENET_MEAN)) / std
        self.register_buffer("in_scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", shift.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()
        logger.info("loaded VGG19 (%s convention) from %s", self.convention, weights_path)

    def train(self, mode: bool = True) -> VGG19Features:
        """Stay in eval mode even when a parent module is put into training."""
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB -> the input convention of the loaded weights."""
        if self.convention == "caffe":
            x = x.flip(1)  # RGB -> BGR
        return x * self.in_scale.to(x.dtype) + self.in_shift.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG19Features: expected (B, 3, H, W) in [-1, 1], got {tuple(x.shape)}")
        return self.features(self.preprocess(x))
