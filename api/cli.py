"""Service commands of `animegan`: serve, keys, submit, status, cancel (client side, over HTTP).

Nothing heavy is imported at module import: uvicorn, redis and httpx load inside the command that uses them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from workers import media
from workers.json_types import JSONObject
from workers.media import ImageFormat

if TYPE_CHECKING:
    from api.client import ApiClient

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
# Above this many bytes in one submission, images go up as direct uploads instead of one multipart body.
DIRECT_UPLOAD_BYTES = 64 * 1024 * 1024


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP API (uvicorn api.main:app)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="proxies whose X-Forwarded-For/-Proto to trust, comma-separated or '*' (behind an ingress: its "
        "pods' network); default: uvicorn's (127.0.0.1)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=float,
        default=None,
        help="seconds to let open requests finish after SIGTERM before closing them (SSE streams never end on "
        "their own); keep it below the pod's grace period",
    )
    serve.set_defaults(func=run)

    keys = subparsers.add_parser("keys", help="manage API keys (talks to Redis directly)")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = keys_sub.add_parser("create", help="create a key for a tenant; prints the token once")
    create.add_argument("--tenant", required=True, help="tenant name: lowercase letters, digits, - and _")
    create.set_defaults(func=run)
    revoke = keys_sub.add_parser("revoke", help="revoke every key of a tenant")
    revoke.add_argument("--tenant", required=True)
    revoke.set_defaults(func=run)

    submit = subparsers.add_parser(
        "submit", help="stylize files or folders through the API and download results"
    )
    submit.add_argument(
        "inputs",
        nargs="+",
        metavar="FILES_OR_FOLDERS",
        help="image files, folders of them, or https:// image URLs",
    )
    submit.add_argument("--model", required=True, help="model name (see GET /v1/models)")
    submit.add_argument("--out", required=True, type=Path, help="folder for the results")
    submit.add_argument("--format", choices=[f.value for f in ImageFormat], default="png")
    submit.add_argument("--size-mode", choices=("reference", "original", "max_side"), default="reference")
    submit.add_argument("--max-side", type=int, default=None)
    submit.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    submit.add_argument("--no-wait", action="store_true", help="print the job and return at once")
    submit.add_argument(
        "--wait",
        type=int,
        default=60,
        metavar="SECONDS",
        help="a single image: ask the API to answer with the finished job if it ends within this many seconds "
        "(Prefer: wait, at most 60; 0: poll instead); longer jobs are followed by polling",
    )
    submit.add_argument(
        "--cancel-after", default=None, metavar="DURATION", help="the job expires after this (90s, 5m, 1h30m)"
    )
    _add_connection(submit)
    submit.set_defaults(func=run)

    for name, text in (("status", "show a job"), ("cancel", "cancel a job")):
        cmd = subparsers.add_parser(name, help=text)
        cmd.add_argument("job_id", metavar="JOB")
        _add_connection(cmd)
        cmd.set_defaults(func=run)


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default=None, help="API base URL (default: ANIMEGAN_API_URL or local)")
    parser.add_argument("--key", default=None, help="API key (default: ANIMEGAN_API_KEY)")


def run(args: argparse.Namespace) -> int:
    import httpx

    from api.client import ApiClientError

    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "keys":
            return _keys(args)
        with _client(args) as client:
            if args.command == "submit":
                return _submit(client, args)
            if args.command == "status":
                print(json.dumps(client.job(args.job_id), indent=2))
                return 0
            job = client.cancel(args.job_id)
            if job["status"] == "running":
                # Cancellation is cooperative: say when it takes effect instead of a bare "running".
                print(
                    f"job {job['id']}: cancel requested; it is running and stops at its next safe point (between "
                    "images or training steps; a single image finishes its forward pass, then ends canceled "
                    "without a result)"
                )
            else:
                print(f"job {job['id']}: {job['status']}")
            return 0
    except ApiClientError as exc:
        print(f"animegan {args.command}: {exc}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        # The API is down or the URL is wrong: one line that says so, not httpx's 50-line traceback.
        print(
            f"animegan {args.command}: cannot reach the API at {_api_url(args)} ({type(exc).__name__}: {exc}); "
            "start it (./deploy/local/run.sh) or point --api / ANIMEGAN_API_URL at a running one",
            file=sys.stderr,
        )
        return 1


def _api_url(args: argparse.Namespace) -> str:
    from api.settings import ClientSettings

    return args.api or ClientSettings().api_url


def _client(args: argparse.Namespace) -> ApiClient:
    from api.client import ApiClient
    from api.settings import ClientSettings

    settings = ClientSettings()
    key = args.key or (settings.api_key.get_secret_value() if settings.api_key else None)
    return ApiClient(_api_url(args), api_key=key, timeout=settings.http_timeout_seconds)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.request_logs import uvicorn_json_config
    from api.settings import ApiSettings
    from workers.settings import load_settings

    settings = load_settings(
        ApiSettings
    )  # fail here, with every bad variable named, rather than inside uvicorn
    if settings.metrics_port is not None and args.workers > 1:
        # Each uvicorn worker would try to bind the one metrics port, and each counts only its own requests.
        logger.error("ANIMEGAN_METRICS_PORT needs --workers 1 (run more replicas instead of more workers)")
        return 2
    # JSON from uvicorn's first line on; in text mode uvicorn keeps its own format.
    log_config = uvicorn_json_config() if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG
    uvicorn.run(
        "api.main:app", host=args.host, port=args.port, workers=args.workers, log_level="info",
        log_config=log_config, forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=args.graceful_timeout,
    )  # fmt: skip
    return 0


def _keys(args: argparse.Namespace) -> int:

    from api.auth import InvalidTenant, create_api_key, revoke_tenant_keys
    from api.settings import ApiSettings
    from workers.redis_connection import connect
    from workers.settings import load_settings

    settings = load_settings(ApiSettings)
    client = connect(settings, decode_responses=True)
    try:
        if args.keys_command == "create":
            token = create_api_key(client, args.tenant)
            print(token)
            print(f"(API key for tenant {args.tenant!r}; it is shown only this once)", file=sys.stderr)
        else:
            count = revoke_tenant_keys(client, args.tenant)
            print(f"revoked {count} key(s) of tenant {args.tenant!r}", file=sys.stderr)
    except InvalidTenant as exc:
        print(f"animegan keys: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    return 0


def collect_images(inputs: list[str]) -> list[Path]:
    """Files as given, and the images of folders (sorted, not recursive); OSError names a missing path."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path} is neither a file nor a folder")
    if not found:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {' '.join(inputs)}")
    return found


