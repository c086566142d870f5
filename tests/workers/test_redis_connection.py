"""Redis addresses for a cluster: rediss:// and sentinel:// URLs in the settings, the broker config and the clients
(a real redis-server behind a real Sentinel); and the optional VGG19 file."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest

from tests.conftest import free_port, wait_until
from tests.faults import RedisServer
from workers.celery_app import celery_config
from workers.exceptions import ConfigurationError
from workers.redis_connection import connect, sentinel_nodes
from workers.settings import ServiceSettings, WorkerSettings, load_settings

SENTINELS = "sentinel://:pw@10.0.0.1:26379/2;sentinel://:pw@10.0.0.2:26380/2"


def test_sentinel_url_needs_the_master_name_and_goes_to_kombu():
    with pytest.raises(ConfigurationError, match="ANIMEGAN_REDIS_SENTINEL_MASTER"):
        load_settings(ServiceSettings, redis_url=SENTINELS)
    settings = load_settings(ServiceSettings, redis_url=SENTINELS, redis_sentinel_master="mymaster")
    conf = celery_config(settings)
    assert conf["broker_url"] == SENTINELS
    assert conf["broker_transport_options"]["master_name"] == "mymaster"
    assert sentinel_nodes(SENTINELS) == ([("10.0.0.1", 26379), ("10.0.0.2", 26380)], "pw", 2)


@pytest.mark.parametrize("url", ["sentinel://", "sentinel://h:1;redis://h:2", "http://redis:6379"])
def test_malformed_redis_urls_are_refused(url):
    with pytest.raises(ConfigurationError, match="ANIMEGAN_REDIS_URL"):
        load_settings(ServiceSettings, redis_url=url, redis_sentinel_master="m")


def test_rediss_url_verifies_the_server_certificate():
    conf = celery_config(load_settings(ServiceSettings, redis_url="rediss://:pw@redis.example:6380/0"))
    assert conf["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    plain = celery_config(load_settings(ServiceSettings, redis_url="redis://redis.example:6379/0"))
    assert "broker_use_ssl" not in plain


def test_missing_vgg_file_stops_the_worker_unless_optional(tmp_path):
    missing = tmp_path / "vgg19.npy"
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(WorkerSettings, vgg_weights=missing)
    settings = load_settings(WorkerSettings, vgg_weights=missing, vgg_weights_optional=True)
    assert settings.vgg_weights is None
    missing.write_bytes(b"x")
    assert (
        load_settings(WorkerSettings, vgg_weights=missing, vgg_weights_optional=True).vgg_weights == missing
    )


def test_defaults_bound_a_lost_segment_to_minutes():
    settings = load_settings(WorkerSettings)
    assert settings.train_segment_seconds <= 300 and settings.visibility_timeout_seconds <= 900


@pytest.fixture
def sentinel_url(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    primary = RedisServer(tmp_path / "primary").start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nsentinel monitor animegan 127.0.0.1 {primary.port} 1\n"
    )
    proc = subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
    try:
        import redis

        probe = redis.Redis(port=port)
        wait_until(lambda: _answers(probe), 20, "redis sentinel")
        yield f"sentinel://127.0.0.1:{port}/0", primary
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        primary.stop()


def _answers(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_sentinel_client_and_broker_reach_the_master(sentinel_url):
    import redis
    from kombu import Connection

    url, primary = sentinel_url
    settings = load_settings(ServiceSettings, redis_url=url, redis_sentinel_master="animegan")
    client = connect(settings, decode_responses=True)
    client.set("animegan:probe", "via-sentinel")
    assert redis.Redis(port=primary.port, decode_responses=True).get("animegan:probe") == "via-sentinel"

    conf = celery_config(settings)
    with Connection(conf["broker_url"], transport_options=conf["broker_transport_options"]) as conn:
        queue = conn.SimpleQueue("stylize")
        queue.put({"ping": 1})
        assert queue.get(timeout=10).payload == {"ping": 1}
        queue.close()
