"""Video benchmark: frames per second of a clip through the whole stack (POST /v1/videos -> Redis -> segment
tasks on workers -> join -> result fetched) against the library's in-process loop (animegan.video.stylize_video)
on the same clip and model, and the speed-up of two workers over one (one torch thread each).

    .venv/bin/python bench/video.py [--frames 144] [--width 160] [--height 128] [--redis-url URL]

The clip is written here with PyAV (moving gradients, a sine-wave track); the model is a full-width v2 generator
(base_channels 32) with seeded random weights. Flushes the Redis database it is given (default db 14).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av
import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service import ANIMEGAN, MODEL, Stack, _wait, write_model  # noqa: E402  (bench/service.py)

from api.auth import create_api_key  # noqa: E402
from tests.video_clips import write_clip  # noqa: E402

logger = logging.getLogger("bench.video")


def in_process_fps(model_path: Path, clip: Path, out: Path, threads: int, preset: str) -> float:
    """The library loop a user would write: decode, stylize in the Stylizer's batches, encode, copy audio."""
    import torch

    from animegan.inference import InferenceOptions, Stylizer
    from animegan.video import EncodeOptions, stylize_video
    from animegan.weights import load_generator

    torch.set_num_threads(threads)
    stylizer = Stylizer(
        load_generator(model_path).model,
        options=InferenceOptions(size_mode="original", keep_alpha=False, faces=False),
    )
    with av.open(str(clip)) as c:  # warm-up on a few frames: allocation, kernel selection
        frames = [f.to_image() for _, f in zip(range(4), c.decode(video=0), strict=False)]
    stylizer.stylize_many(frames)
    start = time.perf_counter()
    result = stylize_video(clip, out, stylizer, encode=EncodeOptions(preset=preset))
    return result.frames / (time.perf_counter() - start)


def stack_fps(url: str, key: str, clip: Path, preset: str, out: Path) -> tuple[float, dict]:
    """POST the clip, wait for the job, fetch the MP4; frames per second of the whole round trip."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
        start = time.perf_counter()
        r = client.post(
            "/v1/videos",
            data={"model": MODEL, "size_mode": "original", "preset": preset},
            files={"file": (clip.name, clip.read_bytes(), "video/mp4")},
        )
        r.raise_for_status()
        job_id = r.json()["id"]
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "canceled"):
                break
            time.sleep(0.05)
        if job["status"] != "succeeded":
            raise RuntimeError(f"video job {job_id} ended {job['status']}: {job.get('error')}")
        result = client.get(f"/v1/jobs/{job_id}/result")
        result.raise_for_status()
        seconds = time.perf_counter() - start
        out.write_bytes(result.content)
    return job["progress"]["total"] / seconds, job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=144, help="frames in the clip")
    parser.add_argument("--fps", type=int, default=24, help="the clip's frame rate")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--segment-seconds", type=float, default=1.0, help="ANIMEGAN_VIDEO_SEGMENT_SECONDS")
    parser.add_argument(
        "--preset", default="veryfast", help="x264 preset, the same in-process and in the stack"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker and in-process")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/14", help="a database this run may flush"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    root = Path(tempfile.mkdtemp(prefix="animegan-bench-video-"))
    models = root / "models"
    models.mkdir()
    model_path = write_model(models)
    clip = write_clip(
        root / "clip.mp4",
        frames=args.frames,
        fps=args.fps,
        width=args.width,
        height=args.height,
        gop=args.fps // 2,
    )
    warm = write_clip(
        root / "warm.mp4",
        frames=2 * args.fps,
        fps=args.fps,
        width=args.width,
        height=args.height,
        gop=args.fps // 2,
    )
    client_redis = redis.Redis.from_url(args.redis_url)
    client_redis.flushdb()
    key = create_api_key(client_redis, "bench")
    # The API plans the segments; Stack passes this process's environment to the API and the workers.
    os.environ["ANIMEGAN_VIDEO_SEGMENT_SECONDS"] = str(args.segment_seconds)
    stack = Stack(args.redis_url, root, models, args.threads)
    try:
        stack.start_worker()
        logger.info("in-process loop, %d frames of %dx%d ...", args.frames, args.width, args.height)
        loop_a = in_process_fps(model_path, clip, root / "loop.mp4", args.threads, args.preset)
        logger.info("through the stack, one worker ...")
        stack_fps(stack.url, key, warm, args.preset, root / "warm.mp4")  # warm-up: the worker loads the model
        one, job_one = stack_fps(stack.url, key, clip, args.preset, root / "one.mp4")
        stack._spawn("worker2", [ANIMEGAN, "worker", "--queues", "stylize", "--concurrency", "1"])
        log2 = root / "worker2.log"
        _wait(lambda: " ready." in log2.read_text(errors="replace"), 120, "the second worker")
        logger.info("through the stack, two workers ...")
        stack_fps(stack.url, key, warm, args.preset, root / "warm2.mp4")  # two segments: both load the model
        two, job_two = stack_fps(stack.url, key, clip, args.preset, root / "two.mp4")
        logger.info("in-process loop again ...")
        loop_b = in_process_fps(model_path, clip, root / "loop.mp4", args.threads, args.preset)
        identical = (root / "one.mp4").read_bytes() == (root / "two.mp4").read_bytes()
    finally:
        stack.close()
        client_redis.flushdb()
        shutil.rmtree(root, ignore_errors=True)
    loop = (loop_a + loop_b) / 2
    workers = {s["worker"] for s in job_two["progress"]["segments"]}
    print(f"### Video (bench/video.py, {args.frames} frames {args.width}x{args.height} at {args.fps} fps, "
          f"{job_one['result']['segments']} segments, v2 generator width 32, CPU, {args.threads} torch thread(s), "
          f"x264 {args.preset})")  # fmt: skip
    print(f"- in-process library loop (stylize_video): {loop:.2f} frames/s (runs {loop_a:.2f}, {loop_b:.2f})")
    print(
        f"- through the stack, one worker: {one:.2f} frames/s (ratio to the loop {one / loop:.2f}, target >= 0.85)"
    )
    print(f"- through the stack, two workers: {two:.2f} frames/s (speed-up {two / one:.2f}x over one, target "
          f">= 1.6x; segments ran on {len(workers)} workers; result identical to one worker's: {identical})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
