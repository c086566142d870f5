"""End-to-end fixtures: real `animegan worker` processes on the test Redis and on local or S3 (moto) storage.

Workers live for a whole module (starting one costs a few seconds); each module gets its own Redis database
flush and storage, and jobs are created with the JobStore and enqueued with workers.enqueue (the messages of workers.contracts), as the API does.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import ANIMEGAN, TEST_REDIS_DB, TEST_REDIS_HOST, TEST_REDIS_PORT, wait_until

OWNER = "tenant-a"
BUILTIN_MODEL = "tiny"
# Short enough that a redelivery after SIGKILL happens within a test, long enough for a tiny task to finish.
VISIBILITY_TIMEOUT_SECONDS = 8
TRAIN_SEGMENT_SECONDS = 4


def png_bytes(size: tuple[int, int] = (48, 40), seed: int = 0) -> bytes:
    """A small random RGB PNG (seeded), standing in for an uploaded photo."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


class WorkerProcess:
    """One `animegan worker` in its own process group, so SIGKILL takes the parent and its pool children."""

    def __init__(
        self, env: dict[str, str], log_path: Path, name: str, queues: str, wrapper: tuple[str, ...] = ()
    ) -> None:
        self.log_path = log_path
        self.name = name
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [*wrapper, ANIMEGAN, "worker", "--queues", queues, "--concurrency", "1", "--loglevel", "info",
             "--hostname", f"{name}@%h"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"worker {self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return " ready." in self.log()

        wait_until(ready, timeout, f"worker {self.name} to be ready")
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: no warm shutdown, no ack, exactly like a lost machine."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self, timeout: float = 30) -> int:
        """Warm shutdown (SIGTERM to the parent) and wait; SIGKILL if it hangs."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        else:
            # The parent is gone; make sure no orphaned pool child is left behind.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        return self.proc.returncode


@dataclass
class Service:
    """Everything a test needs to create jobs, enqueue them like the API and watch real workers run them."""

    env: dict[str, str]
    root: Path
    settings: Any
    redis: Any
    jobs: Any
    store: Any
    registry: Any
    app: Any  # a Celery app on the test broker; enqueue helpers take it as app= (as the API configures its own)
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(
        self,
        name: str,
        queues: str = "stylize,train,webhooks",
        wrapper: tuple[str, ...] = (),
        wait: bool = True,
        **env: str,
    ) -> WorkerProcess:
        """A worker on `queues` with `env` added; `wrapper` is a command that execs it (prlimit, unshare)."""
        worker_env = {**self.env, **env}
        worker = WorkerProcess(
            worker_env, self.root / f"{name}.log", f"{name}-{uuid.uuid4().hex[:6]}", queues, wrapper
        )
        self.workers.append(worker)
        return worker.wait_ready() if wait else worker

    def job(self, job_id: str) -> Any:
        return self.jobs.get(job_id)

    def wait_status(self, job_id: str, statuses: set[str], timeout: float = 60) -> Any:
        def reached() -> Any:
            record = self.jobs.get(job_id)
            return record if record is not None and str(record.status) in statuses else None

        try:
            return wait_until(reached, timeout, f"job {job_id} to reach {sorted(statuses)}")
        except pytest.fail.Exception:
            logs = "\n".join(f"--- {w.name}\n{w.log()[-4000:]}" for w in self.workers)
            pytest.fail(f"job {job_id} is {self.jobs.get(job_id)}; worker logs:\n{logs}")

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    def close(self) -> None:
        self.stop_workers()
        self.redis.close()


def _tiny_model(models_dir: Path) -> Path:
    """A seeded v2 generator of width 8, exported as the built-in model 'tiny'."""
    import torch

    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator
    from animegan.weights import save_generator

    torch.manual_seed(0)
    generator = build_generator(GeneratorConfig(arch="v2", base_channels=8))
    models_dir.mkdir(parents=True, exist_ok=True)
    return save_generator(
        models_dir / f"{BUILTIN_MODEL}.safetensors", generator, metadata={"name": BUILTIN_MODEL}
    )


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def make_versioned_bucket(endpoint: str) -> str:
    """A fresh bucket with versioning on, so a test can count how often each object was written."""
    name = f"e2e-{uuid.uuid4().hex[:12]}"
    client = s3_client(endpoint)
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def make_service(
    root: Path,
    backend: str,
    request: pytest.FixtureRequest,
    redis_url: str | None = None,
    s3_endpoint: str | None = None,
) -> Service:
    """Environment, clients and a clean Redis database for one module's workers; call close() at the end.

    `redis_url` and `s3_endpoint` replace the shared test Redis database and the moto server (a test's own
    Redis, or a fault-injecting proxy in front of moto).
    """
    import redis

    from tests.animegan.vgg_fixtures import write_vgg19_npy
    from workers.celery_app import create_celery_app
    from workers.jobstore import JobStore
    from workers.registry import ModelRegistry
    from workers.settings import WorkerSettings, load_settings
    from workers.storage import open_store

    redis_url = redis_url or f"redis://{TEST_REDIS_HOST}:{TEST_REDIS_PORT}/{TEST_REDIS_DB}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    models_dir = root / "models"
    _tiny_model(models_dir)
    vgg = write_vgg19_npy(root / "vgg19.npy", seed=0)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANIMEGAN_")},
        "ANIMEGAN_REDIS_URL": redis_url,
        "ANIMEGAN_MODELS_DIR": str(models_dir),
        "ANIMEGAN_VGG_WEIGHTS": str(vgg),
        "ANIMEGAN_DEVICE": "cpu",
        "ANIMEGAN_TORCH_THREADS": "1",
        "ANIMEGAN_INFERENCE_PRECISION": "fp32",
        "ANIMEGAN_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT_SECONDS),
        "ANIMEGAN_TRAIN_SEGMENT_SECONDS": str(TRAIN_SEGMENT_SECONDS),
        "ANIMEGAN_ALLOW_PRIVATE_WEBHOOKS": "true",
        "ANIMEGAN_WEBHOOK_SECRET": "e2e-webhook-secret",
    }
    if backend == "s3":
        endpoint = s3_endpoint or request.getfixturevalue("s3_endpoint")
        bucket = make_versioned_bucket(endpoint)
        env.update({
            "ANIMEGAN_STORAGE_URL": f"s3://{bucket}/e2e",
            "ANIMEGAN_S3_ENDPOINT_URL": endpoint,
            "ANIMEGAN_S3_ACCESS_KEY_ID": "testing",
            "ANIMEGAN_S3_SECRET_ACCESS_KEY": "testing",
            "ANIMEGAN_S3_ADDRESSING_STYLE": "path",
        })  # fmt: skip
    else:
        env["ANIMEGAN_STORAGE_URL"] = (root / "storage").as_uri()
    overrides = {k.removeprefix("ANIMEGAN_").lower(): v for k, v in env.items() if k.startswith("ANIMEGAN_")}
    settings = load_settings(WorkerSettings, **overrides)
    return Service(
        env=env,
        root=root,
        settings=settings,
        redis=client,
        jobs=JobStore.from_settings(client, settings),
        store=open_store(settings),
        registry=ModelRegistry(client),
        app=create_celery_app(settings),
    )
