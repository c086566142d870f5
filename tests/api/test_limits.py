"""Per-key request rate and concurrent-job limits: 429 with Retry-After, counted in Redis (shared by replicas)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from tests.api.conftest import PUBLIC_MODEL, Api, error_of, png_bytes, start_api

RATE_LIMIT = 8


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("api-limits")
    service = start_api(
        tmp,
        env={
            "ANIMEGAN_RATE_LIMIT_REQUESTS": str(RATE_LIMIT),
            # A long window, so the test never straddles two windows.
            "ANIMEGAN_RATE_LIMIT_WINDOW_SECONDS": "3600",
            "ANIMEGAN_MAX_ACTIVE_JOBS": "2",
            "ANIMEGAN_ALLOW_PRIVATE_WEBHOOKS": "true",
        },
    )
    yield service
    service.process.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def submit(client, **form):
    files = {"file": ("p.png", png_bytes(), "image/png")}
    return client.post("/v1/stylize", data={"model": PUBLIC_MODEL, **form}, files=files)


def test_rate_limit_answers_429_with_retry_after(api):
    with api.client("alice") as alice, api.client("bob") as bob:
        statuses = [alice.get("/v1/jobs").status_code for _ in range(RATE_LIMIT)]
        assert statuses == [200] * RATE_LIMIT
        limited = alice.get("/v1/jobs")
        assert limited.status_code == 429
        assert error_of(limited)["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 3600
        # The budget is per key: another tenant is unaffected.
        assert bob.get("/v1/jobs").status_code == 200
    # The counter lives in Redis, where every API replica reads it.
    assert any(key.startswith("animegan:rate:alice:") for key in api.redis.scan_iter("animegan:rate:*"))


def test_concurrent_jobs_per_key_and_loopback_webhooks_when_allowed(api):
    api.key("carol")
    with api.client("carol") as carol:
        first = submit(carol, webhook_url="http://127.0.0.1:9/hook")
        assert first.status_code == 202, first.text
        assert first.json()["webhook_url"] == "http://127.0.0.1:9/hook"
        assert submit(carol).status_code == 202
        third = submit(carol)
        assert third.status_code == 429
        assert error_of(third)["code"] == "too_many_active_jobs"
        assert third.headers["Retry-After"].isdigit()
        # A finished (here: canceled) job frees its slot.
        assert carol.post(f"/v1/jobs/{first.json()['id']}/cancel").json()["status"] == "canceled"
        # It ended in the API, not in a worker: the API queued its terminal webhook.
        queued = [json.loads(m)["headers"] for m in api.redis.lrange("webhooks", 0, -1)]
        assert any(
            h["task"] == "animegan.deliver_webhook" and first.json()["id"] in h["id"] for h in queued
        ), queued
        assert submit(carol).status_code == 202
