"""AnimeGAN losses as named terms (AG1/AG2 tools/ops.py, spec §1.6, §2.4): LSGAN, VGG content and Gram style,
YUV colour, total variation, and the weighted totals of G, D and the init phase; and the paired/distillation
losses (pixel L1, SSIM, gradient L1, colour, chroma statistics, outline, TV, optional VGG perceptual, LSGAN with
edge-promoting negatives and discriminator feature matching).

Every reduction runs in fp32 with autocast off, so the losses are safe when G, D and VGG run under bf16 autocast.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn

from animegan.config import LossWeights, PairedLossWeights
from animegan.metrics import ssim

# tf.image.rgb_to_yuv kernel: yuv = rgb @ YUV_KERNEL (rows R, G, B; columns Y, U, V).
YUV_KERNEL = (
    (0.299, -0.14714119, 0.61497538),
    (0.587, -0.28886916, -0.51496512),
    (0.114, 0.43601035, -0.10001026),
)


def _fp32(x: torch.Tensor) -> AbstractContextManager:
    return torch.autocast(device_type=x.device.type, enabled=False)


def rgb_to_yuv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> YUV, as tf.image.rgb_to_yuv."""
    kernel = torch.tensor(YUV_KERNEL, dtype=x.dtype, device=x.device)
    return torch.einsum("bchw,cd->bdhw", x, kernel)


def gram(features: torch.Tensor) -> torch.Tensor:
    """Per-sample Gram matrix (B, C, C) = F^T F / (H W C) of (B, C, H, W) features, in fp32."""
    with _fp32(features):
        b, c, h, w = features.shape
        flat = features.float().reshape(b, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)) / (h * w * c)


def content_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """L1 (mean) between VGG features of the photo and of G(photo)."""
    with _fp32(fake_features):
        return F.l1_loss(fake_features.float(), real_features.float())


