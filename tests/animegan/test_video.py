"""animegan.video on clips written by the tests (PyAV): frames, rate, duration, audio, sizes, VFR, rotation,
keyframe segments joined without re-encoding, and the errors of what is not a playable video."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from animegan.config import GeneratorConfig
from animegan.errors import VideoError
from animegan.inference import InferenceOptions, Stylizer
from animegan.nn import build_generator
from animegan.video import join_segments, plan_segments, probe_video, stylize_video
from tests.video_clips import (
    audio_seconds,
    count_frames,
    rotate_track,
    write_audio_only,
    write_clip,
)

torch.set_num_threads(1)


class IdentityStylizer:
    """Returns each frame unchanged, so pixel positions (rotation, cropping) can be checked after encoding."""

    batch_size = 4

    def stylize_many(self, images: list[Image.Image]) -> list[Image.Image]:
        return [image.copy() for image in images]


@pytest.fixture(scope="module")
def tiny_stylizer() -> Stylizer:
    torch.manual_seed(0)
    g = build_generator(GeneratorConfig(arch="v2", base_channels=8))
    return Stylizer(g, options=InferenceOptions(size_mode="original", precision="fp32", keep_alpha=False))


def stream_facts(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return (
            v.codec_context.name,
            v.codec_context.pix_fmt,
            v.width,
            v.height,
            v.average_rate,
            len(c.streams.audio),
        )


def test_output_keeps_frames_rate_duration_and_audio(tmp_path, tiny_stylizer):
    src = write_clip(tmp_path / "in.mp4", frames=24, fps=12, width=64, height=48)
    info = probe_video(src)
    assert (info.frames, info.fps, info.width, info.height, info.audio_codec) == (24, 12.0, 64, 48, "aac")
    assert info.duration == pytest.approx(2.0, abs=1 / 12)
    seen = []
    result = stylize_video(src, tmp_path / "out.mp4", tiny_stylizer, progress=seen.append)
    assert result.frames == 24 and result.audio
    assert seen[-1] == 24
    out = probe_video(tmp_path / "out.mp4")
    assert out.frames == 24 and count_frames(tmp_path / "out.mp4")[0] == 24
    assert out.fps == pytest.approx(12.0)
    assert abs(out.duration - info.duration) <= 1 / 12
    assert stream_facts(tmp_path / "out.mp4")[:4] == ("h264", "yuv420p", 64, 48)
    # The audio is copied packet for packet: the same decoded length.
    assert audio_seconds(tmp_path / "out.mp4") == pytest.approx(audio_seconds(src), abs=1e-6)
    assert audio_seconds(src) == pytest.approx(2.0, abs=0.1)


def test_odd_size_is_cropped_to_even_sides(tmp_path, tiny_stylizer):
    src = write_clip(tmp_path / "odd.mp4", frames=8, width=66, height=50, audio=False)
    # x264 itself needs even sides to write the source; the odd size comes from the stylizer's max_side sizing.
    small = Stylizer(
        tiny_stylizer.model, options=InferenceOptions(size_mode="max_side", max_side=45, precision="fp32")
    )
    result = stylize_video(src, tmp_path / "out.mp4", small)
    assert (result.width, result.height) == (44, 34)  # 45x34.09 -> 45x34 -> even 44x34
    assert stream_facts(tmp_path / "out.mp4")[2:4] == (44, 34)
    assert count_frames(tmp_path / "out.mp4")[0] == 8


def test_variable_frame_rate_keeps_every_timestamp(tmp_path):
    src = write_clip(tmp_path / "vfr.mp4", frames=12, fps=12, vfr=True)
    _, source_pts = count_frames(src)
    assert len(set(np.diff(source_pts))) == 2  # really variable
    stylize_video(src, tmp_path / "out.mp4", IdentityStylizer())
    with av.open(str(src)) as a, av.open(str(tmp_path / "out.mp4")) as b:
        ta = [float(f.pts * f.time_base) for f in a.decode(video=0)]
        tb = [float(f.pts * f.time_base) for f in b.decode(video=0)]
    assert tb == pytest.approx(ta, abs=1e-6)


def test_clip_without_audio_gives_video_only(tmp_path, tiny_stylizer):
    src = write_clip(tmp_path / "mute.mp4", frames=6, audio=False)
    assert probe_video(src).audio_codec is None
    result = stylize_video(src, tmp_path / "out.mp4", tiny_stylizer)
    assert not result.audio and stream_facts(tmp_path / "out.mp4")[5] == 0


def test_rotated_phone_clip_is_turned_upright(tmp_path):
    src = rotate_track(write_clip(tmp_path / "phone.mp4", frames=6, width=64, height=48, audio=False), 90)
    info = probe_video(src)
    assert (info.width, info.height) == (48, 64)
    stylize_video(src, tmp_path / "out.mp4", IdentityStylizer())
    out = probe_video(tmp_path / "out.mp4")
    assert (out.width, out.height, out.rotation) == (48, 64, 0)
    with av.open(str(tmp_path / "out.mp4")) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    # The source's bright top-left 16x12 corner, turned by the display matrix like a player does it.
    corners = {
        "top-left": frame[:12, :12], "top-right": frame[:12, -12:],
        "bottom-left": frame[-12:, :12], "bottom-right": frame[-12:, -12:],
    }  # fmt: skip
    bright = max(corners, key=lambda k: corners[k].mean())
    assert corners[bright].min() > 200
    # A phone's matrix (0, 1, -1, 0) means "turn 90 degrees clockwise to display" (ffprobe: rotation -90).
    assert info.rotation == 270 and bright == "top-right"


def test_segments_at_keyframes_join_to_the_whole_clip(tmp_path):
    src = write_clip(tmp_path / "in.mp4", frames=30, fps=12, gop=6)
    info = probe_video(src)
    assert [before for _, before in info.keyframes] == [0, 6, 12, 18, 24]
    segments = plan_segments(info, segment_seconds=1.0)  # 12 frames: every second keyframe
    assert [(s.start_pts * info.time_base, s.frames) for s in segments] == [(0, 12), (1, 12), (2, 6)]
    parts = []
    for seg in segments:
        part = tmp_path / f"seg{seg.index}.mp4"
        assert stylize_video(src, part, IdentityStylizer(), segment=seg).frames == seg.frames
        parts.append(part)
    whole = tmp_path / "joined.mp4"
    assert join_segments(parts, segments, whole, info.time_base, source=src) == 30
    n, pts = count_frames(whole)
    assert n == 30
    with av.open(str(whole)) as c:
        tb = c.streams.video[0].time_base
    assert [p * tb for p in pts] == [Fraction(i, 12) for i in range(30)]
    assert audio_seconds(whole) == pytest.approx(audio_seconds(src), abs=1e-6)


def test_what_is_not_a_playable_video_is_a_video_error(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    with pytest.raises(VideoError, match="not a readable video"):
        probe_video(text)
    clip = write_clip(tmp_path / "full.mp4", frames=12).read_bytes()
    with pytest.raises(VideoError):
        probe_video(clip[: len(clip) // 2])
    with pytest.raises(VideoError, match="no video stream"):
        probe_video(write_audio_only(tmp_path / "audio.m4a"))


def test_stylize_video_command(tmp_path, tiny_stylizer, capsys):
    from animegan.cli import main
    from animegan.weights import save_generator

    model = save_generator(tmp_path / "tiny.safetensors", tiny_stylizer.model, metadata={"name": "tiny"})
    src = write_clip(tmp_path / "in.mp4", frames=12, fps=12, width=64, height=48)
    out = tmp_path / "out" / "in.anime.mp4"
    code = main(
        ["stylize-video", str(src), "--model", str(model), "--out", str(out), "--preset", "ultrafast"]
    )
    assert code == 0, capsys.readouterr().err
    info = probe_video(out)
    assert (info.frames, info.width, info.height, info.audio_codec) == (12, 64, 48, "aac")
    assert "stylized 12 frames (64x48, 12 fps, audio copied)" in capsys.readouterr().err
    assert (
        main(["stylize-video", str(tmp_path / "missing.mp4"), "--model", str(model), "--out", str(out)]) != 0
    )
