"""The API as deploy/k8s/api.yaml runs it: a read-only root filesystem where only the manifest's emptyDir volumes
are writable. The process runs in a mount namespace of its own (unshare) with `/` remounted read-only and a
tmpfs on each emptyDir mount path, so a write anywhere else fails as it would in the pod."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

from api.auth import create_api_key
from tests.api.conftest import BASE_ENV, REDIS_URL
from tests.conftest import PROJECT_ROOT, free_port, wait_until

API_MANIFEST = PROJECT_ROOT / "deploy" / "k8s" / "api.yaml"


def manifest_container(manifest: Path) -> tuple[dict, list[tuple[str, str]]]:
    """The first container of the manifest's Deployment, and (mount path, tmpfs size) of each writable emptyDir
    it mounts: the only paths that are writable in the pod."""
    deployment = next(d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = []
    for mount in container.get("volumeMounts", []):
        empty_dir = volumes[mount["name"]].get("emptyDir")
        if empty_dir is not None and not mount.get("readOnly"):
            size = str(empty_dir.get("sizeLimit", "1Gi")).replace("Gi", "g").replace("Mi", "m")
            mounts.append((mount["mountPath"], size))
    return container, mounts


def can_make_mount_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -o remount,bind,ro / && true"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


def noise_png(side: int, seed: int) -> bytes:
    """An incompressible PNG: about 3 * side**2 bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=0)
    return buf.getvalue()


def dataset_zip(count: int, side: int, seed: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            zf.writestr(f"set/{i}.png", noise_png(side, seed + i))
    return buf.getvalue()


@pytest.fixture
def read_only_api(tmp_path, s3_endpoint, s3_bucket):
    container, mounts = manifest_container(API_MANIFEST)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    if not can_make_mount_namespaces():
        pytest.skip("cannot create a mount namespace here (needs root or user namespaces)")
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.flushdb()
    port = free_port()
    env = {
        **os.environ,
        **BASE_ENV,
        "ANIMEGAN_REDIS_URL": REDIS_URL,
        "ANIMEGAN_STORAGE_URL": f"s3://{s3_bucket}/ro",
        "ANIMEGAN_S3_ENDPOINT_URL": s3_endpoint,
        "ANIMEGAN_S3_ACCESS_KEY_ID": "testing",
        "ANIMEGAN_S3_SECRET_ACCESS_KEY": "testing",
        "ANIMEGAN_S3_ADDRESSING_STYLE": "path",
        "ANIMEGAN_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024),
        "ANIMEGAN_MAX_REQUEST_BYTES": str(32 * 1024 * 1024),
        "ANIMEGAN_MAX_DATASET_IMAGES": "20",
        "ANIMEGAN_MAX_IMAGE_PIXELS": "4000000",
        "PYTHONDONTWRITEBYTECODE": "1",  # as the image sets it
    }
    env.pop("TMPDIR", None)  # the pod sets none: Python's tempfile falls back to /tmp
    mount_cmds = " && ".join(f"mount -t tmpfs -o size={size} tmpfs {path}" for path, size in mounts)
    script = "mount -o remount,bind,ro / && " + (f"{mount_cmds} && " if mount_cmds else "") + 'exec "$@"'
    log_path = tmp_path / "api.log"
    log = log_path.open("ab")
    argv = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"API exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, 60, "the read-only API to answer /healthz")
    key = create_api_key(client, "alice")
    try:
        yield httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60), log_path
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
        client.close()


def test_the_api_with_its_manifests_mounts_takes_large_uploads_and_trainings(read_only_api):
    """Starlette spools a multipart part above 1 MB to a temporary file, and POST /v1/trainings stages its
    zips in a temporary folder: both need the manifest's writable /tmp (without it: 400 and 500)."""
    import redis

    from workers.registry import ModelRegistry

    client, log_path = read_only_api
    with redis.Redis.from_url(REDIS_URL, decode_responses=True) as r:
        ModelRegistry(r).register("tiny", None, "models/public/tiny/generator.safetensors", {"arch": "v2"},
                                  public=True, source="builtin")  # fmt: skip
    photo = noise_png(1000, seed=1)
    assert len(photo) > 2_900_000
    answer = client.post(
        "/v1/stylize", data={"model": "tiny"}, files={"file": ("big.png", photo, "image/png")}
    )
    assert answer.status_code == 202, f"{answer.status_code} {answer.text}\n{log_path.read_text()[-3000:]}"

    photos, styles = dataset_zip(3, 400, seed=10), dataset_zip(3, 400, seed=20)
    assert min(len(photos), len(styles)) > 1_200_000
    answer = client.post(
        "/v1/trainings",
        data={"name": "ro-style", "hyperparameters": '{"image_size": 64, "max_total_steps": 4}'},
        files={
            "photos": ("p.zip", photos, "application/zip"),
            "styles": ("s.zip", styles, "application/zip"),
        },
    )
    assert answer.status_code == 202, f"{answer.status_code} {answer.text}\n{log_path.read_text()[-3000:]}"
