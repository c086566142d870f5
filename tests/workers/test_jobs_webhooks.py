"""Webhook signing, verification, destination checks and delivery to a real local HTTP server."""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workers.jobs.webhooks import (
    WebhookError,
    WebhookTransientError,
    WebhookVerificationError,
    backoff_seconds,
    build_message,
    check_destination,
    deliver,
    sign,
    verify,
)
from workers.webhook_targets import not_global_reason

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


class _Receiver(BaseHTTPRequestHandler):
    status = 200
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def receiver():
    handler = type("Receiver", (_Receiver,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_signature_matches_standard_webhooks_reference_vector():
    # The published Standard Webhooks example: secret, id, timestamp and body give exactly this signature.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_verify_round_trip_and_tampering():
    message = build_message({"id": "job1", "status": "succeeded"}, "succeeded")
    headers = {
        "webhook-id": message.msg_id,
        "webhook-timestamp": "1000",
        "webhook-signature": sign(SECRET, message.msg_id, 1000, message.body),
    }
    assert verify(SECRET, headers, message.body, now=1000)["data"]["id"] == "job1"
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(SECRET, headers, message.body.replace(b"job1", b"job2"), now=1000)
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify("another-secret", headers, message.body, now=1000)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(SECRET, headers, message.body, now=1000 + 3600)
    with pytest.raises(WebhookVerificationError, match="webhook-signature"):
        verify(SECRET, {k: v for k, v in headers.items() if k != "webhook-signature"}, message.body, now=1000)


def test_message_id_is_stable_across_retries():
    first = build_message({"id": "abc"}, "failed")
    second = build_message({"id": "abc"}, "failed")
    assert first.msg_id == second.msg_id == "msg_abc_failed"
    assert json.loads(first.body)["type"] == "job.failed"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://localhost/x",
        # Ranges that are neither private nor loopback in Python's older sense, and IPv6 forms of IPv4.
        "http://100.64.0.1/x",  # carrier-grade NAT
        "http://198.18.0.1/x",  # benchmarking
        "http://[fc00::1]/x",  # unique local
        "http://[fe80::1]/x",  # link-local
        "http://[::ffff:127.0.0.1]/x",  # IPv4-mapped loopback
        "http://[::127.0.0.1]/x",  # IPv4-compatible loopback
        "http://[64:ff9b::a00:1]/x",  # NAT64 of 10.0.0.1
        "http://[2002:a00:1::]/x",  # 6to4 of 10.0.0.1
        "http://0.0.0.0/x",
    ],
)
def test_private_destinations_refused_unless_allowed(url):
    with pytest.raises(WebhookError, match="private, loopback or reserved"):
        check_destination(url, allow_private=False)
    check_destination(url, allow_private=True)


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34", "64:ff9b::5db8:d822"],
)
def test_public_addresses_pass(address):
    assert not_global_reason(ipaddress.ip_address(address)) is None


def test_dns_rebinding_cannot_redirect_a_delivery_to_loopback(receiver, monkeypatch):
    """A name that answers a public address to the check and 127.0.0.1 afterwards gets no delivery to loopback."""
    handler, loopback_url = receiver
    port = int(loopback_url.rsplit(":", 1)[1].split("/")[0])
    real_getaddrinfo = socket.getaddrinfo
    answers = ["93.184.216.34"]  # TEST: the first answer is public, every later one is loopback

    def rebinding(host, *args, **kwargs):
        if host != "rebind.example":
            return real_getaddrinfo(host, *args, **kwargs)
        address = answers.pop(0) if answers else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    message = build_message({"id": "j"}, "succeeded")
    # The checked public address is unreachable from here (or answers nothing within the timeout).
    with pytest.raises(WebhookTransientError, match="rebind.example"):
        deliver(f"http://rebind.example:{port}/hook", message, SECRET, allow_private=False, timeout_seconds=2)
    assert handler.received == [], "the delivery went to the second (loopback) answer"


def test_delivery_to_a_pinned_address_still_names_the_host(receiver):
    handler, url = receiver
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert (
        deliver(f"http://localhost:{port}/hook", build_message({"id": "j"}, "succeeded"), None, True) == 200
    )
    [(headers, _)] = handler.received
    assert headers["host"] == f"localhost:{port}"


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "not a url"])
def test_non_http_urls_refused(url):
    with pytest.raises(WebhookError, match="http"):
        check_destination(url, allow_private=True)


def test_deliver_posts_a_verifiable_message(receiver):
    handler, url = receiver
    message = build_message({"id": "job42", "status": "succeeded", "result": {"k": 1}}, "succeeded")
    assert deliver(url, message, SECRET, allow_private=True) == 200
    [(headers, body)] = handler.received
    payload = verify(SECRET, headers, body)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["result"] == {"k": 1}
    assert headers["webhook-id"] == "msg_job42_succeeded"


def test_deliver_classifies_receiver_errors(receiver):
    handler, url = receiver
    message = build_message({"id": "j"}, "failed")
    handler.status = 503
    with pytest.raises(WebhookTransientError, match="503"):
        deliver(url, message, SECRET, allow_private=True)
    handler.status = 400
    with pytest.raises(WebhookError, match="400"):
        deliver(url, message, SECRET, allow_private=True)
    with pytest.raises(WebhookError, match="private"):
        deliver(url, message, SECRET, allow_private=False)
    assert len(handler.received) == 2  # the refused destination was never contacted


def test_unreachable_receiver_is_transient():
    with pytest.raises(WebhookTransientError):
        deliver(
            "http://127.0.0.1:9/hook",
            build_message({"id": "j"}, "failed"),
            SECRET,
            allow_private=True,
            timeout_seconds=2,
        )


def test_backoff_is_exponential_and_capped():
    assert [backoff_seconds(i, 2.0) for i in range(4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_seconds(30, 2.0, cap_seconds=600) == 600
