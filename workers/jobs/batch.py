"""Batch chunks: stylize a few images of a batch job, exactly-once accounting, and the one-time finalizer.

The API fans a batch into chunk tasks. A chunk skips images already done (a redelivery after a lost worker),
runs same-size images through one forward pass, and whoever completes the count builds results.zip once.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from animegan.errors import AnimeGANError
from workers import keys, media
from workers.contracts.batch import BatchResult, BatchSpec
from workers.jobs import JobContext, JobInputError, begin, check_cancel, fail, job_spec, partial, succeed
from workers.jobs.stylize import inference_options, read_image, write_output
from workers.json_types import JSONObject
from workers.storage import NotFound

if TYPE_CHECKING:
    from animegan.inference import Stylizer

logger = logging.getLogger(__name__)


def run_chunk(
    ctx: JobContext, job_id: str, items: Sequence[tuple[int, str]], redelivered: bool = False
) -> None:
    """Stylize the (index, input_key) items of one chunk not yet done, then finalize if the batch is complete."""
    unit = f"chunk:{items[0][0]}" if items else "chunk"
    record = begin(ctx, job_id, redelivered, unit)
    if record is None:
        return
    # The whole batch shares the model and parameters: if these fail, nothing in it can, and the job fails.
    spec = job_spec(record, BatchSpec)
    model = ctx.models.get(spec.model, record.owner)
    options = inference_options(ctx, spec)
    stylizer = ctx.models.stylizer(model, options)
    pending = [(index, key) for index, key in items if not _already_done(ctx, job_id, index, spec)]
    if len(pending) < len(items):
        logger.info(
            "job %s: %d of %d chunk images already done", job_id, len(items) - len(pending), len(items)
        )

    # Windows of batch_size images bound memory (inputs can be tens of megapixels); within a window,
    # same-size images share one forward pass.
    window = options.batch_size or 1  # inference_options always sets it
    for start in range(0, len(pending), window):
        groups: dict[tuple[int, int], list[tuple[int, Image.Image]]] = defaultdict(list)
        for index, key in pending[start : start + window]:
            check_cancel(ctx, job_id)
            try:
                image = read_image(ctx, key)
            except JobInputError as exc:
                _record_item_error(ctx, job_id, index, exc.code, exc.message)
                continue
            groups[image.size].append((index, image))
        for same_size in groups.values():
            check_cancel(ctx, job_id)
            if _stylize_group(ctx, job_id, stylizer, same_size, spec):
                ctx.jobs.reset_attempts(job_id, unit)
    maybe_finalize(ctx, job_id)


def _stylize_group(
    ctx: JobContext, job_id: str, stylizer: Stylizer, part: list[tuple[int, Image.Image]], spec: BatchSpec
) -> bool:
    """Stylize and store one same-size group; True when images were written (progress of the chunk)."""
    try:
        results = stylizer.stylize_many([image for _, image in part])
    except AnimeGANError as exc:
        for index, _ in part:
            _record_item_error(ctx, job_id, index, "bad_image", f"image {index} could not be stylized: {exc}")
        return False
    for (index, _), result in zip(part, results, strict=True):
        write_output(ctx, job_id, index, result, spec)
        ctx.jobs.mark_item_done(job_id, index)
    # One progress event per forward pass (done/failed/total) for the API's event stream.
    ctx.jobs.set_progress(job_id)
    return True


def _already_done(ctx: JobContext, job_id: str, index: int, spec: BatchSpec) -> bool:
    """An output already in storage means a previous delivery finished this image.

    The output is written before the item is marked done, so re-marking here completes an interrupted
    accounting step without counting twice (mark_item_done is exactly-once).
    """
    if ctx.store.exists(keys.output(job_id, index, spec.media.ext)):
        ctx.jobs.mark_item_done(job_id, index)
        return True
    return False


def _record_item_error(ctx: JobContext, job_id: str, index: int, code: str, message: str) -> None:
    """A failed image counts toward the total (so the batch can finish) and keeps its error for the result."""
    logger.warning("job %s image %d failed: %s: %s", job_id, index, code, message)
    ctx.jobs.mark_item_failed(job_id, index, code, message)


def fail_unfinished(ctx: JobContext, job_id: str, indices: Sequence[int], code: str, message: str) -> None:
    """Count the images of `indices` not yet done as failed with `code`; done ones keep their output."""
    for index in indices:
        ctx.jobs.mark_item_failed(job_id, index, code, message)  # no-op for an image already counted
    ctx.jobs.set_progress(job_id)


def maybe_finalize(ctx: JobContext, job_id: str) -> None:
    """When every image is accounted for, build the archive and end the job (once, whoever gets here)."""
    record = ctx.jobs.get(job_id)
    if record is None or record.status != "running":
        return
    progress = record.progress
    total = int(progress.get("total", 0))
    if int(progress.get("done", 0)) + int(progress.get("failed", 0)) < total:
        return
    spec = job_spec(record, BatchSpec)
    ext = spec.media.ext
    item_errors = ctx.jobs.item_errors(job_id)
    outputs: list[JSONObject] = []
    errors: list[JSONObject] = []
    archive_key = keys.output_archive(job_id)
    # Streamed into storage as it is built (S3: multipart parts from memory): a batch of 10,000 images needs no
    # local disk, where a zip built in /tmp outgrew the pod's ephemeral storage and got it evicted.
    # PNG/JPEG/WebP are already compressed: store them, deflate only the small error list.
    with (
        ctx.store.open_write(archive_key, content_type=media.by_format("zip").content_type) as out,
        zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf,
    ):
        for index in range(total):
            key = keys.output(job_id, index, ext)
            try:
                zf.writestr(_entry_name(spec.filenames, index, ext), ctx.store.get_bytes(key))
                outputs.append({"index": index, "key": key})
            except NotFound:
                error = item_errors.get(index) or {
                    "code": "missing_output",
                    "message": f"no output was written for image {index}",
                }
                errors.append({"index": index, **error})
        if errors:
            zf.writestr("errors.json", json.dumps(errors, indent=2), compress_type=zipfile.ZIP_DEFLATED)
    if not outputs:
        ctx.store.delete(archive_key)  # an archive of errors only is no result
        fail(ctx, job_id, "all_images_failed", f"all {total} images failed: {failure_summary(errors)}")
        return
    result = BatchResult(
        archive_key=archive_key,
        outputs=outputs,
        errors=errors,
        total=total,
        failures=failure_counts(errors),
    )
    if errors:
        message = f"{len(errors)} of {total} images failed: {failure_summary(errors)}"
        partial(ctx, job_id, result, "some_images_failed", message)
        return
    succeed(ctx, job_id, result)


def failure_counts(errors: Sequence[JSONObject]) -> dict[str, int]:
    """How many items failed with each error code, the most frequent first."""
    counts: dict[str, int] = defaultdict(int)
    for error in errors:
        counts[str(error.get("code", "unknown"))] += 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def failure_summary(errors: Sequence[JSONObject]) -> str:
    """One line for a job's error: the count per code, and the first message of each code (what to fix)."""
    first: dict[str, str] = {}
    for error in errors:
        first.setdefault(str(error.get("code", "unknown")), str(error.get("message", "")))
    return "; ".join(
        f"{code} x{count} (e.g. {first[code]})" for code, count in failure_counts(errors).items()
    )


def _entry_name(names: list[str], index: int, ext: str) -> str:
    """Archive entry: the index (unique, ordered) plus the uploaded file's stem made safe, if the API kept it."""
    stem = ""
    if index < len(names):
        raw = Path(names[index].replace("\\", "/")).stem
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in raw)[:80].strip("._")
    return f"{index:05d}-{stem}.{ext}" if stem else f"{index:05d}.{ext}"
