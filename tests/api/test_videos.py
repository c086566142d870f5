"""POST /v1/videos: the API probes a clip before accepting it; what is not a video or passes a limit is a 4xx."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator

import pytest
from PIL import Image

from tests.api.conftest import PUBLIC_MODEL, Api, error_of, start_api
from tests.video_clips import write_audio_only, write_clip
from workers import keys
from workers.contracts.video import VideoSpec

LIMITS = {
    "ANIMEGAN_MAX_VIDEO_SECONDS": "3",
    "ANIMEGAN_MAX_VIDEO_PIXELS": str(64 * 64),
    "ANIMEGAN_MAX_VIDEO_FPS": "30",
    "ANIMEGAN_MAX_VIDEO_BYTES": "150000",
    "ANIMEGAN_VIDEO_SEGMENT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("api-videos")
    service = start_api(tmp, env=LIMITS)
    yield service
    service.process.stop()
    service.redis.close()
    shutil.rmtree(tmp, ignore_errors=True)


def post(client, data: bytes, name: str = "clip.mp4", **form):
    return client.post(
        "/v1/videos", data={"model": PUBLIC_MODEL, **form}, files={"file": (name, data, "video/mp4")}
    )


def test_a_clip_is_probed_planned_and_queued(api, alice, tmp_path):
    clip = write_clip(tmp_path / "ok.mp4", frames=30, fps=12, width=64, height=48, gop=6).read_bytes()
    r = post(alice, clip, crf="23", preset="veryfast")
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "video" and job["status"] == "queued"
    assert job["progress"]["total"] == 30
    assert job["links"]["files"].endswith(f"/v1/jobs/{job['id']}/files")
    record = api.jobs.get(job["id"])
    params = VideoSpec.model_validate(record.params)
    assert (params.width, params.height, params.fps, params.frames, params.audio_codec) == (
        64,
        48,
        12.0,
        30,
        "aac",
    )
    assert (params.crf, params.preset, params.size_mode) == (23, "veryfast", "original")
    # One-second segments cut at the 6-frame keyframes: 12 + 12 + 6 frames.
    assert [s.frames for s in params.segments] == [12, 12, 6]
    assert params.source_key == keys.input(job["id"], 0, "mp4")
    assert api.store.get_bytes(params.source_key) == clip
    # The same key and body replay the job.
    again = alice.post(
        "/v1/videos",
        data={"model": PUBLIC_MODEL},
        files={"file": ("ok.mp4", clip, "video/mp4")},
        headers={"Idempotency-Key": "clip-1"},
    )
    replay = alice.post(
        "/v1/videos",
        data={"model": PUBLIC_MODEL},
        files={"file": ("ok.mp4", clip, "video/mp4")},
        headers={"Idempotency-Key": "clip-1"},
    )
    assert (again.status_code, replay.status_code) == (202, 200)
    assert again.json()["id"] == replay.json()["id"]


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("text", 415, "not_a_video"),
        ("truncated", 415, "not_a_video"),
        ("audio_only", 415, "not_a_video"),
        ("too_long", 422, "video_too_long"),
        ("too_many_pixels", 422, "too_many_pixels"),
        ("too_fast", 422, "frame_rate_too_high"),
        ("too_large", 413, "upload_too_large"),
    ],
)
def test_bad_clips_get_their_4xx(alice, tmp_path, kind, status, code):
    if kind == "text":
        data = b"just some text, not a video\n" * 40
    elif kind == "truncated":
        whole = write_clip(tmp_path / "t.mp4", frames=24).read_bytes()
        data = whole[: len(whole) * 2 // 3]
    elif kind == "audio_only":
        data = write_audio_only(tmp_path / "a.m4a").read_bytes()
    elif kind == "too_long":
        data = write_clip(tmp_path / "long.mp4", frames=48, fps=12, audio=False).read_bytes()  # 4 s
    elif kind == "too_many_pixels":
        data = write_clip(tmp_path / "big.mp4", frames=4, width=96, height=64, audio=False).read_bytes()
    elif kind == "too_fast":
        data = write_clip(tmp_path / "fast.mp4", frames=8, fps=48, audio=False).read_bytes()
    else:
        data = b"\0" * 160_000
    r = post(alice, data)
    assert r.status_code == status, r.text
    assert error_of(r)["code"] == code
    assert "ANIMEGAN_" in error_of(r)["message"] or status != 422


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_a_still_image_is_not_a_video(alice, fmt):
    # FFmpeg reads a JPEG as a 1-frame clip; it used to "succeed" as a 1-frame MP4 (the README says 415).
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 20, 30)).save(buf, fmt)
    r = post(alice, buf.getvalue())
    assert r.status_code == 415, r.text
    assert error_of(r)["code"] == "not_a_video" and "still image" in error_of(r)["message"]


def test_unknown_model_and_missing_file(alice, tmp_path):
    clip = write_clip(tmp_path / "ok.mp4", frames=6, audio=False).read_bytes()
    assert error_of(post(alice, clip, model="nope"))["code"] == "model_not_found"
    r = alice.post("/v1/videos", data={"model": PUBLIC_MODEL})
    assert r.status_code == 422
    r = post(alice, clip, size_mode="original", max_side="64")
    assert r.status_code == 422
