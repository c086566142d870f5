"""Deployments that share one Redis database do not mix: two stacks (API and worker each) with their own namespace
and storage run the same tenant's jobs side by side, and a worker pointed at the wrong storage fails the job
naming the misconfiguration instead of `input_missing`."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.conftest import ApiProcess
from tests.conftest import ANIMEGAN
from tests.e2e.conftest import BUILTIN_MODEL, make_service, png_bytes

pytestmark = pytest.mark.e2e


def api_key(env: dict[str, str], tenant: str) -> str:
    made = subprocess.run(
        [ANIMEGAN, "keys", "create", "--tenant", tenant], env=env, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture(scope="module")
def two_deployments(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("namespaces")
    service = make_service(root, "local", request)  # flushes the test database, writes the tiny model
    stacks, apis = {}, []
    try:
        for name in ("alpha", "beta"):
            env = {
                **service.env,
                "ANIMEGAN_NAMESPACE": f"demo-{name}",
                "ANIMEGAN_STORAGE_URL": (root / f"storage-{name}").as_uri(),
            }
            api = ApiProcess(env, root / f"api-{name}.log", metrics=False).wait_ready()
            apis.append(api)
            service.env = env
            worker = service.start_worker(f"worker-{name}", queues="stylize")
            client = httpx.Client(
                base_url=api.url, headers={"Authorization": f"Bearer {api_key(env, 'demo')}"}, timeout=60
            )
            stacks[name] = (api, worker, client, env)
        yield service, stacks, root
    finally:
        for api in apis:
            api.stop()
        service.close()


def stylize(client: httpx.Client, seed: int) -> dict:
    answer = client.post(
        "/v1/stylize",
        data={"model": BUILTIN_MODEL},
        files={"file": ("p.png", png_bytes(seed=seed), "image/png")},
        headers={"Prefer": "wait=60"},
    )
    assert answer.status_code in (200, 202), answer.text
    return answer.json()


def test_two_deployments_on_one_redis_keep_their_jobs_and_tasks_apart(two_deployments):
    _, stacks, _ = two_deployments
    with ThreadPoolExecutor(8) as pool:
        jobs = {
            name: list(pool.map(lambda seed, c=client: stylize(c, seed), range(4)))
            for name, (_, _, client, _) in stacks.items()
        }
    for name, (_, worker, client, _) in stacks.items():
        other = "beta" if name == "alpha" else "alpha"
        finals = [client.get(f"/v1/jobs/{job['id']}").json() for job in jobs[name]]
        assert [f["status"] for f in finals] == ["succeeded"] * 4, finals
        listed = {j["id"] for j in client.get("/v1/jobs").json()["items"]}
        assert listed == {job["id"] for job in jobs[name]}  # tenant "demo" of one never sees the other's
        for job in jobs[other]:
            assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
            assert job["id"] not in worker.log()  # its worker never took the other deployment's tasks
        for job in jobs[name]:
            assert job["id"] in worker.log()


def test_a_worker_on_another_storage_fails_the_job_naming_the_misconfiguration(two_deployments):
    service, stacks, root = two_deployments
    api, _, client, env = stacks["alpha"]
    # A second worker of deployment alpha, pointed at beta's storage: it takes alpha's tasks but cannot read them.
    for _, worker, _, _ in stacks.values():
        worker.stop()
    service.env = {**env, "ANIMEGAN_STORAGE_URL": (root / "storage-beta").as_uri()}
    misconfigured = service.start_worker("misconfigured", queues="stylize")
    job = stylize(client, 9)
    assert job["status"] == "failed", job
    error = job["error"]
    assert error["code"] == "storage_mismatch"
    assert "ANIMEGAN_STORAGE_URL" in error["message"] and "ANIMEGAN_NAMESPACE" in error["message"]
    assert "demo-alpha" in error["message"]
    assert str(root) not in error["message"]  # no path of the operators' machines reaches the tenant
    # The operators' log names the storage URL the worker reads; the tenant's message does not.
    assert f"{(root / 'storage-beta').as_uri()}); failing it" in misconfigured.log()
