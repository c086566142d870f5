"""Fixtures shared by every test folder: real Redis, a real S3-compatible HTTP server, the shared data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# Each engineer (and CI) runs its Redis tests in its own database so parallel runs never flush each other.
TEST_REDIS_DB = int(os.environ.get("ANIMEGAN_TEST_REDIS_DB", "9"))
TEST_REDIS_HOST = os.environ.get("ANIMEGAN_TEST_REDIS_HOST", "127.0.0.1")
TEST_REDIS_PORT = int(os.environ.get("ANIMEGAN_TEST_REDIS_PORT", "6379"))


# The console script of this environment's project install (tests start API and worker processes with it).
ANIMEGAN = shutil.which("animegan") or str(Path(sys.executable).with_name("animegan"))


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy and return its value; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def training_params(
    name: str,
    dataset_id: str,
    hyperparameters: dict,
    tuning: dict | None = None,
    mode: str = "unpaired",
    **extra,
) -> dict:
    """A TrainingSpec's JSON for a job record made by hand, reading the zips at keys.dataset_archive(dataset_id)."""
    from workers import keys
    from workers.contracts.training import MODE_PARTS, TrainingMode, TrainingSpec

    parts = MODE_PARTS[TrainingMode(mode)]
    spec = TrainingSpec(
        name=name,
        mode=mode,
        hyperparameters=hyperparameters,
        datasets={part: {"key": keys.dataset_archive(dataset_id, part)} for part in parts},
        tuning=tuning or {},
        **extra,
    )
    return spec.model_dump(mode="json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real photos and reference outputs beside the checkout; skip where they are absent."""
    if not (SHARED_DATA / "photos").is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def redis_url() -> str:
    """URL of a clean database on the real Redis server (flushed before each test)."""
    import redis

    url = f"redis://{TEST_REDIS_HOST}:{TEST_REDIS_PORT}/{TEST_REDIS_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {url} ({exc}); start redis-server first")
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real S3 HTTP endpoint (moto server) on loopback, in its own process, for the whole session."""
    port = free_port()
    moto = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    proc = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto_server did not start within 30 s")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh bucket on the S3 server; returns its name. Credentials are dummies that moto accepts."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
    return name
