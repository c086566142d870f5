"""Inputs by URL and JSON bodies, through real HTTP against a real API, Redis and worker: a create's `file` (or a
batch's `files`) may be an http(s) URL, fetched by the worker on the egress queue, or a data: URI; a JSON body
takes the form's own fields. The URLs point at a local HTTP server of known answers (an image, a redirect to it,
a 404, an HTML page, a body above the size limit, one that stalls)."""

from __future__ import annotations

import base64
import contextlib
import io
import subprocess
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import httpx
import pytest
from PIL import Image

from api.auth import create_api_key
from tests.api.conftest import ApiProcess
from tests.conftest import ANIMEGAN
from tests.e2e.conftest import BUILTIN_MODEL, OWNER, make_service, png_bytes

pytestmark = pytest.mark.e2e

MAX_UPLOAD_BYTES = 200_000
FETCH_TIMEOUT_SECONDS = 2
IMAGE = png_bytes((64, 48), seed=3)


class Origin(BaseHTTPRequestHandler):
    """The URLs the tests fetch; every GET is counted by path."""

    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        Origin.hits[self.path] = Origin.hits.get(self.path, 0) + 1
        if self.path == "/p.png":
            self._send(200, IMAGE, "image/png")
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/p.png")
            self.end_headers()
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        elif self.path == "/page.html":
            self._send(200, b"<html><body>not a picture</body></html>", "text/html")
        elif self.path == "/big.png":
            self._send(200, b"\x89PNG" + b"\0" * (MAX_UPLOAD_BYTES * 2), "image/png")
        elif self.path == "/stall.png":
            time.sleep(FETCH_TIMEOUT_SECONDS + 2)
            self._send(200, IMAGE, "image/png")
        else:
            self._send(404, b"no such file", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)  # the fetcher may give up on a body above its limit

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("by-url")
    service = make_service(root, "local", request)
    service.env.update({
        "ANIMEGAN_ALLOW_PRIVATE_INPUT_URLS": "true",  # the origin is on loopback
        "ANIMEGAN_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "ANIMEGAN_FETCH_TIMEOUT_SECONDS": str(FETCH_TIMEOUT_SECONDS),
    })  # fmt: skip
    api = ApiProcess(service.env, root / "api.log").wait_ready()
    try:
        service.start_worker("by-url", queues="stylize,webhooks")
        key = create_api_key(service.redis, OWNER)
        client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        service.api_url, service.api_key = api.url, key
        yield service, client
    finally:
        api.stop()
        service.close()


def data_uri(data: bytes, content_type: str = "image/png") -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def stylize_json(client, body: dict, wait: int = 30) -> httpx.Response:
    return client.post(
        "/v1/stylize", json={"model": BUILTIN_MODEL, **body}, headers={"Prefer": f"wait={wait}"}
    )


def test_an_image_by_url_in_a_json_body_is_fetched_by_the_worker_and_stylized(stack, origin):
    _, client = stack
    before = Origin.hits.get("/p.png", 0)
    answer = stylize_json(client, {"file": f"{origin}/p.png", "format": "jpeg", "faces": False})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "succeeded", job
    assert job["params"]["format"] == "jpeg" and job["params"]["faces"] is False
    assert Origin.hits["/p.png"] == before + 1  # one fetch: the API never downloaded it
    result = client.get(job["links"]["result"])
    assert result.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(result.content)).size == (
        256,
        256,
    )  # the reference size of 64x48


def test_a_redirect_is_followed_after_its_target_is_checked(stack, origin):
    _, client = stack
    job = stylize_json(client, {"file": f"{origin}/moved"}).json()
    assert job["status"] == "succeeded", job


def test_a_data_uri_is_an_inline_file_part(stack):
    _, client = stack
    answer = stylize_json(client, {"file": data_uri(IMAGE)})
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text


@pytest.mark.parametrize(
    ("path", "code", "says"),
    [
        ("/missing.png", "input_fetch_failed", "answered 404"),
        ("/page.html", "unsupported_format", "not an image"),
        ("/big.png", "input_too_large", f"{MAX_UPLOAD_BYTES}-byte limit"),
        ("/stall.png", "input_fetch_failed", "time limit"),
        ("/loop", "input_fetch_failed", "more than 3 redirects"),
    ],
)
def test_a_url_that_does_not_give_an_image_fails_the_job_naming_it(stack, origin, path, code, says):
    _, client = stack
    url = f"{origin}{path}"
    answer = stylize_json(client, {"file": url})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "failed", job
    assert job["error"]["code"] == code, job["error"]
    assert url in job["error"]["message"] and says in job["error"]["message"], job["error"]


def test_a_batch_of_urls_and_data_uris(stack, origin):
    _, client = stack
    body = {
        "model": BUILTIN_MODEL,
        "files": [f"{origin}/p.png", data_uri(png_bytes((40, 40), seed=5)), f"{origin}/moved"],
    }
    answer = client.post("/v1/batches", json=body, headers={"Prefer": "wait=40"})
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["status"] == "succeeded" and job["progress"]["done"] == 3, job
    for index in range(3):
        assert client.get(f"{job['links']['self']}/results/{index}").status_code == 200


def test_a_batch_with_one_url_that_fails_fails_naming_that_item(stack, origin):
    _, client = stack
    body = {"model": BUILTIN_MODEL, "files": [f"{origin}/p.png", f"{origin}/gone.png"]}
    job = client.post("/v1/batches", json=body, headers={"Prefer": "wait=40"}).json()
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "input_fetch_failed"
    assert job["error"]["message"].startswith(f"files[1] {origin}/gone.png"), job["error"]


