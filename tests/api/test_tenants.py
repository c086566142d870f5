"""Two tenants cannot see each other's anything: jobs, results, inputs/uploads, models (always 404, never 403)."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
from safetensors.numpy import save

from tests.api.conftest import PUBLIC_MODEL, error_of, finish_job, png_bytes


def export_bytes(arch: str = "v2") -> bytes:
    """A minimal generator export in the project's safetensors format (config in the header)."""
    tensors = {"out_layer.0.weight": np.zeros((3, 8, 1, 1), np.float32)}
    meta = {"format": "animegan-generator", "format_version": "1", "config": json.dumps({"arch": arch})}
    return save(tensors, metadata=meta)


def test_jobs_results_and_events_are_private(api, alice, bob):
    job = alice.post(
        "/v1/stylize", data={"model": PUBLIC_MODEL}, files={"file": ("p.png", png_bytes(), "image/png")}
    ).json()
    finish_job(api, job["id"], {0: b"alice's result"})
    assert alice.get(f"/v1/jobs/{job['id']}/result").content == b"alice's result"

    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/result"),
        ("GET", f"/v1/jobs/{job['id']}/results/0"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
        ("GET", f"/v1/jobs/{job['id']}/files"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
    ]:
        response = bob.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert error_of(response)["code"] == "job_not_found"
    # Bob's 404 for Alice's job reads exactly like his 404 for a job that never existed.
    never = bob.get("/v1/jobs/ffffffffffffffffffffffffffffffff")
    assert (
        error_of(never)["message"].replace("ffffffffffffffffffffffffffffffff", job["id"])
        == error_of(bob.get(f"/v1/jobs/{job['id']}"))["message"]
    )
    assert job["id"] not in [j["id"] for j in bob.get("/v1/jobs").json()["items"]]
    assert job["id"] in [j["id"] for j in alice.get("/v1/jobs").json()["items"]]


def test_uploads_are_private(alice, bob):
    image = png_bytes()
    upload = alice.post("/v1/uploads", json={"purpose": "image", "size": len(image)}).json()
    assert bob.put(f"/v1/uploads/{upload['id']}", content=image).status_code == 404
    assert alice.put(f"/v1/uploads/{upload['id']}", content=image).status_code == 200
    assert bob.get(f"/v1/uploads/{upload['id']}").status_code == 404
    stolen = bob.post("/v1/stylize", data={"model": PUBLIC_MODEL, "upload_id": upload["id"]})
    assert stolen.status_code == 404 and error_of(stolen)["code"] == "upload_not_found"
    stolen_batch = bob.post("/v1/batches", data={"model": PUBLIC_MODEL, "upload_ids": [upload["id"]]})
    assert stolen_batch.status_code == 404
    mine = alice.post("/v1/stylize", data={"model": PUBLIC_MODEL, "upload_id": upload["id"]})
    assert mine.status_code == 202


def test_models_are_private(api, alice, bob):
    created = alice.post(
        "/v1/models", data={"name": "alice-style"}, files={"file": ("g.safetensors", export_bytes())}
    )
    assert created.status_code == 201, created.text
    assert created.json()["public"] is False and created.json()["source"] == "uploaded"

    assert "alice-style" in [m["name"] for m in alice.get("/v1/models").json()["items"]]
    bob_models = [m["name"] for m in bob.get("/v1/models").json()["items"]]
    assert "alice-style" not in bob_models and PUBLIC_MODEL in bob_models
    assert bob.get("/v1/models/alice-style").status_code == 404
    assert bob.delete("/v1/models/alice-style").status_code == 404
    used = bob.post(
        "/v1/stylize", data={"model": "alice-style"}, files={"file": ("p.png", png_bytes(), "image/png")}
    )
    assert used.status_code == 404 and error_of(used)["code"] == "model_not_found"
    # Namespaces are per tenant: Bob may have his own model of the same name.
    own = bob.post(
        "/v1/models", data={"name": "alice-style"}, files={"file": ("g.safetensors", export_bytes())}
    )
    assert own.status_code == 201
    assert bob.delete("/v1/models/alice-style").status_code == 204
    assert alice.get("/v1/models/alice-style").status_code == 200
    # Public models are nobody's to delete.
    assert bob.delete(f"/v1/models/{PUBLIC_MODEL}").status_code == 404
    assert api.registry.get(PUBLIC_MODEL, None) is not None


def test_model_uploads_are_checked_without_torch(alice):
    def upload(name, data):
        return alice.post("/v1/models", data={"name": name}, files={"file": ("w.bin", data)})

    taken = upload(PUBLIC_MODEL, export_bytes())
    assert taken.status_code == 409 and PUBLIC_MODEL in error_of(taken)["message"]
    short = upload("short", b"\x01\x02")
    assert short.status_code == 415 and error_of(short)["code"] == "not_a_model"
    plain = upload("plain", save({"w": np.zeros(2, np.float32)}))
    assert plain.status_code == 422 and error_of(plain)["code"] == "not_an_animegan_export"
    data = bytearray(export_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    truncated = upload("cut", bytes(data[:-4]))
    assert truncated.status_code == 422 and "tensors cover" in error_of(truncated)["message"]
    garbage = upload("garbage", struct.pack("<Q", 4) + b"{no}" + bytes(data[8 + header_len :]))
    assert garbage.status_code == 415
    wrong_arch = upload("v9", export_bytes(arch="v9"))
    assert wrong_arch.status_code == 422 and "arch" in error_of(wrong_arch)["message"]


def test_port_pt_files_are_checked_by_their_key_names(alice, api):
    import io

    import torch

    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator

    state = build_generator(GeneratorConfig(arch="v2", base_channels=8)).state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    ok = alice.post("/v1/models", data={"name": "port-style"}, files={"file": ("paprika.pt", buf.getvalue())})
    assert ok.status_code == 201, ok.text
    assert ok.json()["config"]["arch"] == "v2"
    assert api.registry.get("port-style", "alice").key.endswith("/port-style/generator.pt")

    partial = io.BytesIO()
    torch.save({k: v for i, (k, v) in enumerate(state.items()) if i % 2}, partial)
    bad = alice.post("/v1/models", data={"name": "half"}, files={"file": ("half.pt", partial.getvalue())})
    assert bad.status_code == 422 and "expected 77" in error_of(bad)["message"]


def pt_bomb(inflated_bytes: int) -> bytes:
    """A torch.save-shaped zip whose archive/data.pkl inflates from well under 1 MB to `inflated_bytes` zeros."""
    buf = io.BytesIO()
    block = bytes(1 << 20)
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("archive/data.pkl", "w", force_zip64=True) as member,
    ):
        for _ in range(inflated_bytes >> 20):
            member.write(block)
    return buf.getvalue()


def test_a_pt_zip_bomb_is_refused_without_inflating_it(alice, api):
    bomb = pt_bomb(256 << 20)
    assert len(bomb) < 1 << 20
    before = api.process.peak_rss_bytes()
    response = alice.post("/v1/models", data={"name": "bomb"}, files={"file": ("bomb.pt", bomb)})
    grown = api.process.peak_rss_bytes() - before
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "decompression_bomb" and "bomb.pt" in error["message"]
    # Inflating data.pkl would have held 256 MiB at once; the upload itself is under 1 MB.
    assert grown < 64 << 20, f"the API's peak RSS grew by {grown >> 20} MiB"


def test_job_listing_filters_and_pages(api):
    api.key("erin")
    with api.client("erin") as erin:
        ids = [
            erin.post(
                "/v1/stylize", data={"model": PUBLIC_MODEL}, files={"file": ("p.png", png_bytes())}
            ).json()["id"]
            for _ in range(3)
        ]
        erin.post(f"/v1/jobs/{ids[0]}/cancel")
        first = erin.get("/v1/jobs", params={"limit": 2}).json()
        assert [j["id"] for j in first["items"]] == ids[::-1][:2] and first["next_cursor"]
        second = erin.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert [j["id"] for j in second["items"]] == [ids[0]] and second["next_cursor"] is None
        canceled = erin.get("/v1/jobs", params={"status": "canceled"}).json()["items"]
        assert [j["id"] for j in canceled] == [ids[0]]
        assert erin.get("/v1/jobs", params={"kind": "batch"}).json()["items"] == []
