"""S3Store: the s3:// backend on boto3, for AWS S3 and compatible servers (MinIO, R2, Ceph) via endpoint_url."""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from animegan.atomic import atomic_path
from workers.exceptions import InvalidKey, NotFound, StorageError
from workers.keys import validate_key, validate_prefix
from workers.storage.base import ObjectStore, content_disposition

if TYPE_CHECKING:
    from workers.settings import ServiceSettings

# Any: boto3 has no type hints (its client classes are generated at run time) and no stub package is pinned.
S3Client = Any

logger = logging.getLogger(__name__)

_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys a call


class S3Store(ObjectStore):
    """Keys live under `prefix` in `bucket`. One boto3 client per process, made on first use (not at import,
    and again after a fork: Celery's prefork children must not share the parent's connection pool)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        addressing_style: str = "auto",
        max_attempts: int = 5,
        multipart_threshold: int = 64 * 1024 * 1024,
        multipart_chunksize: int = 64 * 1024 * 1024,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else f"{prefix}/"
        self.endpoint_url = endpoint_url
        self.public_endpoint_url = public_endpoint_url
        self._client_kwargs: dict[str, Any] = {  # Any: boto3.client's options of mixed types
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": Config(
                retries={"max_attempts": max_attempts, "mode": "standard"},
                s3={"addressing_style": addressing_style},
                signature_version="s3v4",
                # botocore >= 1.36 adds CRC checksums to every upload by default, which several S3-compatible
                # servers (older MinIO, Ceph, some R2 paths) reject; send them only where S3 requires them.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )
        self._lock = threading.Lock()
        self._clients: dict[str | None, S3Client] = {}
        self._pid = os.getpid()

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> S3Store:
        return cls(
            settings.s3_bucket,
            settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None,
            secret_access_key=(
                settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
            ),
            addressing_style=settings.s3_addressing_style,
            max_attempts=settings.s3_max_attempts,
            multipart_threshold=settings.s3_multipart_threshold_bytes,
            multipart_chunksize=settings.s3_multipart_chunksize_bytes,
        )

    def __repr__(self) -> str:
        return f"S3Store(s3://{self.bucket}/{self.prefix}, endpoint={self.endpoint_url})"

    def _client_for(self, endpoint: str | None) -> S3Client:
        with self._lock:
            if self._pid != os.getpid():
                self._clients.clear()
                self._pid = os.getpid()
            client = self._clients.get(endpoint)
            if client is None:
                client = boto3.session.Session().client("s3", endpoint_url=endpoint, **self._client_kwargs)
                self._clients[endpoint] = client
            return client

    @property
    def client(self) -> S3Client:
        return self._client_for(self.endpoint_url)

    def _full(self, key: str) -> str:
        return self.prefix + validate_key(key)

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Translate boto errors: a missing object is NotFound, anything else (after retries) StorageError."""
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                raise NotFound(f"no object at key {key!r} in s3://{self.bucket}/{self.prefix}") from None
            raise StorageError(f"S3 {action} of {key!r} in bucket {self.bucket!r} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(
                f"S3 {action} of {key!r} failed: {exc}; check ANIMEGAN_S3_ENDPOINT_URL and the credentials"
            ) from exc

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        with self._errors("put", key):
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=bytes(data), **extra)

    def get_bytes(self, key: str) -> bytes:
        with self._errors("get", key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            return response["Body"].read()

    def open_range(self, key: str, start: int, end: int) -> BinaryIO:
        with self._errors("ranged get", key):
            response = self.client.get_object(
                Bucket=self.bucket, Key=self._full(key), Range=f"bytes={start}-{end - 1}"
            )
        return cast(
            BinaryIO, _StorageErrors(self, key, response["Body"])
        )  # a RawIOBase (typeshed: no BinaryIO)

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"put_file({key!r}): local file {path} does not exist")
        extra = {"ExtraArgs": {"ContentType": content_type}} if content_type else {}
        with self._errors("upload", key):
            self.client.upload_file(
                str(path), self.bucket, self._full(key), Config=self.transfer_config, **extra
            )

    @contextmanager
    def open_write(self, key: str, content_type: str | None = None) -> Iterator[BinaryIO]:
        writer = MultipartWriter(self, key, self.transfer_config.multipart_chunksize, content_type)
        try:
            yield writer  # type: ignore[misc]
        except BaseException:
            writer.abort()
            raise
        writer.complete()

    def get_file(self, key: str, path: str | Path) -> None:
        with atomic_path(path) as tmp, self._errors("download", key):
            self.client.download_file(self.bucket, self._full(key), str(tmp), Config=self.transfer_config)

    def _head(self, key: str) -> dict:
        with self._errors("head", key):
            return self.client.head_object(Bucket=self.bucket, Key=self._full(key))

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        keys: list[str] = []
        with self._errors("list", prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/") or prefix == "/":
            raise InvalidKey(f"delete_prefix needs a folder prefix ending in '/', got {prefix!r}")
        keys = self.list(prefix)
        with self._errors("delete", prefix):
            for start in range(0, len(keys), _DELETE_BATCH):
                batch = [{"Key": self.prefix + key} for key in keys[start : start + _DELETE_BATCH]]
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
                if response.get("Errors"):
                    raise StorageError(f"S3 could not delete under {prefix!r}: {response['Errors'][:3]}")
        return len(keys)

    def presign_get(self, key: str, expires: int, filename: str | None = None) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._full(key)}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        with self._errors("presign", key):
            return self._client_for(self.public_endpoint_url or self.endpoint_url).generate_presigned_url(
                "get_object", Params=params, ExpiresIn=int(expires)
            )

    def presign_put(
        self, key: str, expires: int, content_type: str | None = None, content_length: int | None = None
    ) -> str | None:
        params: dict[str, str | int] = {"Bucket": self.bucket, "Key": self._full(key)}
        if content_type:
            # The signature then covers Content-Type: the client must send exactly this header.
            params["ContentType"] = content_type
        if content_length is not None:
            # Signed like Content-Type: S3, MinIO and R2 answer 403 to a PUT of another length.
            params["ContentLength"] = int(content_length)
        with self._errors("presign", key):
            return self._client_for(self.public_endpoint_url or self.endpoint_url).generate_presigned_url(
                "put_object", Params=params, ExpiresIn=int(expires)
            )

    def _probe_client(self, timeout_seconds: float) -> S3Client:
        """A client that tries once and waits at most `timeout_seconds` to connect and for each read."""
        key = f"probe:{timeout_seconds}"
        with self._lock:
            if self._pid != os.getpid():
                self._clients.clear()
                self._pid = os.getpid()
            client = self._clients.get(key)
            if client is None:
                config = self._client_kwargs["config"].merge(
                    Config(
                        connect_timeout=timeout_seconds,
                        read_timeout=timeout_seconds,
                        retries={"total_max_attempts": 1, "mode": "standard"},
                    )
                )
                kwargs = {**self._client_kwargs, "config": config}
                client = boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, **kwargs)
                self._clients[key] = client
            return client

    def ping(self, timeout_seconds: float | None = None) -> None:
        client = self.client if timeout_seconds is None else self._probe_client(timeout_seconds)
        try:
            client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(
                f"S3 bucket {self.bucket!r} at {self.endpoint_url or 'AWS'} is not reachable: {exc}; "
                "check ANIMEGAN_STORAGE_URL, ANIMEGAN_S3_ENDPOINT_URL and the credentials"
            ) from exc