def test_a_json_replay_with_its_idempotency_key_is_the_same_job(stack, origin):
    _, client = stack
    headers = {"Idempotency-Key": f"url-{time.monotonic_ns()}"}
    body = {"model": BUILTIN_MODEL, "file": f"{origin}/p.png"}
    first = client.post("/v1/stylize", json=body, headers=headers)
    again = client.post("/v1/stylize", json=body, headers=headers)
    assert first.status_code == 202 and again.status_code == 200, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    other = client.post("/v1/stylize", json={**body, "file": f"{origin}/moved"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "says"),
    [
        ("/v1/stylize", {"model": BUILTIN_MODEL, "image": "https://example.com/p.jpg"}, 422,
         "invalid_parameters", "image: not a field of /v1/stylize"),
        ("/v1/stylize", {"model": BUILTIN_MODEL, "file": "ftp://example.com/p.jpg"}, 422,
         "invalid_input_url", "neither a data: URI nor an https:// URL"),
        ("/v1/stylize", {"model": BUILTIN_MODEL, "file": "data:image/png;base64,@@@"}, 422,
         "invalid_data_uri", "does not decode"),
        ("/v1/stylize", {"model": BUILTIN_MODEL, "file": "https://nonexistent.invalid/p.png"}, 422,
         "invalid_input_url", "does not resolve"),
        ("/v1/stylize", {"model": BUILTIN_MODEL, "file": {"url": "x"}}, 422,
         "invalid_parameters", "a file field takes"),
        ("/v1/stylize", ["not", "an", "object"], 422, "invalid_parameters", "must be an object"),
        ("/v1/videos", {"model": BUILTIN_MODEL, "file": "https://example.com/clip.mp4"}, 422,
         "input_url_not_supported", "/v1/uploads"),
        ("/v1/trainings", {"name": "m1", "mode": "distill", "teacher": BUILTIN_MODEL,
                           "photos": "https://example.com/photos.zip"}, 422, "input_url_not_supported", "photos:"),
        ("/v1/batches", {"model": BUILTIN_MODEL, "archive": "https://example.com/a.zip"}, 422,
         "input_url_not_supported", "archive:"),
        ("/v1/stylize", {"file": data_uri(IMAGE)}, 422, "invalid_parameters", "model"),
    ],
)  # fmt: skip
def test_a_json_body_that_is_wrong_gets_a_message_naming_the_problem(stack, path, body, status, code, says):
    _, client = stack
    answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and says in error["message"], error


def test_malformed_json_is_400_and_another_content_type_is_415(stack):
    _, client = stack
    answer = client.post("/v1/stylize", content=b'{"model": ', headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_json", answer.text
    answer = client.post("/v1/stylize", content=b"model=x", headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415, answer.text
    message = answer.json()["error"]["message"]
    assert "multipart/form-data or an application/json body" in message and "text/plain" in message


def test_a_data_uri_video_is_checked_as_an_uploaded_one(stack):
    _, client = stack
    answer = client.post("/v1/videos", json={"model": BUILTIN_MODEL, "file": data_uri(IMAGE)})
    assert answer.status_code == 415, answer.text  # a PNG is not a video, whichever way it came


def test_a_json_body_above_its_limit_is_413(stack):
    _, client = stack
    huge = data_uri(b"\0" * (MAX_UPLOAD_BYTES * 2))
    answer = client.post("/v1/stylize", json={"model": BUILTIN_MODEL, "file": huge})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large", answer.text


def test_a_multipart_part_of_type_external_body_is_a_url_too(stack, origin):
    _, client = stack
    answer = client.post(
        "/v1/stylize",
        data={"model": BUILTIN_MODEL},
        files={"file": ("url.txt", f"{origin}/p.png".encode(), "message/external-body")},
        headers={"Prefer": "wait=30"},
    )
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text


def test_animegan_submit_takes_image_urls(stack, origin, tmp_path):
    service, _ = stack
    command = [ANIMEGAN, "submit", "--model", BUILTIN_MODEL, "--out", str(tmp_path), "--api", service.api_url,
               "--key", service.api_key]  # fmt: skip
    one = subprocess.run([*command, f"{origin}/p.png"], capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    assert Image.open(tmp_path / "p.png").size == (256, 256)
    two = subprocess.run(
        [*command, f"{origin}/p.png", f"{origin}/gone.png"], capture_output=True, text=True, timeout=120
    )
    assert two.returncode == 1 and "input_fetch_failed" in two.stderr and "gone.png" in two.stderr, two.stderr
    mixed = subprocess.run([*command, f"{origin}/p.png", str(tmp_path)], capture_output=True, text=True)
    assert mixed.returncode == 2 and "not both" in mixed.stderr


def test_a_training_in_a_json_body_with_a_data_uri_zip_and_an_object_of_hyperparameters(stack):
    import zipfile

    _, client = stack
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(2):
            zf.writestr(f"p{i}.png", png_bytes((40, 40), seed=i))
    body = {
        "name": f"json-{time.monotonic_ns()}",
        "mode": "distill",
        "teacher": BUILTIN_MODEL,
        "photos": data_uri(buf.getvalue(), "application/zip"),
        "hyperparameters": {"image_size": 32, "batch_size": 2, "base_channels": 8, "max_total_steps": 4},
    }
    answer = client.post("/v1/trainings", json=body)  # no worker serves the train queue here: it stays queued
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["kind"] == "train" and job["params"]["hyperparameters"]["max_total_steps"] == 4, job
