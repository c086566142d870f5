"""ANIMEGAN_LOG_FORMAT=json on a real `animegan serve`: every line is a JSON object (uvicorn's own lines too), and
the lines of a request about a job, or that created one, carry its job_id."""

from __future__ import annotations

import json
import shutil

from tests.api.conftest import PUBLIC_MODEL, png_bytes, start_api


def test_api_logs_are_json_and_carry_the_job_id(tmp_path):
    api = start_api(tmp_path, env={"ANIMEGAN_LOG_FORMAT": "json"}, via_cli=True)
    try:
        with api.client("alice") as alice:
            form = {"data": {"model": PUBLIC_MODEL}, "files": {"file": ("p.png", png_bytes())}}
            created = alice.post("/v1/stylize", headers={"Idempotency-Key": "once"}, **form)
            job_id = created.json()["id"]
            assert alice.post("/v1/stylize", headers={"Idempotency-Key": "once"}, **form).status_code == 200
            assert alice.get(f"/v1/jobs/{job_id}").status_code == 200
            assert alice.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
            assert alice.get("/healthz").status_code == 200
    finally:
        api.process.stop()
        api.redis.close()
    lines = [line for line in api.process.log().splitlines() if line.strip()]
    records = []
    for line in lines:
        record = json.loads(line)  # fails the test, naming the line, if any line is not JSON
        assert {"time", "level", "logger", "message"} <= set(record), line
        records.append(record)
    assert any(r["logger"].startswith("uvicorn.error") for r in records), "uvicorn's own lines are missing"

    access = [r for r in records if r["logger"] == "uvicorn.access"]
    about_job = [r for r in access if f"/v1/jobs/{job_id}" in r["message"] or "/v1/stylize" in r["message"]]
    assert len(about_job) == 4, access  # two creates (one replayed), the GET and the cancel
    assert all(r.get("job_id") == job_id for r in about_job), about_job
    assert all("job_id" not in r for r in access if "/healthz" in r["message"])
    # The app's own line, logged inside the route, carries it too.
    replay = [r for r in records if "idempotent replay" in r["message"]]
    assert replay and replay[0]["job_id"] == job_id
    shutil.rmtree(tmp_path / "storage", ignore_errors=True)
