"""The API's temporary-disk budget for request bodies (issue 20: a few large uploads at once on one replica filled
its /tmp emptyDir past the sizeLimit, and the kubelet evicts such a pod with every request and stream on it)."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.exceptions import HTTPException

from api.main import SPOOL_THRESHOLD_BYTES, BodyLimitMiddleware, create_app

MB = 1024 * 1024


class Holding:
    """An app that reads the whole body, then waits until released: a request in flight with its body spooled."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.read: list[int] = []

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.read.append(size)
        await self.release.wait()
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def request(path: str, size: int, declared: bool = True):  # type: ignore[no-untyped-def]
    """ASGI scope, receive (the body in 1 MB chunks), the list of sent messages, and send."""
    headers = [(b"content-length", str(size).encode())] if declared else []
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    chunks = [b"x" * MB] * (size // MB) + ([b"x" * (size % MB)] if size % MB else [])

    async def receive() -> dict:
        body = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    return scope, receive, sent, send  # type: ignore[return-value]


def status_of(sent: list[dict]) -> int | None:
    return next((m["status"] for m in sent if m["type"] == "http.response.start"), None)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_bodies_beyond_the_spool_budget_get_503_before_they_are_read_and_the_budget_comes_back():
    async def scenario() -> None:
        app = Holding()
        limit = BodyLimitMiddleware(app, limit=40 * MB, spool_budget=24 * MB)
        first_scope, first_receive, first_sent, first_send = request("/v1/batches", 20 * MB)
        first = asyncio.create_task(limit(first_scope, first_receive, first_send))
        await settle()
        assert app.read == [20 * MB] and limit.spooled == 20 * MB
        # A second large body does not fit beside it: refused at once, its body never read.
        scope, receive, sent, send = request("/v1/batches", 8 * MB)
        await limit(scope, receive, send)
        assert status_of(sent) == 503 and app.read == [20 * MB]
        assert (b"retry-after", b"5") in sent[0]["headers"]
        error = json.loads(sent[1]["body"])["error"]
        assert error["code"] == "server_busy" and "ANIMEGAN_MAX_SPOOL_BYTES" in error["message"]
        # Small bodies stay in memory (Starlette spools only parts above 1 MB) and are never refused.
        scope, receive, sent, send = request("/v1/stylize", SPOOL_THRESHOLD_BYTES)
        small = asyncio.create_task(limit(scope, receive, send))
        await settle()
        assert app.read[-1] == SPOOL_THRESHOLD_BYTES
        app.release.set()
        await asyncio.gather(first, small)
        assert status_of(first_sent) == 202 and limit.spooled == 0
        # The budget is back: the refused request goes through on its retry.
        scope, receive, sent, send = request("/v1/batches", 8 * MB)
        await limit(scope, receive, send)
        assert status_of(sent) == 202 and limit.spooled == 0

    asyncio.run(scope_timeout(scenario()))


def test_a_training_counts_twice_and_a_body_without_length_is_counted_as_it_streams():
    async def scenario() -> None:
        app = Holding()
        limit = BodyLimitMiddleware(app, limit=40 * MB, spool_budget=24 * MB)
        # A training's zips are spooled, then copied into its staging folder: 10 MB takes 20 MB of disk.
        scope, receive, sent, send = request("/v1/trainings", 10 * MB)
        training = asyncio.create_task(limit(scope, receive, send))
        await settle()
        assert limit.spooled == 20 * MB
        # A chunked body (no Content-Length) is admitted, then refused once what it sent passes the budget: the
        # HTTPException is raised in the app's receive, where FastAPI answers it (503, Retry-After).
        scope2, receive2, _, send2 = request("/v1/batches", 8 * MB, declared=False)
        with pytest.raises(HTTPException) as refused:
            await limit(scope2, receive2, send2)
        assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "5"}
        assert limit.spooled == 20 * MB  # nothing of the refused body is left reserved
        app.release.set()
        await training
        assert status_of(sent) == 202 and limit.spooled == 0

    asyncio.run(scope_timeout(scenario()))


async def scope_timeout(coro):  # type: ignore[no-untyped-def]
    return await asyncio.wait_for(coro, timeout=30)


def test_the_budget_holds_the_largest_training_and_the_manifests_tmp_holds_the_budget():
    """ApiSettings refuses a budget below twice the request limit (the largest training could never be taken), and
    deploy/k8s/api.yaml's /tmp emptyDir is larger than the budget the API runs with there (or it is evicted)."""
    import yaml

    from api.settings import ApiSettings
    from tests.test_deploy import K8S, pod_specs
    from workers.exceptions import ConfigurationError
    from workers.settings import load_settings

    with pytest.raises(ConfigurationError, match="ANIMEGAN_MAX_SPOOL_BYTES"):
        load_settings(ApiSettings, max_request_bytes=512 * MB, max_spool_bytes=600 * MB)
    wanted = {"max_upload_bytes": MB, "max_request_bytes": 8 * MB, "max_spool_bytes": 20 * MB}
    app = create_app(load_settings(ApiSettings, **wanted))
    [wired] = [m for m in app.user_middleware if m.cls is BodyLimitMiddleware]
    assert wired.kwargs == {"limit": 8 * MB, "spool_budget": 20 * MB}
    docs = [d for d in yaml.safe_load_all((K8S / "api.yaml").read_text()) if d]
    spec = pod_specs(docs)["animegan-api"]
    [api] = spec["containers"]
    env = {e["name"]: e["value"] for e in api.get("env", [])}
    budget = int(env.get("ANIMEGAN_MAX_SPOOL_BYTES", ApiSettings.model_fields["max_spool_bytes"].default))
    tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")["emptyDir"]["sizeLimit"]
    assert tmp.endswith("Gi") and budget < int(tmp[:-2]) * 1024 * MB, (budget, tmp)