class _StorageErrors(io.RawIOBase):
    """A GET's body whose read errors (a connection cut mid-body) are StorageError like the GET's own."""

    def __init__(self, store: S3Store, key: str, body: Any) -> None:
        super().__init__()
        self._store, self._key, self._body = store, key, body

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        with self._store._errors("ranged read", self._key):
            return self._body.read(None if size < 0 else size)

    def close(self) -> None:
        self._body.close()
        super().close()


class MultipartWriter(io.RawIOBase):
    """A write-only, unseekable stream into one S3 object: every `part_size` bytes go up as a multipart part from
    memory, so an object of any size (a results.zip of 10,000 images) needs no local disk and one part of RAM.
    An object smaller than one part is a single PUT. complete() makes it visible; abort() discards the parts."""

    def __init__(self, store: S3Store, key: str, part_size: int, content_type: str | None) -> None:
        super().__init__()
        self.store, self.key, self.part_size = store, key, part_size
        self.content_type = content_type
        self.full_key = store._full(key)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._written = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += len(view)
        while len(self._buffer) >= self.part_size:
            self._upload_part(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]
        return len(view)

    def _upload_part(self, body: bytes) -> None:
        client = self.store.client
        with self.store._errors("multipart upload", self.key):
            if self._upload_id is None:
                extra = {"ContentType": self.content_type} if self.content_type else {}
                created = client.create_multipart_upload(Bucket=self.store.bucket, Key=self.full_key, **extra)
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            answer = client.upload_part(
                Bucket=self.store.bucket, Key=self.full_key, UploadId=self._upload_id, PartNumber=number,
                Body=body,
            )  # fmt: skip
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def complete(self) -> None:
        if self._upload_id is None:
            self.store.put_bytes(self.key, bytes(self._buffer), content_type=self.content_type)
        else:
            if self._buffer:
                self._upload_part(bytes(self._buffer))
            with self.store._errors("multipart complete", self.key):
                self.store.client.complete_multipart_upload(
                    Bucket=self.store.bucket, Key=self.full_key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )  # fmt: skip
            logger.info("stored %s in %d parts (%d bytes)", self.key, len(self._parts), self._written)
        self._buffer.clear()
        super().close()

    def abort(self) -> None:
        """Drop the parts uploaded so far (a bucket rule AbortIncompleteMultipartUpload catches a killed worker's)."""
        self._buffer.clear()
        if self._upload_id is not None:
            try:
                self.store.client.abort_multipart_upload(
                    Bucket=self.store.bucket, Key=self.full_key, UploadId=self._upload_id
                )
            except (ClientError, BotoCoreError) as exc:
                logger.warning("could not abort the multipart upload of %s: %s", self.key, exc)
        super().close()
