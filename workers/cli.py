"""`animegan worker`: start a Celery worker (prefork pool) on the service's queues; and the operators' commands
beside it: `worker-alive` (liveness probe), `reconcile` (re-enqueue stuck training jobs), `fetch-object`, `register-builtin-models`.

Imports nothing heavy at module import: the Celery app and the tasks load only when the command runs.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.settings import WorkerSettings

logger = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
EXIT_SERVICES = 5  # exit status of a worker that found Redis or storage unreachable for startup_wait_seconds


class ServicesUnreachable(RuntimeError):
    """Redis or object storage did not answer a starting worker within its wait; the message says which."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run a job worker (Celery) on the stylize/train/webhooks queues",
        description="Start a Celery worker that runs stylize, batch, training and webhook jobs. Redis and "
        "storage come from ANIMEGAN_* settings (ANIMEGAN_REDIS_URL, ANIMEGAN_STORAGE_URL, ...).",
    )
    parser.add_argument(
        "--queues",
        default=None,
        help="comma-separated queues to consume: stylize,train,webhooks (default: ANIMEGAN_QUEUES or all)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="worker processes (one per GPU is the usual choice; default 1)",
    )
    parser.add_argument("--loglevel", default="info", choices=LOG_LEVELS, help="Celery log level")
    parser.add_argument("--hostname", default=None, help="worker node name (default: celery's worker@host)")
    parser.add_argument(
        "--pool",
        default="prefork",
        choices=("prefork", "solo"),
        help="prefork (default: a crash only replaces the child) or solo (one process, no fork)",
    )
    parser.set_defaults(func=run)
    _register_operations(subparsers)


def _register_operations(subparsers: argparse._SubParsersAction) -> None:
    alive = subparsers.add_parser(
        "worker-alive",
        help="liveness probe: exit 0 while this host's worker heartbeat is fresh (no Redis involved)",
    )
    alive.add_argument("--max-age", type=float, default=None, help="seconds (default 60)")
    alive.set_defaults(func=run_alive)

    reconcile = subparsers.add_parser(
        "reconcile",
        help="re-enqueue training jobs stuck in running with no lease and no task (after a Redis failover)",
    )
    reconcile.add_argument("--every", type=float, default=0, help="repeat every SECONDS (default: one pass)")
    reconcile.add_argument(
        "--grace", type=float, default=None, help="leave jobs updated within SECONDS alone (default 180)"
    )
    reconcile.set_defaults(func=run_reconcile)

    builtins = subparsers.add_parser(
        "register-builtin-models",
        help="publish the built-in exports as public models (what worker start does; --replace to update them)",
    )
    builtins.add_argument(
        "--models-dir", type=Path, default=None, help="folder of *.safetensors (default: ANIMEGAN_MODELS_DIR)"
    )
    builtins.add_argument(
        "--replace",
        action="store_true",
        help="replace public models whose registered export differs (after a rollout, no older worker left)",
    )
    builtins.set_defaults(func=run_register_builtins)

    fetch = subparsers.add_parser(
        "fetch-object",
        help="copy one object from ANIMEGAN_STORAGE_URL to a local file (init containers: VGG19 weights)",
    )
    fetch.add_argument("key", help="storage key, e.g. weights/vgg19.npy")
    fetch.add_argument("dest", help="local file to write")
    fetch.add_argument(
        "--optional", action="store_true", help="a missing object or storage is a warning, exit 0"
    )
    fetch.set_defaults(func=run_fetch)


def run_alive(args: argparse.Namespace) -> int:
    from workers.settings import WorkerSettings, load_settings
    from workers.watchdog import HEARTBEAT_MAX_AGE_SECONDS, heartbeat_age

    path = load_settings(WorkerSettings).heartbeat_file
    age = heartbeat_age(path)
    limit = args.max_age if args.max_age is not None else HEARTBEAT_MAX_AGE_SECONDS
    if age is None or age > limit:
        print(f"worker not alive: heartbeat {path} is {'missing' if age is None else f'{age:.0f} s old'}")
        return 1
    return 0


def run_reconcile(args: argparse.Namespace) -> int:
    import time

    import redis
    from kombu.exceptions import OperationalError

    from workers.celery_app import get_app
    from workers.jobstore import JobStore
    from workers.reconciler import DEFAULT_GRACE_SECONDS, reconcile_once
    from workers.redis_connection import connect
    from workers.settings import ServiceSettings, load_settings

    settings = load_settings(ServiceSettings)
    _configure_logs(settings)
    client = connect(settings, decode_responses=True, socket_timeout=30, socket_connect_timeout=10)
    jobs = JobStore.from_settings(client, settings)
    grace = DEFAULT_GRACE_SECONDS if args.grace is None else args.grace
    while True:
        try:
            requeued = reconcile_once(jobs, client, get_app(), grace)
            logger.info("reconciler: %d job(s) re-enqueued or ended", len(requeued))
        except (redis.RedisError, OperationalError) as exc:
            # A looping reconciler outlives a Redis outage: the next pass tries again.
            if not args.every:
                raise
            logger.warning("reconciler: pass failed (%s); next in %.0f s", exc, args.every)
        if not args.every:
            return 0
        time.sleep(args.every)


def run_fetch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workers.exceptions import StorageError
    from workers.settings import ServiceSettings, load_settings
    from workers.storage import NotFound, open_store

    settings = load_settings(ServiceSettings)
    try:
        open_store(settings).get_file(args.key, Path(args.dest))
    except (NotFound, StorageError) as exc:
        if not args.optional:
            logger.error("could not fetch %s: %s", args.key, exc)
            return 1
        logger.warning("optional object %s not fetched (%s); going on without it", args.key, exc)
        return 0
    logger.warning("fetched %s to %s", args.key, args.dest)
    return 0


