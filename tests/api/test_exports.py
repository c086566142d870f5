"""POST /v1/models/{name}/exports over real HTTP: the queued export job, its checks, and its result download
(the worker is played by finish_job; tests/e2e/test_worker_onnx.py runs a real one)."""

from __future__ import annotations

import pytest

from tests.api.conftest import PUBLIC_MODEL, error_of, finish_job


def test_an_export_is_queued_and_its_result_is_the_onnx_file(alice, bob, api):
    created = alice.post(f"/v1/models/{PUBLIC_MODEL}/exports", data={"opset": "18"})
    assert created.status_code == 202, created.text
    job = created.json()
    assert (job["kind"], job["status"], job["params"]) == (
        "export",
        "queued",
        {"model": PUBLIC_MODEL, "format": "onnx", "opset": 18},
    )
    assert created.headers["Location"] == job["links"]["self"] and job["links"]["result"].endswith("/result")
    early = alice.get(f"/v1/jobs/{job['id']}/result")
    assert early.status_code == 409 and error_of(early)["code"] == "result_not_ready"
    finish_job(api, job["id"], {0: b"onnx-bytes-stand-in"}, ext="onnx")
    result = alice.get(f"/v1/jobs/{job['id']}/result")
    assert result.status_code == 200 and result.content == b"onnx-bytes-stand-in"
    assert result.headers["content-disposition"] == f'attachment; filename="{PUBLIC_MODEL}.onnx"'
    assert result.headers["content-type"] == "application/octet-stream"
    assert bob.get(f"/v1/jobs/{job['id']}").status_code == 404  # another tenant's job is not there
    listed = alice.get("/v1/jobs", params={"kind": "export"}).json()["items"]
    assert [j["id"] for j in listed] == [job["id"]]


def test_an_empty_body_takes_the_defaults_and_a_key_replays(alice):
    first = alice.post(f"/v1/models/{PUBLIC_MODEL}/exports", headers={"Idempotency-Key": "exp-1"})
    assert first.status_code == 202 and first.json()["params"]["opset"] == 17
    again = alice.post(f"/v1/models/{PUBLIC_MODEL}/exports", headers={"Idempotency-Key": "exp-1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = alice.post(
        f"/v1/models/{PUBLIC_MODEL}/exports", data={"opset": "19"}, headers={"Idempotency-Key": "exp-1"}
    )
    assert other.status_code == 409


@pytest.mark.parametrize(
    ("model", "data", "status", "code"),
    [
        ("no-such-model", {}, 404, "model_not_found"),
        (PUBLIC_MODEL, {"opset": "12"}, 422, "invalid_parameters"),
        (PUBLIC_MODEL, {"opset": "27"}, 422, "invalid_parameters"),
        (PUBLIC_MODEL, {"format": "tflite"}, 422, "invalid_parameters"),
        (PUBLIC_MODEL, {"colour": "red"}, 422, "invalid_parameters"),
    ],
)
def test_refused_exports_name_why(alice, model, data, status, code):
    answer = alice.post(f"/v1/models/{model}/exports", data=data)
    assert answer.status_code == status, answer.text
    assert error_of(answer)["code"] == code


def test_an_onnx_model_is_not_exported_again(alice, api):
    api.registry.register("a-graph", "alice", "models/users/alice/a-graph/generator.onnx", {"arch": "onnx"},
                          source="uploaded")  # fmt: skip
    answer = alice.post("/v1/models/a-graph/exports")
    assert answer.status_code == 422 and error_of(answer)["code"] == "already_onnx"