def readable_images(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The paths Pillow can read as images, and one line per skipped path saying why.

    `animegan stylize` skips an unreadable file and goes on; submit does the same, since the API would refuse
    the whole batch for it (415) and nothing of the folder would be stylized.
    """
    from PIL import Image, UnidentifiedImageError

    good, skipped = [], []
    for path in paths:
        try:
            with Image.open(path) as img:
                img.verify()
            good.append(path)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            reason = "not a readable image" if isinstance(exc, UnidentifiedImageError) else str(exc)
            skipped.append(f"animegan submit: skipped {path}: {reason}")
    return good, skipped


def _submit(client: ApiClient, args: argparse.Namespace) -> int:
    urls = [item for item in args.inputs if item.startswith(("https://", "http://"))]
    if urls:
        if len(urls) != len(args.inputs):
            print("animegan submit: give image URLs or files and folders, not both", file=sys.stderr)
            return 2
        return _submit_images(client, args, [], urls)

    paths, skipped = readable_images(collect_images(args.inputs))
    for line in skipped:
        print(line, file=sys.stderr)
    if not paths:
        print(f"animegan submit: none of the {len(skipped)} file(s) is a readable image", file=sys.stderr)
        return 1
    code = _submit_images(client, args, paths)
    return 1 if skipped else code


def _submit_images(
    client: ApiClient, args: argparse.Namespace, paths: list[Path], urls: list[str] | None = None
) -> int:
    """Submit the files (`paths`), or the image URLs (`urls`, fetched by the service's workers), as one job."""
    from tqdm import tqdm

    options = dict(
        model=args.model,
        format=args.format,
        size_mode=args.size_mode,
        max_side=args.max_side,
        cancel_after=args.cancel_after,
    )
    wait = None if args.no_wait or args.wait <= 0 else min(args.wait, 60, args.timeout or 60)
    if urls:
        # Results are named after the URLs' last path segments, as files are after their names.
        paths = [Path(Path(urlsplit(url).path).name or f"image-{i}") for i, url in enumerate(urls)]
        job = (
            client.stylize(image_url=urls[0], wait=wait, **options)
            if len(urls) == 1
            else (client.batch(image_urls=urls, **options))
        )
    elif len(paths) == 1:
        job = client.stylize(paths[0], wait=wait, **options)
    elif sum(p.stat().st_size for p in paths) > DIRECT_UPLOAD_BYTES:
        ids = [client.upload(p, purpose="image") for p in tqdm(paths, desc="uploading", unit="img")]
        job = client.batch(upload_ids=ids, **options)
    else:
        job = client.batch(paths, **options)
    print(f"job {job['id']} ({job['kind']}, {len(paths)} image(s), model {args.model})", file=sys.stderr)
    if args.no_wait:
        print(json.dumps(job, indent=2))
        return 0
    from api.client import TERMINAL

    if job["status"] in TERMINAL:  # answered finished (Prefer: wait): nothing to follow
        return _finish(client, job, paths, args)
    with tqdm(total=len(paths), desc="stylizing", unit="img") as bar:

        def show(current: JSONObject) -> None:
            progress = current.get("progress") or {}
            bar.update(int(progress.get("done", 0)) + int(progress.get("failed", 0)) - bar.n)
            bar.set_postfix_str(current["status"])

        job = client.wait(job["id"], timeout=args.timeout, on_progress=show)
    return _finish(client, job, paths, args)


def _finish(client: ApiClient, job: JSONObject, paths: list[Path], args: argparse.Namespace) -> int:
    """Download what the job produced; 0 only when every image succeeded, else 1 with how many failed and why."""
    error = job.get("error") or {}
    if job["status"] not in ("succeeded", "partial"):
        print(
            f"job {job['id']} {job['status']}: {error.get('code', '')}: {error.get('message', '')}".rstrip(
                ": "
            ),
            file=sys.stderr,
        )
        return 1
    code = _download(client, job, paths, args)
    if job["status"] == "partial":
        # The failure summary by code (e.g. "2 of 5 images failed: bad_image x2 (e.g. ...)").
        print(f"job {job['id']} partial: {error.get('message', '')}", file=sys.stderr)
        return 1
    return code


def _download(client: ApiClient, job: JSONObject, paths: list[Path], args: argparse.Namespace) -> int:
    from api.client import ApiClientError

    args.out.mkdir(parents=True, exist_ok=True)
    ext = media.by_format(args.format).ext
    if job["kind"] == "stylize":
        target = args.out / f"{paths[0].stem}.{ext}"
        client.download_result(job["id"], target)
        print(target)
        return 0
    stems = [p.stem for p in paths]
    failed = 0
    for index, stem in enumerate(stems):
        # Two inputs with one stem (a/x.jpg, b/x.png) keep their index so neither overwrites the other.
        name = f"{stem}.{ext}" if stems.count(stem) == 1 else f"{index:05d}-{stem}.{ext}"
        try:
            client.download_result(job["id"], args.out / name, index=index)
        except ApiClientError as exc:
            failed += 1
            print(f"{paths[index]}: {exc.message}", file=sys.stderr)
    print(f"{len(stems) - failed} of {len(stems)} result(s) in {args.out}", file=sys.stderr)
    return 1 if failed else 0