def _configure_logs(settings: object) -> None:
    if getattr(settings, "log_format", "text") == "json":
        from workers.json_logs import use_json

        use_json()


def run(args: argparse.Namespace) -> int:
    from workers.exceptions import ConfigurationError
    from workers.settings import KNOWN_QUEUES, WorkerSettings, load_settings

    if args.concurrency < 1:
        logger.error("--concurrency must be >= 1, got %d", args.concurrency)
        return 2
    try:
        settings = load_settings(WorkerSettings)
    except ConfigurationError as exc:
        logger.error("%s", exc)
        return 2
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else settings.queues
    unknown = [q for q in queues if q not in KNOWN_QUEUES]
    if unknown or not queues:
        logger.error(
            "--queues %r: unknown queue(s) %s; choose from %s", args.queues, unknown, ", ".join(KNOWN_QUEUES)
        )
        return 2

    from workers.device_health import EXIT_DEVICE, DeviceHealth, check_at_start

    # Before anything else: a GPU worker whose device cannot compute would fail every job it took.
    if not check_at_start(settings):
        return EXIT_DEVICE
    from workers.scratch import remove_stale_task_folders

    # No live task is quiet that long: the pool kills one at twice the visibility timeout (task_time_limit); at
    # least an hour, for workers that share a temp folder with others on different settings.
    remove_stale_task_folders(max(2 * settings.visibility_timeout_seconds, 3600))
    models_dir = settings.models_dir
    if models_dir is not None:
        try:
            _when_services_answer(settings, lambda: _register_builtin_models(settings, models_dir))
        except ServicesUnreachable as exc:
            logger.error("%s", exc)
            return EXIT_SERVICES
    # Registers the tasks on the app; loads no torch (that happens in each pool child).
    import workers.tasks  # noqa: F401
    from workers import watchdog
    from workers.celery_app import get_app
    from workers.tasks.runtime import use_device_health

    # Created before the pool forks, so every child counts into the same device health.
    health = DeviceHealth(settings.max_device_errors)
    use_device_health(health)
    dog = watchdog.install(settings, queues, device_failed=health.failed)
    if settings.log_format == "json":
        from workers.json_logs import install_celery_hooks

        install_celery_hooks()

    argv = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={args.concurrency}",
        f"--loglevel={args.loglevel.upper()}",
        f"--pool={args.pool}",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    logger.info("starting worker on queues %s (concurrency %d, pool %s)", queues, args.concurrency, args.pool)
    get_app().worker_main(argv=argv)
    # Celery's worker_main returns 0 whatever stopped it; a stall must exit non-zero to be seen as a failure.
    return dog.stopping or 0


def _when_services_answer(settings: WorkerSettings, action: Callable[[], None]) -> None:
    """Run `action` (which talks to Redis and storage), retrying with backoff while either is unreachable, for at
    most settings.startup_wait_seconds; then ServicesUnreachable naming the one that failed last."""
    import redis

    from workers.exceptions import StorageError

    deadline = time.monotonic() + settings.startup_wait_seconds
    delay = 1.0
    while True:
        try:
            action()
            return
        except (redis.RedisError, StorageError) as exc:
            which = "Redis" if isinstance(exc, redis.RedisError) else "object storage"
            if time.monotonic() + delay > deadline:
                raise ServicesUnreachable(
                    f"worker start: {which} did not answer within ANIMEGAN_STARTUP_WAIT_SECONDS="
                    f"{settings.startup_wait_seconds} ({type(exc).__name__}: {exc}); check "
                    f"{'ANIMEGAN_REDIS_URL' if which == 'Redis' else 'ANIMEGAN_STORAGE_URL and its endpoint'}"
                ) from exc
            logger.warning("worker start: %s unreachable (%s); retrying in %.0f s", which, exc, delay)
            time.sleep(delay)
            delay = min(2 * delay, 30.0)


def _register_builtin_models(settings: WorkerSettings, models_dir: Path, replace: bool = False) -> None:
    """Publish the exports in ANIMEGAN_MODELS_DIR as public models, so jobs can name them at once (an
    unchanged one costs nothing; another export under a registered name only with `replace`)."""

    from workers.redis_connection import connect
    from workers.registry import ModelRegistry
    from workers.storage import open_store

    client = connect(settings, socket_timeout=10, socket_connect_timeout=5)
    try:
        registered = ModelRegistry(client).register_builtin_models(models_dir, open_store(settings), replace)
    finally:
        client.close()
    logger.info("built-in models registered: %s", ", ".join(info.name for info in registered) or "none")


def run_register_builtins(args: argparse.Namespace) -> int:
    from workers.exceptions import ConfigurationError
    from workers.settings import WorkerSettings, load_settings

    try:
        settings = load_settings(WorkerSettings)
    except ConfigurationError as exc:
        logger.error("%s", exc)
        return 2
    models_dir = args.models_dir or settings.models_dir
    if models_dir is None:
        logger.error("no models folder: pass --models-dir or set ANIMEGAN_MODELS_DIR")
        return 2
    try:
        _when_services_answer(settings, lambda: _register_builtin_models(settings, models_dir, args.replace))
    except ServicesUnreachable as exc:
        logger.error("%s", exc)
        return EXIT_SERVICES
    return 0
