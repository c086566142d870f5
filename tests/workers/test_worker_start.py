"""A starting worker and Redis or storage briefly down: it waits with backoff (ANIMEGAN_STARTUP_WAIT_SECONDS),
goes on once they answer, and otherwise exits 5 naming the one that did not. Real processes behind a TCP proxy
that refuses connections."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.conftest import ANIMEGAN, TEST_REDIS_DB, TEST_REDIS_HOST, TEST_REDIS_PORT
from tests.faults import TcpProxy
from workers.registry import ModelRegistry


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    header = {"config": json.dumps({"arch": "v2", "base_channels": 8}), "metadata": json.dumps({})}
    save_file({"w": np.zeros(4, dtype=np.float32)}, str(folder / "tiny.safetensors"), metadata=header)
    return folder


def _env(tmp_path: Path, redis_port: int, models_dir: Path, wait: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ANIMEGAN_REDIS_URL": f"redis://{TEST_REDIS_HOST}:{redis_port}/{TEST_REDIS_DB}",
        "ANIMEGAN_STORAGE_URL": (tmp_path / "storage").as_uri(),
        "ANIMEGAN_MODELS_DIR": str(models_dir),
        "ANIMEGAN_STARTUP_WAIT_SECONDS": str(wait),
        "ANIMEGAN_DEVICE": "cpu",
        **extra,
    }


def test_a_worker_exits_5_naming_redis_when_it_stays_down(tmp_path, models_dir):
    proxy = TcpProxy(TEST_REDIS_HOST, TEST_REDIS_PORT)
    proxy.refuse()
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [ANIMEGAN, "worker", "--queues", "stylize"], env=_env(tmp_path, proxy.port, models_dir, 3),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        proxy.close()
    assert proc.returncode == 5, proc.stderr[-3000:]
    assert "Redis did not answer within ANIMEGAN_STARTUP_WAIT_SECONDS=3" in proc.stderr, proc.stderr[-3000:]
    assert "retrying in" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 30


def test_a_worker_exits_5_naming_storage_when_it_stays_down(tmp_path, models_dir, s3_endpoint, redis_client):
    proxy = TcpProxy("127.0.0.1", int(s3_endpoint.rsplit(":", 1)[1]))
    proxy.refuse()
    env = _env(
        tmp_path, TEST_REDIS_PORT, models_dir, 2, ANIMEGAN_STORAGE_URL="s3://nowhere/svc",
        ANIMEGAN_S3_ENDPOINT_URL=proxy.url, ANIMEGAN_S3_MAX_ATTEMPTS="1",
        ANIMEGAN_S3_ACCESS_KEY_ID="testing", ANIMEGAN_S3_SECRET_ACCESS_KEY="testing",
    )  # fmt: skip
    try:
        proc = subprocess.run(
            [ANIMEGAN, "worker", "--queues", "stylize"], env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        proxy.close()
    assert proc.returncode == 5, proc.stderr[-3000:]
    assert "object storage did not answer" in proc.stderr and "ANIMEGAN_STORAGE_URL" in proc.stderr


def test_a_brief_redis_outage_at_start_is_waited_out(tmp_path, models_dir, redis_client):
    """Redis refuses for about 2 s of a 60 s wait: registration goes through once it answers (the
    register-builtin-models command runs the same startup path as the worker, without starting Celery)."""
    proxy = TcpProxy(TEST_REDIS_HOST, TEST_REDIS_PORT)
    proxy.refuse()
    try:
        proc = subprocess.Popen(
            [ANIMEGAN, "register-builtin-models"], env=_env(tmp_path, proxy.port, models_dir, 60),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2.5)
        assert proc.poll() is None, "gave up while Redis was briefly down"
        proxy.restore()
        _, stderr = proc.communicate(timeout=60)
    finally:
        proxy.close()
    assert proc.returncode == 0, stderr[-3000:]
    assert "unreachable" in stderr and "retrying in" in stderr
    assert ModelRegistry(redis_client).get("tiny", None) is not None
