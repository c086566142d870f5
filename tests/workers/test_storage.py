"""Storage contract, run against both backends: a local folder and the real moto S3 HTTP server."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from workers import keys
from workers.exceptions import InvalidKey, NotFound, StorageError
from workers.settings import ServiceSettings
from workers.storage import LocalStore, open_store
from workers.storage.base import content_disposition


def test_round_trip_bytes_and_overwrite(store):
    key = keys.output("job1", 0, "png")
    store.put_bytes(key, b"first", content_type="image/png")
    store.put_bytes(key, b"second")
    assert store.get_bytes(key) == b"second"
    assert store.exists(key)
    assert store.size(key) == 6


def test_missing_key_raises_not_found(store):
    key = keys.output("nope", 3, "png")
    with pytest.raises(NotFound) as info:
        store.get_bytes(key)
    assert isinstance(info.value, KeyError)
    assert key in str(info.value)
    with pytest.raises(NotFound):
        store.size(key)
    with pytest.raises(NotFound):
        store.get_file(key, "/tmp/never-written")
    assert not store.exists(key)
    store.delete(key)  # deleting a missing key is fine: retries repeat deletes


def test_list_is_a_string_prefix_and_sorted(store):
    for index in (2, 0, 1):
        store.put_bytes(keys.output("job1", index, "png"), b"x")
    store.put_bytes(keys.output("job10", 0, "png"), b"x")
    store.put_bytes(keys.input("job1", 0, "jpg"), b"x")
    assert store.list("outputs/job1/") == [keys.output("job1", i, "png") for i in range(3)]
    assert store.list("outputs/job1") == [keys.output("job1", i, "png") for i in range(3)] + [
        keys.output("job10", 0, "png")
    ]
    assert store.list("outputs/job1/000001") == [keys.output("job1", 1, "png")]
    assert store.list("missing/") == []
    assert len(store.list("")) == 5


def test_delete_prefix_removes_only_that_folder(store):
    for index in range(3):
        store.put_bytes(keys.checkpoint("run1", index * 100), b"ckpt")
    store.put_bytes(keys.checkpoint("run10", 0), b"other run")
    assert store.delete_prefix(keys.run_prefix("run1")) == 3
    assert store.list("runs/") == [keys.checkpoint("run10", 0)]
    with pytest.raises(InvalidKey):
        store.delete_prefix("runs/run1")  # no trailing '/': would also match run10
    with pytest.raises(InvalidKey):
        store.delete_prefix("")


def test_put_file_and_get_file_multipart(store, tmp_path):
    """A file above the multipart threshold (set to S3's 5 MiB minimum) goes up in parts and comes back intact."""
    if hasattr(store, "transfer_config"):
        store.transfer_config.multipart_threshold = 5 * 1024 * 1024
        store.transfer_config.multipart_chunksize = 5 * 1024 * 1024
    data = os.urandom(11 * 1024 * 1024 + 123)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    key = keys.checkpoint("bigrun", 1000)
    store.put_file(key, source)
    assert store.size(key) == len(data)
    target = tmp_path / "down" / "big.bin"
    store.get_file(key, target)
    assert target.read_bytes() == data
    assert [p.name for p in target.parent.iterdir()] == ["big.bin"]  # no temporary file left behind


def test_s3_multipart_upload_really_uses_parts(s3_store, tmp_path):
    s3_store.transfer_config.multipart_threshold = 5 * 1024 * 1024
    s3_store.transfer_config.multipart_chunksize = 5 * 1024 * 1024
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(11 * 1024 * 1024))
    s3_store.put_file("models/public/big/generator.safetensors", source)
    head = s3_store.client.head_object(
        Bucket=s3_store.bucket, Key="svc/models/public/big/generator.safetensors"
    )
    assert head["ETag"].strip('"').endswith("-3")  # S3's multipart ETag: '<md5 of md5s>-<part count>'


