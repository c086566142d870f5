"""Safe unpacking of training dataset archives: only images, fresh names, traversal and size limits refused."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile

import pytest
from PIL import Image

from workers.archives import ArchiveLimits
from workers.jobs import JobInputError
from workers.jobs.datasets import DatasetCache, evict_files, unpack_images, user_message


def _png(color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_images_extracted_under_fresh_names_and_noise_skipped(tmp_path):
    archive = _zip(
        tmp_path / "a.zip",
        {
            "photos/one.JPG": _png(),
            "photos/two.png": _png(),
            "readme.txt": b"hi",
            "__MACOSX/._one.JPG": b"x",
            ".hidden.png": b"x",
        },
    )
    out = tmp_path / "out"
    assert unpack_images(archive, out, "photos") == 2
    assert sorted(p.name for p in out.iterdir()) == ["000000.jpg", "000001.png", "names.json"]
    assert json.loads((out / "names.json").read_text()) == {
        "000000.jpg": "photos/one.JPG",
        "000001.png": "photos/two.png",
    }


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "C:/evil.png"])
def test_path_traversal_refused(tmp_path, name):
    archive = _zip(tmp_path / "a.zip", {"ok.png": _png(), name: _png()})
    with pytest.raises(JobInputError, match="unsafe path") as info:
        unpack_images(archive, tmp_path / "out", "styles")
    assert info.value.code == "bad_dataset"
    assert not (tmp_path / "evil.png").exists()


def test_limits_and_empty_archives(tmp_path):
    archive = _zip(tmp_path / "a.zip", {f"{i}.png": _png() for i in range(3)})
    with pytest.raises(JobInputError, match="3 images is more than 2"):
        unpack_images(archive, tmp_path / "o1", "photos", ArchiveLimits(max_images=2))
    with pytest.raises(JobInputError, match="bytes uncompressed"):
        unpack_images(archive, tmp_path / "o2", "photos", ArchiveLimits(max_member_bytes=10))
    empty = _zip(tmp_path / "e.zip", {"notes.txt": b"no images"})
    with pytest.raises(JobInputError, match="holds no images"):
        unpack_images(empty, tmp_path / "o3", "photos")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(JobInputError, match="not a readable zip"):
        unpack_images(tmp_path / "bad.zip", tmp_path / "o4", "photos")


def _bad_crc_zip(path, good: bytes, bad_name: str):
    """A stored (uncompressed) entry whose bytes no longer match the CRC-32 its headers declare."""
    _zip(path, {"ok.png": good, bad_name: good})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(bad_name)
    # The local header is 30 bytes plus the name and extra field; flip the entry's last data byte.
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size - 1] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_entry_is_a_bad_dataset_naming_it_and_leaves_nothing(tmp_path):
    archive = _bad_crc_zip(tmp_path / "crc.zip", _png(), "holiday/beach.png")
    out = tmp_path / "out"
    with pytest.raises(JobInputError, match="'holiday/beach.png' is damaged") as info:
        unpack_images(archive, out, "photos")
    assert info.value.code == "bad_dataset"
    assert not out.exists(), "a failed extraction left files behind"


def test_links_are_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.png", _png())
        link = zipfile.ZipInfo("passwd.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(JobInputError, match="'passwd.png' is a link") as info:
        unpack_images(archive, tmp_path / "out", "styles")
    assert info.value.code == "bad_dataset" and not (tmp_path / "out").exists()


def test_refused_archives_leave_nothing_in_the_cache(tmp_path):
    cache = DatasetCache(tmp_path / "cache", max_bytes=1 << 30)
    source = _zip(tmp_path / "a.zip", {f"{i}.png": _png() for i in range(3)})

    def fetch(path):
        path.write_bytes(source.read_bytes())

    with pytest.raises(JobInputError, match="3 images is more than 2"):
        cache.part("ds1", "photos", fetch, ArchiveLimits(max_images=2))
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    folder = cache.part("ds1", "photos", fetch)
    assert sorted(p.name for p in folder.iterdir()) == [".complete", "000000.png", "000001.png", "000002.png",
                                                        "names.json"]  # fmt: skip


def test_the_cache_removes_least_recently_used_datasets_beyond_its_size(tmp_path):
    source = _zip(tmp_path / "a.zip", {f"{i}.png": _png((i, 0, 0)) for i in range(4)})
    cache = DatasetCache(tmp_path / "cache", max_bytes=1 << 30)
    for age, dataset in enumerate(("old", "used", "new")):
        cache.part(dataset, "photos", lambda path: path.write_bytes(source.read_bytes()))
        os.utime(tmp_path / "cache" / dataset, (1000 + age, 1000 + age))
    one = cache.size_bytes() // 3
    cache.part("old", "photos", lambda path: pytest.fail("a complete folder was fetched again"))  # a use
    cache.max_bytes = 2 * one
    assert cache.evict(keep="new") == ["used"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["new", "old"]
    cache.max_bytes = 0
    assert cache.evict(keep="new") == ["old"]  # the dataset in use stays even above the budget
    assert cache.size_bytes() == one


def test_user_message_names_entries_not_paths(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"trip/a.png": _png(), "trip/notes.png": b"hello"})
    out = tmp_path / "photos"
    unpack_images(archive, out, "photos")
    library = f"1 of 2 photo images cannot be used:\n  {out}/000001.png: cannot identify <_io.BytesIO object at 0x7f00>"
    message = user_message(library, {"photos": out})
    assert "photos archive entry 'trip/notes.png'" in message
    assert str(tmp_path) not in message and "0x7f" not in message


def test_the_smoothing_cache_is_bounded_and_keeps_the_entries_used_last(tmp_path):
    """Training runs fill the edge-smoothing cache; evict_files keeps it under its budget, and an entry the library
    just read back (a hit touches it) outlives older ones."""
    import numpy as np

    from animegan.data import SmoothCache

    cache = SmoothCache(tmp_path)
    rng = np.random.default_rng(0)
    images = {f"{i:02x}" * 32: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(4)}
    for age, (digest, image) in enumerate(images.items()):
        cache.get_or_compute(digest, 32, image)
        entry = tmp_path / f"{cache.key(digest, 32)}.png"
        os.utime(entry, (1000 + age, 1000 + age))  # written in this order, long ago
    first = next(iter(images))
    cache.get_or_compute(first, 32, images[first])  # a hit: the oldest entry is now the newest
    assert cache.hits == 1
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    budget = sum(sizes.values()) - 1  # one byte over: the least recently used entry must go

    removed = evict_files(tmp_path, budget)
    second = f"{cache.key(list(images)[1], 32)}.png"
    assert [p.name for p in removed] == [second]
    assert (tmp_path / f"{cache.key(first, 32)}.png").is_file()

    assert evict_files(tmp_path, 0) and list(tmp_path.iterdir()) == []
    assert evict_files(tmp_path / "missing", 0) == []
