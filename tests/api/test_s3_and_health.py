"""The API on S3 storage (a real moto S3 HTTP server): inputs land in the bucket, results redirect to presigned
URLs, direct uploads go straight to S3. Plus readiness (fails when Redis is down), metrics and the OpenAPI schema.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis

from api.auth import create_api_key
from api.client import ApiClient
from tests.api.conftest import PUBLIC_MODEL, REDIS_URL, Api, ApiProcess, finish_job, png_bytes, start_api
from tests.api.test_validation import zip_of
from tests.conftest import TEST_REDIS_DB, free_port
from tests.faults import TcpProxy
from tests.workers.test_archives import _patched_directory
from workers import keys, redis_keys
from workers.contracts.training import TrainingSpec


@pytest.fixture(scope="module")
def s3_api(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Api]:
    import boto3

    bucket = "api-tests"
    boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)  # fmt: skip
    tmp = tmp_path_factory.mktemp("api-s3")
    env = {
        "ANIMEGAN_S3_ENDPOINT_URL": s3_endpoint,
        "ANIMEGAN_S3_ACCESS_KEY_ID": "testing",
        "ANIMEGAN_S3_SECRET_ACCESS_KEY": "testing",
        "ANIMEGAN_S3_ADDRESSING_STYLE": "path",
    }
    service = start_api(tmp, env=env, storage_url=f"s3://{bucket}/svc")
    yield service
    service.process.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def test_s3_inputs_and_presigned_results(s3_api, s3_endpoint):
    with ApiClient(s3_api.url, s3_api.keys["alice"]) as client:
        assert httpx.get(f"{s3_api.url}/readyz").json()["checks"] == {"redis": "ok", "storage": "ok"}
        image = png_bytes((60, 40))
        job = client.stylize(image, model=PUBLIC_MODEL)
        assert s3_api.store.get_bytes(keys.input(job["id"], 0, "png")) == image
        finish_job(s3_api, job["id"], {0: b"stylized bytes"})

        redirect = client.http.get(f"/v1/jobs/{job['id']}/result", follow_redirects=False)
        assert redirect.status_code == 307
        location = redirect.headers["Location"]
        assert (
            location.startswith(f"{s3_endpoint}/api-tests/svc/outputs/{job['id']}/")
            and "Signature" in location
        )
        # The client follows the redirect (without its API key) and gets the object from S3.
        assert client.result_bytes(job["id"]) == b"stylized bytes"


def test_s3_direct_upload_then_stylize(s3_api, s3_endpoint):
    with ApiClient(s3_api.url, s3_api.keys["alice"]) as client:
        image = png_bytes((30, 30))
        created = client.http.post("/v1/uploads", json={"purpose": "image", "size": len(image)}).json()
        assert created["url"].startswith(s3_endpoint) and "Authorization" not in created["headers"]
        upload_id = client.upload(image, purpose="image")
        assert s3_api.store.get_bytes(keys.upload("alice", upload_id)) == image
        job = client.stylize(upload_id=upload_id, model=PUBLIC_MODEL)
        # The job reads the upload where it lies: no copy under the job's inputs.
        assert s3_api.store.list(keys.inputs_prefix(job["id"])) == []
        with ApiClient(s3_api.url, s3_api.keys["bob"]) as bob:
            assert bob.http.get(f"/v1/uploads/{upload_id}").status_code == 404


def test_jobs_read_direct_uploads_in_place_without_copies(s3_api):
    """Stylize, batch and training jobs name the upload's key; the bucket holds each upload's bytes once."""
    photos = zip_of({"p.png": png_bytes((40, 40))})
    styles = zip_of({"s.png": png_bytes((36, 36))})
    with ApiClient(s3_api.url, s3_api.keys["alice"]) as client:
        image = png_bytes((31, 29))
        image_id = client.upload(image, purpose="image")
        photos_id = client.upload(photos, purpose="dataset")
        styles_id = client.upload(styles, purpose="dataset")
        before = set(s3_api.store.list(""))
        stylize = client.stylize(upload_id=image_id, model=PUBLIC_MODEL)
        batch = client.batch(upload_ids=[image_id, image_id], model=PUBLIC_MODEL)
        train = client.train(
            "from-uploads", photos_upload_id=photos_id, styles_upload_id=styles_id,
            hyperparameters={"max_total_steps": 1},
        )  # fmt: skip
        # No job wrote an object: the bucket lists what it did before the three creates.
        assert set(s3_api.store.list("")) == before
        assert [k for k in before if s3_api.store.get_bytes(k) == image] == [keys.upload("alice", image_id)]
    record = s3_api.jobs.get(train["id"])
    datasets = TrainingSpec.model_validate(record.params).datasets
    assert {p: a.key for p, a in datasets.items()} == {
        "photos": keys.upload("alice", photos_id),
        "styles": keys.upload("alice", styles_id),
    }
    assert stylize["params"]["filename"] == image_id and batch["progress"]["total"] == 2


def test_direct_upload_zips_are_checked_where_they_lie_and_refused_at_submit(s3_api):
    """A dataset or batch zip sent as a direct upload is checked by ranged GETs (workers.storage.ranged), data
    included: a member whose CRC-32 lies is a 422 at submit naming it, not a training that fails on a worker;
    a good batch zip's images become the job's inputs, read from the archive where it lies."""
    good = zip_of({"p.png": png_bytes((40, 40)), "q.png": png_bytes((36, 36))})
    lying = _patched_directory(good, "q.png", 16, 0x12345678)
    with ApiClient(s3_api.url, s3_api.keys["alice"]) as client:
        photos_id = client.upload(good, purpose="dataset")
        lying_id = client.upload(lying, purpose="dataset")
        refused = client.http.post(
            "/v1/trainings",
            data={"name": "lying-crc", "photos_upload_id": photos_id, "styles_upload_id": lying_id},
        )
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "corrupt_archive" and "'q.png' is damaged" in error["message"]

        archive_id = client.upload(good, purpose="archive")
        batch = client.batch(upload_ids=[archive_id], model=PUBLIC_MODEL)
        assert batch["progress"]["total"] == 2 and batch["params"]["filenames"] == ["p.png", "q.png"]
        stored = [s3_api.store.get_bytes(k) for k in s3_api.store.list(keys.inputs_prefix(batch["id"]))]
        assert sorted(stored) == sorted([png_bytes((40, 40)), png_bytes((36, 36))])
        lying_archive = client.upload(lying, purpose="archive")
        refused = client.http.post("/v1/batches", data={"model": PUBLIC_MODEL, "upload_ids": [lying_archive]})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "corrupt_archive", (
            refused.text
        )


def test_s3_upload_of_another_size_than_declared_is_refused_and_deleted(s3_api):
    with ApiClient(s3_api.url, s3_api.keys["alice"]) as client:
        created = client.http.post("/v1/uploads", json={"purpose": "image", "size": 100}).json()
        # Real S3 refuses a PUT of another length itself: the signature covers Content-Length.
        signed = parse_qs(urlsplit(created["url"]).query)["X-Amz-SignedHeaders"][0].split(";")
        assert "content-length" in signed
        # moto does not check signatures, like some S3-compatible servers: 20 MiB land in the bucket anyway.
        assert httpx.put(created["url"], content=b"\0" * (20 << 20)).status_code == 200
        key = keys.upload("alice", created["id"])
        assert s3_api.store.size(key) == 20 << 20
        refused = client.http.post("/v1/stylize", data={"model": PUBLIC_MODEL, "upload_id": created["id"]})
        assert refused.status_code == 413, refused.text
        error = refused.json()["error"]
        assert error["code"] == "upload_size_mismatch" and "100" in error["message"]
        assert not s3_api.store.exists(key), "the oversized object stayed in storage"

        short = client.http.post("/v1/uploads", json={"purpose": "image", "size": 100}).json()
        assert httpx.put(short["url"], content=b"\0" * 10).status_code == 200
        refused = client.http.post("/v1/stylize", data={"model": PUBLIC_MODEL, "upload_id": short["id"]})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "upload_size_mismatch"
        assert not s3_api.store.exists(keys.upload("alice", short["id"]))


def test_readyz_fails_when_redis_is_down(tmp_path):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    process = ApiProcess(
        {"ANIMEGAN_REDIS_URL": dead, "ANIMEGAN_STORAGE_URL": (tmp_path / "s").as_uri()}, tmp_path / "api.log"
    )
    try:
        process.wait_ready()
        assert httpx.get(f"{process.url}/healthz").status_code == 200
        ready = httpx.get(f"{process.url}/readyz", timeout=30)
        assert ready.status_code == 503
        body = ready.json()
        assert body["checks"]["storage"] == "ok" and body["checks"]["redis"].startswith("unreachable")
        assert body["error"]["code"] == "not_ready" and "redis" in body["error"]["message"]
        # Requests that need Redis say so with a 503 (not a bare 500) and when to come back.
        listing = httpx.get(f"{process.url}/v1/jobs", headers={"Authorization": "Bearer agk_x"}, timeout=30)
        assert listing.status_code == 503 and listing.headers["Retry-After"] == "5"
        assert (
            listing.json()["error"]["code"] == "service_unavailable"
            and "Redis" in listing.json()["error"]["message"]
        )
    finally:
        process.stop()


def metric(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{selector}}}" if labels else name) + r" ([0-9.e+-]+)"
    found = re.search(pattern, text)
    assert found, f"{name} {labels} not in metrics"
    return float(found.group(1))


def scrape(api: Api) -> str:
    response = httpx.get(api.process.metrics_url, headers={"Authorization": "Bearer metrics-secret"})
    assert response.status_code == 200, response.text
    return response.text


def test_the_public_port_never_serves_metrics(api, alice):
    for headers in (
        {},
        {"Authorization": "Bearer metrics-secret"},
        {"Authorization": f"Bearer {api.keys['alice']}"},
    ):
        public = httpx.get(f"{api.url}/metrics", headers=headers)
        assert public.status_code == 404 and "animegan_jobs" not in public.text
    assert "animegan_jobs" in scrape(api)


def test_metrics_need_the_metrics_token(api, alice):
    # Job counts of every tenant: no API key of a tenant opens them, only the operator's token.
    for headers in ({}, {"Authorization": f"Bearer {api.keys['alice']}"}, {"Authorization": "Bearer wrong"}):
        refused = httpx.get(api.process.metrics_url, headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_metrics_token"
        assert "animegan_jobs" not in refused.text


def test_metrics_are_off_without_a_metrics_port(tmp_path):
    env = {"ANIMEGAN_REDIS_URL": REDIS_URL, "ANIMEGAN_STORAGE_URL": (tmp_path / "s").as_uri()}
    process = ApiProcess(env, tmp_path / "api.log", metrics=False).wait_ready()
    try:
        assert httpx.get(f"{process.url}/metrics").status_code == 404
    finally:
        process.stop()


def scrape_commands(api: Api) -> list[list[str]]:
    """The Redis commands one scrape sends to the test database, as MONITOR sees them."""
    marker = f"end-of-scrape-{uuid.uuid4().hex}"
    seen = []
    with api.redis.monitor() as monitor:
        scrape(api)
        api.redis.echo(marker)
        while True:
            command = monitor.next_command()
            if marker in command["command"]:
                return seen
            name = command["command"].split(" ", 1)[0].upper()
            # A new pooled connection's handshake is no part of what a scrape asks, nor the API's deadline sweep
            # (api.deadlines, each second, on its own).
            sweep = name == "ZRANGEBYSCORE" and redis_keys.DEADLINES in command["command"]
            if command["db"] == TEST_REDIS_DB and name not in {"SELECT", "CLIENT", "HELLO"} and not sweep:
                seen.append(name)


def test_a_scrape_costs_the_same_however_many_jobs_exist(api):
    few = scrape_commands(api)
    for i in range(1500):
        record, _ = api.jobs.create("stylize", "alice", {}, total=1)
        if i % 3 == 0:
            api.jobs.start(record.id)
            api.jobs.succeed(record.id, {})
    many = scrape_commands(api)
    assert many == few, f"{len(few)} commands with few jobs, {len(many)} with 1500 more"
    # A fixed number: 4 LLEN per queue, one ZRANGE per kind (oldest queued), one ZCOUNT per queue (workers), ...
    assert "SCAN" not in many and len(many) <= 30, many
    assert metric(scrape(api), "animegan_jobs_finished_total", kind="stylize", status="succeeded") >= 500


def test_readyz_answers_within_its_timeout_while_storage_is_paused(tmp_path, s3_endpoint, s3_bucket):
    host, port = s3_endpoint.removeprefix("http://").rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    env = {
        "ANIMEGAN_REDIS_URL": REDIS_URL,
        "ANIMEGAN_STORAGE_URL": f"s3://{s3_bucket}/svc",
        "ANIMEGAN_S3_ENDPOINT_URL": proxy.url,
        "ANIMEGAN_S3_ACCESS_KEY_ID": "testing",
        "ANIMEGAN_S3_SECRET_ACCESS_KEY": "testing",
        "ANIMEGAN_S3_ADDRESSING_STYLE": "path",
        "ANIMEGAN_READINESS_TIMEOUT_SECONDS": "2",
    }
    process = ApiProcess(env, tmp_path / "api.log").wait_ready()
    try:
        assert httpx.get(f"{process.url}/readyz", timeout=30).status_code == 200
        proxy.pause()  # storage accepts connections and never answers, as a frozen node does
        started = time.monotonic()
        ready = httpx.get(f"{process.url}/readyz", timeout=30)
        took = time.monotonic() - started
        # Still ready: a storage outage hits every replica alike, and taking them all out of the Service would
        # also stop status reads and cancels, which need only Redis (issue 20, B12).
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"] == "ok"
        assert ready.json()["checks"]["storage"].startswith("unreachable within 2 s")
        assert took < 6, f"/readyz took {took:.1f} s"
        key = create_api_key(redis.Redis.from_url(REDIS_URL), "alice")
        listing = httpx.get(f"{process.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert listing.status_code == 200, listing.text
        proxy.resume()
        assert httpx.get(f"{process.url}/readyz", timeout=30).status_code == 200
    finally:
        proxy.close()
        process.stop()


def test_metrics_report_jobs_queues_durations_and_rate(api, alice):
    before = metric(scrape(api), "animegan_queue_depth", queue="stylize")
    ids = [
        alice.post(
            "/v1/stylize", data={"model": PUBLIC_MODEL}, files={"file": ("p.png", png_bytes())}
        ).json()["id"]
        for _ in range(3)
    ]
    finish_job(api, ids[0], {0: b"x"})
    text = scrape(api)
    assert metric(text, "animegan_queue_depth", queue="stylize") == before + 3
    assert metric(text, "animegan_jobs_finished_total", kind="stylize", status="succeeded") >= 1
    assert metric(text, "animegan_jobs", kind="stylize", status="queued") >= 2
    assert metric(text, "animegan_job_duration_seconds_count", kind="stylize") >= 1
    assert metric(text, "animegan_images_per_second") > 0
    assert 'animegan_http_requests_total{method="POST",route="/v1/stylize",status="202"}' in text


def test_openapi_documents_every_route_with_examples(api):
    spec = httpx.get(f"{api.url}/openapi.json").json()
    paths = set(spec["paths"])
    for path in ["/v1/stylize", "/v1/batches", "/v1/uploads", "/v1/trainings", "/v1/jobs", "/v1/jobs/{job_id}",
                 "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/result", "/v1/jobs/{job_id}/results/{index}",
                 "/v1/jobs/{job_id}/events", "/v1/models", "/v1/models/{name}", "/healthz", "/readyz"]:  # fmt: skip
        assert path in paths, path
    schemas = spec["components"]["schemas"]
    assert schemas["JobPublic"].get("examples") and schemas["TrainingHyperparameters"].get("examples")
    assert "ErrorResponse" in schemas
    assert "429" in spec["paths"]["/v1/stylize"]["post"]["responses"]


def test_auth_disabled_is_an_explicit_local_demo_mode(tmp_path):
    env = {
        "ANIMEGAN_REDIS_URL": REDIS_URL,
        "ANIMEGAN_STORAGE_URL": (tmp_path / "s").as_uri(),
        "ANIMEGAN_AUTH_DISABLED": "true",
    }
    process = ApiProcess(env, tmp_path / "api.log")
    try:
        process.wait_ready()
        listing = httpx.get(f"{process.url}/v1/jobs")
        assert listing.status_code == 200 and listing.json()["items"] == []
        assert "ANIMEGAN_AUTH_DISABLED is set" in process.log()
    finally:
        process.stop()


def test_metrics_show_the_oldest_queued_job_the_live_workers_and_unacked_tasks(api, alice):
    """The gauges the alerts read (deploy/k8s/alerts.yaml): queue age, worker heartbeats, unacked tasks."""
    import time as clock

    from workers import redis_keys

    api.redis.delete(redis_keys.metrics_queued("stylize"))
    first = alice.post(
        "/v1/stylize", data={"model": PUBLIC_MODEL}, files={"file": ("a.png", png_bytes())}
    ).json()
    clock.sleep(1.2)
    alice.post("/v1/stylize", data={"model": PUBLIC_MODEL}, files={"file": ("b.png", png_bytes())})
    text = scrape(api)
    assert metric(text, "animegan_oldest_queued_job_age_seconds", kind="stylize") >= 1.0
    api.jobs.start(first["id"])  # the oldest leaves the queue: the next one is younger
    assert metric(scrape(api), "animegan_oldest_queued_job_age_seconds", kind="stylize") < 1.0
    api.redis.zadd(
        redis_keys.workers_alive("train"), {"gpu-node/1": clock.time(), "gone/2": clock.time() - 600}
    )
    api.redis.hset(redis_keys.KOMBU_UNACKED, "tag-1", "{}")
    text = scrape(api)
    assert metric(text, "animegan_workers", queue="train") == 1
    assert metric(text, "animegan_unacked_tasks") >= 1
    api.redis.hdel(redis_keys.KOMBU_UNACKED, "tag-1")
