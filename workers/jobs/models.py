"""Per-process cache of loaded generators (torch modules, or ONNX graphs run by onnxruntime): LRU keyed by model
name and file version.

A model is looked up in the registry (trained or uploaded, own or public), then among the built-in files of
WorkerSettings.models_dir. A re-registered model (same name, new file) has a new version and is reloaded.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from animegan.errors import AnimeGANError
from workers.jobs import JobInputError
from workers.json_types import JSONObject
from workers.registry import ModelRegistry
from workers.storage import NotFound, ObjectStore

if TYPE_CHECKING:
    from torch import nn

    from animegan.inference import InferenceOptions, Stylizer

logger = logging.getLogger(__name__)

BUILTIN_SUFFIXES = (".safetensors", ".pt")


@dataclass
class CachedModel:
    """One loaded generator and the Stylizers built on it (one per distinct set of inference options)."""

    name: str
    version: str
    generator: nn.Module  # in eval mode on the worker's device; an OnnxGenerator for a .onnx model
    config: JSONObject
    stylizers: dict[InferenceOptions, Stylizer] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSource:
    """Where a model's file lives: a storage key (registry) or a local path (built-in)."""

    name: str
    version: str
    key: str | None = None
    path: Path | None = None


class ModelCache:
    """LRU of loaded generators; at most `capacity` stay in memory (GPU memory is the scarce part)."""

    def __init__(
        self,
        store: ObjectStore,
        registry: ModelRegistry,
        models_dir: Path | None,
        device: str,
        capacity: int,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"model cache capacity must be >= 1, got {capacity}")
        self._store = store
        self._registry = registry
        self._models_dir = models_dir
        self._device = device
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, str], CachedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times a file was read from storage/disk (tests check cache hits)

    def resolve(self, name: str, owner: str) -> ModelSource:
        """Find the model a tenant may use by this name, or raise JobInputError("unknown_model")."""
        info = self._registry.get(name, owner)
        if info is not None:
            version = f"{info.key}@{info.created_at}:{info.size}"
            return ModelSource(name=name, version=version, key=info.key)
        if self._models_dir is not None:
            for suffix in BUILTIN_SUFFIXES:
                path = self._models_dir / f"{name}{suffix}"
                if path.is_file():
                    stat = path.stat()
                    return ModelSource(
                        name=name, version=f"{path}@{stat.st_mtime_ns}:{stat.st_size}", path=path
                    )
        raise JobInputError(
            "unknown_model",
            f"model {name!r} is neither registered for this tenant nor a built-in model; "
            "list the available ones with GET /v1/models",
        )

    def get(self, name: str, owner: str) -> CachedModel:
        """The loaded model for `name` as seen by `owner`, loading it on a miss (evicting the oldest)."""
        source = self.resolve(name, owner)
        cache_key = (source.name, source.version)
        with self._lock:
            entry = self._entries.get(cache_key)
            if entry is not None:
                self._entries.move_to_end(cache_key)
                return entry
        entry = self._load(source)
        with self._lock:
            self._entries[cache_key] = entry
            self._entries.move_to_end(cache_key)
            while len(self._entries) > self._capacity:
                evicted, _ = self._entries.popitem(last=False)
                logger.info("model cache evicted %s", evicted[0])
        return entry

    def stylizer(self, model: CachedModel, options: InferenceOptions) -> Stylizer:
        """A Stylizer for these options, reused across jobs (a compiled model is expensive to rebuild)."""
        with self._lock:
            stylizer = model.stylizers.get(options)
            if stylizer is None:
                from animegan.inference import (
                    Stylizer,  # torch: only where a model runs (not on the API image)
                )

                stylizer = Stylizer(model.generator, device=self._device, options=options)
                model.stylizers[options] = stylizer
            return stylizer

    def _load(self, source: ModelSource) -> CachedModel:
        self.loads += 1
        if source.path is not None:
            loaded = self._load_file(source.name, source.path)
        else:
            assert source.key is not None  # a ModelSource has a path or a key
            with tempfile.TemporaryDirectory(prefix="animegan-model-") as tmp:
                # Keep the suffix: it tells an ONNX graph from a weights file, and a safetensors export from a .pt.
                local = Path(tmp) / Path(source.key).name
                try:
                    self._store.get_file(source.key, local)
                except NotFound as exc:
                    raise JobInputError(
                        "model_file_missing",
                        f"model {source.name!r} is registered but its file {source.key!r} is missing from "
                        "storage; re-upload or delete the model",
                    ) from exc
                loaded = self._load_file(source.name, local)
        logger.info("loaded model %s (%s) on %s", source.name, source.version, self._device)
        generator, config = loaded
        return CachedModel(name=source.name, version=source.version, generator=generator, config=config)

    def _load_file(self, name: str, path: Path) -> tuple[nn.Module, JSONObject]:
        from animegan.weights import load_inference_model

        try:
            return load_inference_model(path, device=self._device)
        except AnimeGANError as exc:
            raise JobInputError("bad_model_file", f"model {name!r} could not be loaded: {exc}") from exc
