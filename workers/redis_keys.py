"""Every Redis key name and pub/sub channel of the service (Celery's own queues aside), built in one place.

All start with PREFIX, so the service's keys are easy to find, count and tell apart in a shared Redis.
Ids and owners never contain ':'; free text (idempotency keys, API tokens) only ever enters as a digest.
A deployment namespace (ANIMEGAN_NAMESPACE, applied by set_namespace when settings load) puts every key of one
deployment under `animegan:<namespace>:` and its broker queues under BROKER_PREFIX, so deployments that share a
Redis never see each other's jobs nor take each other's tasks.
"""

from __future__ import annotations

import re

PREFIX = "animegan:"
NAMESPACE = ""  # this process's deployment namespace ("" : the keys of a deployment without one)
# What kombu puts before every broker key (queues, unacked, fan-out channels): its global_keyprefix.
BROKER_PREFIX = ""
NAMESPACE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def namespace_prefixes(namespace: str) -> tuple[str, str]:
    """(key prefix, broker prefix) of a namespace; ("animegan:", "") without one, as before namespaces."""
    if not namespace:
        return "animegan:", ""
    if not NAMESPACE_RE.match(namespace):
        raise ValueError(
            f"namespace {namespace!r} must be 1-40 of a-z, 0-9, - and _, starting with a letter or digit"
        )
    return f"animegan:{namespace}:", f"animegan:{namespace}:broker:"


def set_namespace(namespace: str) -> None:
    """Use `namespace` for every key and broker queue this process names (call before any is used)."""
    global PREFIX, NAMESPACE, BROKER_PREFIX, JOB_PATTERN, NO_IDEMPOTENCY, DEADLINES, METRICS, KOMBU_UNACKED
    PREFIX, BROKER_PREFIX = namespace_prefixes(namespace)
    NAMESPACE = namespace
    JOB_PATTERN = f"{PREFIX}job:*"
    NO_IDEMPOTENCY = f"{PREFIX}idem:none"
    DEADLINES = f"{PREFIX}deadlines"
    METRICS = f"{PREFIX}metrics:jobs"
    KOMBU_UNACKED = f"{BROKER_PREFIX}unacked"


def broker_queue(queue: str) -> str:
    """The Redis list of a broker queue (kombu's key, with this deployment's BROKER_PREFIX)."""
    return f"{BROKER_PREFIX}{queue}"


