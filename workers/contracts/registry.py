"""The registry of job kinds: the API and the workers both read KINDS, so adding a kind is its own modules plus
one line here (README, Architecture: "Adding a job kind")."""

from __future__ import annotations

from workers.contracts import fetch, webhooks
from workers.contracts.base import JobKind, Queues
from workers.contracts.batch import BATCH
from workers.contracts.export import EXPORT
from workers.contracts.images import STYLIZE
from workers.contracts.training import TRAIN
from workers.contracts.video import VIDEO

KINDS: dict[str, JobKind] = {kind.name: kind for kind in (STYLIZE, BATCH, VIDEO, TRAIN, EXPORT)}

# Every task name and its queue (the Celery app's task_routes), and the modules that define the tasks.
TASK_QUEUES: dict[str, Queues] = {
    **{task: kind.queue for kind in KINDS.values() for task in kind.tasks},
    webhooks.DELIVER_TASK: webhooks.QUEUE,
    fetch.FETCH_TASK: fetch.QUEUE,
}
TASK_MODULES: tuple[str, ...] = (
    *(kind.task_module for kind in KINDS.values()),
    webhooks.TASK_MODULE,
    fetch.TASK_MODULE,
)
