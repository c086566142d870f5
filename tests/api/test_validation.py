"""Every bad input of the HTTP API is answered over real HTTP with its status code and a message naming it."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import httpx
import pytest

from tests.api.conftest import PUBLIC_MODEL, error_of, png_bytes


def stylize(client: httpx.Client, image: bytes | None = b"", name: str = "photo.png", **form: object):
    data = {"model": PUBLIC_MODEL, **form}
    files = (
        {"file": (name, image if image != b"" else png_bytes(), "image/png")} if image is not None else None
    )
    return client.post("/v1/stylize", data=data, files=files)


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels, followed by a tiny (truncated) IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def noisy_jpeg(size: tuple[int, int] = (256, 256)) -> bytes:
    """A JPEG whose scan data is most of the file (random pixels), so a cut keeps the header whole."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_accepted_stylize_returns_202_with_location(alice, api):
    response = stylize(alice)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == job["links"]["self"] == f"{api.url}/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["kind"] == "stylize"
    assert job["params"]["model"] == PUBLIC_MODEL and job["progress"]["total"] == 1
    # The input is in storage under the job's id, and the task is on the stylize queue.
    assert (api.storage_root / "inputs" / job["id"] / "000000.png").is_file()
    assert api.redis.llen("stylize") >= 1


def test_missing_or_unknown_key_is_401(api):
    no_key = httpx.post(f"{api.url}/v1/stylize", data={"model": PUBLIC_MODEL})
    assert no_key.status_code == 401 and error_of(no_key)["code"] == "unauthenticated"
    bad_key = httpx.get(f"{api.url}/v1/jobs", headers={"Authorization": "Bearer agk_not-a-real-key"})
    assert bad_key.status_code == 401 and error_of(bad_key)["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    ("image", "name", "status", "code", "named"),
    [
        (b"\0" * 300_001, "huge.png", 413, "upload_too_large", "huge.png"),
        (b"this is text, not pixels", "notes.png", 415, "not_an_image", "notes.png"),
        (png_bytes(fmt="GIF"), "anim.gif", 415, "unsupported_format", "GIF"),
        (png_bytes((64, 64))[:60], "cut.png", 415, "corrupt_image", "cut.png"),
        (png_bytes((1100, 1000)), "big.png", 422, "too_many_pixels", "1100x1000"),
        # Above twice the limit, where Pillow's own check used to answer with its number (2000000) instead.
        (png_bytes((1500, 1500)), "bigger.png", 422, "too_many_pixels", "limit of 1000000"),
        # The header and most scan data are intact: only decoding every pixel finds the cut.
        (noisy_jpeg()[: len(noisy_jpeg()) * 2 // 3], "cut.jpg", 415, "corrupt_image", "cut.jpg"),
        (bomb_png(30_000, 30_000), "bomb.png", 422, "decompression_bomb", "bomb.png"),
    ],
)
def test_bad_images_are_refused_with_status_and_name(alice, image, name, status, code, named):
    response = stylize(alice, image, name=name)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    assert named in error["message"]


def test_whole_request_above_body_limit_is_413_before_reading(alice):
    response = alice.post(
        "/v1/stylize", content=b"x" * 3_000_001, headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_unknown_model_is_404(alice):
    response = stylize(alice, model="no-such-style")
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found" and "no-such-style" in error["message"]


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"size_mode": "huge"}, "size_mode"),
        ({"size_mode": "max_side"}, "max_side"),
        ({"max_side": "512"}, "max_side"),
        ({"quality": "500"}, "quality"),
        ({"format": "gif"}, "format"),
        ({"fromat": "png"}, "fromat"),
    ],
)
def test_malformed_parameters_are_422_naming_the_field(alice, form, field):
    response = stylize(alice, **form)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "invalid_parameters"
    assert field in error["message"]
    # Clients (the web page) mark the offending input from this list; an empty name marks nothing.
    assert response.json()["error"]["fields"] == [field]


def test_neither_or_both_image_sources_is_422(alice):
    none = stylize(alice, None)
    assert none.status_code == 422 and "upload_id" in error_of(none)["message"]
    both = stylize(alice, upload_id="abc")
    assert both.status_code == 422 and "upload_id" in error_of(both)["message"]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/hook", "invalid_webhook_url"),
        ("http://10.1.2.3/hook", "webhook_url_not_allowed"),
        ("http://127.0.0.1:9/hook", "webhook_url_not_allowed"),
        ("http://169.254.169.254/latest/meta-data", "webhook_url_not_allowed"),
        # The worker refuses these too: one rule (workers.webhook_targets) decides for both.
        ("http://100.64.0.1/hook", "webhook_url_not_allowed"),
        ("http://[::ffff:10.0.0.1]/hook", "webhook_url_not_allowed"),
    ],
)
def test_webhook_urls_to_private_destinations_are_refused(alice, url, code):
    response = stylize(alice, webhook_url=url)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == code and url.split("/")[2].split(":")[0] in error["message"]


