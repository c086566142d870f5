"""Stylize and batch job functions in-process, on real Redis and the local storage backend, tiny model."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from workers import keys
from workers.jobs import JobContext, begin, recorded_outcome
from workers.jobs.batch import run_chunk
from workers.jobs.stylize import run_stylize

OWNER = "tenant-a"


def png(size=(40, 36), seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    import torch

    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator
    from animegan.weights import save_generator

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save_generator(folder / "tiny.safetensors", build_generator(GeneratorConfig(arch="v2", base_channels=8)))
    return folder


@pytest.fixture
def ctx(redis_client, redis_url, tmp_path, models_dir) -> JobContext:
    from workers.jobs.models import ModelCache
    from workers.jobstore import JobStore
    from workers.lease import TrainingLease
    from workers.registry import ModelRegistry
    from workers.settings import WorkerSettings, load_settings
    from workers.storage import LocalStore

    settings = load_settings(
        WorkerSettings,
        redis_url=redis_url,
        storage_url=(tmp_path / "storage").as_uri(),
        models_dir=models_dir,
        inference_precision="fp32",
        max_redeliveries=2,
    )
    store = LocalStore(tmp_path / "storage")
    registry = ModelRegistry(redis_client)
    terminal: list[str] = []
    context = JobContext(
        settings=settings,
        jobs=JobStore.from_settings(redis_client, settings),
        store=store,
        registry=registry,
        models=ModelCache(store, registry, models_dir, device="cpu", capacity=2),
        leases=TrainingLease(redis_client),
        device="cpu",
        on_terminal=terminal.append,
    )
    context.terminal = terminal  # type: ignore[attr-defined]  # what on_terminal saw, for assertions
    return context


def stylize_job(ctx, data: bytes, **params):
    record, _ = ctx.jobs.create(
        "stylize", OWNER, {"model": "tiny", "size_mode": "original", **params}, total=1
    )
    key = keys.input(record.id, 0, "png")
    ctx.store.put_bytes(key, data)
    return record.id, key


def test_stylize_writes_output_then_succeeds(ctx):
    job_id, key = stylize_job(ctx, png((40, 36)), format="webp")
    run_stylize(ctx, job_id, key)
    record = ctx.jobs.get(job_id)
    assert record.status == "succeeded", record.error
    out = Image.open(io.BytesIO(ctx.store.get_bytes(record.result["output_key"])))
    assert (out.format, out.size) == ("WEBP", (40, 36))
    assert record.progress["done"] == 1
    assert ctx.terminal == [job_id]


@pytest.mark.parametrize(
    ("data", "params", "code"),
    [
        (b"this is not an image", {}, "bad_image"),
        (png(), {"model": "no-such-model"}, "unknown_model"),
        (png(), {"format": "gif"}, "bad_params"),
    ],
)
def test_bad_input_fails_the_job_with_a_code(ctx, data, params, code):
    job_id, key = stylize_job(ctx, data, **params)
    with recorded_outcome(ctx, job_id):  # what the task wraps every job function in
        run_stylize(ctx, job_id, key)
    record = ctx.jobs.get(job_id)
    assert record.status == "failed"
    assert record.error["code"] == code
    assert ctx.terminal == [job_id]


def test_canceled_before_start_and_terminal_jobs_are_skipped(ctx):
    job_id, key = stylize_job(ctx, png())
    ctx.jobs.cancel(job_id)
    run_stylize(ctx, job_id, key)
    assert ctx.jobs.get(job_id).status == "canceled"
    assert not ctx.store.exists(keys.output(job_id, 0, "png"))


def test_redelivery_cap_fails_a_poison_job(ctx):
    job_id, _ = stylize_job(ctx, png())
    assert begin(ctx, job_id, redelivered=True) is not None  # 1st redelivery
    assert begin(ctx, job_id, redelivered=True) is not None  # 2nd = max_redeliveries
    assert begin(ctx, job_id, redelivered=True) is None
    record = ctx.jobs.get(job_id)
    assert record.status == "failed"
    assert record.error == {
        "code": "worker_lost",
        "message": "worker lost 3 times while running this job, with no progress in between",
    }


def test_lost_deliveries_count_per_unit_and_progress_forgets_them(ctx):
    """One loss in each of many segments, or losses with progress in between, never reach the cap (2 here)."""
    job_id, _ = stylize_job(ctx, png())
    for segment in range(6):
        assert begin(ctx, job_id, redelivered=True, unit=f"segment:{segment}") is not None
    for _ in range(3):
        for _ in range(2):
            assert begin(ctx, job_id, redelivered=True, unit="segment:6") is not None
        ctx.jobs.reset_attempts(job_id, "segment:6")  # a checkpoint went up
    assert ctx.jobs.get(job_id).attempts == 12 and ctx.jobs.get(job_id).status == "running"
    for _ in range(2):
        assert begin(ctx, job_id, redelivered=True, unit="segment:6") is not None
    assert begin(ctx, job_id, redelivered=True, unit="segment:6") is None
    assert ctx.jobs.get(job_id).error == {
        "code": "worker_lost",
        "message": "worker lost 3 times while running segment 6 of this job, with no progress in between",
    }


def test_model_cache_reuses_loaded_models(ctx):
    first = ctx.models.get("tiny", OWNER)
    assert ctx.models.get("tiny", "someone-else") is first
    assert ctx.models.loads == 1


def batch_job(ctx, images: list[bytes], chunk: int):
    record, _ = ctx.jobs.create("batch", OWNER, {"model": "tiny", "size_mode": "original"}, total=len(images))
    items = []
    for index, data in enumerate(images):
        key = keys.input(record.id, index, "png")
        ctx.store.put_bytes(key, data)
        items.append((index, key))
    return record.id, [items[i : i + chunk] for i in range(0, len(items), chunk)]


def test_batch_chunks_count_once_and_finalize_with_per_image_errors(ctx):
    images = [png((40, 36), seed=i) for i in range(5)] + [b"corrupt", png((32, 48), seed=9)]
    job_id, chunks = batch_job(ctx, images, chunk=3)
    run_chunk(ctx, job_id, chunks[0])
    record = ctx.jobs.get(job_id)
    assert (record.status, record.progress["done"], record.progress["total"]) == ("running", 3, 7)
    run_chunk(ctx, job_id, chunks[0], redelivered=True)  # a redelivered chunk recounts nothing
    assert ctx.jobs.get(job_id).progress["done"] == 3
    run_chunk(ctx, job_id, chunks[1])
    run_chunk(ctx, job_id, chunks[2])
    record = ctx.jobs.get(job_id)
    # One image of seven failed: the batch is partial, never succeeded, with its failures summed up by code.
    assert record.status == "partial", record.error
    assert (record.progress["done"], record.progress["failed"]) == (6, 1)
    assert [e["index"] for e in record.result["errors"]] == [5]
    assert record.result["errors"][0]["code"] == "bad_image"
    assert record.result["failures"] == {"bad_image": 1}
    assert record.error["code"] == "some_images_failed"
    assert record.error["message"].startswith("1 of 7 images failed: bad_image x1 (e.g. ")
    with zipfile.ZipFile(io.BytesIO(ctx.store.get_bytes(keys.output_archive(job_id)))) as zf:
        names = zf.namelist()
    assert len([n for n in names if n.endswith(".png")]) == 6 and "errors.json" in names
    assert Image.open(io.BytesIO(ctx.store.get_bytes(keys.output(job_id, 6, "png")))).size == (32, 48)
    assert ctx.terminal == [job_id]


def test_batch_of_only_bad_images_fails(ctx):
    job_id, chunks = batch_job(ctx, [b"x", b"y"], chunk=2)
    run_chunk(ctx, job_id, chunks[0])
    record = ctx.jobs.get(job_id)
    assert record.status == "failed"
    assert record.error["code"] == "all_images_failed"
    assert record.error["message"].startswith("all 2 images failed: bad_image x2 (e.g. ")


def test_batch_stops_at_cancel_between_images(ctx, monkeypatch):
    from workers.jobs import JobCanceled

    # A window of 4 images decodes all four before its forward pass: a cancel seen while decoding drops the window.
    ctx.settings = ctx.settings.model_copy(update={"inference_batch_size": 4})
    job_id, chunks = batch_job(ctx, [png(seed=i) for i in range(4)], chunk=4)
    reads = []
    real_get = ctx.store.get_bytes

    def get_then_cancel(key):
        reads.append(key)
        if len(reads) == 2:  # the user cancels while the chunk is under way
            ctx.jobs.cancel(job_id)
        return real_get(key)

    monkeypatch.setattr(ctx.store, "get_bytes", get_then_cancel)
    with pytest.raises(JobCanceled):
        run_chunk(ctx, job_id, chunks[0])
    assert len(reads) == 2
    assert ctx.store.list(keys.outputs_prefix(job_id)) == []


def test_canceled_batch_ends_canceled_at_next_chunk(ctx):
    job_id, chunks = batch_job(ctx, [png(seed=i) for i in range(2)], chunk=1)
    run_chunk(ctx, job_id, chunks[0])
    ctx.jobs.cancel(job_id)
    run_chunk(ctx, job_id, chunks[1])
    assert ctx.jobs.get(job_id).status == "canceled"
    assert not ctx.store.exists(keys.output(job_id, 1, "png"))


def test_model_cache_evicts_the_least_recently_used_and_reloads_a_replaced_file(ctx, models_dir, tmp_path):
    import shutil

    for name in ("second", "third"):
        shutil.copy(models_dir / "tiny.safetensors", tmp_path / f"{name}.safetensors")
        key = keys.model(name, OWNER)
        ctx.store.put_file(key, tmp_path / f"{name}.safetensors")
        ctx.registry.register(name, OWNER, key, {"arch": "v2", "base_channels": 8})
    tiny = ctx.models.get("tiny", OWNER)
    ctx.models.get("second", OWNER)
    assert ctx.models.get("tiny", OWNER) is tiny  # a hit refreshes "tiny"
    ctx.models.get("third", OWNER)  # capacity 2: evicts "second", the least recently used
    assert ctx.models.loads == 3
    assert ctx.models.get("tiny", OWNER) is tiny
    ctx.models.get("second", OWNER)
    assert ctx.models.loads == 4
    # Re-registering a name (a new file version) loads the new file instead of serving the old weights.
    key = keys.model("third", OWNER)
    ctx.registry.register("third", OWNER, key, {"arch": "v2", "base_channels": 8}, replace=True)
    ctx.models.get("third", OWNER)
    assert ctx.models.loads == 5


def test_forward_batch_size_follows_the_device(ctx):
    """One image per forward pass on a CPU (batching costs more there than it saves), 8 on a GPU; a setting wins."""
    from dataclasses import replace

    from workers.contracts.images import StylizeSpec
    from workers.jobs.stylize import inference_options

    spec = StylizeSpec(model="tiny")
    assert inference_options(ctx, spec).batch_size == 1
    assert inference_options(replace(ctx, device="cuda"), spec).batch_size == 8
    tuned = replace(ctx, settings=ctx.settings.model_copy(update={"inference_batch_size": 8}))
    assert inference_options(tuned, spec).batch_size == 8


def test_a_jobs_error_never_shows_the_tenant_a_workers_scratch_path_or_the_storage_endpoint(ctx):
    import tempfile

    from workers.jobs import JobInputError

    record, _ = ctx.jobs.create("video", OWNER, {"model": "tiny"}, total=1)
    scratch = f"{tempfile.gettempdir()}/animegan-video-k2j4/source"
    ctx.settings = ctx.settings.model_copy(update={"s3_endpoint_url": "http://minio.internal:9000"})
    with recorded_outcome(ctx, record.id):
        raise JobInputError(
            "bad_video",
            f"segment 0: [Errno 1094995529] Invalid data: '{scratch}' (http://minio.internal:9000)",
        )
    message = ctx.jobs.get(record.id).error["message"]
    assert tempfile.gettempdir() not in message and "minio.internal" not in message, message
    assert (
        message
        == "segment 0: [Errno 1094995529] Invalid data: '<the worker's copy of the input>' (<storage>)"
    )
