"""Service-wide job figures counted as they happen: the Lua scripts of workers.jobstore_lua update one Redis hash
in the same atomic step as each job transition, so reading the figures costs the same however many jobs exist.

Fields of the hash (redis_keys.METRICS):
  active:<kind>:<status>        jobs queued or running now (+1 entering the status, -1 leaving it)
  finished:<kind>:<status>      jobs that ended in each terminal status (FINISHED_STATUSES), ever (a counter)
  duration_bucket:<kind>:<le>   finished jobs that ran at most `le` seconds (cumulative, as Prometheus wants)
  duration_count:<kind>, duration_sum:<kind>   finished jobs that had started, and their run time in seconds
  images                        images (video frames) stylized by finished jobs, ever
  device_errors                 tasks that failed on a broken device (CUDA errors), ever
Queued jobs also sit in a sorted set per kind (redis_keys.metrics_queued) for the age of the oldest one.
Images also go into a key per IMAGE_SLOT_SECONDS slot, so a reader can sum the last RATE_WINDOW_SECONDS.
"""

from __future__ import annotations

# Upper bounds (seconds) of the run-time histogram: a 0.1 s image to a day-long training.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
# Images of jobs that finished within this window count towards images per second.
RATE_WINDOW_SECONDS = 300
# Width of one images-per-slot key; the window is read as RATE_WINDOW_SECONDS // IMAGE_SLOT_SECONDS keys.
IMAGE_SLOT_SECONDS = 10

ACTIVE_STATUSES = ("queued", "running")
# Every terminal status (workers.jobstore.TERMINAL_STATUSES, spelled out: the job store imports this module).
FINISHED_STATUSES = ("succeeded", "partial", "failed", "canceled", "expired")

# Lua, prepended to every script that must leave a terminal job alone: is_terminal(status).
TERMINAL_LUA = (
    "local TERMINAL = {"
    + ", ".join(f"['{status}'] = true" for status in FINISHED_STATUSES)
    + "}\nlocal function is_terminal(status) return status == false or status == nil or TERMINAL[status] == true end\n"
    # A job that ends gives its tenant's concurrent-job slot back (api.limits.ActiveJobSlots): O(1) quotas.
    + "local function release_slot(job_key)\n"
    + "  local slots, id = unpack(redis.call('HMGET', job_key, 'active_key', 'id'))\n"
    + "  if slots then redis.call('ZREM', slots, 'j:' .. id) end\n"
    + "end\n"
)


def active_field(kind: str, status: str) -> str:
    return f"active:{kind}:{status}"


def finished_field(kind: str, status: str) -> str:
    return f"finished:{kind}:{status}"


def bucket_label(bound: float) -> str:
    """The `le` label of a bucket, and the end of its field name (1 -> '1', 0.25 -> '0.25')."""
    return str(bound)


def duration_bucket_field(kind: str, bound: float) -> str:
    return f"duration_bucket:{kind}:{bucket_label(bound)}"


def duration_count_field(kind: str) -> str:
    return f"duration_count:{kind}"


def duration_sum_field(kind: str) -> str:
    return f"duration_sum:{kind}"


IMAGES_FIELD = "images"
DEVICE_ERRORS_FIELD = "device_errors"


def image_slot(now: float) -> int:
    return int(now // IMAGE_SLOT_SECONDS)


def window_slots(now: float) -> list[int]:
    """The slots whose images count as "in the last RATE_WINDOW_SECONDS", the current (partial) one included."""
    current = image_slot(now)
    return list(range(current - RATE_WINDOW_SECONDS // IMAGE_SLOT_SECONDS + 1, current + 1))


# Lua, prepended to the scripts that end a job: counts the end of a job of `kind` that was in status `from`
# and ends in `to`. KEYS of the caller: metrics hash, images slot key. `started` may be false (never ran).
COUNT_END_LUA = (
    TERMINAL_LUA
    + "local DURATION_BUCKETS = {"
    + ", ".join(f"'{bucket_label(b)}'" for b in DURATION_BUCKETS)
    + "}\n"
    + f"local IMAGE_SLOT_TTL = {RATE_WINDOW_SECONDS + 2 * IMAGE_SLOT_SECONDS}\n"
    + """
local function leave_queue(metrics, kind, job_id)
  redis.call('ZREM', metrics .. ':queued:' .. kind, job_id)
end

local function count_end(metrics, slot_key, kind, from, to, started, now, done)
  redis.call('HINCRBY', metrics, 'active:' .. kind .. ':' .. from, -1)
  redis.call('HINCRBY', metrics, 'finished:' .. kind .. ':' .. to, 1)
  if started then
    local seconds = tonumber(now) - tonumber(started)
    for _, le in ipairs(DURATION_BUCKETS) do
      if seconds <= tonumber(le) then
        redis.call('HINCRBY', metrics, 'duration_bucket:' .. kind .. ':' .. le, 1)
      end
    end
    redis.call('HINCRBY', metrics, 'duration_count:' .. kind, 1)
    redis.call('HINCRBYFLOAT', metrics, 'duration_sum:' .. kind, seconds)
  end
  local images = tonumber(done) or 0
  if kind ~= 'train' and images > 0 then
    redis.call('HINCRBY', metrics, 'images', images)
    redis.call('INCRBY', slot_key, images)
    redis.call('EXPIRE', slot_key, IMAGE_SLOT_TTL)
  end
end
"""
)
