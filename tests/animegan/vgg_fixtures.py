"""Seeded random VGG19 weight files (layers up to conv4_4) in both accepted formats, for tests of every part.

Real VGG19 shapes, so the loaders are exercised for real; random He-normal values, so features are not
meaningful, only deterministic. Both writers draw the same weights for a given seed (torch OIHW layout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from animegan.nn.vgg import CONVS, TORCHVISION_INDEX


def random_vgg19_weights(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{conv name: (weight (cout, cin, 3, 3), bias (cout,))} float32, He-normal, small random biases."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, cin, cout in CONVS:
        weight = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * np.float32(
            np.sqrt(2.0 / (cin * 9))
        )
        bias = rng.standard_normal(cout, dtype=np.float32) * np.float32(0.01)
        out[name] = (weight, bias)
    return out


def write_vgg19_npy(path: str | Path, seed: int = 0) -> Path:
    """The Caffe/machrisaa format of the TF code: a pickled dict {name: [W (3, 3, cin, cout), b]}."""
    path = Path(path)
    data = {name: [w.transpose(2, 3, 1, 0).copy(), b] for name, (w, b) in random_vgg19_weights(seed).items()}
    np.save(path, np.array(data, dtype=object), allow_pickle=True)
    return path


def write_vgg19_torchvision(path: str | Path, seed: int = 0) -> Path:
    """A torchvision `vgg19().state_dict()` truncated to conv4_4: features.N.weight / features.N.bias."""
    path = Path(path)
    state = {}
    for name, (w, b) in random_vgg19_weights(seed).items():
        state[f"features.{TORCHVISION_INDEX[name]}.weight"] = torch.from_numpy(w)
        state[f"features.{TORCHVISION_INDEX[name]}.bias"] = torch.from_numpy(b)
    torch.save(state, path)
    return path
