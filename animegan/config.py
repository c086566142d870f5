"""Typed configuration of the networks and losses: GeneratorConfig, DiscriminatorConfig, LossWeights.

Defaults are those of the reference TF code (spec: ../shared/spec/ANIMEGAN.md from the project root); configs
round-trip via to_dict/from_dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from animegan.errors import ConfigError

ARCHS = ("v1", "v2")
UPSAMPLE_MODES = ("tf_legacy", "align_corners", "scale_factor")
# Widths of the reference networks; base_channels=None resolves to these.
DEFAULT_BASE_CHANNELS = {"v1": 64, "v2": 32}
# tf.contrib.layers.layer_norm hard-codes variance_epsilon=1e-12; the bryandlee port's GroupNorm uses 1e-5.
TF_LAYER_NORM_EPS = 1e-12
PORT_LAYER_NORM_EPS = 1e-5


def _from_dict(cls, data: dict[str, Any]):
    """Build a dataclass from a dict, naming unknown keys instead of failing with a TypeError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; known fields are {sorted(known)}")
    return cls(**data)


def _as_weights(config) -> None:
    """Check that every field of a frozen weights dataclass is a number >= 0, and store it as a float."""
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{type(config).__name__}.{f.name}={value!r} must be a number >= 0")
        object.__setattr__(config, f.name, float(value))


