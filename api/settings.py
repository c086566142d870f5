"""ApiSettings (the API process) and ClientSettings (the `animegan submit/status/cancel` side), from ANIMEGAN_*.

Shared limits (max_upload_bytes, max_image_pixels, max_batch_items, batch_chunk_size, allow_private_webhooks)
come from workers.settings.ServiceSettings.
"""

from __future__ import annotations

import logging

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workers.settings import ENV_PREFIX, ServiceSettings

logger = logging.getLogger(__name__)


class ApiSettings(ServiceSettings):
    """Settings of an API replica; every limit here is enforced per API key, across replicas, through Redis."""

    # Base URL clients reach this API at (behind a proxy: the public one); used for Location headers and the
    # local backend's upload URLs. None: taken from each request's Host.
    public_base_url: str | None = None
    # Turns off bearer-key auth (every request is tenant "local"). For a local demo only; never on a shared host.
    auth_disabled: bool = False
    # Largest request body (several files of a batch together); larger ones get 413 before being read.
    max_request_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    # Request bodies one API process may hold on its temporary disk at once (multipart parts above 1 MB spool
    # there; a training's form zips count twice, spooled and staged). A request that does not fit gets 503
    # server_busy with Retry-After before its body is read. Keep it below the size of the process's temporary
    # folder (deploy/k8s/api.yaml: the /tmp emptyDir, whose overflow evicts the pod); at least twice
    # max_request_bytes, so the largest training fits.
    max_spool_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    # A zip of images or a dataset may inflate to at most this many bytes (zip bombs).
    max_archive_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=1)
    # Largest dataset zip (photos or styles) for a training job, uploaded directly or directly in the form.
    max_dataset_bytes: int = Field(default=4 * 1024 * 1024 * 1024, ge=1)
    # A training whose step would keep more than this on its device (workers.training_memory's estimate from
    # mode, image_size, batch_size and base_channels) is refused with 422 naming the estimate; set it to the
    # memory of the training GPUs (the default suits 80 GB ones).
    max_training_memory_bytes: int = Field(default=80 * 1024**3, ge=1024**3)
    # Largest generator file for POST /v1/models (v2 is ~8.6 MB, v1 ~16 MB).
    max_model_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    # Jobs an API key may have queued or running at once; more get 429.
    max_active_jobs: int = Field(default=20, ge=1)
    # Requests an API key may make per rate window; more get 429 with Retry-After.
    rate_limit_requests: int = Field(default=600, ge=1)
    # Length of the fixed rate-limit window, seconds.
    rate_limit_window_seconds: int = Field(default=60, ge=1, le=3600)
    # Seconds between keep-alive comments on an idle server-sent event stream (proxies drop silent ones).
    sse_keepalive_seconds: float = Field(default=15.0, gt=0, le=300)
    # Server-sent event streams one API process keeps open at once (each holds one Redis connection, no thread);
    # a stream beyond it gets an `error` event with a retry hint and ends, so the replica's Redis connections
    # stay bounded (keep replicas x this well under Redis's maxclients).
    max_event_streams: int = Field(default=500, ge=1, le=10000)
    # Seconds between two sweeps of the passed deadlines (queued jobs expire, running ones are told to stop); a
    # job expires at most this late.
    deadline_sweep_seconds: float = Field(default=1.0, gt=0, le=60)
    # Largest page of GET /v1/jobs.
    max_page_size: int = Field(default=200, ge=1, le=1000)
    # Seconds /readyz waits for Redis and for object storage: a slower Redis is not ready (503), slower storage is
    # reported "degraded" (200); a paused storage node must not hold the probe until the orchestrator's timeout.
    readiness_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    # Port of the internal listener that serves GET /metrics (Prometheus) apart from the public API, which never
    # serves it: the figures are job counts of every tenant. None: no metrics. Keep it off the public Service.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Interface of the metrics listener: loopback by default; 0.0.0.0 where Prometheus scrapes the pod.
    metrics_host: str = "127.0.0.1"
    # Bearer token the metrics listener also requires (Prometheus: authorization credentials); None: the port
    # alone guards it (reachable only inside the cluster, or only from this host on loopback).
    metrics_token: SecretStr | None = None

    @field_validator("public_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s):// URL, e.g. https://animegan.example.com")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _check_limits(self) -> ApiSettings:
        if self.max_request_bytes < self.max_upload_bytes:
            raise ValueError(
                f"ANIMEGAN_MAX_REQUEST_BYTES={self.max_request_bytes} is below ANIMEGAN_MAX_UPLOAD_BYTES="
                f"{self.max_upload_bytes}: a single allowed upload could never arrive; raise it"
            )
        if self.max_spool_bytes < 2 * self.max_request_bytes:
            raise ValueError(
                f"ANIMEGAN_MAX_SPOOL_BYTES={self.max_spool_bytes} is below twice ANIMEGAN_MAX_REQUEST_BYTES="
                f"{self.max_request_bytes}: the largest training (its zips spooled and staged) could never be "
                "taken; raise it (and the temporary folder's size) or lower the request limit"
            )
        if self.auth_disabled:
            logger.warning(
                "ANIMEGAN_AUTH_DISABLED is set: every request acts as tenant 'local' (demo use only)"
            )
        return self


class ClientSettings(BaseSettings):
    """Where the command-line client finds the API and its key (flags override these)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # Base URL of the API, e.g. https://animegan.example.com.
    api_url: str = "http://127.0.0.1:8000"
    # Bearer key from `animegan keys create`; None sends no Authorization (an API with auth disabled).
    api_key: SecretStr | None = None
    # Seconds to wait for one HTTP response (uploads of large batches take longer).
    http_timeout_seconds: float = Field(default=120.0, gt=0)
