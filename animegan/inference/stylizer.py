"""Stylizer: runs a generator on PIL images with the reference size rule, exact-size or capped sizes,
batches of same-size images, tiling for large images, and a fast path (bf16 weights, channels-last, compile).
The generator is a torch module or an ONNX graph run by onnxruntime (animegan.inference.onnx_generator).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from animegan.errors import ConfigError
from animegan.hardware import cpu_has_fast_bf16
from animegan.inference.faces import detect_faces, stylize_faces
from animegan.inference.imageio import merge_alpha, split_alpha
from animegan.inference.onnx_generator import OnnxGenerator
from animegan.inference.tiling import (
    ALIGN,
    ReductionGroupNorm,
    TileModel,
    UnsharedTiles,
    run_tiled,
    swap_norms,
    to_tensor,
)
from animegan.sizes import reference_size

logger = logging.getLogger(__name__)

SIZE_MODES = ("reference", "original", "max_side")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
# Exact-size inputs are padded up to this side at least: the generators' reflect pads need a few pixels
# at 1/4 resolution, and statistics over a 1x1 image mean nothing.
MIN_MODEL_SIDE = 32


@dataclass(frozen=True)
class InferenceOptions:
    """How to size, batch, tile and run images through a generator."""

    size_mode: str = (
        "reference"  # "reference" (256 if smaller else floor to /32), "original" (exact), "max_side"
    )
    max_side: int | None = None  # cap on the longer side (downscale first); required by "max_side"
    precision: str = "auto"  # "fp32" (reference path) | "bf16" | "fp16" (CUDA) | "auto" (bf16 where fast; v2)
    compile: bool = False  # torch.compile the generator; pays off for many images of one size (or tiles)
    tile_size: int | None = (
        1024  # tiles are this large (None: never tile); the default keeps a 4096 px run at
    )
    # ~2.5 GB peak RSS, where untiled one v2 feature map alone is 2 GB in bf16
    untiled_max_mb: int = 2560  # images whose estimated activations fit this budget run whole: tiling costs a
    # statistics pass and the overlaps (2.6-3.4x slower on 1-3 Mpx photos, bench/RESULTS.md); 0 tiles every
    # image with a side above tile_size
    tile_overlap: int = 64  # overlap of neighbouring tiles: outer quarters dropped, middle half cross-faded
    keep_alpha: bool = True  # re-attach the input's alpha channel to the output (else RGB out)
    batch_size: int | None = None  # same-size images per forward pass; None: 1 on CPU (batches were slower
    # per image there, bench/RESULTS.md Service), 8 on CUDA
    tile_stats_side: int = 1024  # tiled runs take norm statistics from the image downscaled to this side
    fp32_submodules: tuple[str, ...] | None = None  # submodules a bf16/fp16 run keeps in fp32; None: the
    # generator's own list (v1: its encoder b1, worth 3 dB of PSNR for ~10% of the time), (): none
    faces: bool = True  # the portrait path: each detected face stylized again, enlarged, and blended back
    # (animegan/inference/faces.py); video turns it off (a per-frame detection would flicker)

    def __post_init__(self) -> None:
        if self.size_mode not in SIZE_MODES:
            raise ConfigError(f"size_mode={self.size_mode!r}; use one of {', '.join(SIZE_MODES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if self.size_mode == "max_side" and self.max_side is None:
            raise ConfigError("size_mode='max_side' needs max_side (the longest side in pixels)")
        if self.size_mode == "original" and self.max_side is not None:
            raise ConfigError("size_mode='original' keeps the exact size; use size_mode='max_side' to cap it")
        if self.max_side is not None and self.max_side < 32:
            raise ConfigError(f"max_side={self.max_side} is below 32 pixels")
        if self.tile_size is not None and self.tile_size < 64:
            raise ConfigError(f"tile_size={self.tile_size} is below 64 pixels")
        if not 0 <= self.tile_overlap <= (self.tile_size or 1 << 30) // 2:
            raise ConfigError(f"tile_overlap={self.tile_overlap} must be in 0..tile_size/2")
        if self.untiled_max_mb < 0:
            raise ConfigError(f"untiled_max_mb={self.untiled_max_mb} must be >= 0")
        if (self.batch_size is not None and self.batch_size < 1) or self.tile_stats_side < 64:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1, tile_stats_side >= 64")


LIVE_MAPS = {"v1": 8, "v2": 11}  # see Stylizer.__init__: sizes the untiled memory estimate


def default_batch_size(device: torch.device | str) -> int:
    """Same-size images per forward pass when none is set: batching fills a GPU but, on this CPU, cost more per
    image than it saved (0.29 s vs 0.17 s per 256 px image; bench/RESULTS.md, Service)."""
    return 8 if torch.device(device).type == "cuda" else 1


def resolve_dtype(precision: str, device: torch.device, arch: str | None = None) -> torch.dtype | None:
    """The reduced-precision dtype for `precision` on `device` and generator `arch`, or None for fp32."""
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("precision='fp16' is for CUDA devices; use 'bf16' on CPU")
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        # Measured on an H200: fp32 convs already run on TF32 tensor cores (no gain from bf16), and v1's
        # per-channel norms lose 20+ dB in bf16 there. So "auto" keeps fp32 on CUDA.
        return None
    if arch == "v1":
        # v1's per-channel norms re-amplify bf16 rounding: even with its encoder in fp32 (fp32_submodules) a
        # photo keeps 36-37 dB but a smooth synthetic image 21-25 dB (bench/RESULTS.md, "v1 precision");
        # "bf16" stays available, but the default keeps v1 exact.
        return None
    return torch.bfloat16 if device.type == "cpu" and cpu_has_fast_bf16() else None


class Float32Island(nn.Module):
    """Runs `module` in fp32 inside a reduced-precision model: casts its input up and its output back down."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float()).to(self.dtype)


