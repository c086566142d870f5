"""Settings: defaults, environment parsing, and validation errors that name the offending variable."""

from __future__ import annotations

import pytest

from workers import keys
from workers.exceptions import ConfigurationError, InvalidKey
from workers.settings import PROJECT_ROOT, ServiceSettings, WorkerSettings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """The developer's own ANIMEGAN_* variables must not leak into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("ANIMEGAN_") and name != "ANIMEGAN_TEST_REDIS_DB":
            monkeypatch.delenv(name)


def test_embedded_defaults():
    settings = load_settings(WorkerSettings)
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.storage_scheme == "file"
    assert settings.storage_root == PROJECT_ROOT / "data" / "storage"
    assert settings.max_redeliveries == 3
    assert settings.queues == ["stylize", "train", "webhooks"]
    assert settings.visibility_timeout_seconds > settings.train_segment_seconds


def test_environment_is_read(monkeypatch, tmp_path):
    monkeypatch.setenv("ANIMEGAN_STORAGE_URL", "s3://my-bucket/some/prefix/")
    monkeypatch.setenv("ANIMEGAN_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("ANIMEGAN_S3_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("ANIMEGAN_S3_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("ANIMEGAN_QUEUES", "train, webhooks")
    monkeypatch.setenv("ANIMEGAN_VGG_WEIGHTS", str(tmp_path / "vgg19.npy"))
    (tmp_path / "vgg19.npy").write_bytes(b"x")
    settings = load_settings(WorkerSettings)
    assert (settings.s3_bucket, settings.s3_prefix) == ("my-bucket", "some/prefix/")
    assert settings.queues == ["train", "webhooks"]
    assert settings.s3_secret_access_key.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert settings.vgg_weights == tmp_path / "vgg19.npy"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ANIMEGAN_STORAGE_URL", "ftp://host/x", "use s3://bucket/prefix or file:///absolute/path"),
        ("ANIMEGAN_STORAGE_URL", "s3:///prefix-only", "names no bucket"),
        ("ANIMEGAN_STORAGE_URL", "s3://Bad_Bucket/x", "not a valid S3 bucket name"),
        ("ANIMEGAN_STORAGE_URL", "file://relative/path", "file:///absolute/path"),
        ("ANIMEGAN_REDIS_URL", "http://localhost:6379", "not a Redis URL"),
        ("ANIMEGAN_S3_ENDPOINT_URL", "minio:9000", "http(s)://"),
        ("ANIMEGAN_QUEUES", "stylize,gpu", "unknown queue"),
        ("ANIMEGAN_DEVICE", "tpu", "device 'tpu'"),
        ("ANIMEGAN_VGG_WEIGHTS", "/nonexistent/vgg19.npy", "does not exist"),
        ("ANIMEGAN_MAX_REDELIVERIES", "-1", "greater than or equal to 0"),
        ("ANIMEGAN_PRESIGN_EXPIRY_SECONDS", "999999999", "less than or equal to 604800"),
    ],
)
def test_validation_names_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings(WorkerSettings)
    text = str(info.value)
    assert variable in text and message in text


def test_visibility_timeout_must_cover_a_training_segment(monkeypatch):
    monkeypatch.setenv("ANIMEGAN_TRAIN_SEGMENT_SECONDS", "600")
    monkeypatch.setenv("ANIMEGAN_VISIBILITY_TIMEOUT_SECONDS", "700")
    with pytest.raises(ConfigurationError, match="ANIMEGAN_VISIBILITY_TIMEOUT_SECONDS=700 must be at least"):
        load_settings(WorkerSettings)
    monkeypatch.setenv("ANIMEGAN_VISIBILITY_TIMEOUT_SECONDS", "901")
    assert load_settings(WorkerSettings).visibility_timeout_seconds == 901


def test_credentials_come_in_pairs(monkeypatch):
    monkeypatch.setenv("ANIMEGAN_S3_ACCESS_KEY_ID", "only-the-key")
    with pytest.raises(ConfigurationError, match="ANIMEGAN_S3_SECRET_ACCESS_KEY"):
        load_settings(ServiceSettings)


def test_empty_variables_mean_unset(monkeypatch):
    monkeypatch.setenv("ANIMEGAN_VGG_WEIGHTS", "")
    monkeypatch.setenv("ANIMEGAN_S3_ENDPOINT_URL", "")
    settings = load_settings(WorkerSettings)
    assert settings.vgg_weights is None and settings.s3_endpoint_url is None


def test_overrides_win_over_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ANIMEGAN_STORAGE_URL", "s3://from-env")
    settings = load_settings(ServiceSettings, storage_url=tmp_path.as_uri())
    assert settings.storage_root == tmp_path


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: keys.input("j1", 0, "PNG"), "inputs/j1/000000.png"),
        (lambda: keys.output("j1", 12, ".jpg"), "outputs/j1/000012.jpg"),
        (lambda: keys.output_archive("j1"), "outputs/j1/results.zip"),
        (lambda: keys.checkpoint("j1", 2500), "runs/j1/checkpoints/000002500.pt"),
        (lambda: keys.sample("j1", 7), "runs/j1/samples/000000007.png"),
        (lambda: keys.model("hayao"), "models/public/hayao/generator.safetensors"),
        (lambda: keys.model("mine", owner="alice"), "models/users/alice/mine/generator.safetensors"),
        (lambda: keys.dataset_archive("d1", "styles"), "datasets/d1/styles.zip"),
        (lambda: keys.upload("alice", "u1"), "uploads/alice/u1"),
    ],
)
def test_keys_layout(build, expected):
    assert build() == expected
    assert keys.validate_key(expected) == expected


@pytest.mark.parametrize(
    "build",
    [
        lambda: keys.output("../x", 0, "png"),
        lambda: keys.output("j", -1, "png"),
        lambda: keys.output("j", 0, "p/ng"),
        lambda: keys.model("a/b"),
        lambda: keys.upload("alice", ".."),
        lambda: keys.dataset_archive("d", "smooth"),
    ],
)
def test_keys_refuse_unsafe_ids(build):
    with pytest.raises(InvalidKey):
        build()


def test_a_namespace_puts_every_key_and_broker_queue_of_a_deployment_apart():
    from workers import redis_keys
    from workers.celery_app import celery_config
    from workers.exceptions import ConfigurationError
    from workers.settings import ServiceSettings, load_settings

    try:
        settings = load_settings(ServiceSettings, namespace="demo-1a2b")
        assert redis_keys.job("j1") == "animegan:demo-1a2b:job:j1"
        assert redis_keys.METRICS == "animegan:demo-1a2b:metrics:jobs"
        assert redis_keys.KOMBU_UNACKED == "animegan:demo-1a2b:broker:unacked"
        assert redis_keys.broker_queue("stylize") == "animegan:demo-1a2b:broker:stylize"
        assert celery_config(settings)["broker_transport_options"]["global_keyprefix"] == (
            "animegan:demo-1a2b:broker:"
        )
        plain = load_settings(ServiceSettings)
        assert redis_keys.job("j1") == "animegan:job:j1" and redis_keys.broker_queue("stylize") == "stylize"
        assert "global_keyprefix" not in celery_config(plain)["broker_transport_options"]
        with pytest.raises(ConfigurationError, match="ANIMEGAN_NAMESPACE"):
            load_settings(ServiceSettings, namespace="Bad:Name")
    finally:
        redis_keys.set_namespace("")
