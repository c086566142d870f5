"""Idempotency-Key on creates: the same key and body return the same job; another body is a 409."""

from __future__ import annotations

import io
import json
import zipfile

from tests.api.conftest import PUBLIC_MODEL, error_of, png_bytes


def stylize(client, image: bytes, key: str, **form):
    return client.post(
        "/v1/stylize",
        data={"model": PUBLIC_MODEL, **form},
        files={"file": ("p.png", image, "image/png")},
        headers={"Idempotency-Key": key},
    )


def test_same_key_same_body_returns_the_same_job(api, alice):
    image = png_bytes((50, 30))
    first = stylize(alice, image, "retry-1")
    assert first.status_code == 202
    queued = api.redis.llen("stylize")
    again = stylize(alice, image, "retry-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    # The replay enqueued nothing and created no second record.
    assert api.redis.llen("stylize") == queued
    assert [j["id"] for j in alice.get("/v1/jobs").json()["items"]].count(first.json()["id"]) == 1


def test_same_key_different_body_is_409(alice):
    assert stylize(alice, png_bytes((50, 30)), "retry-2").status_code == 202
    other_image = stylize(alice, png_bytes((50, 31)), "retry-2")
    assert other_image.status_code == 409 and error_of(other_image)["code"] == "idempotency_conflict"
    other_option = stylize(alice, png_bytes((50, 30)), "retry-2", format="webp")
    assert other_option.status_code == 409 and "retry-2" in error_of(other_option)["message"]


def test_keys_are_per_tenant(alice, bob):
    image = png_bytes((20, 20))
    a = stylize(alice, image, "shared-key").json()
    b = stylize(bob, image, "shared-key").json()
    assert a["id"] != b["id"]


def test_batch_training_and_upload_creates_are_idempotent(alice):
    files = [("files", (f"{i}.png", png_bytes((20 + i, 20)), "image/png")) for i in range(2)]
    headers = {"Idempotency-Key": "batch-1"}
    first = alice.post("/v1/batches", data={"model": PUBLIC_MODEL}, files=files, headers=headers)
    again = alice.post("/v1/batches", data={"model": PUBLIC_MODEL}, files=files, headers=headers)
    assert first.status_code == 202 and again.status_code == 200 and first.json()["id"] == again.json()["id"]
    fewer = alice.post("/v1/batches", data={"model": PUBLIC_MODEL}, files=files[:1], headers=headers)
    assert fewer.status_code == 409

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("p.png", png_bytes())
    dataset = {"photos": ("p.zip", buf.getvalue()), "styles": ("s.zip", buf.getvalue())}
    form = {"name": "idem-style", "hyperparameters": json.dumps({"epochs": 1})}
    headers = {"Idempotency-Key": "train-1"}
    t1 = alice.post("/v1/trainings", data=form, files=dataset, headers=headers)
    t2 = alice.post("/v1/trainings", data=form, files=dataset, headers=headers)
    assert t1.status_code == 202 and t2.status_code == 200 and t1.json()["id"] == t2.json()["id"]
    changed = alice.post(
        "/v1/trainings", data={**form, "hyperparameters": "{}"}, files=dataset, headers=headers
    )
    assert changed.status_code == 409

    body = {"purpose": "image", "size": 10}
    u1 = alice.post("/v1/uploads", json=body, headers={"Idempotency-Key": "up-1"}).json()
    u2 = alice.post("/v1/uploads", json=body, headers={"Idempotency-Key": "up-1"}).json()
    assert u1["id"] == u2["id"]
    assert (
        alice.post("/v1/uploads", json={**body, "size": 11}, headers={"Idempotency-Key": "up-1"}).status_code
        == 409
    )


def test_model_upload_is_idempotent(alice):
    from tests.api.test_tenants import export_bytes

    def upload(data, key):
        files = {"file": ("g.safetensors", data)}
        return alice.post(
            "/v1/models", data={"name": "idem-model"}, files=files, headers={"Idempotency-Key": key}
        )

    weights = export_bytes()  # one blob: safetensors orders its header metadata differently on each save
    first = upload(weights, "model-1")
    again = upload(weights, "model-1")
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.json() == first.json()
    assert upload(export_bytes(arch="v1"), "model-1").status_code == 409
    # Without the key, a second upload of the name is refused: names are unique per tenant.
    taken = alice.post(
        "/v1/models", data={"name": "idem-model"}, files={"file": ("g.safetensors", export_bytes())}
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "model_exists"
