"""API test fixtures: a real uvicorn process per module on the test Redis database and local or S3 (moto) storage,
API keys for two tenants, and a public model record; requests go over real HTTP with httpx or ApiClient.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from PIL import Image

from api.auth import create_api_key
from tests.conftest import ANIMEGAN, TEST_REDIS_DB, TEST_REDIS_HOST, TEST_REDIS_PORT, free_port, wait_until
from workers import keys
from workers.jobstore import JobStore
from workers.registry import ModelRegistry
from workers.settings import ServiceSettings
from workers.storage import ObjectStore, open_store

REDIS_URL = f"redis://{TEST_REDIS_HOST}:{TEST_REDIS_PORT}/{TEST_REDIS_DB}"
PUBLIC_MODEL = "tiny"
# Small limits so each one is cheap to exceed in a test.
BASE_ENV = {
    "ANIMEGAN_MAX_UPLOAD_BYTES": "300000",
    "ANIMEGAN_MAX_REQUEST_BYTES": "3000000",
    "ANIMEGAN_MAX_IMAGE_PIXELS": "1000000",
    "ANIMEGAN_MAX_BATCH_ITEMS": "6",
    "ANIMEGAN_MAX_DATASET_IMAGES": "8",
    "ANIMEGAN_BATCH_CHUNK_SIZE": "2",
    "ANIMEGAN_MAX_ACTIVE_JOBS": "50",
    "ANIMEGAN_RATE_LIMIT_REQUESTS": "10000",
    "ANIMEGAN_ALLOW_PRIVATE_WEBHOOKS": "false",
    "ANIMEGAN_SSE_KEEPALIVE_SECONDS": "1",
    "ANIMEGAN_METRICS_TOKEN": "metrics-secret",
}


def png_bytes(
    size: tuple[int, int] = (48, 40), color: tuple[int, int, int] = (200, 80, 40), fmt: str = "PNG"
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


class ApiProcess:
    """`uvicorn api.main:app` (or `animegan serve`, with via_cli) in a child process with the given environment;
    its metrics listener on a port of its own at metrics_url (unless metrics=False)."""

    def __init__(self, env: dict[str, str], log_path: Path, via_cli: bool = False, metrics: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        metrics_port = free_port() if metrics else None
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else None
        self.log_path = log_path
        self._log = log_path.open("ab")
        full_env = {**os.environ, **env}
        if metrics_port:
            full_env["ANIMEGAN_METRICS_PORT"] = str(metrics_port)
        if via_cli:
            argv = [ANIMEGAN, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        else:
            argv = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "warning"]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def peak_rss_bytes(self) -> int:
        """The process's peak resident memory so far (VmHWM), to show what one request made it hold."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmHWM in /proc/{self.proc.pid}/status")

    def wait_ready(self, timeout: float = 60) -> ApiProcess:
        def up() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"API exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout, "the API to answer /healthz")
        return self

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self._log.close()


@dataclass
class Api:
    """A running API plus direct handles on its Redis and storage (to play the worker's part in tests)."""

    url: str
    process: ApiProcess
    redis: redis.Redis
    jobs: JobStore
    registry: ModelRegistry
    store: ObjectStore
    storage_root: Path | None
    keys: dict[str, str]

    def client(self, tenant: str = "alice") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.keys[tenant]}"}, timeout=30
        )

    def key(self, tenant: str) -> str:
        if tenant not in self.keys:
            self.keys[tenant] = create_api_key(self.redis, tenant)
        return self.keys[tenant]


def start_api(
    tmp: Path, env: dict[str, str] | None = None, storage_url: str | None = None, via_cli: bool = False
) -> Api:
    """Flush the test Redis database, then start an API on it with BASE_ENV overridden by `env`."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); start redis-server first")
    client.flushdb()
    storage_root = None
    if storage_url is None:
        storage_root = tmp / "storage"
        storage_url = storage_root.as_uri()
    full_env = {
        **BASE_ENV,
        "ANIMEGAN_REDIS_URL": REDIS_URL,
        "ANIMEGAN_STORAGE_URL": storage_url,
        **(env or {}),
    }
    registry = ModelRegistry(client)
    registry.register(PUBLIC_MODEL, None, "models/public/tiny/generator.safetensors", {"arch": "v2"},
                      public=True, source="builtin")  # fmt: skip
    keys = {t: create_api_key(client, t) for t in ("alice", "bob")}
    settings = ServiceSettings(**{k.removeprefix("ANIMEGAN_").lower(): v for k, v in full_env.items()})
    process = ApiProcess(full_env, tmp / "api.log", via_cli=via_cli).wait_ready()
    return Api(
        process.url, process, client, JobStore(client), registry, open_store(settings), storage_root, keys
    )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One API per test module on local storage, with tenants alice and bob."""
    tmp = tmp_path_factory.mktemp("api")
    service = start_api(tmp)
    yield service
    service.process.stop()
    service.redis.close()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def alice(api: Api) -> Iterator[httpx.Client]:
    with api.client("alice") as c:
        yield c


@pytest.fixture
def bob(api: Api) -> Iterator[httpx.Client]:
    with api.client("bob") as c:
        yield c


def finish_job(api: Api, job_id: str, outputs: dict[int, bytes], ext: str = "png") -> None:
    """Play the worker: write outputs at their keys, count them, and mark the job succeeded."""
    api.jobs.start(job_id)
    for index, data in outputs.items():
        api.store.put_bytes(keys.output(job_id, index, ext), data)
        api.jobs.mark_item_done(job_id, index)
    record = api.jobs.get(job_id)
    if record.kind == "batch":
        api.store.put_bytes(keys.output_archive(job_id), b"PK-zip-stand-in")
        result = {"archive_key": keys.output_archive(job_id), "total": len(outputs)}
    else:
        result = {"output_key": keys.output(job_id, 0, ext)}
    assert api.jobs.succeed(job_id, result)


def error_of(response: httpx.Response) -> dict[str, str]:
    """The {"code", "message"} of an error answer, asserting the shared error shape."""
    body = response.json()
    assert set(body) >= {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]
