"""Contracts and the Celery configuration: payload round trips, the registry of kinds, routing through a real
Redis broker, a real (in-thread) worker consuming them, redelivery of a message whose consumer was SIGKILLed, and
import weight.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import time

import pytest
from celery import Celery
from pydantic import ValidationError

from workers import enqueue
from workers.celery_app import celery_config
from workers.contracts.base import PAYLOAD_VERSION, Queues
from workers.contracts.batch import BatchChunkPayload, chunk_messages
from workers.contracts.export import export_message
from workers.contracts.images import STYLIZE_TASK, StylizePayload, stylize_message
from workers.contracts.registry import KINDS, TASK_QUEUES
from workers.contracts.training import TrainSegmentPayload, segment_message
from workers.contracts.video import VideoSpec, join_message, segment_messages
from workers.contracts.webhooks import WebhookPayload, webhook_message
from workers.settings import ServiceSettings


def make_app(redis_url: str, visibility_timeout: int = 3600) -> Celery:
    """An app with the production configuration on the test database, without the real task module."""
    app = Celery("contracts-test", set_as_current=False)
    app.conf.update(
        celery_config(ServiceSettings(redis_url=redis_url, visibility_timeout_seconds=visibility_timeout))
    )
    return app


def queued_messages(redis_client, queue: str) -> list[dict]:
    """Messages waiting in a Redis-transport queue, with their decoded body (args, kwargs, embed)."""
    messages = []
    for raw in redis_client.lrange(queue, 0, -1):
        message = json.loads(raw)
        message["decoded"] = json.loads(base64.b64decode(message["body"]))
        messages.append(message)
    return messages


@pytest.mark.parametrize(
    "payload",
    [
        StylizePayload(job_id="j1", input_key="inputs/j1/000000.png"),
        BatchChunkPayload(
            job_id="j1", indices=[4, 5], input_keys=["inputs/j1/000004.png", "inputs/j1/000005.jpg"]
        ),
        TrainSegmentPayload(job_id="j1", segment=3),
        WebhookPayload(job_id="j1", event="succeeded"),
    ],
)
def test_payload_round_trip_through_json(payload):
    wire = json.loads(json.dumps(payload.model_dump(mode="json")))
    assert wire["version"] == PAYLOAD_VERSION
    assert type(payload).model_validate(wire) == payload
    assert (
        type(payload).model_validate({**wire, "added_later": 1}) == payload
    )  # newer producers may add fields


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        (StylizePayload, {"job_id": "j", "input_key": "../etc/passwd"}, "segment '..'"),
        (StylizePayload, {"job_id": "j", "input_key": "a", "version": 99}, "upgrade the workers"),
        (StylizePayload, {"job_id": "j/x", "input_key": "a"}, "not a valid id"),
        (BatchChunkPayload, {"job_id": "j", "indices": [0, 1], "input_keys": ["a"]}, "2 indices for 1 keys"),
        (TrainSegmentPayload, {"job_id": "j", "segment": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_payloads_are_refused_with_the_field_named(model, data, message):
    with pytest.raises(ValidationError, match=message):
        model.model_validate(data)


def test_configuration():
    conf = celery_config(ServiceSettings(visibility_timeout_seconds=120))
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"] and conf["task_ignore_result"]
    assert conf["worker_prefetch_multiplier"] == 1 and conf["accept_content"] == ["json"]
    assert conf["broker_transport_options"]["visibility_timeout"] == 120
    assert conf["result_backend_transport_options"]["visibility_timeout"] == 120
    assert conf["worker_send_task_events"] is False and conf["result_backend"] is None
    assert {route["queue"] for route in conf["task_routes"].values()} == {q.value for q in Queues}
    assert set(conf["task_routes"]) == set(TASK_QUEUES)
    assert conf["task_routes"]["animegan.train_segment"] == {"queue": "train"}
    assert conf["task_routes"]["animegan.deliver_webhook"] == {"queue": "webhooks"}
    assert {kind.name for kind in KINDS.values()} == {"stylize", "batch", "video", "train", "export"}
    # every kind's tasks route to the kind's queue, and no two kinds claim a task name
    names = [task for kind in KINDS.values() for task in kind.tasks]
    assert len(names) == len(set(names)) and all(
        conf["task_routes"][task] == {"queue": kind.queue.value}
        for kind in KINDS.values()
        for task in kind.tasks
    )
    # A broker blip must not SIGTERM running segments (issue 20, B3); a task past 2x the timeout is hung (B7).
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is False
    assert conf["task_time_limit"] == 240 and conf["broker_transport_options"]["health_check_interval"] == 25


def test_enqueue_helpers_route_by_name(redis_url, redis_client):
    app = make_app(redis_url)
    assert enqueue.send(stylize_message("j1", "inputs/j1/000000.png"), app=app) == ["j1-stylize"]
    keys = [f"inputs/j2/{i:06d}.png" for i in range(5)]
    assert enqueue.send(chunk_messages("j2", keys, 2), app=app) == ["j2-chunk-0", "j2-chunk-1", "j2-chunk-2"]
    enqueue.send(segment_message("j3", 0), app=app)
    enqueue.send(webhook_message("j1", "succeeded"), app=app)
    stylize = queued_messages(redis_client, "stylize")
    assert [m["headers"]["task"] for m in stylize] == ["animegan.batch_chunk"] * 3 + ["animegan.stylize"]
    last_chunk = stylize[0]["decoded"][0][0]  # LPUSH: newest first
    assert last_chunk["indices"] == [4] and last_chunk["input_keys"] == [keys[4]]
    assert all(m["content-type"] == "application/json" for m in stylize)
    (train,) = queued_messages(redis_client, "train")
    assert train["headers"]["id"] == "j3-segment-0" and train["decoded"][0][0]["segment"] == 0
    (hook,) = queued_messages(redis_client, "webhooks")
    assert hook["decoded"][0][0] == {"version": 1, "job_id": "j1", "event": "succeeded", "seq": 0}


def test_video_segments_and_join_go_to_the_stylize_queue_with_deterministic_ids(redis_url, redis_client):
    app = make_app(redis_url)
    assert enqueue.send(segment_messages("v1", 3), app=app) == [f"v1-video-segment-{n}" for n in range(3)]
    assert enqueue.send(join_message("v1"), app=app) == ["v1-video-join"]
    stylize = queued_messages(redis_client, "stylize")  # LPUSH: newest first
    assert [m["headers"]["task"] for m in stylize] == ["animegan.join_video"] + ["animegan.video_segment"] * 3
    assert [m["decoded"][0][0]["segment"] for m in stylize[1:]] == [2, 1, 0]
    with pytest.raises(ValueError, match="at least one segment"):
        segment_messages("v1", 0)
    params = {"model": "m", "source_key": "inputs/v1/000000.mp4", "time_base": "1/12288", "frames": 5, "width": 8, "height": 8,
              "fps": 12.0, "duration": 0.4, "segments": [{"index": 0, "start_pts": 0, "end_pts": None, "frames": 5}]}  # fmt: skip
    assert VideoSpec.model_validate(params).segments[0].frames == 5
    with pytest.raises(ValueError):
        VideoSpec.model_validate({**params, "source_key": "../x"})


def test_countdown_must_stay_inside_the_visibility_timeout(redis_url, redis_client):
    app = make_app(redis_url, visibility_timeout=60)
    enqueue.send(segment_message("j4", 2, countdown=5), app=app)
    (message,) = queued_messages(redis_client, "train")
    assert message["headers"]["eta"] is not None
    with pytest.raises(ValueError, match="shorter than the broker's visibility timeout"):
        enqueue.send(webhook_message("j4", "failed", countdown=60), app=app)
    assert queued_messages(redis_client, "webhooks") == []  # a refused message is not sent


def run_worker_until(app: Celery, received: list, count: int, timeout: float = 30) -> None:
    from celery.contrib.testing.worker import start_worker

    with start_worker(app, pool="solo", perform_ping_check=False, queues=[q.value for q in Queues]):
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            time.sleep(0.1)


def test_a_real_worker_consumes_what_the_helpers_send(redis_url):
    app = make_app(redis_url)
    received = []

    @app.task(name=STYLIZE_TASK, bind=True, shared=False)  # not added to later apps
    def stylize(self, payload):
        received.append((StylizePayload.model_validate(payload), self.request.delivery_info["routing_key"]))

    enqueue.send(stylize_message("j9", "inputs/j9/000000.png"), app=app)
    run_worker_until(app, received, 1)
    assert received == [(StylizePayload(job_id="j9", input_key="inputs/j9/000000.png"), "stylize")]


CONSUME_AND_DIE = textwrap.dedent(
    """
    import os, signal, sys
    from celery import Celery
    from workers.celery_app import celery_config
    from workers.settings import ServiceSettings

    app = Celery("victim", set_as_current=False)
    app.conf.update(celery_config(ServiceSettings(redis_url=sys.argv[1], visibility_timeout_seconds=2)))
    with app.connection_for_read() as conn:
        message = conn.default_channel.basic_get("stylize", no_ack=False)
        assert message is not None, "nothing to consume"
        print("got", message.headers["id"], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # dies holding the unacked message, like a lost node
    """
)


def test_message_of_a_sigkilled_consumer_is_redelivered_after_the_visibility_timeout(redis_url, redis_client):
    app = make_app(redis_url, visibility_timeout=2)
    enqueue.send(stylize_message("lost", "inputs/lost/000000.png"), app=app)
    proc = subprocess.run(
        [sys.executable, "-c", CONSUME_AND_DIE, redis_url], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -9 and "got lost-stylize" in proc.stdout, proc.stderr
    assert redis_client.llen("stylize") == 0 and redis_client.hlen("unacked") == 1
    received = []

    @app.task(name=STYLIZE_TASK, bind=True, shared=False)  # not added to later apps
    def stylize(self, payload):
        received.append((payload["job_id"], bool(self.request.delivery_info.get("redelivered"))))

    started = time.monotonic()
    run_worker_until(app, received, 1)
    assert received == [("lost", True)]
    assert time.monotonic() - started < 20
    assert redis_client.hlen("unacked") == 0  # acked after the task ran


def test_light_modules_load_no_torch():
    code = (
        "import sys, json\n"
        "import workers.contracts.registry, workers.celery_app, workers.enqueue, workers.jobstore\n"
        "import workers.storage, workers.registry\n"
        "import workers.lease, workers.keys, workers.settings\n"
        "from workers.celery_app import app\n"
        "app.conf.broker_url\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'animegan', 'numpy', 'safetensors', 'cv2', 'boto3'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # boto3 too: it loads only when an s3:// store is opened. animegan.atomic, the atomic-write helper the storage
    # backends share with the library, is standard library only (and animegan/__init__ holds a version string).
    loaded = [m for m in json.loads(proc.stdout) if m not in ("animegan", "animegan.atomic")]
    assert loaded == []


def _record(kind: str, params: dict, total: int):
    from workers.jobstore import JobRecord, JobStatus

    return JobRecord(
        id="j7", kind=kind, owner="alice", status=JobStatus.QUEUED, params=params, progress={"total": total},
        created_at=0.0, updated_at=0.0, started_at=None, finished_at=None, attempts=0, error=None, result=None,
        webhook_url=None, cancel_requested=False, last_event=None,
    )  # fmt: skip


def test_a_cancel_revokes_exactly_the_tasks_the_create_sent():
    settings = ServiceSettings(batch_chunk_size=16)
    keys = [f"inputs/j7/{i:06d}.png" for i in range(40)]
    sent = {
        "stylize": [stylize_message("j7", keys[0]).task_id],
        "batch": [m.task_id for m in chunk_messages("j7", keys, settings.batch_chunk_size)],
        "video": [m.task_id for m in segment_messages("j7", 3)],
        # A run not started yet has its first segment queued; once running, its segments check the cancel flag.
        "train": [segment_message("j7", 0).task_id],
        "export": [export_message("j7").task_id],
    }
    params = {"segments": [{"index": n} for n in range(3)]}
    for name, kind in KINDS.items():
        assert kind.queued_task_ids(_record(name, params, 40), settings) == sent[name], name
    assert len(sent["batch"]) == 3


def test_each_kind_names_typed_spec_and_result_models():
    from pydantic import BaseModel

    from workers.contracts.base import Result

    for kind in KINDS.values():
        assert issubclass(kind.spec, BaseModel) and issubclass(kind.result, Result), kind.name
        assert kind.task_module == f"workers.tasks.{kind.task_module.rsplit('.', 1)[-1]}"
        assert all(task.startswith("animegan.") for task in kind.tasks)
