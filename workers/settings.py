"""Process settings from ANIMEGAN_* environment variables: ServiceSettings (API and workers) and WorkerSettings.

Nothing else in the code reads os.environ; load once per process with `load_settings(cls)`.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote, urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workers.contracts.base import Queues
from workers.exceptions import ConfigurationError

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORAGE_URL = (PROJECT_ROOT / "data" / "storage").as_uri()
ENV_PREFIX = "ANIMEGAN_"
KNOWN_QUEUES = tuple(queue.value for queue in Queues)
# S3 bucket naming rules (lowercase, digits, dots, hyphens; 3-63 chars), checked up front so a typo fails at start.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 refuses presigned URLs valid for longer than 7 days


class ServiceSettings(BaseSettings):
    """Fields every process needs: where Redis and object storage are, and the shared limits."""

    # env_ignore_empty: `ANIMEGAN_VGG_WEIGHTS=` in an env file means "unset", not the path "".
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", validate_default=True, env_ignore_empty=True
    )

    # Broker, job records, registry and leases all live in this Redis (one database). redis://, rediss:// (TLS),
    # unix://, or sentinel://[:password@]host:26379[;sentinel://host2:26379]/db with redis_sentinel_master.
    # It must persist (appendonly yes) and never evict (maxmemory-policy noeviction): README, "Scaling out".
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Deployment namespace: every Redis key goes under animegan:<namespace>: and the broker queues under
    # animegan:<namespace>:broker:, so deployments sharing one Redis never mix jobs or tasks. Give each deployment
    # its own (the local demo derives one from its checkout); "" keeps the un-namespaced keys.
    namespace: str = ""
    # Name of the master that the Sentinels of a sentinel:// redis_url watch; required with sentinel://.
    redis_sentinel_master: str | None = None
    # "text" for people, "json" (one object a line, with job_id where there is one) for log pipelines; read by
    # workers, `animegan reconcile` and the API (uvicorn access and error lines too, with the job id of the request).
    log_format: Literal["text", "json"] = "text"
    # Object storage: file:///absolute/path (single machine) or s3://bucket[/prefix] (S3, MinIO, R2, Ceph).
    storage_url: str = DEFAULT_STORAGE_URL
    # Custom S3 endpoint (MinIO, R2, Ceph); None talks to AWS.
    s3_endpoint_url: str | None = None
    # Endpoint used only to sign URLs handed to clients, when they reach storage by another host name
    # (e.g. http://localhost:9000 while the services use http://minio:9000). None: s3_endpoint_url.
    s3_public_endpoint_url: str | None = None
    # Access key id of the S3 credentials; None falls back to boto3's chain (instance role, ~/.aws, AWS_*).
    s3_access_key_id: SecretStr | None = None
    # Secret of the S3 credentials, set together with the key id; None: boto3's chain, as for the key id.
    s3_secret_access_key: SecretStr | None = None
    # Region used for signing; MinIO accepts any, AWS needs the bucket's region.
    s3_region: str = "us-east-1"
    # "path" for MinIO/Ceph without wildcard DNS; "auto" lets botocore choose.
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # Objects larger than this go up and down in parallel multipart parts (checkpoints, archives).
    s3_multipart_threshold_bytes: int = Field(default=64 * 1024 * 1024, ge=5 * 1024 * 1024)
    # Part size; S3 needs >= 5 MiB and allows 10,000 parts, so 64 MiB covers objects up to 640 GB.
    s3_multipart_chunksize_bytes: int = Field(default=64 * 1024 * 1024, ge=5 * 1024 * 1024)
    # Total attempts per S3 call (botocore "standard" retry mode: throttling, 5xx, connection errors).
    s3_max_attempts: int = Field(default=5, ge=1, le=20)
    # Finished job records (and their item sets) expire this long after reaching a terminal status.
    job_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # How long an Idempotency-Key maps to its job.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # Lifetime of presigned GET/PUT URLs handed to clients.
    presign_expiry_seconds: int = Field(default=3600, ge=1, le=MAX_PRESIGN_SECONDS)
    # Broker visibility timeout: an unacknowledged task is handed to another worker after this long, so it
    # must exceed the longest task (see WorkerSettings). Shared because every Celery app on a broker must agree.
    # 900 covers a 300 s segment with its checkpoint upload, and a lost worker's task is redelivered in 15 min.
    visibility_timeout_seconds: int = Field(default=900, ge=1)
    # Decoded images larger than this are refused (decompression bombs); 50 megapixels.
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    # Largest single uploaded file.
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # Most images in one batch job.
    max_batch_items: int = Field(default=10_000, ge=1)
    # Images per batch_chunk task: small enough to spread over workers, large enough to batch on the GPU.
    batch_chunk_size: int = Field(default=16, ge=1, le=1024)
    # Allow webhook URLs that resolve to loopback/private addresses (tests, trusted networks only).
    allow_private_webhooks: bool = False
    # Allow input URLs (a create's https:// image) that resolve to loopback/private addresses: the same rule as
    # webhooks, its own switch, since reading from an internal host is a different risk from posting to one.
    allow_private_input_urls: bool = False
    # Most images in one training dataset zip (photos or styles): the API counts entries, the worker extracts.
    max_dataset_images: int = Field(default=20_000, ge=1)
    # Video jobs (POST /v1/videos): the API probes each clip and refuses one above these limits (422/413).
    # Longest clip in seconds.
    max_video_seconds: float = Field(default=600.0, gt=0)
    # Most pixels per frame (as displayed); the default is 1080p.
    max_video_pixels: int = Field(default=1920 * 1088, ge=1)
    # Highest average frame rate, frames per second.
    max_video_fps: float = Field(default=60.0, gt=0)
    # Largest video file, multipart or direct upload.
    max_video_bytes: int = Field(default=500 * 1024 * 1024, ge=1)
    # Seconds of video per segment task: a clip is cut at the first keyframe past each multiple, and its segments
    # run on any workers at once; a lost worker costs one segment. A segment's stylizing time must stay well
    # inside ANIMEGAN_VISIBILITY_TIMEOUT_SECONDS, or the broker hands it out again while it runs.
    video_segment_seconds: float = Field(default=10.0, gt=0)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        from workers.redis_keys import namespace_prefixes

        namespace_prefixes(value)  # ValueError naming the rule
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        scheme = urlparse(value).scheme
        if scheme not in ("redis", "rediss", "unix", "sentinel"):
            raise ValueError(
                f"{value!r} is not a Redis URL; use redis://host:6379/0, rediss://..., unix://... or "
                "sentinel://host:26379;sentinel://host2:26379/0"
            )
        if scheme == "sentinel":
            parts = value.split(";")
            if any(urlparse(part).scheme != "sentinel" or not urlparse(part).hostname for part in parts):
                raise ValueError(
                    f"{value!r}: every ';'-separated part must be sentinel://[:password@]host:port"
                )
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
                raise ValueError(f"{value!r} must be file:///absolute/path (three slashes, absolute path)")
        elif parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError(f"{value!r} names no bucket; use s3://bucket or s3://bucket/prefix")
            if not _BUCKET_RE.match(parsed.netloc):
                raise ValueError(f"bucket {parsed.netloc!r} in {value!r} is not a valid S3 bucket name")
            if ".." in parsed.path.split("/"):
                raise ValueError(f"prefix of {value!r} must not contain '..'")
        else:
            raise ValueError(
                f"{value!r} has scheme {parsed.scheme!r}; use s3://bucket/prefix or file:///absolute/path"
            )
        return value

    @field_validator("s3_endpoint_url", "s3_public_endpoint_url")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and (
            urlparse(value).scheme not in ("http", "https") or not urlparse(value).netloc
        ):
            raise ValueError(f"{value!r} is not an http(s):// endpoint URL, e.g. http://minio:9000")
        return value

    @model_validator(mode="after")
    def _check_credentials_pair(self) -> ServiceSettings:
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "set both ANIMEGAN_S3_ACCESS_KEY_ID and ANIMEGAN_S3_SECRET_ACCESS_KEY, or neither "
                "(then boto3's default credential chain is used)"
            )
        return self

    @model_validator(mode="after")
    def _check_sentinel_master(self) -> ServiceSettings:
        if self.redis_url.startswith("sentinel:") and not self.redis_sentinel_master:
            raise ValueError(
                "a sentinel:// ANIMEGAN_REDIS_URL needs ANIMEGAN_REDIS_SENTINEL_MASTER (the master's name)"
            )
        return self

    @property
    def storage_scheme(self) -> Literal["file", "s3"]:
        return "s3" if self.storage_url.startswith("s3:") else "file"

    @property
    def storage_root(self) -> Path:
        """Folder of the file:// backend."""
        if self.storage_scheme != "file":
            raise ConfigurationError(f"storage_url {self.storage_url!r} is not a file:// URL")
        return Path(unquote(urlparse(self.storage_url).path))

    @property
    def s3_bucket(self) -> str:
        if self.storage_scheme != "s3":
            raise ConfigurationError(f"storage_url {self.storage_url!r} is not an s3:// URL")
        return urlparse(self.storage_url).netloc

    @property
    def s3_prefix(self) -> str:
        """Key prefix inside the bucket: '' or 'some/prefix/' (always ending in '/')."""
        path = urlparse(self.storage_url).path.strip("/")
        return f"{path}/" if path else ""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class WorkerSettings(ServiceSettings):
    """Fields only a worker process needs: which queues, which device, and the reliability knobs."""

    # Queues this worker consumes, comma-separated in the environment: "stylize,train,webhooks".
    queues: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(KNOWN_QUEUES))
    # Torch device: "auto" (cuda if present, else cpu), "cpu", "cuda", "cuda:1", "mps".
    device: str = "auto"
    # VGG19 weights (vgg19.npy or a converted file) for training losses; None: train jobs fail with a clear error.
    vgg_weights: Path | None = None
    # A vgg_weights file that is missing is a warning, not a refusal to start (it is copied in by an init
    # container that may find nothing); jobs that need it then fail saying so.
    vgg_weights_optional: bool = False
    # Folder of built-in generator exports (*.safetensors) registered as public models at worker start.
    models_dir: Path | None = None
    # How long a starting worker waits for Redis and storage (backoff 1, 2, 4 ... s, at most 30 s apart) before it
    # exits with status 5 saying which is unreachable: a brief outage or a rollout's ordering is no crash loop.
    startup_wait_seconds: int = Field(default=120, ge=0)
    # Loaded generators kept in memory per worker process (LRU).
    model_cache_size: int = Field(default=4, ge=1, le=64)
    # A task delivered more than this many times (worker killed mid-task each time) fails the job instead of
    # looping forever on a poison input (an image that OOMs the GPU, say).
    max_redeliveries: int = Field(default=3, ge=0)
    # A worker whose device (GPU) failed this many tasks in a row (CUDA errors; out-of-memory does not count) stops
    # taking jobs and exits with status 4 so its supervisor replaces it; the failed tasks are retried elsewhere.
    # A worker configured for cuda also exits 4 at start when a probe cannot compute on the device. 0: never.
    max_device_errors: int = Field(default=3, ge=0)
    # Disk for unpacked training datasets on this machine; least recently used ones are removed beyond it.
    dataset_cache_bytes: int = Field(default=20 * 1024**3, ge=0)
    # Disk for decoded and edge-smoothed training images (reused by later segments of a run, keyed by content);
    # least recently used files are removed beyond it at the start of each segment.
    smooth_cache_bytes: int = Field(default=5 * 1024**3, ge=0)
    # How long a task keeps retrying a storage or Redis fault (backoff 2, 4, 8 ... s, at most 60 s apart) before
    # its job fails; a batch then keeps its finished images. 900: a 15-minute outage loses no job.
    transient_retry_seconds: int = Field(default=900, ge=0)
    # Wall-clock budget of one training segment before it checkpoints and enqueues the next one.
    # 300: a preempted GPU or a lost task message costs at most about five minutes of training.
    train_segment_seconds: int = Field(default=300, ge=1)
    # Precision of stylize inference: "auto" uses bf16 autocast where the device runs it fast.
    inference_precision: Literal["fp32", "bf16", "auto"] = "auto"
    # Same-size images per forward pass. None: the library's default_batch_size (1 on a CPU, where batching
    # cost more per image than it saved: bench/RESULTS.md, Service; 8 on a GPU, where it fills the device).
    inference_batch_size: int | None = Field(default=None, ge=1, le=64)
    # HMAC key for signing webhook bodies; None sends them unsigned.
    webhook_secret: SecretStr | None = None
    # Seconds to wait for a webhook receiver's answer to one delivery attempt.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Seconds one input URL may take to download (connect, redirects and body together) before its job fails.
    fetch_timeout_seconds: float = Field(default=30.0, gt=0)
    # Delivery attempts of one webhook (exponential backoff between them) before giving up.
    webhook_max_attempts: int = Field(default=8, ge=1)
    # torch.set_num_threads in each worker process; None keeps torch's default (all cores).
    torch_threads: int | None = Field(default=None, ge=1)
    # Watchdog: a worker whose queues hold tasks while it has taken none and runs none for this long exits
    # (non-zero) so its supervisor restarts it (Celery's consumer can stall after a Redis reconnect). 0: off.
    watchdog_stall_seconds: int = Field(default=0, ge=0)
    # A worker with nothing to do for this long exits 0 (train workers run as KEDA ScaledJobs). 0: never.
    worker_idle_exit_seconds: int = Field(default=0, ge=0)
    # Touched every few seconds by the worker's watchdog thread; `animegan worker-alive` checks its age
    # (a liveness probe that needs no Redis).
    heartbeat_file: Path = Field(
        # A factory, not a value: the API imports this class on a read-only root, where gettempdir() raises.
        default_factory=lambda: Path(tempfile.gettempdir()) / "animegan-worker.heartbeat"
    )

    @field_validator("queues", mode="before")
    @classmethod
    def _parse_queues(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("queues")
    @classmethod
    def _check_queues(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in KNOWN_QUEUES]
        if unknown or not value:
            raise ValueError(f"unknown queue(s) {unknown or value!r}; choose from {', '.join(KNOWN_QUEUES)}")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE_RE.match(value):
            raise ValueError(f"device {value!r} is not one of auto, cpu, mps, cuda, cuda:N")
        return value

    @model_validator(mode="after")
    def _check_vgg(self) -> WorkerSettings:
        if self.vgg_weights is not None and not self.vgg_weights.is_file():
            message = f"VGG19 weights file {str(self.vgg_weights)!r} does not exist"
            if not self.vgg_weights_optional:
                raise ValueError(f"{message}; point ANIMEGAN_VGG_WEIGHTS at vgg19.npy")
            logger.warning("%s; training that needs VGG19 fails until it is there", message)
            self.vgg_weights = None
        return self

    @field_validator("models_dir")
    @classmethod
    def _check_models_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"built-in models folder {str(value)!r} does not exist")
        return value

    @model_validator(mode="after")
    def _check_visibility_covers_segment(self) -> WorkerSettings:
        # A segment runs train_segment_seconds, then writes a checkpoint and enqueues the next one; if the
        # broker's visibility timeout ran out first, a second worker would receive the same segment.
        needed = int(self.train_segment_seconds * 1.5) + 1
        if self.visibility_timeout_seconds < needed:
            raise ValueError(
                f"ANIMEGAN_VISIBILITY_TIMEOUT_SECONDS={self.visibility_timeout_seconds} must be at least 1.5x "
                f"ANIMEGAN_TRAIN_SEGMENT_SECONDS={self.train_segment_seconds} (>= {needed}); raise it or "
                "shorten segments"
            )
        return self


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


# Any: overrides are values of any settings field, validated by pydantic like the environment's.
def load_settings(cls: type[SettingsT] = ServiceSettings, **overrides: Any) -> SettingsT:  # type: ignore[assignment]
    """Read and validate settings once at process start; raise ConfigurationError naming each bad variable."""
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            problems.append(f"  {name}: {error['msg']}")
        raise ConfigurationError(f"invalid {cls.__name__}:\n" + "\n".join(problems)) from exc
    from workers import redis_keys

    redis_keys.set_namespace(settings.namespace)  # one process, one deployment: every key name from here on
    logger.info(
        "settings loaded: redis=%s storage=%s namespace=%s",
        _redact(settings.redis_url),
        settings.storage_url,
        settings.namespace or "(none)",
    )
    return settings


def _redact(url: str) -> str:
    """Hide a password in a Redis URL before logging it."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
