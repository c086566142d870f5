"""Model registry: records in Redis (files in object storage), a public namespace plus one per tenant.

A tenant sees the public models and its own; its own shadow a public model of the same name.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import re
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from workers import keys, redis_keys
from workers.exceptions import InvalidName, ModelExists
from workers.jobstore import check_owner
from workers.json_types import JSONObject

if TYPE_CHECKING:
    import redis

    from workers.storage import ObjectStore

logger = logging.getLogger(__name__)

# The one model-name rule (the API checks names with it too): a name is a storage key segment and a URL path
# segment, so it starts with a letter or digit (never '-', '_' or '.').
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MODEL_NAME_RULE = "1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
Source = Literal["trained", "uploaded", "builtin"]
SOURCES = ("trained", "uploaded", "builtin")

# KEYS: record, index. ARGV: name, record JSON, replace (0|1). Returns 1 if stored, 0 if the name was taken.
_REGISTER = """
if ARGV[3] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: reservation. ARGV: job id, a holder known to have ended ('' for none). Returns the holder after the call.
_RESERVE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return holder
"""
# KEYS: reservation. ARGV: job id. Drops the reservation only if that job still holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    owner: str | None  # None for a public model
    key: str  # storage key of the generator export
    config: JSONObject  # GeneratorConfig.to_dict()
    source: Source
    created_at: float
    size: int | None  # bytes of the export, when known
    metadata: JSONObject

    @property
    def public(self) -> bool:
        return self.owner is None

    def to_dict(self) -> JSONObject:
        return {**asdict(self), "public": self.public}


def valid_model_name(name: object) -> bool:
    return isinstance(name, str) and NAME_RE.match(name) is not None


def check_model_name(name: str) -> str:
    if not valid_model_name(name):
        raise InvalidName(f"model name {name!r} must be {MODEL_NAME_RULE}")
    return name


class ModelRegistry:
    """register/get/list/delete model records; the caller writes and deletes the files themselves."""

    def __init__(self, redis_client: redis.Redis) -> None:
        self.redis = redis_client
        self._register = redis_client.register_script(_REGISTER)
        self._reserve = redis_client.register_script(_RESERVE)
        self._release = redis_client.register_script(_RELEASE)

    @staticmethod
    def _scope(owner: str | None) -> str:
        return "public" if owner is None else f"user:{check_owner(owner)}"

    def _record_key(self, name: str, owner: str | None) -> str:
        return redis_keys.model(name, self._scope(owner))

    def _index_key(self, owner: str | None) -> str:
        return redis_keys.models(self._scope(owner))

    def register(
        self,
        name: str,
        owner: str | None,
        key: str,
        config: JSONObject,
        public: bool = False,
        source: Source = "trained",
        size: int | None = None,
        metadata: JSONObject | None = None,
        replace: bool = False,
    ) -> ModelInfo:
        """Record a model; public=True (or owner None) puts it in the shared namespace.

        Raises ModelExists if the name is taken in that namespace, unless replace=True.
        """
        check_model_name(name)
        keys.validate_key(key)
        if source not in SOURCES:
            raise InvalidName(f"model source {source!r} must be one of {', '.join(SOURCES)}")
        scope_owner = None if public else owner
        if scope_owner is None and not public:
            raise InvalidName(f"model {name!r}: a private model needs an owner (or pass public=True)")
        info = ModelInfo(
            name, scope_owner, key, dict(config), source, time.time(), size, dict(metadata or {})
        )
        stored = self._register(
            keys=[self._record_key(name, scope_owner), self._index_key(scope_owner)],
            args=[name, json.dumps(asdict(info)), int(replace)],
        )
        if not int(stored):
            where = "public models" if scope_owner is None else f"models of {scope_owner!r}"
            raise ModelExists(
                f"model {name!r} already exists among the {where}; pick another name or delete it"
            )
        logger.info("registered model %s (%s, %s) at %s", name, scope_owner or "public", source, key)
        return info

    def reserve_name(
        self, name: str, owner: str, job_id: str, holder_active: Callable[[str], bool]
    ) -> str | None:
        """Reserve `name` among `owner`'s models for the training `job_id`, so a second training of the same
        name is refused at submit, not after training to the end. None when reserved; otherwise the id of the
        job that holds it while `holder_active(id)` (queued or running). A holder that ended (failed, canceled,
        expired, or succeeded: its model then exists or was deleted) is replaced atomically."""
        key = redis_keys.model_reservation(check_model_name(name), self._scope(owner))
        ended = ""
        for _ in range(3):  # each pass replaces one ended holder; a race with another submit repeats it
            raw = self._reserve(keys=[key], args=[job_id, ended])
            holder = raw.decode() if isinstance(raw, bytes) else str(raw)
            if holder == job_id:
                return None
            if holder_active(holder):
                return holder
            ended = holder
        return ended

    def release_name(self, name: str, owner: str, job_id: str) -> None:
        """Drop `job_id`'s reservation of `name` (its model is registered, or it will never be)."""
        self._release(keys=[redis_keys.model_reservation(name, self._scope(owner))], args=[job_id])

    def _load(self, name: str, owner: str | None) -> ModelInfo | None:
        raw = self.redis.get(self._record_key(name, owner))
        if raw is None:
            return None
        data = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        return ModelInfo(**data)

    def get(self, name: str, owner: str | None) -> ModelInfo | None:
        """The model `owner` may use under `name`: its own first, then a public one."""
        if not valid_model_name(name):
            return None
        if owner is not None:
            own = self._load(name, owner)
            if own is not None:
                return own
        return self._load(name, None)

    def list(self, owner: str | None) -> list[ModelInfo]:
        """Public models and `owner`'s own (own shadowing public), sorted by name."""
        found: dict[str, ModelInfo] = {}
        for scope_owner in [None] + ([owner] if owner is not None else []):
            index = self._index_key(scope_owner)
            names = sorted(n.decode() if isinstance(n, bytes) else n for n in self.redis.smembers(index))
            for name in names:
                info = self._load(name, scope_owner)
                if info is None:  # record deleted between SMEMBERS and GET
                    self.redis.srem(index, name)
                    continue
                found[name] = info
        return [found[name] for name in sorted(found)]

    def delete(self, name: str, owner: str | None) -> ModelInfo | None:
        """Remove `owner`'s own model (owner None: a public one); returns the record so the caller can delete
        its file, or None if there was none. A tenant can never delete a public model this way."""
        check_model_name(name)
        record_key = self._record_key(name, owner)
        pipe = self.redis.pipeline()
        pipe.get(record_key)
        pipe.delete(record_key)
        pipe.srem(self._index_key(owner), name)
        raw, _, _ = pipe.execute()
        if raw is None:
            return None
        return ModelInfo(**json.loads(raw.decode() if isinstance(raw, bytes) else raw))

    # builtins.list: the method `list` above shadows the name inside this class.
    def register_builtin_models(
        self, models_dir: Path, store: ObjectStore, replace: bool = False
    ) -> builtins.list[ModelInfo]:
        """Publish each `<name>.safetensors` export in `models_dir` as a public model; the public records now.

        Every worker start calls this, so it writes nothing that is already there: a record whose sha256 is the
        export's is left as it is (no upload). A record of another export is left too, unless `replace` (the
        operator's `animegan register-builtin-models --replace`): during a rollout old and new workers start
        side by side, and neither may flip a public model, or its file, under the other's jobs. Config and
        metadata come from the safetensors header (plain JSON), so no torch is needed; files whose stem is not
        a valid model name are skipped with a warning.
        """
        registered = []
        for path in sorted(Path(models_dir).glob("*.safetensors")):
            name = path.stem
            if not valid_model_name(name):
                logger.warning("built-in model %s skipped: %r is not a valid model name", path, name)
                continue
            digest = file_sha256(path)
            existing = self._load(name, None)
            if existing is not None and (existing.metadata.get("sha256") == digest or not replace):
                if existing.metadata.get("sha256") != digest:
                    logger.warning(
                        "built-in model %s: this image's export (sha256 %s) differs from the registered one "
                        "(%s); left as registered. Publish it with `animegan register-builtin-models --replace` "
                        "once no older worker is running",
                        name, digest[:12], str(existing.metadata.get("sha256", "unknown"))[:12],
                    )  # fmt: skip
                registered.append(existing)
                continue
            config, metadata = read_export_header(path)
            key = keys.builtin_model(name, digest)
            store.put_file(key, path, content_type="application/octet-stream")
            try:
                info = self.register(
                    name, None, key, config, public=True, source="builtin", size=path.stat().st_size,
                    metadata={**metadata, "sha256": digest}, replace=replace,
                )  # fmt: skip
            except ModelExists:
                # Another worker published it between our look and our write: theirs stands.
                theirs = self._load(name, None)
                if theirs is None:
                    raise
                info = theirs
            registered.append(info)
        return registered


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_export_header(path: Path) -> tuple[JSONObject, JSONObject]:
    """(config, metadata) from a generator export's safetensors header: 8-byte little-endian length + JSON."""
    with Path(path).open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than its 8-byte header length)")
        (length,) = struct.unpack("<Q", prefix)
        if length > 100 * 1024 * 1024:
            raise ValueError(
                f"{path}: safetensors header length {length} is implausible; the file is corrupt"
            )
        header = json.loads(handle.read(length))
    meta = header.get("__metadata__") or {}
    if "config" not in meta:
        raise ValueError(
            f"{path} has no generator config in its header; export it with `animegan import-weights`"
        )
    return json.loads(meta["config"]), json.loads(meta.get("metadata", "{}"))
