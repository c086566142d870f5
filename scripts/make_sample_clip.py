"""Write samples/video/lake-pan.mp4: a 2-second pan across samples/lake.jpg (160x96, 12 fps, H.264) with a quiet
440 Hz sine-wave track, the clip of the README's video examples. `python scripts/make_sample_clip.py`."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
OUT = SAMPLES / "video" / "lake-pan.mp4"
WIDTH, HEIGHT, FPS, FRAMES, RATE = 160, 96, 12, 24, 16000


def main() -> int:
    photo = Image.open(SAMPLES / "lake.jpg").convert("RGB").resize((320, 224))
    pixels = np.asarray(photo)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(OUT), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.codec_context.time_base = Fraction(1, FPS)
        video.options = {"crf": "26", "g": "6", "keyint_min": "6", "sc_threshold": "0"}
        audio = out.add_stream("aac", rate=RATE)  # before the first packet: the header fixes the streams
        for i in range(FRAMES):
            x = (320 - WIDTH) * i // (FRAMES - 1)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels[64 : 64 + HEIGHT, x : x + WIDTH]))
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        t = np.arange(FRAMES * RATE // FPS) / RATE
        wave = (0.2 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(wave), 1024):
            chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = RATE, start
            for packet in audio.encode(chunk):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