def reduced_precision_copy(
    model: nn.Module, dtype: torch.dtype, fp32_submodules: tuple[str, ...] | None = None
) -> nn.Module:
    """A `dtype` copy of `model` in NHWC (what oneDNN's bf16 and cuDNN kernels want), except the submodules
    named in `fp32_submodules` (default: the model's own `fp32_submodules`, v1's full-resolution encoder, see
    GeneratorV1), which stay fp32."""
    if fp32_submodules is None:
        fp32_submodules = getattr(model, "fp32_submodules", ())
    fast = copy.deepcopy(model).to(dtype=dtype, memory_format=torch.channels_last)
    for name in fp32_submodules:
        try:
            exact = copy.deepcopy(model.get_submodule(name)).to(memory_format=torch.channels_last)
        except AttributeError as exc:
            raise ConfigError(f"fp32_submodules: the generator has no submodule {name!r}") from exc
        parent, _, leaf = name.rpartition(".")
        setattr(fast.get_submodule(parent), leaf, Float32Island(exact, dtype))
    return fast


@dataclass
class _Prepared:
    pixels: np.ndarray  # (H, W, 3) uint8 model input, padded to a multiple of ALIGN where needed
    out_h: int  # output size before padding
    out_w: int
    alpha: np.ndarray | None  # (out_h, out_w) uint8 alpha to re-attach


