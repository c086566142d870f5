"""Inputs by URL: not a job kind but a first task any kind's create may put before its own, on the egress queue.

A create whose input is an `https://` URL (a JSON body's field, or a multipart part of type message/external-body)
stores nothing: it sends one fetch task that downloads each URL (the worker, never the API, calls URLs that users
chose, with the webhook deliveries' private-address and DNS-rebinding protections), writes it at the key the job
reads, and then sends the kind's own first tasks, carried in `then` exactly as the API built them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workers.contracts.base import Message, Payload, Queues, task_id
from workers.keys import validate_key

FETCH_TASK = "animegan.fetch_inputs"
# The queue of the workers that may reach the internet (the webhook deliveries' pods: deploy/k8s/networkpolicy.yaml).
QUEUE = Queues.webhooks
TASK_MODULE = "workers.tasks.fetch"
# Fetches of one job at once (a batch of URLs): enough to hide latency, few enough to be polite to one host.
FETCH_CONCURRENCY = 4


class RemoteInput(BaseModel):
    """One URL to fetch: where the job reads it, the field it came from (for errors), and its size limit."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str = Field(min_length=1, max_length=2048)
    key: str
    field: str = Field(min_length=1, max_length=64)  # "file", "files[3]": what the job's error names
    max_bytes: int = Field(ge=1)
    image: bool = True  # check it is an image this service decodes (format, pixel limit) before the job runs

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        return validate_key(value)


class FollowUp(BaseModel):
    """A task to send once the inputs are stored: a Message as plain JSON (the fetch worker needs no kind's code)."""

    model_config = ConfigDict(frozen=True)

    task: str
    task_id: str
    payload: dict
    countdown: float | None = None


class ForwardedPayload(Payload):
    """A kind's payload sent on by the fetch task: every field kept as the API wrote it."""

    model_config = ConfigDict(extra="allow", frozen=True)


class FetchPayload(Payload):
    inputs: list[RemoteInput] = Field(min_length=1)
    then: list[FollowUp] = Field(min_length=1)

    def follow_ups(self) -> list[Message]:
        return [Message(f.task, ForwardedPayload(**f.payload), f.task_id, f.countdown) for f in self.then]


def fetch_message(job_id: str, inputs: list[RemoteInput], then: list[Message]) -> Message:
    """The task that fetches `inputs` of job `job_id`, then sends `then` (the kind's first tasks)."""
    follow = [
        FollowUp(
            task=m.task, task_id=m.task_id, payload=m.payload.model_dump(mode="json"), countdown=m.countdown
        )
        for m in then
    ]
    return Message(
        FETCH_TASK, FetchPayload(job_id=job_id, inputs=inputs, then=follow), task_id(job_id, "fetch")
    )
