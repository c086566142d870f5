"""The input fetcher's own rules, without a worker: which URLs it refuses before connecting, and data: URIs."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from api.json_bodies import decode_data_uri
from workers.contracts.fetch import FetchPayload, RemoteInput, fetch_message
from workers.contracts.images import stylize_message
from workers.jobs import JobInputError
from workers.jobs.fetch import download


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/p.png",
        "http://[::1]:9/p.png",
        "http://10.1.2.3/p.png",
        "http://169.254.169.254/latest",
    ],
)
def test_a_private_or_loopback_address_is_refused_before_any_connection(url):
    with pytest.raises(JobInputError) as caught:
        download(url, 1000, 5.0, allow_private=False, field="file")
    assert caught.value.code == "input_url_not_allowed"
    assert "file" in caught.value.message and "ANIMEGAN_ALLOW_PRIVATE_INPUT_URLS" in caught.value.message


@pytest.mark.parametrize("url", ["ftp://example.com/p.png", "file:///etc/passwd", "gopher://x/"])
def test_only_http_and_https_are_fetched(url):
    with pytest.raises(JobInputError) as caught:
        download(url, 1000, 5.0, allow_private=True, field="files[2]")
    assert caught.value.code == "input_url_not_allowed" and caught.value.message.startswith("files[2]")


def test_a_closed_port_is_a_fetch_failure_naming_the_url():
    with pytest.raises(JobInputError) as caught:
        download("http://127.0.0.1:9/p.png", 1000, 5.0, allow_private=True, field="file")
    assert caught.value.code == "input_fetch_failed"
    assert "http://127.0.0.1:9/p.png" in caught.value.message and "could not connect" in caught.value.message


def test_the_fetch_message_carries_the_kinds_own_task_unchanged():
    then = stylize_message("job1", "inputs/job1/000000.img")
    inputs = [
        RemoteInput(url="https://example.com/p.png", key="inputs/job1/000000.img", field="file", max_bytes=10)
    ]
    message = fetch_message("job1", inputs, [then])
    payload = FetchPayload.model_validate(message.payload.model_dump(mode="json"))
    [forwarded] = payload.follow_ups()
    assert forwarded.task == then.task and forwarded.task_id == then.task_id
    assert forwarded.payload.model_dump(mode="json") == then.payload.model_dump(mode="json")


def test_a_remote_input_refuses_a_key_outside_the_layout():
    with pytest.raises(ValueError, match="storage key"):
        RemoteInput(url="https://example.com/p.png", key="../etc/passwd", field="file", max_bytes=10)


@pytest.mark.parametrize(
    ("uri", "content_type", "data"),
    [
        ("data:image/png;base64,iVBORw==", "image/png", b"\x89PNG"),
        ("data:,hello%20world", "application/octet-stream", b"hello world"),
        ("data:text/plain;charset=utf-8;base64,aGk=", "text/plain", b"hi"),
    ],
)
def test_data_uris_decode(uri, content_type, data):
    assert decode_data_uri(uri, "file") == (content_type, data)


@pytest.mark.parametrize("uri", ["data:image/png;base64", "data:image/png;base64,****", "data:nonsense,abc"])
def test_a_malformed_data_uri_is_422_naming_the_field(uri):
    with pytest.raises(ApiError) as caught:
        decode_data_uri(uri, "files[1]")
    assert caught.value.status == 422 and caught.value.code == "invalid_data_uri"
    assert caught.value.message.startswith("files[1]")
