"""DiffAugment (animegan/training/augment.py): shared parameters, what each policy does, gradients, seeding."""

from __future__ import annotations

import pytest
import torch

from animegan.training.augment import CUTOUT_RATIO, diff_augment, parse_policy


def images(b=4, side=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, side, side, generator=g) * 2 - 1


def test_policy_parsing_names_the_unknown_part():
    assert parse_policy("") == ()
    assert parse_policy("color, cutout") == ("color", "cutout")
    with pytest.raises(ValueError, match="'flip'"):
        parse_policy("color,flip")


def test_images_given_together_get_the_same_parameters_and_runs_repeat_under_a_seed():
    x = images()
    torch.manual_seed(1)
    a, b = diff_augment([x, x.clone()], parse_policy("color,translation,cutout"))
    assert torch.equal(a, b) and not torch.equal(a, x)
    torch.manual_seed(1)
    (again,) = diff_augment([x], parse_policy("color,translation,cutout"))
    assert torch.equal(again, a)


def test_translation_shifts_content_and_fills_with_zeros():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0  # a 2x2 block in the middle: any shift of at most 1 px keeps all of it
    torch.manual_seed(0)
    (out,) = diff_augment([x], ("translation",))
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.full((64,), 4.0))
    moved = (out != x).flatten(1).any(dim=1)
    assert moved.any() and not moved.all()  # shifts of -1, 0 and 1 px all occur
    edge = torch.ones(64, 1, 8, 8)
    (shifted,) = diff_augment([edge], ("translation",))
    assert (shifted == 0).any()  # what comes in from outside is zero (mid-grey in [-1, 1])


def test_cutout_erases_one_square_of_half_the_side():
    x = torch.ones(32, 3, 16, 16)
    (out,) = diff_augment([x], ("cutout",))
    erased = (out[:, 0] == 0).flatten(1).sum(dim=1)
    side = int(16 * CUTOUT_RATIO)
    assert erased.max() == side * side and (erased > 0).all()  # clipped at the border, never nothing


def test_colour_changes_brightness_saturation_contrast_per_sample():
    x = images()
    (out,) = diff_augment([x], ("color",))
    assert not torch.allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))


def test_gradients_flow_through_every_policy():
    x = images().requires_grad_(True)
    (out,) = diff_augment([x], parse_policy("color,translation,cutout"))
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
