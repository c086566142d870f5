"""Fixtures for the service-layer tests: both storage backends, a JobStore on the test Redis database."""

from __future__ import annotations

import pytest

from workers.storage import LocalStore, ObjectStore


@pytest.fixture
def local_store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "storage")


@pytest.fixture
def s3_store(s3_endpoint, s3_bucket):
    """An S3Store on the real moto HTTP server, under a key prefix (as production deployments use)."""
    from workers.storage.s3 import S3Store

    return S3Store(
        s3_bucket,
        "svc/",
        endpoint_url=s3_endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        addressing_style="path",
        max_attempts=2,
    )


@pytest.fixture(params=["local", "s3"])
def store(request) -> ObjectStore:
    """Each storage contract test runs once per backend."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def jobstore(redis_client):
    from workers.jobstore import JobStore

    return JobStore(redis_client, ttl_seconds=600, idempotency_ttl_seconds=600)
