"""The export job: a model the tenant can use, written as an ONNX graph to its deterministic output key.

A redelivered task exports again and overwrites the same object; the file is checked by its own reader before
it is stored (one input, NCHW, the opset asked for).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

from animegan.errors import AnimeGANError
from animegan.inference.onnx_generator import OnnxGenerator
from animegan.onnx_export import export_onnx
from animegan.onnx_graph import inspect_onnx, serving_layout
from workers.contracts.export import ONNX, ExportResult, ExportSpec, output_key
from workers.jobs import JobContext, JobInputError, begin, check_cancel, job_spec, succeed

logger = logging.getLogger(__name__)


def run_export(ctx: JobContext, job_id: str, redelivered: bool = False) -> None:
    """Model -> .onnx in storage, then success with its key, size and digest."""
    record = begin(ctx, job_id, redelivered)
    if record is None:
        return
    spec = job_spec(record, ExportSpec)
    model = ctx.models.get(spec.model, record.owner)
    if isinstance(model.generator, OnnxGenerator):
        raise JobInputError(
            "already_onnx", f"model {spec.model!r} is an ONNX graph already; there is nothing to export"
        )
    info = ctx.registry.get(spec.model, record.owner)
    # The model's own metadata (its name, source and terms of use) travels into the graph's.
    metadata = {
        **(info.metadata if info is not None else {}),
        "name": spec.model,
        "source": f"model:{spec.model}",
    }
    check_cancel(ctx, job_id)
    key = output_key(job_id)
    with tempfile.TemporaryDirectory(prefix="animegan-export-") as tmp:
        path = Path(tmp) / f"{spec.model}.onnx"
        try:
            export_onnx(model.generator, path, opset=spec.opset, metadata=metadata)
            layout = serving_layout(inspect_onnx(path, path.name), path.name)
        except AnimeGANError as exc:
            raise JobInputError(
                "export_failed", f"model {spec.model!r} could not be exported: {exc}"
            ) from exc
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        ctx.store.put_file(key, path, content_type=ONNX.content_type)
    ctx.jobs.mark_item_done(job_id, 0)
    ctx.jobs.set_progress(job_id)
    logger.info("job %s exported %s to %s (%d bytes)", job_id, spec.model, key, size)
    succeed(
        ctx,
        job_id,
        ExportResult(
            output_key=key,
            content_type=ONNX.content_type,
            bytes=size,
            opset=spec.opset,
            layout=layout,
            sha256=digest.hexdigest(),
        ),
    )
