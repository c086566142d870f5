"""Test clips written with PyAV: moving colour frames, a sine-wave audio track, odd sizes, variable frame rate
and a phone clip's rotation (the MP4's track matrix, as phones write it)."""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def frame_pixels(index: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: a gradient that moves with `index`, and a bright top-left corner (shows rotation)."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack(
        [(x * 4 + index * 8) % 256, (y * 4 + index * 3) % 256, np.full_like(x, (index * 20) % 256)], axis=-1
    ).astype(np.uint8)
    img[: max(1, height // 4), : max(1, width // 4)] = 255
    return img


def write_clip(
    path: Path,
    *,
    frames: int = 24,
    fps: int = 12,
    width: int = 64,
    height: int = 48,
    audio: bool = True,
    gop: int = 6,
    vfr: bool = False,
    sample_rate: int = 16000,
) -> Path:
    """An H.264 MP4 (keyframe every `gop` frames) with an AAC sine track as long as the video.

    vfr: frames alternate between one and two ticks of 1/(2*fps) s, a variable frame rate.
    """
    tb = Fraction(1, fps * 2) if vfr else Fraction(1, fps)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = tb
        video.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "crf": "20"}
        # Every stream exists before the first packet is muxed (the header is written then).
        sound = out.add_stream("aac", rate=sample_rate) if audio else None
        pts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(i, width, height), format="rgb24")
            frame.pts = pts
            frame.time_base = tb
            pts += (1 + i % 2) if vfr else 1
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            seconds = float(pts * tb)
            stream = sound
            t = np.arange(int(seconds * sample_rate)) / sample_rate
            wave = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
            step = 1024
            for start in range(0, len(wave), step):
                chunk = wave[start : start + step][None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 1.0, sample_rate: int = 16000) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=sample_rate)
        wave = (0.3 * np.sin(np.arange(int(seconds * sample_rate)) / 10)).astype(np.float32)
        for start in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(
                wave[start : start + 1024][None, :], format="fltp", layout="mono"
            )
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def rotate_track(path: Path, degrees: int = 90) -> Path:
    """Rewrite the video track's tkhd matrix to a rotation, as a phone filming upright does (in place)."""
    data = bytearray(path.read_bytes())
    one, zero = 0x00010000, 0
    cos, sin = round(math.cos(math.radians(degrees))), round(math.sin(math.radians(degrees)))
    # tkhd matrix: a b u / c d v / x y w in 16.16 (2.30 for u v w); a phone's 90 degrees is (0, 1, -1, 0).
    matrix = [cos * one, sin * one, zero, -sin * one, cos * one, zero, zero, zero, 0x40000000]
    start = 0
    while (pos := data.find(b"tkhd", start)) != -1:
        version = data[pos + 4]
        body = pos + 4 + 4  # after 'tkhd' and version/flags
        # creation, modification, track id, reserved, duration: v0 4+4+4+4+4, v1 8+8+4+4+8
        body += 20 if version == 0 else 32
        body += 8 + 2 + 2 + 2 + 2  # reserved, layer, alternate group, volume, reserved
        width = struct.unpack(">I", data[body + 36 : body + 40])[0]
        if width:  # the video track (audio tracks have width 0)
            data[body : body + 36] = struct.pack(">9i", *matrix)
        start = pos + 4
    path.write_bytes(bytes(data))
    return path


def count_frames(path: Path) -> tuple[int, list[int]]:
    """Decoded video frames and their pts, decoding the whole file (a file that does not play to the end fails)."""
    with av.open(str(path)) as container:
        pts = [frame.pts for frame in container.decode(container.streams.video[0])]
    return len(pts), pts


def audio_seconds(path: Path) -> float:
    """Length of the first audio track by its decoded samples; 0.0 without one."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0.0
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate
