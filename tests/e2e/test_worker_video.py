"""Video jobs on real workers: segments spread over two workers give the same bytes as one worker, and a worker
SIGKILLed mid-segment costs that segment only. Storage is S3 (moto) with versioning, to count writes."""

from __future__ import annotations

import time

import pytest

from animegan.video import plan_segments, probe_video
from tests.e2e.conftest import OWNER, make_service, wait_until
from tests.e2e.test_worker_recovery import wait_for_redelivery_window, write_counts
from tests.video_clips import audio_seconds, count_frames, write_clip
from workers import enqueue, keys
from workers.contracts.video import VideoSegmentSpec, VideoSpec, segment_messages
from workers.jobstore import new_job_id

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service(request, tmp_path_factory):
    svc = make_service(tmp_path_factory.mktemp("e2e-video"), "s3", request)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(autouse=True)
def _fresh_workers(service):
    yield
    service.stop_workers()


def create_video_job(service, clip_path, segment_seconds: float) -> tuple[str, int, int]:
    """What POST /v1/videos does after its checks: probe, plan, store the clip, record the job, enqueue."""
    info = probe_video(clip_path)
    segments = plan_segments(info, segment_seconds)
    job_id = new_job_id()
    params = VideoSpec(
        model="tiny", source_key=keys.input(job_id, 0, "mp4"), time_base=f"{info.time_base.numerator}/{info.time_base.denominator}",
        frames=info.frames, width=info.width, height=info.height, fps=info.fps, duration=info.duration,
        audio_codec=info.audio_codec, preset="ultrafast",
        segments=[VideoSegmentSpec(**s.to_dict()) for s in segments],
    ).model_dump(mode="json")  # fmt: skip
    record, _ = service.jobs.create("video", OWNER, params, total=info.frames, job_id=job_id)
    service.store.put_file(keys.input(record.id, 0, "mp4"), clip_path)
    enqueue.send(segment_messages(record.id, len(segments)), app=service.app)
    return record.id, info.frames, len(segments)


def wait_for_pool(worker) -> None:
    """' ready.' is the consumer; the pool child still imports torch and builds its context after it, and a
    message only goes to a worker whose child is free."""
    wait_until(lambda: "worker process ready" in worker.log(), 120, f"the pool child of {worker.name}")


def fetch_result(service, job_id: str, path):
    service.store.get_file(keys.output(job_id, 0, "mp4"), path)
    return path


def test_two_workers_share_a_clip_and_match_one_worker(service, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=48, fps=12, width=96, height=64, gop=6)
    one = service.start_worker("video-solo", queues="stylize")
    solo_id, frames, count = create_video_job(service, clip, segment_seconds=1.0)
    assert count == 4
    solo = service.wait_status(solo_id, {"succeeded", "failed"}, timeout=240)
    assert solo.status == "succeeded", solo.error
    one.stop()
    service.workers.clear()

    for worker in (
        service.start_worker("video-a", queues="stylize"),
        service.start_worker("video-b", queues="stylize"),
    ):
        wait_for_pool(worker)
    pair_id, _, _ = create_video_job(service, clip, segment_seconds=1.0)
    pair = service.wait_status(pair_id, {"succeeded", "failed"}, timeout=240)
    assert pair.status == "succeeded", pair.error
    ran = pair.progress["segments"]
    assert sorted(s["segment"] for s in ran) == list(range(count))
    assert len({s["worker"] for s in ran}) == 2, f"all segments ran on one worker: {ran}"
    assert pair.progress["done"] == frames == pair.result["frames"]

    a = fetch_result(service, solo_id, tmp_path / "solo.mp4").read_bytes()
    b = fetch_result(service, pair_id, tmp_path / "pair.mp4").read_bytes()
    assert a == b, "two workers gave other bytes than one"
    assert count_frames(tmp_path / "pair.mp4")[0] == frames
    assert audio_seconds(tmp_path / "pair.mp4") == pytest.approx(audio_seconds(clip), abs=1e-6)


def test_sigkill_mid_segment_costs_that_segment_only(service, tmp_path):
    # Each segment must stay well inside the test's 8 s visibility timeout (a longer task is handed out again
    # while it runs), and the kill comes after the first frame of segment 0.
    clip = write_clip(tmp_path / "clip.mp4", frames=36, fps=12, width=128, height=96, gop=12)
    first = service.start_worker("video-killed", queues="stylize")
    wait_for_pool(first)
    job_id, frames, count = create_video_job(service, clip, segment_seconds=1.0)
    assert count == 3
    # The first progress event comes after the first frame of segment 0.
    wait_until(
        lambda: service.job(job_id).progress.get("done", 0) >= 1, 120, "frames of segment 0", interval=0.02
    )
    first.kill()
    killed_at = time.time()
    at_kill = service.job(job_id)
    assert at_kill.progress.get("segments_done", 0) < count, (
        "the clip finished before the kill; use larger frames"
    )
    assert not service.store.exists(keys.video_segment(job_id, count - 1))

    wait_for_redelivery_window(killed_at)
    service.start_worker("video-rescue", queues="stylize")
    done = service.wait_status(job_id, {"succeeded", "failed"}, timeout=240)
    assert done.status == "succeeded", done.error
    assert done.attempts >= 1
    assert sorted(s["segment"] for s in done.progress["segments"]) == list(range(count))
    writes = write_counts(service, keys.video_segments_prefix(job_id))
    assert writes == {keys.video_segment(job_id, n): 1 for n in range(count)}
    result = fetch_result(service, job_id, tmp_path / "result.mp4")
    decoded, pts = count_frames(result)  # decodes to the end
    assert decoded == frames == done.result["frames"]
    assert pts == sorted(pts) and len(set(pts)) == frames
