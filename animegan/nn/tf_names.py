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