def test_batch_from_files_and_archive(alice, api):
    # OS metadata (dot files, __MACOSX/) is not content and is skipped; any other non-image is refused below.
    archive = zip_of({"a/one.png": png_bytes(), "two.jpg": png_bytes(fmt="JPEG"), ".DS_Store": b"meta"})
    files = [
        ("files", ("x.png", png_bytes(), "image/png")),
        ("archive", ("set.zip", archive, "application/zip")),
    ]
    response = alice.post("/v1/batches", data={"model": PUBLIC_MODEL, "format": "jpeg"}, files=files)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "batch" and job["progress"]["total"] == 3
    assert job["params"]["filenames"] == ["x.png", "one.png", "two.jpg"]
    stored = sorted(p.name for p in (api.storage_root / "inputs" / job["id"]).iterdir())
    assert stored == ["000000.png", "000001.png", "000002.jpg"]


def test_batch_archive_with_a_non_image_entry_is_refused_naming_it(alice):
    # It used to be dropped without a word: the job said total 1, errors [], for a zip of two files.
    archive = zip_of({"one.png": png_bytes(), "notes/readme.txt": b"not an image"})
    response = alice.post(
        "/v1/batches", data={"model": PUBLIC_MODEL}, files={"archive": ("set.zip", archive)}
    )
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "non_image_entries" and "notes/readme.txt" in error["message"]


def test_batch_limits(alice):
    too_many = [("files", (f"{i}.png", png_bytes(), "image/png")) for i in range(7)]
    response = alice.post("/v1/batches", data={"model": PUBLIC_MODEL}, files=too_many)
    assert response.status_code == 422 and error_of(response)["code"] == "too_many_images"
    assert "6" in error_of(response)["message"]

    escape = zip_of({"../../etc/evil.png": png_bytes()})
    response = alice.post("/v1/batches", data={"model": PUBLIC_MODEL}, files={"archive": ("e.zip", escape)})
    assert response.status_code == 422 and error_of(response)["code"] == "unsafe_archive"

    response = alice.post(
        "/v1/batches", data={"model": PUBLIC_MODEL}, files={"archive": ("n.zip", b"not a zip")}
    )
    assert response.status_code == 415 and error_of(response)["code"] == "not_a_zip"

    response = alice.post("/v1/batches", data={"model": PUBLIC_MODEL})
    assert response.status_code == 422 and "at least one image" in error_of(response)["message"]

    bad_member = zip_of({"ok.png": png_bytes(), "broken.png": b"nope"})
    response = alice.post(
        "/v1/batches", data={"model": PUBLIC_MODEL}, files={"archive": ("b.zip", bad_member)}
    )
    assert response.status_code == 415 and "broken.png" in error_of(response)["message"]


def test_a_damaged_archive_entry_is_422_naming_it(alice):
    archive = bytearray(zip_of({"a.png": png_bytes(), "b.png": png_bytes()}))
    # Stored entries: flip the last data byte of b.png, so its CRC-32 no longer matches.
    with zipfile.ZipFile(io.BytesIO(bytes(archive))) as zf:
        info = zf.getinfo("b.png")
    archive[info.header_offset + 30 + len("b.png") + len(info.extra) + info.compress_size - 1] ^= 0xFF
    response = alice.post(
        "/v1/batches", data={"model": PUBLIC_MODEL}, files={"archive": ("b.zip", bytes(archive))}
    )
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "corrupt_archive" and "b.png" in error["message"]


def training(client: httpx.Client, photos: bytes | None, styles: bytes | None, **form: object):
    files = {}
    if photos is not None:
        files["photos"] = ("photos.zip", photos, "application/zip")
    if styles is not None:
        files["styles"] = ("styles.zip", styles, "application/zip")
    return client.post("/v1/trainings", data={"name": "my-style", **form}, files=files)


def test_training_job_is_validated_and_stores_its_dataset(alice, api):
    photos = zip_of({f"p{i}.png": png_bytes() for i in range(3)})
    styles = zip_of({f"s{i}.png": png_bytes() for i in range(2)})
    hyper = json.dumps(
        {"preset": "v2-paprika", "image_size": 64, "epochs": 2, "base_channels": 8, "max_total_steps": 5}
    )
    response = training(alice, photos, styles, hyperparameters=hyper)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "train" and job["links"]["files"].endswith(f"/v1/jobs/{job['id']}/files")
    params = job["params"]
    assert params["hyperparameters"]["preset"] == "v2-paprika" and params["name"] == "my-style"
    assert params["hyperparameters"]["max_total_steps"] == 5
    stored = {part: api.store.get_bytes(archive["key"]) for part, archive in params["datasets"].items()}
    assert stored == {"photos": photos, "styles": styles}
    assert api.redis.llen("train") >= 1