class Stylizer:
    """Stylizes PIL images with one generator; keep one per (model, options): it holds the bf16 copy, the tile
    model and the compiled modules, so their cost is paid once."""

    def __init__(
        self, model: nn.Module, device: str | torch.device = "cpu", options: InferenceOptions | None = None
    ):
        self.options = options or InferenceOptions()
        self.device = torch.device(device)
        config = getattr(model, "config", None)
        # An ONNX graph runs as onnxruntime runs it: fp32 on the CPU, no compile, and sides padded to what the
        # graph takes (ours 4, another project's 32: OnnxGenerator.align).
        self.onnx = isinstance(model, OnnxGenerator)
        self.align = model.align if isinstance(model, OnnxGenerator) else ALIGN
        if self.onnx:
            self.dtype = None
            if self.options.precision not in ("auto", "fp32") or self.options.compile:
                logger.info("an ONNX generator runs in fp32 without compile; precision/compile ignored")
        else:
            self.dtype = resolve_dtype(self.options.precision, self.device, getattr(config, "arch", None))
        model = model.to(self.device).eval().requires_grad_(False)
        if self.dtype is not None:
            # A reduced-precision copy in NHWC (what oneDNN's AMX and cuDNN kernels want). On an AMX CPU it ran
            # v2 at 512 px 6x faster than bf16 autocast, which re-casts weights and runs norms in fp32.
            keep = self.options.fp32_submodules
            model = reduced_precision_copy(model, self.dtype, keep)
        if self.device.type == "cuda" and not self.onnx:
            # CUDA's GroupNorm kernel is ~50x slower than a var_mean reduction on large maps (see tiling.py).
            model = copy.deepcopy(model)
            swap_norms(model, lambda norm: ReductionGroupNorm(norm), (nn.GroupNorm,))
        self.model = model
        self.batch_size = self.options.batch_size or default_batch_size(self.device)
        if isinstance(model, OnnxGenerator) and model.max_batch is not None:
            self.batch_size = min(self.batch_size, model.max_batch)  # a graph fixed at batch 1 (AnimeGANv3)
        # Peak activation bytes per input pixel, from peak RSS measured on this CPU: about 11 (v2) or 8 (v1)
        # full-resolution maps of base_channels alive at once (v2 bf16 0.68 GB per Mpx, v1 fp32 1.9 GB per Mpx).
        element = torch.finfo(self.dtype or torch.float32).bits // 8
        maps = LIVE_MAPS.get(getattr(config, "arch", None), max(LIVE_MAPS.values()))
        # A graph of another project has no config: sized like a full-width v2 (base 32).
        base = getattr(config, "base_channels", None) or (32 if self.onnx else 64)
        self._bytes_per_pixel = maps * int(base) * element
        self._tile_model: TileModel | UnsharedTiles | None = None
        self._compiled_modules: dict[
            int, nn.Module
        ] = {}  # id(module) -> compiled; modules live as long as self
        self._compiled_shapes: set[tuple] = set()
        logger.debug("stylizer on %s, precision %s (%s)", self.device, self.options.precision, self.dtype)

    def stylize(self, image: Image.Image) -> Image.Image:
        return self.stylize_many([image])[0]

    def stylize_many(self, images: list[Image.Image]) -> list[Image.Image]:
        """Stylize each image; same-size images (after sizing) share forward passes of up to batch_size."""
        prepared = [self._prepare(image) for image in images]
        results: list[Image.Image | None] = [None] * len(prepared)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, item in enumerate(prepared):
            if self._needs_tiling(item):
                results[i] = self._finish(item, self._run_tiled(item.pixels))
            else:
                groups.setdefault(item.pixels.shape[:2], []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = np.stack([prepared[i].pixels for i in chunk])
                out = to_uint8(self.forward(self.model, to_tensor(batch, self.device)))
                for j, i in enumerate(chunk):
                    results[i] = self._finish(prepared[i], out[j])
        if self.options.faces:
            results = [self._with_faces(item, result) for item, result in zip(prepared, results, strict=True)]
        return results  # type: ignore[return-value]

    def _with_faces(self, item: _Prepared, result: Image.Image) -> Image.Image:
        """The portrait path over one finished image (no change where no face is found)."""
        photo = np.ascontiguousarray(item.pixels[: item.out_h, : item.out_w])
        boxes = detect_faces(photo)
        if not boxes:
            return result
        whole = np.asarray(result.convert("RGB"))
        return merge_alpha(stylize_faces(photo, whole, self.stylize_array, boxes), item.alpha)

    def stylize_array(self, rgb: np.ndarray) -> np.ndarray:
        """One (H, W, 3) uint8 RGB array at its exact size -> the generator's (H, W, 3) uint8 output."""
        h, w = rgb.shape[:2]
        pixels = pad_for_model(rgb, self.align)
        if self._needs_tiling(_Prepared(pixels, h, w, None)):
            return self._run_tiled(pixels)[:h, :w]
        return to_uint8(self.forward(self.model, to_tensor(pixels[None], self.device)))[0, :h, :w]

    def forward(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float32 in [-1, 1] -> float32 (B, 3, H, W) in [-1, 1], on the configured path."""
        if self.dtype is not None:
            x = x.to(dtype=self.dtype, memory_format=torch.channels_last)
        if self.options.compile and not self.onnx:
            module = self._compiled(module, tuple(x.shape))
        with torch.inference_mode():
            return module(x).float().clamp(-1.0, 1.0)

    def _compiled(self, module: nn.Module, shape: tuple) -> nn.Module:
        """torch.compile'd `module`, kept with this Stylizer (a process-wide cache would keep evicted models
        alive); static shapes, so the compile cost is paid once per input shape: reuse the Stylizer."""
        fast = self._compiled_modules.get(id(module))
        if fast is None:
            fast = self._compiled_modules[id(module)] = torch.compile(module, dynamic=False)
        if (id(module), shape) not in self._compiled_shapes:
            self._compiled_shapes.add((id(module), shape))
            logger.info("compiling the generator for input %s (%s); later calls reuse it", shape, self.dtype)
        return fast

    def _needs_tiling(self, item: _Prepared) -> bool:
        tile = self.options.tile_size
        if tile is None or max(item.pixels.shape[:2]) <= tile:
            return False
        height, width = item.pixels.shape[:2]
        return height * width * self._bytes_per_pixel > self.options.untiled_max_mb * 2**20

    def _run_tiled(self, pixels: np.ndarray) -> np.ndarray:
        if self._tile_model is None:
            self._tile_model = UnsharedTiles(self.model) if self.onnx else TileModel(self.model)
        opts = self.options
        assert opts.tile_size is not None  # _needs_tiling is False without a tile size
        return run_tiled(
            pixels,
            self.forward,
            self._tile_model,
            opts.tile_size - opts.tile_size % self.align,
            opts.tile_overlap,
            opts.tile_stats_side,
            self.device,
        )

    def _prepare(self, image: Image.Image) -> _Prepared:
        rgb, alpha = split_alpha(image)
        if not self.options.keep_alpha:
            alpha = None
        h, w = rgb.shape[:2]
        cap = self.options.max_side
        if cap is not None and max(h, w) > cap:
            scale = cap / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            # INTER_AREA averages the source pixels a big downscale would otherwise skip (aliasing).
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            alpha = None if alpha is None else cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
            h, w = rgb.shape[:2]
        if self.options.size_mode == "reference":
            th, tw = reference_size(h, w)
            if (th, tw) != (h, w):
                # Bilinear without antialiasing, as the reference's cv2.resize.
                rgb = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_LINEAR)
                alpha = None if alpha is None else cv2.resize(alpha, (tw, th), interpolation=cv2.INTER_LINEAR)
            return _Prepared(rgb, th, tw, alpha)
        return _Prepared(pad_for_model(rgb, self.align), h, w, alpha)

    def _finish(self, item: _Prepared, pixels: np.ndarray) -> Image.Image:
        return merge_alpha(np.ascontiguousarray(pixels[: item.out_h, : item.out_w]), item.alpha)


def pad_for_model(rgb: np.ndarray, align: int = ALIGN) -> np.ndarray:
    """Pad bottom/right to a multiple of `align` (and >= MIN_MODEL_SIDE); reflect, or edge for tiny images."""
    h, w = rgb.shape[:2]
    th = max(MIN_MODEL_SIDE, -(-h // align) * align)
    tw = max(MIN_MODEL_SIDE, -(-w // align) * align)
    if (th, tw) == (h, w):
        return rgb
    mode = "reflect" if th - h < h and tw - w < w else "edge"
    return np.pad(rgb, ((0, th - h), (0, tw - w), (0, 0)), mode=mode)


def to_uint8(y: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8, rounded (the reference truncates; at most 1 level apart)."""
    return ((y + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
