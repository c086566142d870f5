"""The one rule for zip members (workers.archives): the API's checks and the worker's extraction read it, so
they count the same images in the same archive."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest
from PIL import Image

from api.errors import ApiError
from api.images import check_dataset_archive
from workers.archives import ArchiveLimits, MemberKind, MemberRefused, member_kind
from workers.jobs import JobInputError
from workers.jobs.datasets import unpack_images


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


def _info(name: str, mode: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.png", MemberKind.image),
        ("photos/B.JPEG", MemberKind.image),
        ("c.webp", MemberKind.image),
        ("notes.txt", MemberKind.other),
        ("photos/", MemberKind.noise),
        (".DS_Store", MemberKind.noise),
        ("__MACOSX/._a.png", MemberKind.noise),
        (".hidden/a.png", MemberKind.noise),  # a dot folder is noise on both sides (the API used to count it)
    ],
)
def test_member_kinds(name, kind):
    assert member_kind(_info(name)) == kind


@pytest.mark.parametrize(
    ("name", "mode", "why"),
    [
        ("../evil.png", 0, "unsafe path"),
        ("/abs/evil.png", 0, "unsafe path"),
        ("C:/evil.png", 0, "unsafe path"),
        ("link.png", stat.S_IFLNK | 0o777, "is a link"),
    ],
)
def test_refused_members(name, mode, why):
    with pytest.raises(MemberRefused, match=why):
        member_kind(_info(name, mode))


def test_the_api_and_the_worker_count_the_same_images(tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("a.png", "sub/b.png", ".hidden/c.png", "__MACOSX/._a.png", "readme.txt"):
            zf.writestr(name, _png() if name.endswith(".png") else b"text")
    api_count = check_dataset_archive(archive, "photos", ArchiveLimits(max_images=100, max_total_bytes=10**8))
    assert api_count == unpack_images(archive, tmp_path / "out", "photos") == 2


def test_the_api_and_the_worker_refuse_the_same_link(tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", _png())
        zf.writestr(_info("passwd.png", stat.S_IFLNK | 0o777), "/etc/passwd")
    with pytest.raises(ApiError) as api_refusal:
        check_dataset_archive(archive, "photos", ArchiveLimits(max_images=100, max_total_bytes=10**8))
    assert (
        api_refusal.value.code == "unsafe_archive" and "'passwd.png' is a link" in api_refusal.value.message
    )
    with pytest.raises(JobInputError, match="'passwd.png' is a link"):
        unpack_images(archive, tmp_path / "out", "photos")


def _patched_directory(data: bytes, name: str, field_offset: int, value: int) -> bytes:
    """`data` with one 4-byte field of `name`'s central directory header set to `value` (16: CRC-32, 24: the
    uncompressed size); the local header keeps the truth, as in an archive built to lie to a directory check."""
    out = bytearray(data)
    header = out.rfind(b"PK\x01\x02" + bytes(out[out.find(b"PK\x01\x02") + 4 : out.find(b"PK\x01\x02") + 6]))
    while header >= 0:
        length = int.from_bytes(out[header + 28 : header + 30], "little")
        if out[header + 46 : header + 46 + length].decode() == name:
            out[header + field_offset : header + field_offset + 4] = value.to_bytes(4, "little")
            return bytes(out)
        header = out.rfind(b"PK\x01\x02", 0, header)
    raise AssertionError(f"no directory entry {name}")


def _zip_bytes(entries: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, body in entries.items():
            zf.writestr(name, body)
    return out.getvalue()


def _hostile(kind: str) -> bytes:
    good = {"a.png": _png(), "b.png": _png()}
    if kind == "lying_crc":
        return _patched_directory(_zip_bytes(good), "b.png", 16, 0x12345678)
    if kind == "lying_size_small":
        return _patched_directory(_zip_bytes(good), "b.png", 24, len(_png()) - 10)
    if kind == "lying_size_large":
        return _patched_directory(_zip_bytes(good, zipfile.ZIP_DEFLATED), "b.png", 24, len(_png()) + 999)
    if kind == "symlink":
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("a.png", _png())
            zf.writestr(_info("b.png", stat.S_IFLNK | 0o777), "/etc/passwd")
        return out.getvalue()
    if kind == "traversal":
        return _zip_bytes({"a.png": _png(), "../../b.png": _png()})
    if kind == "too_many_entries":
        return _zip_bytes({"a.png": _png(), **{f"empty/{i}/": b"" for i in range(12)}})
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "code", "phrase"),
    [
        ("lying_crc", "corrupt_archive", "'b.png' is damaged"),
        ("lying_size_small", "corrupt_archive", "'b.png' is damaged"),
        ("lying_size_large", "corrupt_archive", "'b.png' is damaged"),
        ("symlink", "unsafe_archive", "'b.png' is a link"),
        ("traversal", "unsafe_archive", "unsafe path"),
        ("too_many_entries", "too_many_entries", "above the limit of 10 entries"),
    ],
)
def test_the_api_and_the_worker_refuse_each_hostile_archive_alike(tmp_path, kind, code, phrase):
    """One checker: the API's submit check refuses what the worker's extraction refuses, with the same words
    (the API's directory-only check used to let a lying CRC or size through to the worker)."""
    archive = tmp_path / "photos.zip"
    archive.write_bytes(_hostile(kind))
    limits = ArchiveLimits(max_images=100, max_entries=10)
    with pytest.raises(ApiError) as api_refusal:
        check_dataset_archive(archive, "photos", limits)
    assert api_refusal.value.code == code and phrase in api_refusal.value.message, api_refusal.value.message
    with pytest.raises(JobInputError, match=phrase) as worker_refusal:
        unpack_images(archive, tmp_path / "out", "photos", limits)
    assert worker_refusal.value.code == "bad_dataset" and not (tmp_path / "out").exists()


def _too_many_entries_zip() -> bytes:
    """A zip whose end record claims 65,534 entries in a 200 MiB directory (what a zip of that many would say)."""
    data = bytearray(_zip_bytes({"a.png": _png()}))
    end = data.rfind(b"PK\x05\x06")
    data[end + 10 : end + 12] = (0xFFFE).to_bytes(2, "little")  # entries in total
    data[end + 12 : end + 16] = (200 << 20).to_bytes(4, "little")  # directory bytes
    return bytes(data)


def test_an_end_record_claiming_too_many_entries_is_refused_before_the_directory_is_read(tmp_path):
    archive = tmp_path / "photos.zip"
    archive.write_bytes(_too_many_entries_zip())
    with pytest.raises(ApiError) as refusal:
        check_dataset_archive(archive, "photos", ArchiveLimits())
    assert refusal.value.code == "too_many_entries" and "65534 entries" in refusal.value.message