@pytest.mark.parametrize(
    ("hyper", "form", "status", "named"),
    [
        ({"epochs": 0}, {}, 422, "hyperparameters.epochs"),
        ({"image_size": 100}, {}, 422, "hyperparameters.image_size"),
        ({"preset": "v3"}, {}, 422, "hyperparameters.preset"),
        ({"g_lr": -1}, {}, 422, "hyperparameters.g_lr"),
        ({"losses": {"colour": 1}}, {}, 422, "hyperparameters.losses.colour"),
        ({}, {"name": "Bad Name!"}, 422, "name"),
        ({}, {"name": PUBLIC_MODEL}, 409, PUBLIC_MODEL),
        ({}, {"fine_tune_from": "nothing-here"}, 404, "fine_tune_from"),
    ],
)
def test_bad_training_requests(alice, hyper, form, status, named):
    photos = zip_of({"p.png": png_bytes()})
    response = training(alice, photos, photos, hyperparameters=json.dumps(hyper), **form)
    assert response.status_code == status, response.text
    assert named in error_of(response)["message"]


def test_training_datasets_must_be_zips_of_images(alice):
    photos = zip_of({"p.png": png_bytes()})
    missing = training(alice, photos, None)
    assert missing.status_code == 422 and "styles" in error_of(missing)["message"]
    not_zip = training(alice, photos, b"GIF89a....")
    assert not_zip.status_code == 415 and "styles" in error_of(not_zip)["message"]
    empty = training(alice, photos, zip_of({"notes.txt": b"hi"}))
    assert empty.status_code == 422 and error_of(empty)["code"] == "empty_archive"
    bad_json = training(alice, photos, photos, hyperparameters="{epochs: 3")
    assert bad_json.status_code == 422 and "hyperparameters" in error_of(bad_json)["message"]
    # Counted from the zip's directory: the worker would refuse it after extracting every entry.
    crowded = training(alice, photos, zip_of({f"s{i}.png": b"" for i in range(9)}))
    assert crowded.status_code == 422, crowded.text
    error = error_of(crowded)
    assert error["code"] == "too_many_images" and "9 images" in error["message"] and "8" in error["message"]


def test_a_training_no_gpu_could_hold_is_refused_with_its_memory_estimate(alice, api):
    """image_size 1024, batch_size 64 and base_channels 128 each pass their own bound; together (paired) they
    were accepted and the worker's first allocation asked for 34 GB (issue 20). Refused before any job exists."""
    photos = zip_of({"p.png": png_bytes()})
    hyper = json.dumps({"image_size": 1024, "batch_size": 64, "base_channels": 128})
    files = {"photos": ("p.zip", photos, "application/zip"), "targets": ("t.zip", photos, "application/zip")}
    before = api.redis.llen("train")
    response = alice.post(
        "/v1/trainings", data={"name": "huge", "mode": "paired", "hyperparameters": hyper}, files=files
    )
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "training_too_large" and "GiB per step" in error["message"], error
    assert "lower batch_size" in error["message"] and api.redis.llen("train") == before
    # The same run at the preset's batch and width fits.
    modest = json.dumps({"image_size": 256, "max_total_steps": 2})
    ok = training(alice, photos, photos, hyperparameters=modest, name="modest")
    assert ok.status_code == 202, ok.text


def test_direct_upload_local_backend(alice, api):
    image = png_bytes((40, 40))
    created = alice.post("/v1/uploads", json={"purpose": "image", "size": len(image), "filename": "p.png"})
    assert created.status_code == 201, created.text
    upload = created.json()
    assert upload["url"] == f"{api.url}/v1/uploads/{upload['id']}" and not upload["received"]
    early = stylize(alice, None, upload_id=upload["id"])
    assert early.status_code == 409 and error_of(early)["code"] == "upload_incomplete"

    too_much = alice.put(f"/v1/uploads/{upload['id']}", content=image + b"extra")
    assert too_much.status_code == 413
    too_little = alice.put(f"/v1/uploads/{upload['id']}", content=image[:-1])
    assert too_little.status_code == 422 and error_of(too_little)["code"] == "upload_size_mismatch"
    put = alice.put(f"/v1/uploads/{upload['id']}", content=image)
    assert put.status_code == 200 and put.json()["received"]

    job = stylize(alice, None, upload_id=upload["id"])
    assert job.status_code == 202, job.text
    # The job reads the upload where it lies: nothing is copied under the job's inputs.
    assert not (api.storage_root / "inputs" / job.json()["id"]).exists()
    assert (api.storage_root / "uploads" / "alice" / upload["id"]).read_bytes() == image


