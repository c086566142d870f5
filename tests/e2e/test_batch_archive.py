"""results.zip of a batch streams into S3 as multipart parts: a worker whose files may not grow past 4 MiB
(RLIMIT_FSIZE, as a full ephemeral-storage volume would refuse them) still builds a 13 MB archive."""

from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.e2e.conftest import OWNER, make_service
from workers import enqueue, keys
from workers.contracts.batch import chunk_messages

pytestmark = pytest.mark.e2e

PART_BYTES = 5 * 1024 * 1024  # S3's smallest part
FILE_LIMIT_BYTES = 4 * 1024 * 1024


def noise_png(side: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def service(request, tmp_path_factory):
    svc = make_service(tmp_path_factory.mktemp("e2e-archive"), "s3", request)
    try:
        yield svc
    finally:
        svc.close()


def test_a_batch_archive_larger_than_the_workers_file_limit_streams_to_s3_in_parts(service):
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    total = 14
    record, _ = service.jobs.create("batch", OWNER, {"model": "tiny", "size_mode": "original"}, total=total)
    input_keys = []
    for index in range(total):
        key = keys.input(record.id, index, "png")
        service.store.put_bytes(key, noise_png(640, seed=index))
        input_keys.append(key)
    service.start_worker(
        "archive",
        queues="stylize",
        wrapper=("prlimit", f"--fsize={FILE_LIMIT_BYTES}", "--"),
        ANIMEGAN_S3_MULTIPART_CHUNKSIZE_BYTES=str(PART_BYTES),
    )
    enqueue.send(chunk_messages(record.id, input_keys, 7), app=service.app)
    finished = service.wait_status(record.id, {"succeeded", "failed"}, timeout=300)
    assert finished.status == "succeeded", finished.error

    bucket, _, prefix = service.settings.storage_url.removeprefix("s3://").partition("/")
    head = service.store.client.head_object(Bucket=bucket, Key=f"{prefix}/{keys.output_archive(record.id)}")
    etag = head["ETag"].strip('"')
    size, parts = head["ContentLength"], int(etag.split("-")[1]) if "-" in etag else 1
    assert size > 3 * FILE_LIMIT_BYTES, f"the archive ({size} bytes) is too small to show the file limit"
    assert parts == -(-size // PART_BYTES), f"{size} bytes went up in {parts} parts"
    with zipfile.ZipFile(io.BytesIO(service.store.get_bytes(keys.output_archive(record.id)))) as zf:
        assert zf.testzip() is None
        assert [name.split(".")[0] for name in zf.namelist()] == [f"{i:05d}" for i in range(total)]
        for index in (0, total - 1):
            assert zf.read(zf.namelist()[index]) == service.store.get_bytes(
                keys.output(record.id, index, "png")
            )
