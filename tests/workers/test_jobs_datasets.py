"""Safe unpacking of training dataset archives: only images, fresh names, traversal and size limits refused."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from workers.jobs import JobInputError
from workers.jobs.datasets import DatasetLimits, unpack_images


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
    assert sorted(p.name for p in out.iterdir()) == ["000000.jpg", "000001.png"]


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "a/../../evil.png", "C:/evil.png"])
def test_path_traversal_refused(tmp_path, name):
    archive = _zip(tmp_path / "a.zip", {"ok.png": _png(), name: _png()})
    with pytest.raises(JobInputError, match="unsafe path") as info:
        unpack_images(archive, tmp_path / "out", "styles")
    assert info.value.code == "bad_dataset"
    assert not (tmp_path / "evil.png").exists()


def test_limits_and_empty_archives(tmp_path):
    archive = _zip(tmp_path / "a.zip", {f"{i}.png": _png() for i in range(3)})
    with pytest.raises(JobInputError, match="more than 2 images"):
        unpack_images(archive, tmp_path / "o1", "photos", DatasetLimits(max_images=2))
    with pytest.raises(JobInputError, match="bytes uncompressed"):
        unpack_images(archive, tmp_path / "o2", "photos", DatasetLimits(max_member_bytes=10))
    empty = _zip(tmp_path / "e.zip", {"notes.txt": b"no images"})
    with pytest.raises(JobInputError, match="holds no images"):
        unpack_images(empty, tmp_path / "o3", "photos")
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(JobInputError, match="not a readable zip"):
        unpack_images(tmp_path / "bad.zip", tmp_path / "o4", "photos")
