"""Training segments in-process: resume from the stored checkpoint, lease exclusivity, fencing, completion."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.conftest import training_params, wait_until
from workers import keys
from workers.jobs import JobContext, recorded_outcome
from workers.jobs.train import SegmentOutcome, run_segment

OWNER = "tenant-a"
# Unique per run: workers cache unpacked datasets by id on the machine.
DATASET = f"ds-{uuid.uuid4().hex[:8]}"


def zip_of_images(count: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(count):
            img = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, size=(72, 80, 3), dtype=np.uint8)).save(img, "PNG")
            zf.writestr(f"imgs/{i}.png", img.getvalue())
    return buf.getvalue()


def zip_member_png(seed: int) -> bytes:
    img = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, size=(72, 80, 3), dtype=np.uint8)).save(
        img, "PNG"
    )
    return img.getvalue()


@pytest.fixture
def ctx(redis_client, redis_url, tmp_path) -> JobContext:
    from tests.animegan.vgg_fixtures import write_vgg19_npy
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
        vgg_weights=write_vgg19_npy(tmp_path / "vgg19.npy", seed=0),
        device="cpu",
        train_segment_seconds=60,
        visibility_timeout_seconds=120,
    )
    store = LocalStore(tmp_path / "storage")
    registry = ModelRegistry(redis_client)
    store.put_bytes(keys.dataset_archive(DATASET, "photos"), zip_of_images(4, seed=1))
    store.put_bytes(keys.dataset_archive(DATASET, "styles"), zip_of_images(4, seed=2))
    return JobContext(
        settings=settings,
        jobs=JobStore.from_settings(redis_client, settings),
        store=store,
        registry=registry,
        models=ModelCache(store, registry, None, device="cpu", capacity=2),
        leases=TrainingLease(redis_client),
        device="cpu",
        on_terminal=lambda job_id: None,
    )


def train_job(ctx, steps: int, extra_params: dict | None = None, tuning: dict | None = None, **hyper) -> str:
    hp = {"preset": "v2-hayao", "image_size": 32, "batch_size": 2, "epochs": 4, "init_epochs": 1,
          "base_channels": 8, "max_total_steps": steps, **hyper}  # fmt: skip
    tuning = {"discriminator_channels": 8, **(tuning or {})}
    params = training_params("my-style", DATASET, hp, tuning, **(extra_params or {}))
    record, _ = ctx.jobs.create("train", OWNER, params, total=steps)
    return record.id


def test_segments_resume_from_the_stored_checkpoint_and_register_the_model(ctx, monkeypatch):
    job_id = train_job(ctx, steps=5)
    import workers.jobs.train as train_module

    # First segment: stop after 3 steps, as if its time budget ran out.
    real_trainer = train_module.Trainer

    class ThreeSteps(real_trainer):
        def run(self, max_steps=None, max_seconds=None):
            return super().run(max_steps=3)

    monkeypatch.setattr(train_module, "Trainer", ThreeSteps)
    assert run_segment(ctx, job_id, 0) == SegmentOutcome.paused
    assert ctx.store.list(keys.checkpoints_prefix(job_id)) == [keys.checkpoint(job_id, 3)]
    record = ctx.jobs.get(job_id)
    assert (record.progress["step"], record.progress["segments_done"]) == (3, 1)
    # The progress shows the last step's named loss terms, exactly as the run's uploaded losses.jsonl has them.
    logged = [json.loads(line) for line in ctx.store.get_bytes(keys.run_losses(job_id)).decode().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2, 3]
    last = {k: v for k, v in logged[-1].items() if k not in ("step", "epoch", "phase", "time")}
    assert last and record.progress["losses"] == pytest.approx(last, abs=1e-6)  # progress keeps 6 decimals
    config = json.loads(ctx.store.get_bytes(keys.run_config(job_id)))
    assert config["image_size"] == 32 and config["generator"]["base_channels"] == 8

    monkeypatch.setattr(train_module, "Trainer", real_trainer)
    assert run_segment(ctx, job_id, 0) == SegmentOutcome.stale  # a duplicate of the finished segment
    assert run_segment(ctx, job_id, 1) == SegmentOutcome.finished
    record = ctx.jobs.get(job_id)
    assert record.status == "succeeded", record.error
    assert record.progress["resumed_from_step"] == 3
    assert record.result == {"model": "my-style", "model_key": keys.model("my-style", OWNER), "steps": 5}
    # The second segment went on with the stored losses.jsonl: each step once, none lost at the resume.
    logged = [json.loads(line) for line in ctx.store.get_bytes(keys.run_losses(job_id)).decode().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2, 3, 4, 5]
    info = ctx.registry.get("my-style", OWNER)
    assert info is not None and info.source == "trained" and info.config["base_channels"] == 8
    assert ctx.registry.get("my-style", "tenant-b") is None
    # The registered model is usable by a stylize job at once.
    assert ctx.models.get("my-style", OWNER).config["base_channels"] == 8


def test_the_segment_budget_counts_the_dataset_download(ctx, monkeypatch):
    """Issue 20, B6: the segment clock starts with the task, so a slow restore or dataset download shortens the
    training that follows and the task as a whole stays inside train_segment_seconds (+ its checkpoint upload),
    well inside the visibility timeout; it used to start after the download."""
    import time

    import workers.jobs.train as train_module

    job_id = train_job(ctx, steps=5)
    real_fetch, real_trainer, budgets = train_module._fetch_dataset, train_module.Trainer, []

    def slow_fetch(*args, **kwargs):
        time.sleep(2.0)  # a download that takes 2 s of the 60 s segment
        return real_fetch(*args, **kwargs)

    class OneStep(real_trainer):
        def run(self, max_steps=None, max_seconds=None):
            budgets.append(max_seconds)
            return super().run(max_steps=1)

    monkeypatch.setattr(train_module, "_fetch_dataset", slow_fetch)
    monkeypatch.setattr(train_module, "Trainer", OneStep)
    assert run_segment(ctx, job_id, 0) == SegmentOutcome.paused
    assert ctx.settings.train_segment_seconds == 60
    assert budgets and budgets[0] <= 60 - 2.0, budgets


def test_a_held_lease_keeps_a_second_worker_out(ctx):
    job_id = train_job(ctx, steps=2)
    token = ctx.leases.acquire(job_id, "other-worker", 30)
    assert token is not None
    assert run_segment(ctx, job_id, 0) == SegmentOutcome.busy
    assert ctx.store.list(keys.checkpoints_prefix(job_id)) == []


def test_a_fenced_off_worker_uploads_nothing(ctx, monkeypatch):
    job_id = train_job(ctx, steps=3, tuning={"checkpoint_every": 1})
    import workers.jobs.train as train_module

    real_hooks = train_module.SegmentHooks

    class TakenOver(real_hooks):
        def progress(self, p):
            super().progress(p)
            if p.step == 1:  # another worker takes the lease over (ours expired while we were stalled)
                self.ctx.redis_client_for_test.delete(self.ctx.leases.lease_key(self.job_id))
                self.ctx.leases.acquire(self.job_id, "successor", 30)

    ctx.redis_client_for_test = ctx.jobs.redis  # type: ignore[attr-defined]
    monkeypatch.setattr(train_module, "SegmentHooks", TakenOver)
    assert run_segment(ctx, job_id, 0) == SegmentOutcome.lost_lease
    assert ctx.store.list(keys.checkpoints_prefix(job_id)) == []
    assert ctx.leases.holder(job_id) == "successor"  # our release did not drop the successor's lease


def test_a_bad_dataset_fails_the_job_naming_the_archive(ctx):
    broken = f"broken-{uuid.uuid4().hex[:6]}"
    ctx.store.put_bytes(keys.dataset_archive(broken, "photos"), b"not a zip")
    ctx.store.put_bytes(keys.dataset_archive(broken, "styles"), zip_of_images(2, seed=3))
    record, _ = ctx.jobs.create("train", OWNER, training_params("x", broken, {"image_size": 64}), total=1)
    # Bad input raises out of the job function; the one translation records it (and the lease is released).
    with recorded_outcome(ctx, record.id):
        run_segment(ctx, record.id, 0)
    assert ctx.leases.holder(record.id) is None
    failed = ctx.jobs.get(record.id)
    assert failed.status == "failed" and failed.error["code"] == "bad_dataset"
    assert "photos archive: not a readable zip" in failed.error["message"]


def test_a_dataset_error_names_the_users_entries_and_no_worker_paths(ctx, monkeypatch, tmp_path):
    import workers.jobs.train as train_module

    monkeypatch.setattr(train_module, "DATASET_CACHE", tmp_path / "dataset-cache")
    dataset = f"textfile-{uuid.uuid4().hex[:6]}"
    photos = io.BytesIO()
    with zipfile.ZipFile(photos, "w") as zf:
        zf.writestr("trip/a.png", zip_member_png(0))
        zf.writestr("trip/b.png", zip_member_png(1))
        zf.writestr("trip/notes.jpg", b"these are my notes, not a photo")
    ctx.store.put_bytes(keys.dataset_archive(dataset, "photos"), photos.getvalue())
    ctx.store.put_bytes(keys.dataset_archive(dataset, "styles"), zip_of_images(2, seed=3))
    params = training_params("x", dataset, {"image_size": 32, "max_total_steps": 1})
    record, _ = ctx.jobs.create("train", OWNER, params, total=1)
    # Bad input raises out of the job function; the one translation records it (and the lease is released).
    with recorded_outcome(ctx, record.id):
        run_segment(ctx, record.id, 0)
    assert ctx.leases.holder(record.id) is None
    error = ctx.jobs.get(record.id).error
    assert error["code"] == "bad_dataset" and "'trip/notes.jpg'" in error["message"], error
    for internal in (str(tmp_path), "dataset-cache", "000002", " at 0x"):
        assert internal not in error["message"], error["message"]


def test_a_dataset_that_changed_since_the_api_checked_it_fails_the_job(ctx, monkeypatch, tmp_path):
    # An upload PUT again after the job took it: the worker refuses bytes the API did not check.
    import workers.jobs.train as train_module

    monkeypatch.setattr(train_module, "DATASET_CACHE", tmp_path / "dataset-cache")
    params = training_params("x", DATASET, {"image_size": 32, "max_total_steps": 1})
    params["datasets"]["photos"]["sha256"] = "0" * 64
    record, _ = ctx.jobs.create("train", OWNER, params, total=1)
    # Bad input raises out of the job function; the one translation records it (and the lease is released).
    with recorded_outcome(ctx, record.id):
        run_segment(ctx, record.id, 0)
    assert ctx.leases.holder(record.id) is None
    error = ctx.jobs.get(record.id).error
    assert error["code"] == "dataset_changed", error
    assert keys.dataset_archive(DATASET, "photos") in error["message"]


def test_a_dataset_above_the_image_limit_fails_and_leaves_no_files(ctx, monkeypatch, tmp_path):
    import workers.jobs.train as train_module

    cache = tmp_path / "dataset-cache"
    monkeypatch.setattr(train_module, "DATASET_CACHE", cache)
    monkeypatch.setattr(ctx.settings, "max_dataset_images", 3)
    dataset = f"crowded-{uuid.uuid4().hex[:6]}"
    ctx.store.put_bytes(keys.dataset_archive(dataset, "photos"), zip_of_images(4, seed=1))
    ctx.store.put_bytes(keys.dataset_archive(dataset, "styles"), zip_of_images(2, seed=2))
    params = training_params("x", dataset, {"image_size": 32, "max_total_steps": 1})
    record, _ = ctx.jobs.create("train", OWNER, params, total=1)
    # Bad input raises out of the job function; the one translation records it (and the lease is released).
    with recorded_outcome(ctx, record.id):
        run_segment(ctx, record.id, 0)
    assert ctx.leases.holder(record.id) is None
    error = ctx.jobs.get(record.id).error
    assert error["code"] == "bad_dataset" and "4 images is more than 3" in error["message"]
    assert [p for p in cache.rglob("*") if p.is_file()] == [], "the refused extraction stayed on disk"


def test_cancel_stops_training_between_steps(ctx, monkeypatch):
    job_id = train_job(ctx, steps=50)
    import workers.jobs.train as train_module

    real_hooks = train_module.SegmentHooks

    class CancelAtTwo(real_hooks):
        def progress(self, p):
            super().progress(p)
            if p.step == 2:
                self.ctx.jobs.cancel(self.job_id)

    monkeypatch.setattr(train_module, "SegmentHooks", CancelAtTwo)
    assert run_segment(ctx, job_id, 0) == SegmentOutcome.finished
    record = ctx.jobs.get(job_id)
    assert record.status == "canceled"
    assert record.progress["step"] == 2


def test_a_deadline_stops_training_after_a_checkpoint_and_ends_it_expired(ctx, monkeypatch):
    from workers import keys, redis_keys

    job_id = train_job(ctx, steps=50)
    import workers.jobs.train as train_module

    real_hooks = train_module.SegmentHooks

    class DeadlineAtTwo(real_hooks):
        def progress(self, p):
            super().progress(p)
            if p.step == 2:  # the deadline passes now (as the API's sweep would find it)
                ctx.jobs.redis.hset(redis_keys.job(self.job_id), "deadline", repr(time.time() - 0.01))

    monkeypatch.setattr(train_module, "SegmentHooks", DeadlineAtTwo)
    assert run_segment(ctx, job_id, 0) == SegmentOutcome.finished
    record = ctx.jobs.get(job_id)
    assert record.status == "expired" and record.error["code"] == "deadline_exceeded"
    assert "training stopped at step 2, its checkpoint kept" in record.error["message"]
    # The stop wrote and uploaded a checkpoint of step 2 first: a new run can start from it.
    assert [c["step"] for c in record.progress["checkpoints"]] == [2]
    assert ctx.store.exists(keys.checkpoint(job_id, 2))


def test_a_worker_without_vgg_weights_fails_training_with_what_to_set(ctx):
    ctx.settings = ctx.settings.model_copy(update={"vgg_weights": None})
    job_id = train_job(ctx, steps=2)
    # Bad input raises out of the job function; the one translation records it (and the lease is released).
    with recorded_outcome(ctx, job_id):
        run_segment(ctx, job_id, 0)
    assert ctx.leases.holder(job_id) is None
    error = ctx.jobs.get(job_id).error
    assert error["code"] == "vgg_weights_missing" and "ANIMEGAN_VGG_WEIGHTS" in error["message"]


def test_fine_tuning_starts_from_a_registered_model_and_skips_the_init_phase(ctx, tmp_path):
    import torch

    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator
    from animegan.weights import save_generator

    torch.manual_seed(1)
    export = save_generator(
        tmp_path / "base.safetensors", build_generator(GeneratorConfig(arch="v2", base_channels=8))
    )
    ctx.store.put_file(keys.model("base", OWNER), export)
    ctx.registry.register("base", OWNER, keys.model("base", OWNER), {"arch": "v2", "base_channels": 8})

    job_id = train_job(ctx, steps=1, extra_params={"fine_tune_from": "base"}, base_channels=None)
    assert run_segment(ctx, job_id, 0) == SegmentOutcome.finished
    done = ctx.jobs.get(job_id)
    assert done.status == "succeeded", done.error
    assert (
        done.progress["phase"] == "gan"
    )  # step 1 was already a GAN step: the content-only warm-up was skipped
    assert ctx.registry.get("my-style", OWNER).config["base_channels"] == 8


def test_the_lease_keeper_renews_until_the_segment_ends_and_notices_a_takeover(ctx):
    import time

    from workers.jobs.train import LeaseKeeper

    token = ctx.leases.acquire("job-k", "me", 1.0)
    with LeaseKeeper(ctx, "job-k", token, ttl=1.0) as keeper:
        time.sleep(2.5)  # more than twice the ttl: only renewals keep it
        assert ctx.leases.check("job-k", token) and not keeper.lost
    # Once renewals stop, the lease lapses after its ttl (1 s).
    wait_until(lambda: not ctx.leases.check("job-k", token), 5, "the lease to lapse after its segment")

    token = ctx.leases.acquire("job-k", "me", 1.0)
    with LeaseKeeper(ctx, "job-k", token, ttl=1.0) as keeper:
        ctx.jobs.redis.delete(ctx.leases.lease_key("job-k"))
        ctx.leases.acquire("job-k", "successor", 30)
        wait_until(lambda: keeper.lost, 5, "the keeper to notice the takeover at its next renewal")
