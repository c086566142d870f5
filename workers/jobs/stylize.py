"""The single-image job and the image steps batch chunks share: decode with limits, stylize, encode, write.

Outputs land at deterministic keys (keys.output(job, index, ext)), so a redelivered task overwrites the same
object instead of leaving a second copy.
"""

from __future__ import annotations

import logging

from PIL import Image

from animegan.errors import AnimeGANError
from animegan.inference import InferenceOptions, default_batch_size, encode_image, load_image
from workers import keys
from workers.contracts.images import ImageSpec, StylizeResult, StylizeSpec
from workers.contracts.video import VideoSpec
from workers.jobs import JobContext, JobInputError, begin, check_cancel, job_spec, succeed
from workers.storage import NotFound

logger = logging.getLogger(__name__)


def inference_options(
    ctx: JobContext, spec: ImageSpec | VideoSpec, keep_alpha: bool = True, faces: bool | None = None
) -> InferenceOptions:
    """The spec's sizing with this worker's precision and batch size (keep_alpha, faces: InferenceOptions')."""
    try:
        return InferenceOptions(
            size_mode=spec.size_mode.value,
            max_side=spec.max_side,
            precision=ctx.settings.inference_precision,
            batch_size=ctx.settings.inference_batch_size or default_batch_size(ctx.device),
            keep_alpha=keep_alpha,
            faces=(spec.faces if isinstance(spec, ImageSpec) else False) if faces is None else faces,
        )
    except (AnimeGANError, ValueError) as exc:
        raise JobInputError("bad_params", f"inference options are invalid: {exc}") from exc


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


def write_output(ctx: JobContext, job_id: str, index: int, image: Image.Image, spec: ImageSpec) -> str:
    """Encode and store one result at its deterministic key; returns the key."""
    key = keys.output(job_id, index, spec.media.ext)
    data = encode_image(image, fmt=spec.format.value, quality=spec.quality)
    ctx.store.put_bytes(key, data, content_type=spec.media.content_type)
    return key


def run_stylize(ctx: JobContext, job_id: str, input_key: str, redelivered: bool = False) -> None:
    """One image: input -> model -> output key, then success (the result is written before the ack)."""
    record = begin(ctx, job_id, redelivered)
    if record is None:
        return
    spec = job_spec(record, StylizeSpec)
    model = ctx.models.get(spec.model, record.owner)
    options = inference_options(ctx, spec)
    image = read_image(ctx, input_key)
    check_cancel(ctx, job_id)
    try:
        result = ctx.models.stylizer(model, options).stylize(image)
    except AnimeGANError as exc:
        raise JobInputError("bad_image", f"input {input_key!r} could not be stylized: {exc}") from exc
    # The forward pass cannot be interrupted; a cancel (or deadline) that came during it still wins here, before
    # the result is stored, so a canceled image ends canceled instead of succeeding anyway.
    check_cancel(ctx, job_id)
    key = write_output(ctx, job_id, 0, result, spec)
    ctx.jobs.mark_item_done(job_id, 0)
    ctx.jobs.set_progress(job_id)  # publishes done 1/1 before the status event
    succeed(
        ctx,
        job_id,
        StylizeResult(
            output_key=key, width=result.width, height=result.height, content_type=spec.media.content_type
        ),
    )
