"""TensorFlow checkpoint variables of the released generators -> our state dicts (rename + transpose).

TF names a scope's layers in creation order: Conv, Conv_1, ...; InstanceNorm / LayerNorm, ..._1, ... .
Layouts: TF conv HWIO -> torch OIHW is permute(3, 2, 0, 1); depthwise (3, 3, C, 1) -> (C, 1, 3, 3) is
permute(2, 3, 0, 1).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from animegan.errors import WeightsError

CONV = (3, 2, 0, 1)
DEPTHWISE = (2, 3, 0, 1)
TF_SCOPE = "generator/G_MODEL"
# state_dict key -> (TF variable name, permutation from the TF layout, or None for vectors)
VariableMap = dict[str, tuple[str, tuple[int, int, int, int] | None]]


def suffix(i: int) -> str:
    """TF's numbering of the i-th layer of a kind in a scope: "", "_1", "_2", ..."""
    return "" if i == 0 else f"_{i}"


def conv_block(out: VariableMap, key: str, scope: str, i: int, norm: str) -> None:
    """A TF Conv-Block (Conv{_i} + {norm}{_i}, norm InstanceNorm or LayerNorm) onto ConvNormLReLU `key`."""
    out[f"{key}.1.weight"] = (f"{scope}/Conv{suffix(i)}/weights", CONV)
    out[f"{key}.2.weight"] = (f"{scope}/{norm}{suffix(i)}/gamma", None)
    out[f"{key}.2.bias"] = (f"{scope}/{norm}{suffix(i)}/beta", None)


def inverted_res_block(out: VariableMap, key: str, scope: str, norm: str, dw_bias: bool) -> None:
    """A TF IRB scope r{n}: Conv + {norm} (expand), r{n}/w (+ r{n}/bias in v2, the depthwise conv), `1` (its
    norm), Conv_1 (project), `2` (its norm) onto InvertedResBlock `key`."""
    conv_block(out, f"{key}.layers.0", scope, 0, norm)
    name = scope.rsplit("/", 1)[1]
    out[f"{key}.layers.1.1.weight"] = (f"{scope}/{name}/w", DEPTHWISE)
    if dw_bias:
        out[f"{key}.layers.1.1.bias"] = (f"{scope}/{name}/bias", None)
    out[f"{key}.layers.1.2.weight"] = (f"{scope}/1/gamma", None)
    out[f"{key}.layers.1.2.bias"] = (f"{scope}/1/beta", None)
    out[f"{key}.layers.2.weight"] = (f"{scope}/Conv_1/weights", CONV)
    out[f"{key}.layers.3.weight"] = (f"{scope}/2/gamma", None)
    out[f"{key}.layers.3.bias"] = (f"{scope}/2/beta", None)


def convert(
    tf_tensors: Mapping[str, np.ndarray], variables: VariableMap, what: str
) -> dict[str, torch.Tensor]:
    """Our state dict from TF tensors (name -> array, TF layout); variables not in the map (optimizer slots,
    the discriminator) are ignored. WeightsError naming what is missing."""
    missing = [name for name, _ in variables.values() if name not in tf_tensors]
    if missing:
        raise WeightsError(
            f"TF {what} checkpoint lacks {len(missing)} of {len(variables)} tensors, e.g. {missing[:3]}; "
            f"pass the variables of a {TF_SCOPE} checkpoint ({what})"
        )
    state = {}
    for key, (name, perm) in variables.items():
        tensor = torch.from_numpy(np.asarray(tf_tensors[name], dtype=np.float32))
        state[key] = tensor.permute(*perm).contiguous() if perm else tensor
    return state