def test_open_write_streams_an_object_and_an_error_leaves_none(store):
    """What results.zip is written with: many writes of any size make one object; an exception mid-stream
    leaves no object (and on S3 no visible one: the multipart upload is aborted)."""
    if hasattr(store, "transfer_config"):
        store.transfer_config.multipart_chunksize = 5 * 1024 * 1024
    blocks = [os.urandom(size) for size in (1, 3 * 1024 * 1024, 4 * 1024 * 1024 + 7, 5 * 1024 * 1024, 999)]
    key = keys.output_archive("streamed")
    with store.open_write(key, content_type="application/zip") as out:
        for block in blocks:
            out.write(block)
    assert store.get_bytes(key) == b"".join(blocks)
    with pytest.raises(RuntimeError), store.open_write(keys.output_archive("broken")) as out:
        out.write(os.urandom(6 * 1024 * 1024))
        raise RuntimeError("the builder failed halfway")
    assert not store.exists(keys.output_archive("broken"))
    with store.open_write(keys.output_archive("small")) as out:
        out.write(b"tiny")
    assert store.get_bytes(keys.output_archive("small")) == b"tiny"


def test_s3_open_write_uploads_parts_of_the_configured_size(s3_store):
    s3_store.transfer_config.multipart_chunksize = 5 * 1024 * 1024
    with s3_store.open_write("outputs/j/results.zip") as out:
        for _ in range(11):
            out.write(os.urandom(1024 * 1024))
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key="svc/outputs/j/results.zip")
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == 11 * 1024 * 1024
    uploads = s3_store.client.list_multipart_uploads(Bucket=s3_store.bucket).get("Uploads", [])
    assert uploads == [], "a finished or aborted stream left an incomplete multipart upload"


@pytest.mark.parametrize(
    "bad",
    ["../etc/passwd", "/abs/key", "a/../b", "a//b", "a/./b", "", ".hidden", "a/b/", "a\\b", "a b", "C:/x"],
)
def test_escaping_keys_are_refused(store, bad):
    for call in (lambda: store.put_bytes(bad, b"x"), lambda: store.get_bytes(bad), lambda: store.exists(bad)):
        with pytest.raises(InvalidKey):
            call()


def test_local_store_never_writes_outside_root(tmp_path):
    store = LocalStore(tmp_path / "root")
    (tmp_path / "outside").mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(InvalidKey):
        store.put_bytes("link/file", b"x")
    assert list((tmp_path / "outside").iterdir()) == []


