"""Paired and teacher training through the real API and a real worker that has no VGG19 file: the jobs run,
register their models for the owner, and bad pairs are refused at the API with every problem named."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import numpy as np
import pytest
from PIL import Image

from api.auth import create_api_key
from tests.api.conftest import ApiProcess
from tests.e2e.conftest import BUILTIN_MODEL, OWNER, make_service

pytestmark = pytest.mark.e2e


def image_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def dataset(sizes: dict[str, tuple[int, int]]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Photos (JPEG) and their targets (PNG, a colour transform of the photo), as (name -> bytes) dicts."""
    rng = np.random.default_rng(0)
    photos, targets = {}, {}
    for name, (w, h) in sizes.items():
        photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        photos[f"photos/{name}.jpg"] = image_bytes(photo, "JPEG")
        targets[f"{name}.png"] = image_bytes(255 - photo)
    return photos, targets


HYPER = {"image_size": 32, "batch_size": 2, "base_channels": 8, "max_total_steps": 4, "init_epochs": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("paired")
    service = make_service(root, "local", request)
    service.env.pop("ANIMEGAN_VGG_WEIGHTS")  # these modes must train without one
    api = ApiProcess(service.env, root / "api.log").wait_ready()
    try:
        service.start_worker("paired", queues="train,stylize")
        client = httpx.Client(
            base_url=api.url,
            headers={"Authorization": f"Bearer {create_api_key(service.redis, OWNER)}"},
            timeout=60,
        )
        yield service, client
    finally:
        api.stop()
        service.close()


def post_training(client, mode: str, name: str, files: dict[str, bytes], **fields):
    form = {"name": name, "mode": mode, "hyperparameters": json.dumps(HYPER), **fields}
    parts = {part: (f"{part}.zip", data, "application/zip") for part, data in files.items()}
    return client.post("/v1/trainings", data=form, files=parts)


def test_paired_job_trains_without_vgg_and_registers_a_usable_model(stack):
    service, client = stack
    photos, targets = dataset({"a": (48, 40), "b": (40, 48), "c": (300, 270)})
    # c's target has the reference size of its 300x270 photo, as AnimeGAN's test.py writes outputs.
    targets["c.png"] = image_bytes(np.zeros((256, 288, 3), np.uint8))
    response = post_training(
        client, "paired", "my-pairs", {"photos": zip_of(photos), "targets": zip_of(targets)}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    record = service.wait_status(job_id, {"succeeded", "failed"}, timeout=180)
    assert str(record.status) == "succeeded", record.error
    assert record.progress["step"] == 4 and "g_pixel" in record.progress["losses"]
    models = {m["name"]: m for m in client.get("/v1/models").json()["items"]}
    assert models["my-pairs"]["source"] == "trained"
    # The new model serves a stylize job at once.
    stylized = client.post(
        "/v1/stylize",
        data={"model": "my-pairs"},
        files={"file": ("a.jpg", photos["photos/a.jpg"], "image/jpeg")},
    )
    assert stylized.status_code == 202, stylized.text
    done = service.wait_status(stylized.json()["id"], {"succeeded", "failed"}, timeout=60)
    assert str(done.status) == "succeeded", done.error


def test_teacher_job_distills_a_visible_model(stack):
    service, client = stack
    photos, _ = dataset({"a": (48, 40), "b": (64, 48)})
    response = post_training(
        client, "distill", "my-student", {"photos": zip_of(photos)}, teacher=BUILTIN_MODEL
    )
    assert response.status_code == 202, response.text
    record = service.wait_status(response.json()["id"], {"succeeded", "failed"}, timeout=180)
    assert str(record.status) == "succeeded", record.error
    assert record.params["teacher"] == BUILTIN_MODEL
    assert "my-student" in {m["name"] for m in client.get("/v1/models").json()["items"]}


def test_bad_pairs_and_mode_mismatches_get_a_clear_4xx(stack):
    _, client = stack
    photos, targets = dataset({"a": (48, 40), "b": (40, 48), "c": (64, 64)})
    del targets["b.png"]
    targets["extra.png"] = targets["a.png"]
    targets["c.png"] = image_bytes(np.zeros((30, 30, 3), np.uint8))
    response = post_training(client, "paired", "bad", {"photos": zip_of(photos), "targets": zip_of(targets)})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unmatched_pairs"
    for named in ("photo b.jpg has no target", "target extra.png has no photo", "c.png is 30x30"):
        assert named in error["message"]

    missing = post_training(client, "paired", "bad", {"photos": zip_of(photos)})
    assert missing.status_code == 422 and "targets" in missing.json()["error"]["message"]
    styles_in_paired = post_training(
        client,
        "paired",
        "bad",
        {"photos": zip_of(photos), "targets": zip_of(targets), "styles": zip_of(targets)},
    )
    assert styles_in_paired.status_code == 422
    assert "styles does not belong" in styles_in_paired.json()["error"]["message"]
    no_teacher = post_training(client, "distill", "bad", {"photos": zip_of(photos)})
    assert no_teacher.status_code == 422 and "teacher is missing" in no_teacher.json()["error"]["message"]
    unknown = post_training(client, "distill", "bad", {"photos": zip_of(photos)}, teacher="nobody")
    assert unknown.status_code == 404 and "teacher" in unknown.json()["error"]["message"]


def test_unpaired_job_without_vgg_fails_naming_the_file_and_the_modes_that_need_none(stack):
    service, client = stack
    photos, targets = dataset({"a": (48, 40), "b": (40, 48)})
    response = post_training(
        client, "unpaired", "needs-vgg", {"photos": zip_of(photos), "styles": zip_of(targets)}
    )
    assert response.status_code == 202, response.text
    record = service.wait_status(response.json()["id"], {"succeeded", "failed"}, timeout=60)
    assert record.error["code"] == "vgg_weights_missing"
    assert "ANIMEGAN_VGG_WEIGHTS" in record.error["message"] and "paired" in record.error["message"]
