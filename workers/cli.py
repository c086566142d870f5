"""`animegan worker`: start a Celery worker (prefork pool) on the service's queues.

Imports nothing heavy at module import: the Celery app and the tasks load only when the command runs.
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


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

    if settings.models_dir is not None:
        _register_builtin_models(settings)
    # Registers the tasks on the app; loads no torch (that happens in each pool child).
    import workers.tasks  # noqa: F401
    from workers.celery_app import get_app

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
    return 0


def _register_builtin_models(settings: object) -> None:
    """Publish the exports in ANIMEGAN_MODELS_DIR as public models, so jobs can name them at once."""
    import redis

    from workers.registry import ModelRegistry
    from workers.storage import open_store

    client = redis.Redis.from_url(settings.redis_url)
    try:
        registered = ModelRegistry(client).register_builtin_models(settings.models_dir, open_store(settings))
    finally:
        client.close()
    logger.info("built-in models registered: %s", ", ".join(info.name for info in registered) or "none")