def test_upload_limits_and_purposes(alice):
    big = alice.post("/v1/uploads", json={"purpose": "image", "size": 300_001})
    assert big.status_code == 413 and "300001" in error_of(big)["message"]
    bad = alice.post("/v1/uploads", json={"purpose": "audio", "size": 10})
    assert bad.status_code == 422 and "purpose" in error_of(bad)["message"]
    dataset = alice.post("/v1/uploads", json={"purpose": "dataset", "size": 3}).json()
    alice.put(f"/v1/uploads/{dataset['id']}", content=b"abc")
    wrong = stylize(alice, None, upload_id=dataset["id"])
    assert wrong.status_code == 422 and error_of(wrong)["code"] == "wrong_upload_purpose"
    unknown = stylize(alice, None, upload_id="0123456789abcdef")
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "upload_not_found"


def test_job_listing_parameters(alice):
    bad_status = alice.get("/v1/jobs", params={"status": "sleeping"})
    assert bad_status.status_code == 422 and "status" in error_of(bad_status)["message"]
    bad_cursor = alice.get("/v1/jobs", params={"cursor": "nonsense"})
    assert bad_cursor.status_code == 422 and error_of(bad_cursor)["code"] == "invalid_cursor"
    missing = alice.get("/v1/jobs/0123456789abcdef0123456789abcdef")
    assert missing.status_code == 404 and error_of(missing)["code"] == "job_not_found"
    route = alice.get("/v1/nothing-here")
    assert route.status_code == 404 and error_of(route)["code"] == "not_found"


def test_a_training_name_is_reserved_at_submit_until_its_job_ends(api, alice, bob):
    """Two trainings of one name: the second gets 409 at once (it used to train to the end and then fail
    model_exists). The reservation is the tenant's, and a job that failed, was canceled or expired gives it up."""
    photos = zip_of({"p.png": png_bytes()})
    styles = zip_of({"s.png": png_bytes()})
    first = training(alice, photos, styles, name="reserved-style")
    assert first.status_code == 202, first.text
    second = training(alice, photos, styles, name="reserved-style")
    assert second.status_code == 409, second.text
    error = error_of(second)
    assert error["code"] == "model_exists" and first.json()["id"] in error["message"]
    assert training(bob, photos, styles, name="reserved-style").status_code == 202  # another tenant's name

    api.jobs.fail(first.json()["id"], "internal_error", "injected")
    after_failure = training(alice, photos, styles, name="reserved-style")
    assert after_failure.status_code == 202, after_failure.text
    assert alice.post(f"/v1/jobs/{after_failure.json()['id']}/cancel").status_code in (200, 202)
    after_cancel = training(alice, photos, styles, name="reserved-style")
    assert after_cancel.status_code == 202, after_cancel.text
    api.redis.delete(api.jobs.job_key(after_cancel.json()["id"]))  # as when its record expires
    assert training(alice, photos, styles, name="reserved-style").status_code == 202


def test_more_than_1000_file_parts_get_a_422_naming_the_limit(alice):
    """The multipart parser's own limit (README, HTTP API: one request carries at most 1,000 `files` parts;
    larger batches go as one archive or upload_ids), answered in the service's error shape."""
    image = png_bytes((8, 8))
    files = [("files", (f"{i}.png", image, "image/png")) for i in range(1001)]
    response = alice.post("/v1/batches", data={"model": PUBLIC_MODEL}, files=files)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "invalid_parameters" and "Maximum number of files is 1000" in error["message"]


def test_hostile_dataset_zips_are_refused_at_submit_naming_the_problem(alice):
    """POST /v1/trainings runs the one zip checker on each part (data included), as the batch route does: what
    the worker would refuse after the job was queued is a 4xx at once."""
    from tests.workers.test_archives import _hostile, _too_many_entries_zip

    styles = zip_of({"s.png": png_bytes()})
    cases = [
        (_hostile("lying_crc"), "corrupt_archive", "'b.png' is damaged"),
        (_hostile("lying_size_small"), "corrupt_archive", "'b.png' is damaged"),
        (_hostile("symlink"), "unsafe_archive", "'b.png' is a link"),
        (_hostile("traversal"), "unsafe_archive", "unsafe path"),
        (_too_many_entries_zip(), "too_many_entries", "65534 entries"),
    ]
    for photos, code, phrase in cases:
        response = training(alice, photos, styles, name="hostile")
        assert response.status_code == 422, response.text
        error = error_of(response)
        assert error["code"] == code and phrase in error["message"] and "photos" in error["message"], error
