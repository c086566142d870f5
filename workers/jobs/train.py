"""Training as a chain of bounded segments, each resuming from the latest checkpoint in storage.

A lease with a fencing token keeps two workers off one run: every upload checks the token first, so a worker
that lost its lease (paused too long, then woke up) cannot overwrite its successor's checkpoints.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from animegan.errors import AnimeGANError, DatasetError
from animegan.training import TrainConfig, Trainer, TrainProgress, TrainResult
from animegan.training.checkpoint import checkpoint_path
from animegan.training.trainer import CONFIG_FILE, LOSSES_FILE
from workers import keys
from workers.archives import ArchiveLimits
from workers.contracts.training import DatasetArchive, TrainingMode, TrainingResult, TrainingSpec
from workers.exceptions import ModelExists
from workers.jobs import JobContext, JobInputError, begin, cancel, fail, job_spec, succeed
from workers.jobs.datasets import DatasetCache, evict_files, user_message
from workers.storage import NotFound

if TYPE_CHECKING:
    from workers.jobstore import JobRecord

logger = logging.getLogger(__name__)

_STEP_IN_NAME = re.compile(r"(\d+)")
# Unpacked datasets, reused by later segments on this machine; the edge-smoothing cache sits beside them.
DATASET_CACHE = Path(tempfile.gettempdir()) / "animegan-datasets"
SMOOTH_CACHE = Path(tempfile.gettempdir()) / "animegan-smooth-cache"
# Newest sample grids listed in the job's progress (all stay in storage).
SAMPLES_LISTED = 20
# True once the worker is shutting down (SIGTERM): workers.tasks.runtime.shutdown_requested.
StopCheck = Callable[[], bool]


class SegmentOutcome(StrEnum):
    """What one segment ended with; tasks.py enqueues the next segment on `paused`."""

    paused = "paused"  # time budget spent, checkpoint uploaded: run the next segment
    finished = "finished"  # job reached a terminal status (succeeded, failed or canceled)
    busy = "busy"  # another live worker holds the lease: try again after a short countdown
    stale = "stale"  # a duplicate delivery of a segment that already ran: drop it
    lost_lease = "lost_lease"  # fenced off mid-segment; the lease holder carries on


class LeaseLost(Exception):
    """Our fencing token is no longer current: stop without touching storage."""


class ShuttingDown(Exception):
    """SIGTERM arrived before training started (restore, download, unpack): hand the segment on at once."""


def _stop_if_shutting_down(shutdown_requested: StopCheck | None, job_id: str, phase: str) -> None:
    # Between the phases that come before the trainer's own per-step check: a preempted pod must not spend
    # its grace period downloading a dataset it will never train on.
    if shutdown_requested is not None and shutdown_requested():
        logger.info("job %s: shutdown requested after %s; requeueing the segment", job_id, phase)
        raise ShuttingDown(job_id)


def lease_ttl(ctx: JobContext) -> int:
    """Long enough to survive a slow step and a checkpoint upload between renewals, short enough that the
    redelivered segment of a dead worker (re-queued while the lease is still held) soon takes over."""
    return max(10, min(ctx.settings.visibility_timeout_seconds // 2, 120))


class LeaseKeeper:
    """Renews the lease from a background thread every ttl/3 seconds, so a slow step, a long dataset download
    or a big checkpoint upload never lets it lapse while this worker is alive."""

    def __init__(self, ctx: JobContext, job_id: str, token: int, ttl: float | None = None) -> None:
        self.ctx, self.job_id, self.token = ctx, job_id, token
        self.ttl = lease_ttl(ctx) if ttl is None else ttl
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.ctx.leases.renew(self.job_id, self.token, self.ttl):
                    logger.warning(
                        "job %s: lease lost (token %d); stopping this segment", self.job_id, self.token
                    )
                    self.lost = True
                    return
            except redis.RedisError as exc:
                # Keep trying: the lease outlives a few missed renewals, and uploads check the fence anyway.
                logger.warning("job %s: lease renewal failed (%s); retrying", self.job_id, exc)


@dataclass
class SegmentHooks:
    """Trainer callbacks: progress to the job record, uploads behind the fence, cancellation."""

    ctx: JobContext
    job_id: str
    token: int
    keep_checkpoints: int  # uploaded checkpoints kept in storage (older ones deleted)
    segment: int = 0  # the segment this run is (a checkpoint resets its redelivery count)
    shutdown_requested: StopCheck | None = None
    keeper: LeaseKeeper | None = None
    fenced_off: bool = False
    run_dir: Path | None = None  # trainer's folder: config.json and losses.jsonl go up with checkpoints

    @property
    def lost(self) -> bool:
        return self.fenced_off or (self.keeper is not None and self.keeper.lost)

    def progress(self, p: TrainProgress) -> None:
        fields = {"step": p.step, "total_steps": p.total_steps, "epoch": p.epoch, "phase": p.phase}
        losses = {name: round(float(value), 6) for name, value in p.losses.items()}
        self.ctx.jobs.set_progress(self.job_id, **fields, losses=losses)

    def should_stop(self) -> bool:
        if self.lost:
            return True
        if self.shutdown_requested is not None and self.shutdown_requested():
            return True
        return self.ctx.jobs.is_cancel_requested(self.job_id)

    def _fence(self) -> None:
        if self.lost or not self.ctx.leases.check(self.job_id, self.token):
            self.fenced_off = True
            raise LeaseLost(self.job_id)

    def on_checkpoint(self, path: Path) -> None:
        self._fence()
        step = _step_of(path)
        key = keys.checkpoint(self.job_id, step)
        self.ctx.store.put_file(key, path)
        self.ctx.jobs.set_progress(self.job_id, checkpoint_step=step)
        self.ctx.jobs.reset_attempts(self.job_id, f"segment:{self.segment}")
        self.ctx.jobs.append_progress(
            self.job_id, "checkpoints", {"step": step, "key": key}, keep_last=self.keep_checkpoints
        )
        # The run describes itself beside its checkpoints (the resolved config, every step's named losses), and
        # the next segment continues the same losses.jsonl.
        for name, run_key in ((CONFIG_FILE, keys.run_config), (LOSSES_FILE, keys.run_losses)):
            if self.run_dir is not None and (self.run_dir / name).is_file():
                self.ctx.store.put_file(run_key(self.job_id), self.run_dir / name)
        # Only the newest few are ever resumed from; a long run would otherwise pile up gigabytes.
        uploaded = sorted(self.ctx.store.list(keys.checkpoints_prefix(self.job_id)))
        for old in uploaded[: -self.keep_checkpoints]:
            self.ctx.store.delete(old)
        logger.info("job %s: checkpoint of step %d uploaded", self.job_id, step)

    def on_sample(self, path: Path) -> None:
        self._fence()
        step = _step_of(path)
        key = keys.sample(self.job_id, step, path.suffix or ".png")
        self.ctx.store.put_file(key, path)
        self.ctx.jobs.append_progress(
            self.job_id, "samples", {"step": step, "key": key}, keep_last=SAMPLES_LISTED
        )


def _step_of(path: Path) -> int:
    """Step number in a trainer file name such as step-00000120.pt or step-000120.png."""
    found = _STEP_IN_NAME.findall(path.stem)
    if not found:
        raise ValueError(f"cannot tell the step from file name {path.name!r}")
    return int(found[-1])


def train_config(ctx: JobContext, spec: TrainingSpec) -> TrainConfig:
    """The run's TrainConfig: the preset with the spec's overrides (named as TrainConfig's fields) and this
    worker's device and files; a value TrainConfig refuses fails the job naming it."""
    hp, tuning = spec.hyperparameters, spec.tuning
    # exclude_none: an omitted override keeps the preset's value, also inside losses and paired_losses.
    overrides = hp.model_dump(exclude_none=True, exclude={"preset", "base_channels"})
    overrides.update(tuning.model_dump(exclude_none=True, include={"checkpoint_every", "sample_every"}))
    if hp.base_channels is not None:
        overrides["generator"] = {"base_channels": hp.base_channels}
    if tuning.discriminator_channels is not None:
        overrides["discriminator"] = {"base_channels": tuning.discriminator_channels}
    try:
        config = TrainConfig.from_preset(spec.preset.value, mode=spec.mode.value, **overrides).replace(
            vgg_weights=str(ctx.settings.vgg_weights or ""),
            smooth_cache_dir=str(SMOOTH_CACHE),
            device=ctx.device,
        )
    except (AnimeGANError, TypeError, ValueError) as exc:
        raise JobInputError("bad_params", f"training hyperparameters are invalid: {exc}") from exc
    if config.needs_vgg and ctx.settings.vgg_weights is None:
        why = "the unpaired mode" if spec.mode == TrainingMode.unpaired else "the perceptual loss term"
        raise JobInputError(
            "vgg_weights_missing",
            f"{why} needs VGG19 weights and this worker has none; set ANIMEGAN_VGG_WEIGHTS to vgg19.npy "
            "(README, 'Training a new style'), or train in the paired or teacher mode, which need none",
        )
    return config


def _fetch_archive(ctx: JobContext, part: str, archive: DatasetArchive, path: Path) -> None:
    """Download one dataset zip to `path`, refusing bytes other than those the API checked."""
    try:
        ctx.store.get_file(archive.key, path)
    except NotFound as exc:
        raise JobInputError(
            "dataset_missing", f"the {part} archive {archive.key!r} is not in storage"
        ) from exc
    if archive.sha256 is None:
        return
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != archive.sha256:
        raise JobInputError(
            "dataset_changed",
            f"the {part} archive {archive.key!r} changed after the job was created (an upload sent again?); "
            "submit the training again",
        )


def _fetch_dataset(ctx: JobContext, spec: TrainingSpec) -> dict[str, Path]:
    """The folders of the job's dataset parts (photos, and styles or targets by mode), unpacked once per
    machine. Paired parts keep their file names: pairs are matched by them."""
    dataset_id = spec.dataset_id
    cache = DatasetCache(DATASET_CACHE, ctx.settings.dataset_cache_bytes)
    limits = ArchiveLimits(max_images=ctx.settings.max_dataset_images)
    folders = {}
    for part, archive in spec.datasets.items():

        def fetch(path: Path, part: str = part, archive: DatasetArchive = archive) -> None:
            _fetch_archive(ctx, part, archive, path)

        keep_names = spec.mode == TrainingMode.paired
        folders[part] = cache.part(dataset_id, part, fetch, limits, keep_names=keep_names)
    cache.evict(keep=dataset_id)
    # Entries of this run were touched when it last read them; other runs' go first.
    evict_files(SMOOTH_CACHE, ctx.settings.smooth_cache_bytes)
    return folders


def _restore_latest_checkpoint(ctx: JobContext, job_id: str, run_dir: Path) -> int:
    """Download the newest uploaded checkpoint into run_dir so Trainer.run resumes from it; its step (0: none)."""
    uploaded = sorted(ctx.store.list(keys.checkpoints_prefix(job_id)))
    if not uploaded:
        return 0
    step = _step_of(Path(uploaded[-1]))
    ctx.store.get_file(uploaded[-1], checkpoint_path(run_dir, step))
    try:
        # The trainer appends to it and drops lines past the checkpoint's step, as after a local resume.
        ctx.store.get_file(keys.run_losses(job_id), run_dir / LOSSES_FILE)
    except NotFound:
        logger.info("job %s: no losses.jsonl stored yet; the log restarts at step %d", job_id, step)
    return step


def _model_file(ctx: JobContext, name: str | None, field: str, owner: str, work: Path) -> Path | None:
    """A local copy of the generator `name` (of fine_tune_from, teacher), or None if unset."""
    if not name:
        return None
    source = ctx.models.resolve(name, owner)
    if source.path is not None:
        return source.path
    assert source.key is not None  # a ModelSource has a path or a key
    local = work / field / Path(source.key).name
    local.parent.mkdir(parents=True, exist_ok=True)
    ctx.store.get_file(source.key, local)
    return local


def run_segment(
    ctx: JobContext,
    job_id: str,
    segment: int,
    redelivered: bool = False,
    shutdown_requested: StopCheck | None = None,
) -> SegmentOutcome:
    """Train one bounded segment of a job; see SegmentOutcome for what the caller does next."""
    # The segment's budget runs from here, so checkpoint restore, model and dataset downloads count in it and
    # the task as a whole stays inside the broker's visibility timeout (WorkerSettings checks 1.5x).
    started = time.monotonic()
    record = begin(ctx, job_id, redelivered, f"segment:{segment}")
    if record is None:
        return SegmentOutcome.finished
    if int(record.progress.get("segments_done", 0)) > segment:
        logger.info("job %s: segment %d already ran; dropping a duplicate delivery", job_id, segment)
        return SegmentOutcome.stale
    holder = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
    token = ctx.leases.acquire(job_id, holder, lease_ttl(ctx))
    if token is None:
        return SegmentOutcome.busy
    try:
        with LeaseKeeper(ctx, job_id, token) as keeper:
            return _train_under_lease(ctx, record, segment, keeper, shutdown_requested, started)
    except LeaseLost:
        logger.warning("job %s: fenced off during segment %d", job_id, segment)
        return SegmentOutcome.lost_lease
    except ShuttingDown:
        return SegmentOutcome.paused
    finally:
        ctx.leases.release(job_id, token)


def _train_under_lease(
    ctx: JobContext,
    record: JobRecord,
    segment: int,
    keeper: LeaseKeeper,
    shutdown_requested: StopCheck | None,
    started: float,
) -> SegmentOutcome:
    job_id, token = record.id, keeper.token
    spec = job_spec(record, TrainingSpec)
    with tempfile.TemporaryDirectory(prefix=f"animegan-train-{job_id}-") as tmp:
        work = Path(tmp)
        run_dir = work / "run"
        config, resumed_from = _resume(ctx, record, spec, work, run_dir, shutdown_requested)
        data = _fetch_dataset(ctx, spec)
        _stop_if_shutting_down(shutdown_requested, job_id, "fetching the dataset")
        ctx.jobs.set_progress(job_id, segment=segment, resumed_from_step=resumed_from)
        # A short history of segments (who ran it, from which step) shows users and tests where resumes happened.
        entry = {
            "segment": segment,
            "resumed_from_step": resumed_from,
            "started_at": time.time(),
            "token": token,
        }
        # One entry per segment: a redelivered segment replaces its earlier entry (its last start is the one that
        # counts), so the list never shows a segment twice.
        ctx.jobs.append_progress(job_id, "segments", entry, keep_last=20, unique_by="segment")
        logger.info("job %s: segment %d starts at step %d", job_id, segment, resumed_from)
        hooks = SegmentHooks(
            ctx, job_id, token, config.keep_checkpoints, segment, shutdown_requested, keeper, run_dir=run_dir
        )
        # At least a second of training, so a slow download cannot stall the run in empty segments.
        budget = max(1.0, ctx.settings.train_segment_seconds - (time.monotonic() - started))
        trainer, result = _run_trainer(ctx, config, data, run_dir, hooks, budget)
        if hooks.lost:
            raise LeaseLost(job_id)
        if result.status == "completed":
            return _complete(ctx, record, spec.name, trainer, work, result.step)
        if ctx.jobs.is_cancel_requested(job_id):
            cancel(ctx, job_id)
            return SegmentOutcome.finished
        ctx.jobs.set_progress(job_id, segments_done=segment + 1)
        logger.info("job %s: segment %d paused at step %d (%s)", job_id, segment, result.step, result.status)
        return SegmentOutcome.paused


def _resume(
    ctx: JobContext,
    record: JobRecord,
    spec: TrainingSpec,
    work: Path,
    run_dir: Path,
    shutdown_requested: StopCheck | None,
) -> tuple[TrainConfig, int]:
    """The segment's config and the step it resumes from: the latest checkpoint restored into run_dir, or (on
    the first segment) the fine-tuning start; a distill run's teacher fetched either way."""
    config = train_config(ctx, spec)
    resumed_from = _restore_latest_checkpoint(ctx, record.id, run_dir)
    _stop_if_shutting_down(shutdown_requested, record.id, "restoring the checkpoint")
    if resumed_from == 0:
        init = _model_file(ctx, spec.fine_tune_from, "fine_tune_from", record.owner, work)
        if init is not None:
            config = config.replace(init_generator=str(init), skip_init=spec.tuning.skip_init)
    if config.mode == "distill":
        teacher = _model_file(ctx, spec.teacher, "teacher", record.owner, work)
        if teacher is None:
            raise JobInputError("bad_params", "a distill job needs params.teacher: the model to learn from")
        config = config.replace(teacher=str(teacher))
    _stop_if_shutting_down(shutdown_requested, record.id, "fetching the models")
    return config, resumed_from


def _run_trainer(
    ctx: JobContext,
    config: TrainConfig,
    data: dict[str, Path],
    run_dir: Path,
    hooks: SegmentHooks,
    budget_seconds: float,
) -> tuple[Trainer, TrainResult]:
    """Train until the segment's time budget, the run's end, a stop request or a lost lease."""
    try:
        trainer = Trainer(
            config,
            photos=data["photos"],
            styles=data.get("styles"),
            targets=data.get("targets"),
            run_dir=run_dir,
            progress=hooks.progress,
            should_stop=hooks.should_stop,
            on_checkpoint=hooks.on_checkpoint,
            on_sample=hooks.on_sample,
        )
        return trainer, trainer.run(max_seconds=budget_seconds)
    except AnimeGANError as exc:
        # The library names files by their path on this machine; the user knows their archive entries.
        message = user_message(str(exc), data)
        raise JobInputError(
            "bad_dataset" if isinstance(exc, DatasetError) else "bad_params", message
        ) from exc


def _complete(
    ctx: JobContext, record: JobRecord, name: str, trainer: Trainer, work: Path, step: int
) -> SegmentOutcome:
    """Export the generator, register it for the owner (usable at once), then mark the job succeeded."""
    export = work / "generator.safetensors"
    trainer.export_generator(export)
    key = keys.model(name, record.owner)
    ctx.store.put_file(key, export)
    try:
        ctx.registry.register(
            name, record.owner, key, trainer.config.generator.to_dict(), public=False, source="trained",
            size=export.stat().st_size, metadata={"job_id": record.id, "steps": step},
        )  # fmt: skip
    except ModelExists:
        existing = ctx.registry.get(name, record.owner)
        # A redelivery after this job already registered its model is fine; anyone else's model is not.
        if existing is None or existing.metadata.get("job_id") != record.id:
            fail(
                ctx,
                record.id,
                "model_exists",
                f"a model named {name!r} appeared while training; retrain under another name",
            )
            ctx.registry.release_name(name, record.owner, record.id)
            return SegmentOutcome.finished
    succeed(ctx, record.id, TrainingResult(model=name, model_key=key, steps=step))
    # The API reserved the name at submit; the model holds it now. (A job that fails or is canceled leaves its
    # reservation to be replaced by the next submit of the name: the registry sees the job has ended.)
    ctx.registry.release_name(name, record.owner, record.id)
    return SegmentOutcome.finished