@dataclass(frozen=True)
class GeneratorConfig:
    """What build_generator needs; stored in every export and checkpoint so a model rebuilds exactly."""

    arch: str = "v2"  # "v1" (AnimeGAN, instance norm, separable convs) | "v2" (AnimeGANv2, layer norm)
    base_channels: int | None = (
        None  # width of the first block; None -> 64 (v1) / 32 (v2); all widths scale with it
    )
    upsample: str = (
        "tf_legacy"  # "tf_legacy" (TF1 resize, faithful) | "align_corners" | "scale_factor" (port's paths)
    )
    norm_eps: float | None = (
        None  # v2 layer-norm epsilon; None -> 1e-12 (TF); 1e-5 for weights from the port. v1: None
    )

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"GeneratorConfig.arch={self.arch!r} is not one of {ARCHS}")
        if self.upsample not in UPSAMPLE_MODES:
            raise ConfigError(f"GeneratorConfig.upsample={self.upsample!r} is not one of {UPSAMPLE_MODES}")
        # Resolve the defaults now so a saved config never depends on today's defaults.
        if self.base_channels is None:
            object.__setattr__(self, "base_channels", DEFAULT_BASE_CHANNELS[self.arch])
        if (
            isinstance(self.base_channels, bool)
            or not isinstance(self.base_channels, int)
            or self.base_channels < 1
        ):
            raise ConfigError(f"GeneratorConfig.base_channels={self.base_channels!r} must be a positive int")
        if self.arch == "v1":
            # v1 uses the two fixed TF epsilons (1e-5 in Conv-Blocks/IRBs, 1e-6 in separable convs).
            if self.norm_eps is not None:
                raise ConfigError(
                    f"GeneratorConfig.norm_eps={self.norm_eps!r} applies to v2 only; leave it None for v1"
                )
        else:
            if self.norm_eps is None:
                object.__setattr__(self, "norm_eps", TF_LAYER_NORM_EPS)
            if not isinstance(self.norm_eps, int | float) or not 0 < self.norm_eps < 1:
                raise ConfigError(f"GeneratorConfig.norm_eps={self.norm_eps!r} must be a float in (0, 1)")
            object.__setattr__(self, "norm_eps", float(self.norm_eps))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The PatchGAN discriminator of AnimeGAN (TF args --ch 64 --n_dis 3 --sn True)."""

    arch: str = "v2"  # "v1": instance norm; "v2": layer norm (GroupNorm(1, C), eps 1e-12)
    base_channels: int = 64  # TF `ch`; the first conv has ch/2 channels, widths double per level
    n_dis: int = 3  # TF `n_dis`: n_dis-1 stride-2 levels, so the logit map is H/2^(n_dis-1) x W/2^(n_dis-1)
    sn: bool = True  # spectral norm on every conv (one power iteration per forward in training)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"DiscriminatorConfig.arch={self.arch!r} is not one of {ARCHS}")
        if not isinstance(self.base_channels, int) or self.base_channels < 2 or self.base_channels % 2:
            raise ConfigError(
                f"DiscriminatorConfig.base_channels={self.base_channels!r} must be an even int >= 2"
            )
        if not isinstance(self.n_dis, int) or self.n_dis < 1:
            raise ConfigError(f"DiscriminatorConfig.n_dis={self.n_dis!r} must be an int >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiscriminatorConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the named loss terms (TF argparse names in comments)."""

    g_adv: float = 300.0  # --g_adv_weight: LSGAN term of G
    d_adv: float = 300.0  # --d_adv_weight: multiplies the whole weighted D loss
    con: float = 1.5  # --con_weight: VGG conv4_4 L1 content loss (also the init-phase loss weight)
    sty: float = 3.0  # --sty_weight: Gram style loss against grayscale anime
    color: float = 10.0  # --color_weight: YUV colour loss against the photo
    tv: float = 0.0  # --tv_weight (v2 only): total variation of G(p); 0 leaves the term out
    d_real: float = 1.0  # D term: anime (colour) -> 1
    d_fake: float = 1.0  # D term: G(p) -> 0
    d_gray: float = 1.0  # D term: grayscale anime -> 0
    d_smooth: float = 0.1  # D term: grayscale edge-smoothed anime -> 0

    def __post_init__(self) -> None:
        _as_weights(self)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LossWeights:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class PairedLossWeights:
    """Weights of the named terms of paired (photo -> target) and teacher-distillation training; none needs VGG
    but `perceptual`. Defaults: the recipe chosen by measurement in bench/RESULTS-paired.md."""

    pixel: float = 1.0  # L1 between G(photo) and the target
    ssim: float = 1.0  # 1 - SSIM(G(photo), target): local structure and contrast (outlines, flat areas)
    gradient: float = 0.0  # L1 between the image gradients of G(photo) and of the target
    color: float = 0.0  # YUV colour loss (L1 on Y, Huber on U and V) against the target
    tv: float = 0.0  # total variation of G(photo)
    perceptual: float = 0.0  # VGG19 conv4_4 feature L1 against the target; > 0 needs a VGG19 file
    color_stats: float = (
        0.0  # L1 of per-image chroma statistics (mean, sd of R-G and (R+G)/2-B) to the target's
    )
    outline: float = 0.0  # L1 of the black-hat (dark line) maps of luma to the target's, max-pool closing
    outline_excess: float = 0.0  # the black-hat of G's output above the target's: lines where it has none
    adv: float = 0.0  # LSGAN term of G (D tells targets from G's outputs); 0 trains no discriminator
    feature_matching: float = 0.0  # L1 of D's hidden features of G(photo) to the target's (pix2pixHD)
    d_adv: float = 1.0  # multiplies D's whole LSGAN loss
    d_smooth: float = 0.0  # D term: edge-smoothed targets -> 0 (AnimeGAN's edge-promoting negatives)

    def __post_init__(self) -> None:
        _as_weights(self)
        if not any(getattr(self, name) for name in ("pixel", "ssim", "gradient", "color", "perceptual")):
            raise ConfigError(
                "PairedLossWeights: at least one of pixel, ssim, gradient, color, perceptual must be > 0"
            )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairedLossWeights:
        return _from_dict(cls, data)


# v1: AG1 train.py HEAD defaults (spec 1.7). v2: AG2 train.py per-style comments (spec 2.4), g/d_adv 300.
LOSS_PRESETS: dict[str, LossWeights] = {
    "v1": LossWeights(),
    "v2-hayao": LossWeights(
        con=1.5, sty=2.5, color=15.0, tv=1.0, d_real=1.2, d_fake=1.2, d_gray=1.2, d_smooth=0.8
    ),
    "v2-paprika": LossWeights(
        con=2.0, sty=0.6, color=50.0, tv=0.1, d_real=1.0, d_fake=1.0, d_gray=1.0, d_smooth=0.005
    ),
    "v2-shinkai": LossWeights(
        con=1.2, sty=2.0, color=10.0, tv=1.0, d_real=1.7, d_fake=1.7, d_gray=1.7, d_smooth=1.0
    ),
}


def loss_preset(name: str) -> LossWeights:
    """The LossWeights of a preset, or a ConfigError listing the known names."""
    try:
        return LOSS_PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown loss preset {name!r}; known presets: {sorted(LOSS_PRESETS)}") from None