def test_local_writes_are_atomic_and_leave_no_tmp(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    key = keys.output("job", 0, "png")
    store.put_bytes(key, b"old")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.put_bytes(key, b"new")
    monkeypatch.undo()
    assert store.get_bytes(key) == b"old"
    assert sorted(p.name for p in (tmp_path / "outputs" / "job").iterdir()) == ["000000.png"]
    assert store.presign_get(key, 60) is None and store.presign_put(key, 60) is None


def test_presigned_get_with_filename(s3_store):
    key = keys.output("job1", 0, "png")
    s3_store.put_bytes(key, b"\x89PNG result", content_type="image/png")
    url = s3_store.presign_get(key, 300, filename="résultat 1.png")
    response = httpx.get(url)
    assert response.status_code == 200, response.text
    assert response.content == b"\x89PNG result"
    # moto ignores response-content-disposition (real S3, MinIO and R2 echo it), so check the signed request.
    query = parse_qs(urlparse(url).query)
    disposition = query["response-content-disposition"][0]
    assert disposition.startswith("attachment;") and "r%C3%A9sultat%201.png" in disposition
    assert "X-Amz-Signature" in query and query["X-Amz-Expires"] == ["300"]


def test_presigned_put_uploads_directly(s3_store):
    key = keys.upload("alice", "up1")
    url = s3_store.presign_put(key, 300, content_type="image/jpeg")
    response = httpx.put(url, content=b"jpeg bytes", headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    assert s3_store.get_bytes(key) == b"jpeg bytes"


def test_s3_ping_and_unreachable_endpoint(s3_store, s3_endpoint):
    s3_store.ping()
    from workers.storage.s3 import S3Store

    missing = S3Store("no-such-bucket", endpoint_url=s3_endpoint, access_key_id="t", secret_access_key="t")
    with pytest.raises(StorageError, match="no-such-bucket"):
        missing.ping()


def test_open_store_picks_backend_from_url(tmp_path, s3_endpoint, s3_bucket):
    local = open_store(ServiceSettings(storage_url=(tmp_path / "st").as_uri()))
    assert isinstance(local, LocalStore) and local.root == (tmp_path / "st").resolve()
    remote = open_store(
        ServiceSettings(
            storage_url=f"s3://{s3_bucket}/deep/prefix",
            s3_endpoint_url=s3_endpoint,
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
        )
    )
    assert remote.prefix == "deep/prefix/"
    remote.put_bytes("a/b", b"1")
    assert remote.client.get_object(Bucket=s3_bucket, Key="deep/prefix/a/b")["Body"].read() == b"1"


def test_content_disposition_escapes_quotes():
    header = content_disposition('evil"; x=1.png')
    assert header.startswith('attachment; filename="evil_; x=1.png"')


def test_presigned_urls_use_the_public_endpoint(s3_endpoint, s3_bucket):
    """Services reach MinIO as http://minio:9000 while clients need http://localhost:9000: sign for the latter."""
    from workers.storage.s3 import S3Store

    store = S3Store(
        s3_bucket,
        endpoint_url=s3_endpoint,
        public_endpoint_url="http://files.example.com:9000",
        access_key_id="testing",
        secret_access_key="testing",
        addressing_style="path",
    )
    store.put_bytes("a/b", b"x")
    url = store.presign_get("a/b", 60)
    assert url.startswith(f"http://files.example.com:9000/{s3_bucket}/a/b?")
    assert store.presign_put("a/c", 60).startswith("http://files.example.com:9000/")
    assert store.get_bytes("a/b") == b"x"  # the service itself still talks to the internal endpoint


def test_unreachable_s3_is_a_storage_error_not_a_crash():
    """Connection refused surfaces (after the bounded retries) as StorageError, which workers treat as transient."""
    from tests.conftest import free_port
    from workers.storage.s3 import S3Store

    dead = S3Store(
        "bucket", endpoint_url=f"http://127.0.0.1:{free_port()}", access_key_id="t", secret_access_key="t",
        max_attempts=2,
    )  # fmt: skip
    for call in (lambda: dead.get_bytes("a/b"), lambda: dead.put_bytes("a/b", b"x"), lambda: dead.list("a/")):
        with pytest.raises(StorageError, match="ANIMEGAN_S3_ENDPOINT_URL"):
            call()
    with pytest.raises(StorageError, match="not reachable"):
        dead.ping()


def test_open_range_streams_a_slice(store):
    key = keys.upload("alice", "r" * 32)
    store.put_bytes(key, bytes(range(256)) * 4)
    with store.open_range(key, 250, 260) as part:
        assert part.read() == bytes(range(250, 256)) + bytes(range(4))
    with pytest.raises(NotFound):
        store.open_range(keys.upload("alice", "m" * 32), 0, 1)


def _stored_zip(count: int, size: int) -> bytes:
    """A zip of `count` stored members of `size` random bytes each (nothing to inflate: the bytes read are the
    archive's own)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            zf.writestr(f"photos/{i:03d}.png", os.urandom(size))
    return out.getvalue()


def test_a_stored_zip_is_checked_by_ranged_reads_with_bounded_transfer(store):
    """What the API does with a direct upload (workers.storage.ranged): the directory costs the archive's tail,
    a full check reads each byte about once in a few GETs, and the sha256 is the object's."""
    import hashlib

    from api.images import check_dataset_archive, open_checked_archive
    from workers.archives import ArchiveLimits
    from workers.storage.ranged import RangedObject

    data = _stored_zip(12, 2 << 20)  # 24 MiB
    key = keys.upload("alice", "z" * 32)
    store.put_bytes(key, data)
    limits = ArchiveLimits(max_images=100)

    directory_only = RangedObject(store, key, len(data))
    with open_checked_archive(directory_only, "photos", limits) as (_, members):
        assert len(members) == 12
    assert directory_only.bytes_read < 200_000 and directory_only.gets <= 3

    reader = RangedObject(store, key, len(data))
    assert check_dataset_archive(reader, "photos", limits) == 12
    assert len(data) <= reader.bytes_read < len(data) + 300_000
    assert reader.gets <= 16, f"{reader.gets} GETs for one pass over 24 MiB"
    before = reader.bytes_read
    assert reader.sha256() == hashlib.sha256(data).digest()
    assert reader.bytes_read - before < 100_000, "the digest read the archive a second time"
