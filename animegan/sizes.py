"""AnimeGAN's reference inference size, as plain arithmetic: the Stylizer, the paired dataset and the API's
check of paired uploads (which has no torch) all use this one rule."""

from __future__ import annotations


def reference_size(height: int, width: int) -> tuple[int, int]:
    """The reference inference size (AnimeGAN test.py): a side <= 256 becomes 256, else floors to /32.

    The original's comparisons differ by side (height <= 256, width < 256); kept as they are, so a width of
    exactly 256 floors to itself, which is 256 either way.
    """
    h = 256 if height <= 256 else height - height % 32
    w = 256 if width < 256 else width - width % 32
    return h, w
