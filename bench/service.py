"""Service benchmark: a small stylize job through the whole stack (API -> Redis -> worker -> storage -> result
fetched), a 200-image batch through the stack against the same model in a plain in-process loop, and how many
jobs per second the API accepts. Starts its own API and worker processes on local storage.

    .venv/bin/python bench/service.py [--images 200] [--latency-jobs 40] [--size 256] [--redis-url URL]

Uses a full-width v2 generator (base_channels 32) with seeded random weights: the arithmetic of the real
model, no downloaded weights. Flushes the Redis database it is given (default db 14).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import redis
from PIL import Image

from api.auth import create_api_key
from api.client import ApiClient

logger = logging.getLogger("bench.service")

ANIMEGAN = shutil.which("animegan") or str(Path(sys.executable).with_name("animegan"))
MODEL = "bench"


def photo(seed: int, size: int) -> bytes:
    """A photo-like JPEG (smooth gradients plus texture), seeded; encodes like a real photo, not like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([x, y, (x + y) / 2], axis=-1) * rng.uniform(80, 200, 3) + rng.uniform(0, 50, 3)
    texture = rng.normal(0, 12, (size, size, 3))
    pixels = np.clip(base + texture, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def write_model(folder: Path) -> Path:
    import torch

    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator
    from animegan.weights import save_generator

    torch.manual_seed(0)
    path = folder / f"{MODEL}.safetensors"
    save_generator(path, build_generator(GeneratorConfig(arch="v2", base_channels=32)), {"name": MODEL})
    return path


class InProcess:
    """The same model in this process, with the worker's inference options (precision "auto", batch 4)."""

    def __init__(self, model_path: Path, latency_image: bytes, threads: int):
        import torch

        from animegan.inference import InferenceOptions, Stylizer, encode_image, load_image
        from animegan.weights import load_generator

        torch.set_num_threads(threads)
        self._load, self._encode = load_image, encode_image
        self.stylizer = Stylizer(load_generator(model_path).model, device="cpu", options=InferenceOptions())
        self.image = load_image(latency_image)
        for _ in range(3):  # first calls pay for allocation and kernel selection
            self.stylizer.stylize(self.image)

    def model_seconds(self) -> float:
        start = time.perf_counter()
        self.stylizer.stylize(self.image)
        return time.perf_counter() - start

    def loop_seconds(self, images: list[bytes]) -> float:
        """A plain loop: decode, stylize, encode PNG, one image at a time."""
        start = time.perf_counter()
        for data in images:
            self._encode(self.stylizer.stylize(self._load(data)), "png")
        return time.perf_counter() - start


class Stack:
    """The API (uvicorn) and one worker as child processes, on Redis and a temporary local storage folder."""

    def __init__(self, redis_url: str, root: Path, models: Path, threads: int, profile: Path | None = None):
        self.root = root
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "ANIMEGAN_REDIS_URL": redis_url,
            "ANIMEGAN_STORAGE_URL": (root / "storage").as_uri(),
            "ANIMEGAN_MODELS_DIR": str(models),
            "ANIMEGAN_TORCH_THREADS": str(threads),
            "ANIMEGAN_MAX_ACTIVE_JOBS": "100000",
            "ANIMEGAN_RATE_LIMIT_REQUESTS": "1000000",
            "ANIMEGAN_MAX_BATCH_ITEMS": "10000",
        }
        self.procs: list[subprocess.Popen] = []
        profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
        self._spawn("api", [sys.executable, *profiler, "-m", "uvicorn", "api.main:app", "--port", str(port),
                            "--log-level", "warning"])  # fmt: skip
        _wait(lambda: _answers(f"{self.url}/healthz"), 60, "the API")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.procs.append(
            subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def start_worker(self) -> None:
        self._spawn("worker", [ANIMEGAN, "worker", "--queues", "stylize", "--concurrency", "1"])
        log = self.root / "worker.log"
        _wait(lambda: " ready." in log.read_text(errors="replace"), 120, "the worker")

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def accepted_per_second(client: ApiClient, jobs: int, threads: int) -> float:
    """Stylize submissions of a small image from `threads` client threads, no worker running."""
    image = photo(999, 64)
    per_thread = jobs // threads

    def submit() -> None:
        with ApiClient(client.base_url, client.http.headers["Authorization"].split()[1]) as own:
            for _ in range(per_thread):
                own.stylize(image, model=MODEL)

    workers = [threading.Thread(target=submit) for _ in range(threads)]
    start = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return per_thread * threads / (time.perf_counter() - start)


def accept_load(url: str, key: str, clients: int, jobs: int) -> dict[str, float]:
    """`clients` concurrent connections (asyncio, one client process) submitting `jobs` small stylize jobs in all,
    no worker running: submissions per second, latency percentiles of one submission, and non-202 answers."""
    import asyncio

    image = photo(999, 64)
    latencies: list[float] = []
    errors = 0

    async def one_client(http: httpx.AsyncClient, count: int) -> None:
        nonlocal errors
        for _ in range(count):
            started = time.perf_counter()
            answer = await http.post(
                "/v1/stylize", data={"model": MODEL}, files={"file": ("p.jpg", image, "image/jpeg")}
            )
            latencies.append(time.perf_counter() - started)
            errors += answer.status_code != 202

    async def run() -> float:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60, limits=limits
        ) as http:
            await one_client(http, 5)  # warm-up: connections, first-call costs
            latencies.clear()
            started = time.perf_counter()
            await asyncio.gather(*(one_client(http, jobs // clients) for _ in range(clients)))
            return time.perf_counter() - started

    seconds = asyncio.run(run())
    return {
        "rate": len(latencies) / seconds,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "errors": float(errors),
    }


def stack_job_seconds(client: ApiClient, image: bytes) -> float:
    """Seconds from POST to the result's bytes in hand for one job (completion seen over SSE)."""
    start = time.perf_counter()
    job = client.stylize(image, model=MODEL)
    last: dict = {}
    for _name, data in client.events(job["id"], timeout=120):
        last = data
    if last.get("status") != "succeeded":
        raise RuntimeError(f"job {job['id']} ended {last.get('status')}: {last.get('error')}")
    client.result_bytes(job["id"])
    return time.perf_counter() - start


def stack_batch(client: ApiClient, images: list[bytes]) -> float:
    """Images per second of one batch job: POST of all files until the zip of results is fetched."""
    start = time.perf_counter()
    job = client.batch([(f"{i:04d}.jpg", data) for i, data in enumerate(images)], model=MODEL)
    final = client.wait(job["id"], timeout=3600, poll_seconds=0.2)
    if final["status"] != "succeeded":
        raise RuntimeError(f"batch {job['id']} ended {final['status']}: {final.get('error')}")
    client.result_bytes(job["id"])
    return len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200, help="images in the batch")
    parser.add_argument("--latency-jobs", type=int, default=40, help="sequential single-image jobs")
    parser.add_argument("--accept-jobs", type=int, default=200, help="jobs submitted for the acceptance rate")
    parser.add_argument(
        "--accept-only",
        type=int,
        default=0,
        metavar="CLIENTS",
        help="only the acceptance load: --accept-jobs submissions from this many concurrent clients, then exit",
    )
    parser.add_argument(
        "--profile", type=Path, default=None, help="with --accept-only: cProfile the API into this file"
    )
    parser.add_argument("--size", type=int, default=256, help="side of the square test photos")
    # One thread: on a shared 2-core machine two OpenMP threads contend with other processes and run 4-10x
    # slower than one; the worker and the in-process loop always use the same count.
    parser.add_argument("--threads", type=int, default=1, help="torch threads, in the worker and in-process")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/14", help="a database this run may flush"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    root = Path(tempfile.mkdtemp(prefix="animegan-bench-"))
    models = root / "models"
    models.mkdir()
    model_path = write_model(models)
    latency_image = photo(0, args.size)
    batch = [photo(i + 1, args.size) for i in range(args.images)]

    # The machine is shared and its load drifts, so in-process and stack figures are taken interleaved: each
    # stack job is paired with an in-process model call, and the plain loop runs half before, half after the batch.
    local = InProcess(model_path, latency_image, args.threads)
    client_redis = redis.Redis.from_url(args.redis_url)
    client_redis.flushdb()
    key = create_api_key(client_redis, "bench")
    stack = Stack(args.redis_url, root, models, args.threads, profile=args.profile)
    try:
        with ApiClient(stack.url, key, timeout=600) as client:
            # The model record appears when the worker registers built-ins; register it ahead for acceptance.
            from workers.registry import ModelRegistry

            ModelRegistry(client_redis).register(
                MODEL, None, "models/public/bench/generator.safetensors", {"arch": "v2"}, public=True,
                source="builtin", replace=True,
            )  # fmt: skip
            if args.accept_only:
                load = accept_load(stack.url, key, args.accept_only, args.accept_jobs)
                print(f"- accepted: {load['rate']:.0f} jobs/s, p50 {load['p50'] * 1000:.1f} ms, p99 "
                      f"{load['p99'] * 1000:.1f} ms, {load['errors']:.0f} errors ({args.accept_only} concurrent "
                      f"clients, {args.accept_jobs} submissions of a 64x64 JPEG, no worker)")  # fmt: skip
                return 0
            logger.info("acceptance: %d submissions, no worker running ...", args.accept_jobs)
            accept_rate = accepted_per_second(client, args.accept_jobs, threads=4)
            client_redis.delete("stylize")  # drop the acceptance jobs' tasks before a worker sees them
            stack.start_worker()
            for _ in range(3):  # warm-up: the worker loads the model, first-call costs
                stack_job_seconds(client, latency_image)
            logger.info(
                "latency: %d sequential jobs, each paired with an in-process call ...", args.latency_jobs
            )
            latencies, model_times = [], []
            for _ in range(args.latency_jobs):
                model_times.append(local.model_seconds())
                latencies.append(stack_job_seconds(client, latency_image))
            half = len(batch) // 2
            logger.info("batch: %d images in-process, %d through the stack, %d in-process ...", half, len(batch),
                        len(batch) - half)  # fmt: skip
            loop_seconds = local.loop_seconds(batch[:half])
            batch_ips = stack_batch(client, batch)
            loop_seconds += local.loop_seconds(batch[half:])
    finally:
        stack.close()
        client_redis.flushdb()
        shutil.rmtree(root, ignore_errors=True)
    loop_ips = len(batch) / loop_seconds
    model_p50 = statistics.median(model_times)
    overhead_p50 = statistics.median(t - m for t, m in zip(latencies, model_times, strict=True))

    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(f"### Service (bench/service.py, {args.size}x{args.size} photos, v2 generator width 32, CPU, "
          f"{args.threads} torch thread(s))")  # fmt: skip
    print(f"- single stylize job, API->Redis->worker->storage->result: p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms ({args.latency_jobs} sequential jobs)")  # fmt: skip
    print(f"- model alone in-process (same image, interleaved): p50 {model_p50 * 1000:.0f} ms; "
          f"not-model part (median of paired differences): {overhead_p50 * 1000:.0f} ms")  # fmt: skip
    print(f"- batch of {args.images}: {batch_ips:.2f} img/s through the stack vs {loop_ips:.2f} img/s "
          f"in a plain in-process loop (ratio {batch_ips / loop_ips:.2f}, target >= 0.85)")  # fmt: skip
    print(f"- jobs accepted by the API: {accept_rate:.0f} jobs/s (4 client threads, 64x64 JPEG, no worker)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
