"""ApiClient: a small Python client of the HTTP API on httpx (used by the CLI, the tests and the benchmark).

client = ApiClient("http://127.0.0.1:8000", api_key="agk_...")
job = client.stylize("photo.jpg", model="hayao")
job = client.wait(job["id"])
client.download_result(job["id"], "out.png")
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from workers.json_types import JSONObject

logger = logging.getLogger(__name__)

TERMINAL = {"succeeded", "partial", "failed", "canceled", "expired"}  # workers.jobstore.TERMINAL_STATUSES
FileInput = str | Path | bytes | tuple[str, bytes]


class ApiClientError(Exception):
    """An error answer of the API: its HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def _file_part(item: FileInput, default_name: str) -> tuple[str, bytes]:
    if isinstance(item, tuple):
        return item
    if isinstance(item, bytes):
        return default_name, item
    path = Path(item)
    return path.name, path.read_bytes()


class ApiClient:
    """One client per base URL and key; `with ApiClient(...) as c:` closes its connections."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        # httpx drops Authorization on redirects to another host (the presigned S3 URL of a result).
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, follow_redirects=True
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            error = response.json()["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            code, message = f"http_{response.status_code}", response.text[:500]
        retry = response.headers.get("Retry-After")
        raise ApiClientError(response.status_code, code, message, float(retry) if retry else None)

    # Any: httpx.Client.request's own keyword options (files, data, json, params), passed through.
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._check(self.http.request(method, path, **kwargs))

    @staticmethod
    def _form(options: JSONObject) -> JSONObject:
        return {k: v for k, v in options.items() if v is not None}

    @staticmethod
    def _idem(key: str | None) -> dict[str, str]:
        return {"Idempotency-Key": key} if key else {}

    @staticmethod
    def _create_headers(
        idempotency_key: str | None, wait: float | None, cancel_after: str | None
    ) -> dict[str, str]:
        """Headers of a create: Idempotency-Key, `Prefer: wait=N` (the answer is the finished job when it ends
        within N seconds) and Cancel-After (a duration such as 90s, 5m, 1h30m)."""
        headers = ApiClient._idem(idempotency_key)
        if wait is not None:
            headers["Prefer"] = f"wait={int(wait)}"
        if cancel_after is not None:
            headers["Cancel-After"] = cancel_after
        return headers

    def stylize(
        self,
        image: FileInput | None = None,
        model: str = "hayao",
        *,
        upload_id: str | None = None,
        image_url: str | None = None,
        format: str = "png",
        size_mode: str = "reference",
        max_side: int | None = None,
        quality: int | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        wait: float | None = None,
        cancel_after: str | None = None,
    ) -> JSONObject:
        """Submit one image (a path, bytes, or (name, bytes); or `image_url`, an https:// URL a worker fetches);
        returns the queued job, or with `wait` (seconds, at most 60) the finished one if it ended in that time
        (its status says which)."""
        data = self._form(
            dict(model=model, format=format, size_mode=size_mode, max_side=max_side, quality=quality,
                 webhook_url=webhook_url, upload_id=upload_id)
        )  # fmt: skip
        headers = self._create_headers(idempotency_key, wait, cancel_after)
        # The HTTP timeout must outlast the server's wait.
        timeout = None if wait is None else max(self.http.timeout.read or 0, wait + 30)
        if image_url is not None:
            body = {**data, "file": image_url}
            return self._request("POST", "/v1/stylize", json=body, headers=headers, timeout=timeout).json()
        files = {"file": _file_part(image, "image")} if image is not None else None
        return self._request(
            "POST", "/v1/stylize", data=data, files=files, headers=headers, timeout=timeout
        ).json()

    def batch(
        self,
        images: Sequence[FileInput] = (),
        model: str = "hayao",
        *,
        archive: FileInput | None = None,
        upload_ids: Sequence[str] = (),
        image_urls: Sequence[str] = (),
        format: str = "png",
        size_mode: str = "reference",
        max_side: int | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        cancel_after: str | None = None,
    ) -> JSONObject:
        """Submit many images (files, one zip archive and/or upload ids; or `image_urls`, https:// URLs that a
        worker fetches, in a JSON body) as one batch job."""
        data = self._form(
            dict(model=model, format=format, size_mode=size_mode, max_side=max_side, webhook_url=webhook_url)
        )
        if upload_ids:
            data["upload_ids"] = list(upload_ids)
        if image_urls:
            if images or archive is not None:
                raise ValueError("batch: send image_urls or files and an archive, not both in one request")
            body = {**data, "files": list(image_urls)}
            headers = self._create_headers(idempotency_key, None, cancel_after)
            return self._request("POST", "/v1/batches", json=body, headers=headers).json()
        files = [("files", _file_part(item, f"image-{i}")) for i, item in enumerate(images)]
        if archive is not None:
            files.append(("archive", _file_part(archive, "archive.zip")))
        headers = self._create_headers(idempotency_key, None, cancel_after)
        return self._request("POST", "/v1/batches", data=data, files=files or None, headers=headers).json()

    def upload(self, source: str | Path | bytes, purpose: str = "image", filename: str | None = None) -> str:
        """Direct upload: create it, PUT the bytes to its URL (S3 or this API); returns the upload id."""
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        name = filename or (None if isinstance(source, bytes) else Path(source).name)
        created = self._request(
            "POST", "/v1/uploads", json=self._form({"purpose": purpose, "size": len(data), "filename": name})
        ).json()
        headers = {k: v for k, v in created["headers"].items() if k.lower() != "authorization"}
        if created["url"].startswith(self.base_url):
            self._request("PUT", created["url"][len(self.base_url) :], content=data, headers=headers)
        else:
            # A presigned URL carries its own signature: no API key may go to the storage host.
            self._check(httpx.put(created["url"], content=data, headers=headers, timeout=self.http.timeout))
        return created["id"]

    def train(
        self,
        name: str,
        photos: FileInput | None = None,
        styles: FileInput | None = None,
        hyperparameters: JSONObject | None = None,
        *,
        photos_upload_id: str | None = None,
        styles_upload_id: str | None = None,
        fine_tune_from: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> JSONObject:
        """Start a training run from two zip archives (photos, style images) or their upload ids."""
        data = self._form(
            dict(name=name, hyperparameters=json.dumps(hyperparameters or {}), photos_upload_id=photos_upload_id,
                 styles_upload_id=styles_upload_id, fine_tune_from=fine_tune_from, webhook_url=webhook_url)
        )  # fmt: skip
        files = {}
        if photos is not None:
            files["photos"] = _file_part(photos, "photos.zip")
        if styles is not None:
            files["styles"] = _file_part(styles, "styles.zip")
        return self._request(
            "POST", "/v1/trainings", data=data, files=files or None, headers=self._idem(idempotency_key)
        ).json()

    def job(self, job_id: str) -> JSONObject:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def jobs(
        self, kind: str | None = None, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> JSONObject:
        params = self._form({"kind": kind, "status": status, "limit": limit, "cursor": cursor})
        return self._request("GET", "/v1/jobs", params=params).json()

    def cancel(self, job_id: str) -> JSONObject:
        return self._request("POST", f"/v1/jobs/{job_id}/cancel").json()

    def models(self) -> list[JSONObject]:
        return self._request("GET", "/v1/models").json()["items"]

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        poll_seconds: float = 0.5,
        on_progress: Callable[[JSONObject], None] | None = None,
    ) -> JSONObject:
        """Poll until the job ends; returns its final record. TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll_seconds)

    def download_result(self, job_id: str, dest: str | Path | BinaryIO, index: int | None = None) -> int:
        """Write the result (image, or a batch's zip; or image `index` of a batch) to `dest`; returns bytes."""
        path = f"/v1/jobs/{job_id}/result" if index is None else f"/v1/jobs/{job_id}/results/{index}"
        written = 0
        with self.http.stream("GET", path) as response:
            if not response.is_success:
                response.read()
                self._check(response)
            out = open(dest, "wb") if isinstance(dest, str | Path) else dest  # noqa: SIM115 (closed below)
            try:
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    written += len(chunk)
            finally:
                if out is not dest:
                    out.close()
        return written

    def result_bytes(self, job_id: str, index: int | None = None) -> bytes:
        path = f"/v1/jobs/{job_id}/result" if index is None else f"/v1/jobs/{job_id}/results/{index}"
        return self._request("GET", path).content

    def events(self, job_id: str, timeout: float | None = None) -> Iterator[tuple[str, JSONObject]]:
        """(event name, data) pairs of the job's server-sent events until the server ends the stream."""
        name, data_lines = "message", []
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as response:
            if not response.is_success:
                response.read()
                self._check(response)
            for line in response.iter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data_lines.append(line[5:].strip())
                elif line == "" and data_lines:
                    yield name, json.loads("\n".join(data_lines))
                    name, data_lines = "message", []


def new_idempotency_key() -> str:
    return uuid.uuid4().hex
