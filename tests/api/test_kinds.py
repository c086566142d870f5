"""The jobs routes dispatch through the registry of kinds: what each kind offers (result file, item results,
files) decides the links and answers, the `kind` filter takes exactly the registry's names, and a record of a
kind this API does not know (written by a newer API during a rolling deploy) is still listed."""

from __future__ import annotations

import pytest

from tests.api.conftest import error_of
from workers import redis_keys
from workers.contracts.registry import KINDS

PARAMS = {
    "stylize": {"model": "tiny"},
    "batch": {"model": "tiny", "filenames": ["a.png", "b.png"]},
    "video": {"model": "tiny"},
    "train": {"name": "x"},
    "export": {"model": "tiny"},
}


@pytest.mark.parametrize(
    ("kind", "result", "files"),
    [
        ("stylize", True, False),
        ("batch", True, False),
        ("video", True, True),
        ("train", False, True),
        ("export", True, False),
    ],
)
def test_links_follow_what_the_kind_offers(alice, api, kind, result, files):
    record, _ = api.jobs.create(kind, "alice", PARAMS[kind], total=2)
    links = alice.get(f"/v1/jobs/{record.id}").json()["links"]
    assert (links["result"] is not None, links["files"] is not None) == (result, files)
    assert (KINDS[kind].result_file is not None, bool(KINDS[kind].files)) == (result, files)


def test_answers_of_a_kind_without_a_result_file_or_items(alice, api):
    record, _ = api.jobs.create("train", "alice", PARAMS["train"], total=0)
    no_file = alice.get(f"/v1/jobs/{record.id}/result")
    assert no_file.status_code == 409 and error_of(no_file)["code"] == "no_result_file"
    assert "training run" in error_of(no_file)["message"]
    no_item = alice.get(f"/v1/jobs/{record.id}/results/0")
    assert no_item.status_code == 404 and error_of(no_item)["code"] == "result_not_found"
    folders = alice.get(f"/v1/jobs/{record.id}/files/segments/000000.mp4")  # a video's folder, not a run's
    assert folders.status_code == 404


def test_the_kind_filter_takes_the_registry_names(alice, api):
    made = {kind: api.jobs.create(kind, "alice", PARAMS[kind], total=1)[0].id for kind in KINDS}
    for kind, job_id in made.items():
        listed = alice.get("/v1/jobs", params={"kind": kind, "limit": 1000}).json()["items"]
        assert job_id in {job["id"] for job in listed} and {job["kind"] for job in listed} == {kind}
    bad = alice.get("/v1/jobs", params={"kind": "bogus"})
    assert bad.status_code == 422 and error_of(bad)["code"] == "invalid_parameters"
    assert "kind" in error_of(bad)["message"] and "stylize" in error_of(bad)["message"]
    schema = alice.get("/openapi.json").json()["paths"]["/v1/jobs"]["get"]["parameters"]
    (kind_param,) = [p for p in schema if p["name"] == "kind"]
    assert set(kind_param["schema"]["enum"]) == set(KINDS)  # documented for clients, from the registry


def test_a_record_of_an_unknown_kind_is_listed_and_refused_clearly(alice, api):
    record, _ = api.jobs.create("stylize", "alice", PARAMS["stylize"], total=1)
    api.redis.hset(redis_keys.job(record.id), "kind", "upscale")  # as a newer API would have written it
    job = alice.get(f"/v1/jobs/{record.id}").json()
    assert job["kind"] == "upscale" and job["links"]["result"] is None and job["links"]["files"] is None
    assert record.id in {j["id"] for j in alice.get("/v1/jobs", params={"limit": 1000}).json()["items"]}
    result = alice.get(f"/v1/jobs/{record.id}/result")
    assert result.status_code == 409 and error_of(result)["code"] == "unknown_kind"
