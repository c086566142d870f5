"""The webhook workers run on the API image (CPU, no torch: deploy/k8s/worker-webhooks.yaml): a worker on the
webhooks queue where torch, OpenCV and safetensors cannot be imported starts and delivers a signed webhook."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import OWNER, make_service, wait_until
from workers import enqueue
from workers.contracts.webhooks import webhook_message

pytestmark = pytest.mark.e2e

FAULT_HOOKS = Path(__file__).with_name("fault_hooks")


class _Receiver(BaseHTTPRequestHandler):
    deliveries: list = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def test_a_webhook_worker_without_torch_delivers(tmp_path, request):
    from workers.jobs.webhooks import verify

    service = make_service(tmp_path, "local", request)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        worker = service.start_worker(
            "webhooks-api-image", queues="webhooks",
            PYTHONPATH=os.pathsep.join(filter(None, [str(FAULT_HOOKS), os.environ.get("PYTHONPATH")])),
            FAULT_NO_TORCH="1",
        )  # fmt: skip
        url = f"http://127.0.0.1:{server.server_address[1]}/done"
        record, _ = service.jobs.create("stylize", OWNER, {"model": "tiny"}, total=1, webhook_url=url)
        service.jobs.start(record.id)
        service.jobs.succeed(record.id, {"output_key": "outputs/x/0.png"})
        enqueue.send(webhook_message(record.id, "succeeded"), app=service.app)
        wait_until(lambda: _Receiver.deliveries, 60, "the webhook delivery")
        assert "blocked: the API image" not in worker.log()
    finally:
        server.shutdown()
        server.server_close()
        service.close()
    headers, body = _Receiver.deliveries[0]
    payload = verify(service.env["ANIMEGAN_WEBHOOK_SECRET"], headers, body)
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == record.id
