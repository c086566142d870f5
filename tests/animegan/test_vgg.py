"""VGG19 feature extractor: both weight formats against a hand-written pipeline, shapes, freezing, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from animegan.errors import WeightsError
from animegan.nn import VGG19Features

ORDER = [
    "conv1_1",
    "conv1_2",
    "P",
    "conv2_1",
    "conv2_2",
    "P",
    "conv3_1",
    "conv3_2",
    "conv3_3",
    "conv3_4",
    "P",
]
ORDER += ["conv4_1", "conv4_2", "conv4_3", "conv4_4"]


def manual_features(x: torch.Tensor, weights: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    for name in ORDER:
        if name == "P":
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            continue
        x = F.conv2d(x, weights[name][0], weights[name][1], padding=1)
        if name != "conv4_4":
            x = F.relu(x)
    return x


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_caffe_npy_matches_the_tf_pipeline(vgg19_npy, image):
    vgg = VGG19Features(vgg19_npy)
    assert vgg.convention == "caffe"
    data = np.load(vgg19_npy, allow_pickle=True, encoding="latin1").item()
    weights = {
        k: (torch.from_numpy(v[0]).permute(3, 2, 0, 1), torch.from_numpy(v[1])) for k, v in data.items()
    }
    # AG1 tools/vgg19.py: (x + 1) / 2 * 255, RGB -> BGR, minus the BGR mean.
    rgb = (image + 1) / 2 * 255
    bgr = torch.stack([rgb[:, 2] - 103.939, rgb[:, 1] - 116.779, rgb[:, 0] - 123.68], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(vgg(image), manual_features(bgr, weights), rtol=1e-4, atol=1e-3)


def test_torchvision_pth_matches_imagenet_pipeline(vgg19_pth, image):
    vgg = VGG19Features(vgg19_pth)
    assert vgg.convention == "torchvision"
    state = torch.load(vgg19_pth, weights_only=True)
    index = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12}
    index |= {"conv3_3": 14, "conv3_4": 16, "conv4_1": 19, "conv4_2": 21, "conv4_3": 23, "conv4_4": 25}
    weights = {k: (state[f"features.{i}.weight"], state[f"features.{i}.bias"]) for k, i in index.items()}
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = manual_features(((image + 1) / 2 - mean) / std, weights)
        torch.testing.assert_close(vgg(image), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("size", "expected"), [((32, 32), (4, 4)), ((33, 35), (5, 5)), ((1, 9), (1, 2))])
def test_feature_shape_ceil_pooling(vgg19_npy, size, expected):
    vgg = VGG19Features(vgg19_npy)
    with torch.no_grad():
        assert vgg(torch.zeros(1, 3, *size)).shape == (1, 512, *expected)


def test_frozen_but_differentiable_wrt_input(vgg19_pth):
    vgg = VGG19Features(vgg19_pth)
    assert not any(p.requires_grad for p in vgg.parameters())
    assert not vgg.training
    torch.nn.Sequential(vgg).train()
    assert not vgg.training
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    vgg(x).abs().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())
    assert "conv4_4" not in str(vgg.features[-1]) and isinstance(vgg.features[-1], torch.nn.Conv2d)


def test_missing_file_names_path_and_formats(tmp_path):
    missing = tmp_path / "nope" / "vgg19.npy"
    with pytest.raises(WeightsError, match="does not exist") as err:
        VGG19Features(missing)
    assert str(missing) in str(err.value) and "torchvision" in str(err.value) and ".npy" in str(err.value)


def test_garbage_file_is_a_weights_error(tmp_path):
    bad = tmp_path / "vgg19.pth"
    bad.write_bytes(b"not a weights file at all")
    with pytest.raises(WeightsError, match="torch.load") as err:
        VGG19Features(bad)
    assert str(bad) in str(err.value)


def test_npy_without_a_layer_or_wrong_shape(tmp_path, vgg19_npy, vgg19_pth):
    data = np.load(vgg19_npy, allow_pickle=True, encoding="latin1").item()
    del data["conv3_2"]
    partial = tmp_path / "partial.npy"
    np.save(partial, np.array(data, dtype=object), allow_pickle=True)
    with pytest.raises(WeightsError, match="conv3_2"):
        VGG19Features(partial)
    state = torch.load(vgg19_pth, weights_only=True)
    truncated = tmp_path / "truncated.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("features.25.")}, truncated)
    with pytest.raises(WeightsError, match=r"features\.25"):
        VGG19Features(truncated)
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    wrong = tmp_path / "wrong.pth"
    torch.save(state, wrong)
    with pytest.raises(WeightsError, match=r"conv1_1 has shapes \(64, 3, 5, 5\)"):
        VGG19Features(wrong)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(4))
    with pytest.raises(WeightsError, match="plain.npy"):
        VGG19Features(plain)