# Job records (workers.jobstore): a hash per job, its companion keys, and an index per owner.
def job(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


JOB_PATTERN = f"{PREFIX}job:*"  # SCAN match for job hashes (their companion keys have one more ':' part)


def job_items(job_id: str) -> str:
    """Set of the batch item indices already counted (done or failed)."""
    return f"{job(job_id)}:items"


def job_item_errors(job_id: str) -> str:
    """Hash of item index -> JSON error of each failed batch item."""
    return f"{job(job_id)}:item_errors"


def job_video_segments(job_id: str) -> str:
    """Set of the video segment indices whose output is written (each counted once)."""
    return f"{job(job_id)}:segments"


def job_video_frames(job_id: str) -> str:
    """Hash of video segment index -> frames stylized so far (the job's progress in frames is their sum)."""
    return f"{job(job_id)}:frames"


def job_events(job_id: str) -> str:
    """Pub/sub channel of a job's progress events (JSON objects); the API streams it as SSE."""
    return f"{job(job_id)}:events"


def webhook_progress_gate(job_id: str) -> str:
    """Set for PROGRESS_WEBHOOK_SECONDS after a job's progress webhook is sent: the next waits till it expires."""
    return f"{job(job_id)}:webhook-progress"


def webhook_progress_seq(job_id: str) -> str:
    """Counter numbering a job's progress deliveries (each its own webhook-id)."""
    return f"{job(job_id)}:webhook-progress-seq"


def owner_jobs(owner: str) -> str:
    """Sorted set of an owner's job ids by creation time (listing, pagination)."""
    return f"{PREFIX}owner:{owner}:jobs"


def job_idempotency(owner: str, key_digest: str) -> str:
    """Idempotency-Key (its digest) of a job create -> job id and request hash."""
    return f"{PREFIX}idem:{owner}:{key_digest}"


NO_IDEMPOTENCY = f"{PREFIX}idem:none"
# Sorted set of the ids of jobs with a deadline (score: the deadline, epoch seconds), swept by JobStore.expire_due.
DEADLINES = f"{PREFIX}deadlines"  # placeholder KEYS entry of a create without an Idempotency-Key


# Service-wide job figures (workers.job_metrics): one hash the job transitions count into, and the images of
# finished jobs per time slot (for images per second).
METRICS = f"{PREFIX}metrics:jobs"


def metrics_images_slot(slot: int) -> str:
    return f"{PREFIX}metrics:images:{slot}"


def metrics_queued(kind: str) -> str:
    """Sorted set of a kind's queued jobs (score: creation time), kept by the same Lua scripts as METRICS; its
    first member is the oldest waiting job. The scripts derive it from METRICS, so the two must stay in step."""
    return f"{METRICS}:queued:{kind}"


def queue_tasks(queue: str, task: str) -> str:
    """Sorted set of the tasks named `task` sent to a broker queue and not started yet (score: send time)."""
    return f"{PREFIX}queue:{queue}:tasks:{task}"


def task_seconds(queue: str, task: str, model: str) -> str:
    """List of the run times of the latest `task`s of `model` on `queue` ("*": any model), newest first."""
    return f"{PREFIX}queue:{queue}:seconds:{task}:{model}"


def workers_alive(queue: str) -> str:
    """Sorted set of the workers consuming `queue` (score: their watchdog's last tick), for metrics."""
    return f"{PREFIX}workers:{queue}"


# Model registry (workers.registry): a record per model and an index per scope ("public" or "user:<owner>").
# The name comes first, as in keys.model(name, owner).
def model(name: str, scope: str) -> str:
    return f"{PREFIX}model:{scope}:{name}"


def models(scope: str) -> str:
    return f"{PREFIX}models:{scope}"


# The training job (its id) that will register model `name` in `scope`, from submit until it ends.
def model_reservation(name: str, scope: str) -> str:
    return f"{PREFIX}model-reserved:{scope}:{name}"


# Training leases (workers.lease): the holder and the fencing counter of a run.
def lease(job_id: str) -> str:
    return f"{PREFIX}lease:{job_id}"


def lease_fence(job_id: str) -> str:
    return f"{PREFIX}lease:{job_id}:fence"


# API keys (api.auth): token digest -> tenant, and each tenant's digests (for revocation).
def api_key(token_digest: str) -> str:
    return f"{PREFIX}apikey:{token_digest}"


def tenant_api_keys(tenant: str) -> str:
    return f"{PREFIX}tenant-keys:{tenant}"


# Per-key limits (api.limits): request counts per window, and the jobs a key has queued or running.
def rate_window(tenant: str, window_index: int) -> str:
    return f"{PREFIX}rate:{tenant}:{window_index}"


def active_jobs(tenant: str) -> str:
    """Sorted set of a tenant's jobs holding a concurrent-job slot ("j:<id>"); each leaves it as it ends."""
    return f"{PREFIX}active:{tenant}"


def active_reservations(tenant: str) -> str:
    """Sorted set of the slot reservations of a tenant's creates in flight (score: when taken)."""
    return f"{PREFIX}active:{tenant}:reserved"


def active_prune_gate(tenant: str) -> str:
    """Set for a minute after a tenant's full quota was checked job by job (api.limits.ActiveJobSlots.prune)."""
    return f"{PREFIX}active:{tenant}:pruned"


# Direct uploads (api.routes.uploads) and the idempotency slots of creates that are not jobs.
def upload(upload_id: str) -> str:
    return f"{PREFIX}upload:{upload_id}"


def upload_idempotency(tenant: str, key_digest: str) -> str:
    return f"{PREFIX}upload-idem:{tenant}:{key_digest}"


def model_idempotency(tenant: str, key_digest: str) -> str:
    return f"{PREFIX}model-idem:{tenant}:{key_digest}"


# Not ours, read only: kombu's Redis transport keeps delivered, unacknowledged messages in this hash
# (workers.reconciler looks there for a job's in-flight task).
KOMBU_UNACKED = "unacked"  # with BROKER_PREFIX in front once set_namespace ran
