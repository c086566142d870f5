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
from workers.archives import MemberKind, MemberRefused, member_kind
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
    api_count = check_dataset_archive(archive, "photos", 10**8, 100)
    assert api_count == unpack_images(archive, tmp_path / "out", "photos") == 2


def test_the_api_and_the_worker_refuse_the_same_link(tmp_path):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.png", _png())
        zf.writestr(_info("passwd.png", stat.S_IFLNK | 0o777), "/etc/passwd")
    with pytest.raises(ApiError) as api_refusal:
        check_dataset_archive(archive, "photos", 10**8, 100)
    assert (
        api_refusal.value.code == "unsafe_archive" and "'passwd.png' is a link" in api_refusal.value.message
    )
    with pytest.raises(JobInputError, match="'passwd.png' is a link"):
        unpack_images(archive, tmp_path / "out", "photos")
