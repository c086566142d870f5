"""ModelRegistry against real Redis: namespaces per tenant, name rules, built-in models from export headers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from workers import keys
from workers.exceptions import InvalidName, ModelExists
from workers.registry import ModelRegistry, read_export_header

CONFIG = {"arch": "v2", "base_channels": 8, "upsample": "tf_legacy"}


@pytest.fixture
def registry(redis_client) -> ModelRegistry:
    return ModelRegistry(redis_client)


def test_register_get_and_tenant_isolation(registry):
    info = registry.register("my-style", "alice", keys.model("my-style", "alice"), CONFIG, size=123)
    assert not info.public and info.owner == "alice"
    assert registry.get("my-style", "alice") == info
    assert registry.get("my-style", "bob") is None  # another tenant cannot see it
    assert registry.get("my-style", None) is None
    registry.register("hayao", None, keys.model("hayao"), CONFIG, public=True, source="builtin")
    assert registry.get("hayao", "bob").public
    assert [m.name for m in registry.list("alice")] == ["hayao", "my-style"]
    assert [m.name for m in registry.list("bob")] == ["hayao"]


def test_own_model_shadows_public_and_names_are_unique_per_namespace(registry):
    registry.register("hayao", None, keys.model("hayao"), CONFIG, public=True, source="builtin")
    own = registry.register("hayao", "alice", keys.model("hayao", "alice"), {**CONFIG, "arch": "v1"})
    assert registry.get("hayao", "alice") == own
    assert registry.get("hayao", "bob").owner is None
    with pytest.raises(ModelExists, match="'hayao' already exists among the models of 'alice'"):
        registry.register("hayao", "alice", keys.model("hayao", "alice"), CONFIG)
    replaced = registry.register("hayao", "alice", keys.model("hayao", "alice"), CONFIG, replace=True)
    assert registry.get("hayao", "alice").config == CONFIG and replaced.created_at >= own.created_at


# "-x" and "_x": the one rule (the API's too) wants a letter or digit first, as a storage key segment does.
@pytest.mark.parametrize("name", ["", "UPPER", "a" * 65, "with space", "dots.no", "../x", "-x", "_x"])
def test_invalid_names_are_refused(registry, name):
    with pytest.raises(InvalidName):
        registry.register(name, "alice", "models/users/alice/x/generator.safetensors", CONFIG)
    assert registry.get(name, "alice") is None


def test_delete_only_own(registry):
    registry.register("shared", None, keys.model("shared"), CONFIG, public=True)
    registry.register("mine", "alice", keys.model("mine", "alice"), CONFIG)
    assert registry.delete("shared", "alice") is None  # a tenant cannot delete a public model
    assert registry.get("shared", "alice") is not None
    assert registry.delete("mine", "bob") is None
    deleted = registry.delete("mine", "alice")
    assert deleted.key == keys.model("mine", "alice")
    assert registry.get("mine", "alice") is None and [m.name for m in registry.list("alice")] == ["shared"]


def test_builtin_models_from_export_headers(registry, local_store, tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    header = {
        "config": json.dumps(CONFIG),
        "metadata": json.dumps({"name": "tiny", "arch": "v2"}),
        "format": "x",
    }
    save_file({"w": np.zeros(4, dtype=np.float32)}, str(models_dir / "tiny.safetensors"), metadata=header)
    save_file({"w": np.zeros(1, dtype=np.float32)}, str(models_dir / "Bad Name.safetensors"), metadata=header)
    (models_dir / "notes.txt").write_text("ignored")
    assert read_export_header(models_dir / "tiny.safetensors") == (CONFIG, {"name": "tiny", "arch": "v2"})
    registered = registry.register_builtin_models(models_dir, local_store)
    assert [m.name for m in registered] == ["tiny"]
    info = registry.get("tiny", "anyone")
    assert info.public and info.source == "builtin" and info.config == CONFIG
    assert local_store.get_bytes(info.key) == (models_dir / "tiny.safetensors").read_bytes()
    assert (
        registry.register_builtin_models(models_dir, local_store)[0].name == "tiny"
    )  # idempotent at restart


def test_header_without_config_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": np.zeros(1, dtype=np.float32)}, str(path))
    with pytest.raises(ValueError, match="no generator config"):
        read_export_header(path)


def _export(path, value: float) -> None:
    header = {"config": json.dumps(CONFIG), "metadata": json.dumps({"arch": "v2"})}
    save_file({"w": np.full(4, value, dtype=np.float32)}, str(path), metadata=header)


def test_worker_starts_neither_upload_again_nor_flip_a_public_model(registry, local_store, tmp_path):
    """Every worker start registers the built-in exports: an unchanged one costs no upload and no write, and
    an image with another export of the same name (a mixed-version rollout) leaves the public model as it is,
    until an operator replaces it."""
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    _export(models_dir / "tiny.safetensors", 1.0)
    first = registry.register_builtin_models(models_dir, local_store)[0]
    local_store.delete(first.key)  # a second upload would put it back
    again = registry.register_builtin_models(models_dir, local_store)[0]
    assert again == first and not local_store.exists(first.key)
    local_store.put_bytes(first.key, (models_dir / "tiny.safetensors").read_bytes())

    _export(models_dir / "tiny.safetensors", 2.0)  # the next version's image
    assert registry.register_builtin_models(models_dir, local_store)[0] == first
    assert registry.get("tiny", None) == first
    replaced = registry.register_builtin_models(models_dir, local_store, replace=True)[0]
    assert replaced.metadata["sha256"] != first.metadata["sha256"] and replaced.key != first.key
    assert local_store.get_bytes(replaced.key) == (models_dir / "tiny.safetensors").read_bytes()
    assert local_store.exists(first.key), "the file older workers' jobs read was overwritten or removed"