def style_loss(style_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """L1 (mean) between the per-sample Grams of grayscale-anime features and G(photo) features."""
    with _fp32(fake_features):
        return F.l1_loss(gram(fake_features), gram(style_features))


def color_loss(photo: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """L1 on Y + Huber(delta 1) on U and V of the [-1, 1] images mapped to [0, 1] (tf.losses.huber_loss mean)."""
    with _fp32(fake):
        real_yuv = rgb_to_yuv((photo.float() + 1) / 2)
        fake_yuv = rgb_to_yuv((fake.float() + 1) / 2)
        y = F.l1_loss(fake_yuv[:, 0], real_yuv[:, 0])
        u = F.smooth_l1_loss(fake_yuv[:, 1], real_yuv[:, 1], beta=1.0)
        v = F.smooth_l1_loss(fake_yuv[:, 2], real_yuv[:, 2], beta=1.0)
        return y + u + v


def total_variation_loss(x: torch.Tensor) -> torch.Tensor:
    """AG2: l2_loss(dh)/size(dh) + l2_loss(dw)/size(dw) = 0.5 mean(dh^2) + 0.5 mean(dw^2)."""
    with _fp32(x):
        x = x.float()
        dh = x[:, :, :-1, :] - x[:, :, 1:, :]
        dw = x[:, :, :, :-1] - x[:, :, :, 1:]
        return 0.5 * dh.square().mean() + 0.5 * dw.square().mean()


def lsgan_real(logits: torch.Tensor) -> torch.Tensor:
    """mean((D(x) - 1)^2): the target of real anime for D, and of G(p) for G."""
    with _fp32(logits):
        return (logits.float() - 1).square().mean()


def lsgan_fake(logits: torch.Tensor) -> torch.Tensor:
    """mean(D(x)^2): the target of generated, grayscale and edge-smoothed images for D."""
    with _fp32(logits):
        return logits.float().square().mean()


class AnimeGANLoss(nn.Module):
    """The weighted loss dicts of one training step; holds the frozen VGG so `.to(device)` moves it along.

    Each method returns {term: 0-dim fp32 tensor}; "total" carries the graph, the other terms are for logging.
    """

    def __init__(self, vgg: nn.Module, weights: LossWeights) -> None:
        super().__init__()
        self.vgg = vgg
        self.weights = weights

    def init_phase(self, photo: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """G pre-training: content loss only, weighted by con (AG1/AG2 init_loss)."""
        with torch.no_grad():
            real_features = self.vgg(photo)
        content = content_loss(real_features, self.vgg(fake))
        return {"content": content.detach(), "total": self.weights.con * content}

    def generator(
        self, photo: torch.Tensor, fake: torch.Tensor, anime_gray: torch.Tensor, d_fake: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """G step: photo (B, 3, H, W), fake = G(photo), anime_gray (>= B images; sliced to B), d_fake = D(fake)."""
        w = self.weights
        b = fake.shape[0]
        if anime_gray.shape[0] < b:
            raise ValueError(
                f"AnimeGANLoss.generator: anime_gray has {anime_gray.shape[0]} images, fake has {b}"
            )
        # Reference features need no graph: one no-grad forward for photo and anime, one for the fake.
        with torch.no_grad():
            reference = self.vgg(torch.cat([photo, anime_gray[:b].to(photo.dtype)]))
        fake_features = self.vgg(fake)
        terms = {
            "adv": lsgan_real(d_fake),
            "content": content_loss(reference[:b], fake_features),
            "style": style_loss(reference[b:], fake_features),
            "color": color_loss(photo, fake),
        }
        total = (
            w.g_adv * terms["adv"]
            + w.con * terms["content"]
            + w.sty * terms["style"]
            + w.color * terms["color"]
        )
        if w.tv > 0:
            terms["tv"] = total_variation_loss(fake)
            total = total + w.tv * terms["tv"]
        out = {name: value.detach() for name, value in terms.items()}
        out["total"] = total
        return out

    def discriminator(
        self,
        d_anime: torch.Tensor,
        d_fake: torch.Tensor,
        d_anime_gray: torch.Tensor,
        d_smooth_gray: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """D step on logits of: colour anime (-> 1), G(p) detached, grayscale anime, grayscale smoothed anime (-> 0)."""
        w = self.weights
        terms = {
            "real": lsgan_real(d_anime),
            "fake": lsgan_fake(d_fake),
            "gray": lsgan_fake(d_anime_gray),
            "smooth": lsgan_fake(d_smooth_gray),
        }
        weighted = (
            w.d_real * terms["real"]
            + w.d_fake * terms["fake"]
            + w.d_gray * terms["gray"]
            + w.d_smooth * terms["smooth"]
        )
        out = {name: value.detach() for name, value in terms.items()}
        out["total"] = w.d_adv * weighted
        return out


def gradient_loss(target: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences: penalises missing or extra edges."""
    with _fp32(fake):
        t, f = target.float(), fake.float()
        dh = F.l1_loss(f[:, :, 1:] - f[:, :, :-1], t[:, :, 1:] - t[:, :, :-1])
        dw = F.l1_loss(f[..., 1:] - f[..., :-1], t[..., 1:] - t[..., :-1])
        return dh + dw


def _to_255(x: torch.Tensor) -> torch.Tensor:
    return (x.float() + 1) * 127.5


def chroma_statistics(x: torch.Tensor) -> torch.Tensor:
    """(B, 4): per-image mean and sd of rg = R - G and yb = (R + G)/2 - B of [-1, 1] images, on 0..255 (the
    quantities of the colourfulness statistic)."""
    rgb = _to_255(x)
    rg = rgb[:, 0] - rgb[:, 1]
    yb = (rgb[:, 0] + rgb[:, 1]) / 2 - rgb[:, 2]
    flat = torch.stack([rg, yb], dim=1).flatten(2)  # (B, 2, H*W)
    return torch.cat([flat.mean(dim=2), flat.std(dim=2)], dim=1)


def color_stats_loss(target: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """L1 of the chroma statistics, / 50 so a typical colour cast of 10 levels costs ~0.2, as pixel L1 does."""
    with _fp32(fake):
        return F.l1_loss(chroma_statistics(fake), chroma_statistics(target)) / 50


def luma_blackhat(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """(B, 1, H, W) black-hat (closing - Y) of the luma of [-1, 1] images on 0..255; square max-pool closing,
    differentiable (the gradient flows through the max locations)."""
    rgb = _to_255(x)
    y = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).unsqueeze(1)
    pad = size // 2
    # closing = erosion(dilation(y)); replicate padding so the border is not read as a dark line
    dilated = F.max_pool2d(F.pad(y, (pad,) * 4, mode="replicate"), size, stride=1)
    closed = -F.max_pool2d(F.pad(-dilated, (pad,) * 4, mode="replicate"), size, stride=1)
    return closed - y


def outline_loss(target: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """L1 of the black-hat maps, / 10 (a line of 10 levels' depth costs as much as pixel L1's unit)."""
    with _fp32(fake):
        return F.l1_loss(luma_blackhat(fake), luma_blackhat(target)) / 10


def outline_excess_loss(target: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Mean of the part of G's black-hat map above the target's, / 10: a dark line where the target has none costs,
    a line G leaves out costs nothing. One-sided because the L1 of the maps (outline_loss) also pulls uncertain
    lines towards a faint average (bench/RESULTS-paired.md); the adversarial terms draw the missing ones."""
    with _fp32(fake):
        return F.relu(luma_blackhat(fake) - luma_blackhat(target)).mean() / 10


def feature_matching_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean over D's layers of the L1 between the features of the target (no gradient) and of G(photo)."""
    with _fp32(fake[0]):
        terms = [F.l1_loss(f.float(), r.detach().float()) for r, f in zip(real, fake, strict=True)]
        return torch.stack(terms).mean()


class PairedLoss(nn.Module):
    """Loss dicts of paired and teacher-distillation training. `vgg` is needed only for the perceptual term.

    Images are (B, 3, H, W) in [-1, 1]; each method returns {term: 0-dim fp32 tensor} with "total" carrying the graph.
    """

    def __init__(self, weights: PairedLossWeights, vgg: nn.Module | None = None) -> None:
        super().__init__()
        if weights.perceptual > 0 and vgg is None:
            raise ValueError("PairedLoss: the perceptual term needs a VGG19 feature extractor")
        self.weights = weights
        self.vgg = vgg

    @property
    def uses_discriminator(self) -> bool:
        return self.weights.adv > 0 or self.weights.feature_matching > 0

    def init_phase(self, photo: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruction warm-up: G learns to give the photo back (a start at the do-nothing baseline)."""
        with _fp32(fake):
            reconstruction = F.l1_loss(fake.float(), photo.float())
        return {"reconstruction": reconstruction.detach(), "total": reconstruction}

    def generator(
        self,
        target: torch.Tensor,
        fake: torch.Tensor,
        d_fake: torch.Tensor | None = None,
        d_features: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """G's terms against the target. d_fake = D(fake) logits and d_features = (D's features of the target,
        of the fake), or None when no discriminator is trained."""
        w = self.weights
        terms: dict[str, torch.Tensor] = {}
        total = fake.new_zeros((), dtype=torch.float32)
        with _fp32(fake):
            f, t = fake.float(), target.float()
            parts = {
                "pixel": lambda: F.l1_loss(f, t),
                "ssim": lambda: 1 - ssim(f, t),
                "gradient": lambda: gradient_loss(t, f),
                "color": lambda: color_loss(t, f),
                "color_stats": lambda: color_stats_loss(t, f),
                "outline": lambda: outline_loss(t, f),
                "outline_excess": lambda: outline_excess_loss(t, f),
                "tv": lambda: total_variation_loss(f),
            }
            for name, compute in parts.items():
                weight = getattr(w, name)
                if weight > 0:
                    terms[name] = compute()
                    total = total + weight * terms[name]
        if w.perceptual > 0:
            with torch.no_grad():
                reference = self.vgg(target)
            terms["perceptual"] = content_loss(reference, self.vgg(fake))
            total = total + w.perceptual * terms["perceptual"]
        if w.adv > 0:
            if d_fake is None:
                raise ValueError("PairedLoss.generator: adv > 0 needs the discriminator's logits of the fake")
            terms["adv"] = lsgan_real(d_fake)
            total = total + w.adv * terms["adv"]
        if w.feature_matching > 0:
            if d_features is None:
                raise ValueError("PairedLoss.generator: feature_matching > 0 needs D's features")
            terms["feature_matching"] = feature_matching_loss(*d_features)
            total = total + w.feature_matching * terms["feature_matching"]
        out = {name: value.detach() for name, value in terms.items()}
        out["total"] = total
        return out

    def discriminator(
        self, d_target: torch.Tensor, d_fake: torch.Tensor, d_smooth: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """D step on logits of the targets (-> 1), of G(photo) detached (-> 0) and, with d_smooth > 0, of the
        edge-smoothed targets (-> 0: a target without its crisp lines is not a target)."""
        w = self.weights
        terms = {"real": lsgan_real(d_target), "fake": lsgan_fake(d_fake)}
        weighted = terms["real"] + terms["fake"]
        if w.d_smooth > 0:
            if d_smooth is None:
                raise ValueError(
                    "PairedLoss.discriminator: d_smooth > 0 needs the logits of smoothed targets"
                )
            terms["smooth"] = lsgan_fake(d_smooth)
            weighted = weighted + w.d_smooth * terms["smooth"]
        out = {name: value.detach() for name, value in terms.items()}
        out["total"] = w.d_adv * weighted
        return out
