"""The TF checkpoint fixtures' contents (tests/animegan/data/tf_v1_w8/ and tf_v2_w8/, written by real TensorFlow
with make_tf_checkpoint.py): variable names and TF-layout shapes of width-8 v1 and v2 generators plus a few
variables a training checkpoint also holds, each filled with values the tests recompute here; and the inputs of the
other TensorFlow references (make_tf_reference.py)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from animegan.config import GeneratorConfig
from animegan.nn import build_generator, generator_v1, generator_v2

DATA = Path(__file__).resolve().parent / "data"
FIXTURE = DATA / "tf_v1_w8"  # the v1 one, which most tests use
FIXTURES = {"v1": FIXTURE, "v2": DATA / "tf_v2_w8"}
WIDTH = 8
VARIABLE_MAPS = {"v1": generator_v1.tf_variable_map, "v2": generator_v2.tf_variable_map}
# Variables that are not the generator's: the importer must skip them.
EXTRAS = {
    "v1": {"generator/G_MODEL/b1/Conv/weights/Adam": (3, 3, 3, WIDTH)},
    "v2": {"generator/G_MODEL/A/Conv/weights/Adam": (7, 7, 3, WIDTH)},
}
COMMON_EXTRAS = {"discriminator/conv_0/weights": (3, 3, 3, 32), "beta1_power": ()}


def variables(arch: str = "v1") -> dict[str, tuple[int, ...]]:
    """TF name -> TF-layout shape of every variable in the fixture of `arch`."""
    state = build_generator(GeneratorConfig(arch=arch, base_channels=WIDTH)).state_dict()
    out = {}
    for key, (name, perm) in VARIABLE_MAPS[arch]().items():
        shape = tuple(state[key].shape)
        if perm is not None:  # torch = tf.permute(perm) -> tf shape[perm[i]] = torch shape[i]
            tf_shape = [0] * len(shape)
            for i, axis in enumerate(perm):
                tf_shape[axis] = shape[i]
            shape = tuple(tf_shape)
        out[name] = shape
    return {**out, **EXTRAS[arch], **COMMON_EXTRAS}


def value(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Deterministic float32 contents: small integers / 1000 (exact arithmetic), offset by the name's crc."""
    size = int(np.prod(shape, dtype=np.int64))
    ints = (np.arange(size, dtype=np.int64) * 7919 + zlib.crc32(name.encode())) % 2001 - 1000
    return (ints.astype(np.float32) / np.float32(1000)).reshape(shape)


def fixture_input() -> np.ndarray:
    """(1, 40, 56, 3) NHWC in [-1, 1]: a smooth two-frequency pattern plus texture; 40 x 56 are multiples of 4
    (the sizes the reference graph runs natively) and not square."""
    yy, xx = np.mgrid[0:40, 0:56].astype(np.float32)
    channels = [
        np.sin(xx / (3 + c) + c) * np.cos(yy / (5 - c)) * 0.8 + 0.15 * np.sin(xx * yy / 7.0 + c)
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1)[None], -1, 1).astype(np.float32)


def vgg_weights() -> dict[str, list[np.ndarray]]:
    """A VGG19 (to conv4_4) in the Caffe .npy dict format ({name: [W HWIO, b]}) with deterministic He-scaled values,
    for comparing VGG19Features with TensorFlow's forward (tests/animegan/data/tf_reference.npz)."""
    from animegan.nn.vgg import CONVS

    out = {}
    for name, cin, cout in CONVS:
        scale = np.float32(np.sqrt(2.0 / (9 * cin)) / 0.577)  # value() is uniform on [-1, 1]: std 0.577
        out[name] = [
            value(f"{name}/W", (3, 3, cin, cout)) * scale,
            value(f"{name}/b", (cout,)) * np.float32(0.1),
        ]
    return out


def discriminator_layers(arch: str) -> list[tuple]:
    """The layers of Discriminator(DiscriminatorConfig(arch, base_channels=16)) in order, with deterministic
    parameters, for comparing with TensorFlow (tests/animegan/data/tf_reference.npz):
    ("pad", top, bottom, left, right) | ("conv", key, W HWIO, u (1, out), stride) |
    ("norm", key, gamma, beta, groups, eps) | ("lrelu",)."""
    from torch import nn

    from animegan.config import DiscriminatorConfig
    from animegan.nn.discriminator import Discriminator

    out: list[tuple] = []
    for i, module in enumerate(Discriminator(DiscriminatorConfig(arch=arch, base_channels=16)).layers):
        if isinstance(module, nn.ZeroPad2d):
            left, right, top, bottom = module.padding
            out.append(("pad", top, bottom, left, right))
        elif isinstance(module, nn.Conv2d):
            cout, cin = module.weight.shape[:2]
            weight = value(f"d{i}/w", (3, 3, cin, cout)) * np.float32(0.2)
            out.append(("conv", f"layers.{i}", weight, value(f"d{i}/u", (1, cout)), module.stride[0]))
        elif isinstance(module, nn.GroupNorm):
            c = module.num_channels
            gamma = value(f"d{i}/gamma", (c,)) * np.float32(0.5) + np.float32(1)
            beta = value(f"d{i}/beta", (c,)) * np.float32(0.5)
            out.append(("norm", f"layers.{i}", gamma, beta, module.num_groups, float(module.eps)))
        elif isinstance(module, nn.LeakyReLU):
            out.append(("lrelu",))
        else:
            raise TypeError(f"unexpected discriminator layer {module}")
    return out
