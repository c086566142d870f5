"""The single-image job and the image steps batch chunks share: decode with limits, stylize, encode, write.

Outputs land at deterministic keys (keys.output(job, index, ext)), so a redelivered task overwrites the same
object instead of leaving a second copy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PIL import Image

from animegan.errors import AnimeGANError
from animegan.inference import InferenceOptions, default_batch_size, encode_image, load_image
from workers import keys
from workers.jobs import JobContext, JobInputError, begin, check_cancel, fail, succeed
from workers.storage import NotFound

logger = logging.getLogger(__name__)

FORMATS = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "webp": "webp"}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True)
class OutputSpec:
    """How a job wants its images produced; read from the job record's params."""

    model: str
    fmt: str  # "png" | "jpeg" | "webp" (encode_image's names)
    quality: int
    options: InferenceOptions

    @property
    def ext(self) -> str:
        return FORMATS[self.fmt]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.ext]


def output_spec(ctx: JobContext, params: dict[str, Any]) -> OutputSpec:
    """Validate the params the API stored; a bad value fails the job naming the field."""
    model = params.get("model")
    if not isinstance(model, str) or not model:
        raise JobInputError("bad_params", f"params.model must be a model name, got {model!r}")
    fmt = str(params.get("format") or "png").lower()
    if fmt not in FORMATS:
        raise JobInputError("bad_params", f"params.format {fmt!r} is not one of png, jpeg, webp")
    try:
        options = InferenceOptions(
            size_mode=params.get("size_mode") or "reference",
            max_side=params.get("max_side"),
            precision=ctx.settings.inference_precision,
            batch_size=ctx.settings.inference_batch_size or default_batch_size(ctx.device),
        )
    except (AnimeGANError, ValueError, TypeError) as exc:
        raise JobInputError("bad_params", f"inference options are invalid: {exc}") from exc
    return OutputSpec(
        model=model,
        fmt="jpeg" if fmt == "jpg" else fmt,
        quality=int(params.get("quality") or 95),
        options=options,
    )


def read_image(ctx: JobContext, key: str) -> Image.Image:
    """Fetch and decode one input; a missing or undecodable object is a JobInputError naming the key."""
    try:
        data = ctx.store.get_bytes(key)
    except NotFound as exc:
        raise JobInputError(
            "input_missing", f"input {key!r} is not in storage (expired or never uploaded)"
        ) from exc
    try:
        return load_image(data, max_pixels=ctx.settings.max_image_pixels)
    except AnimeGANError as exc:
        raise JobInputError("bad_image", f"input {key!r}: {exc}") from exc


def write_output(ctx: JobContext, job_id: str, index: int, image: Image.Image, spec: OutputSpec) -> str:
    """Encode and store one result at its deterministic key; returns the key."""
    key = keys.output(job_id, index, spec.ext)
    ctx.store.put_bytes(
        key, encode_image(image, fmt=spec.fmt, quality=spec.quality), content_type=spec.content_type
    )
    return key


def run_stylize(ctx: JobContext, job_id: str, input_key: str, redelivered: bool = False) -> None:
    """One image: input -> model -> output key, then success (the result is written before the ack)."""
    record = begin(ctx, job_id, redelivered)
    if record is None:
        return
    try:
        spec = output_spec(ctx, record.params)
        model = ctx.models.get(spec.model, record.owner)
        image = read_image(ctx, input_key)
        check_cancel(ctx, job_id)
        try:
            result = ctx.models.stylizer(model, spec.options).stylize(image)
        except AnimeGANError as exc:
            raise JobInputError("bad_image", f"input {input_key!r} could not be stylized: {exc}") from exc
        key = write_output(ctx, job_id, 0, result, spec)
    except JobInputError as exc:
        fail(ctx, job_id, exc.code, exc.message)
        return
    ctx.jobs.mark_item_done(job_id, 0)
    ctx.jobs.set_progress(job_id)  # publishes done 1/1 before the status event
    succeed(
        ctx,
        job_id,
        {
            "output_key": key,
            "width": result.width,
            "height": result.height,
            "content_type": spec.content_type,
        },
    )
