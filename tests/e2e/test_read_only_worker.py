"""A stylize worker as deploy/k8s/worker-stylize.yaml runs it: a read-only root where only the manifest's emptyDir
volumes are writable (a mount namespace of its own: `/` remounted read-only, a tmpfs on each emptyDir path, and
the manifest's HOME and XDG_CACHE_HOME). It starts, registers its built-in model and runs a batch on S3."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.api.test_read_only_root import can_make_mount_namespaces, manifest_container
from tests.conftest import PROJECT_ROOT
from tests.e2e.conftest import OWNER, make_service, png_bytes
from workers import enqueue, keys
from workers.contracts.batch import chunk_messages

pytestmark = pytest.mark.e2e

MANIFEST = PROJECT_ROOT / "deploy" / "k8s" / "worker-stylize.yaml"
# The test's own files (the built-in model, VGG) lie under pytest's /tmp, which the pod's tmpfs hides: they are
# bound read-only at this empty folder first, as the image ships its models outside /tmp.
FILES_AT = "/srv"


@pytest.fixture(scope="module")
def service(request, tmp_path_factory):
    svc = make_service(tmp_path_factory.mktemp("e2e-read-only"), "s3", request)
    try:
        yield svc
    finally:
        svc.close()


def test_a_stylize_worker_runs_on_its_manifests_read_only_root(service):
    container, mounts = manifest_container(MANIFEST)
    env = {e["name"]: e["value"] for e in container.get("env", []) if not e["name"].startswith("ANIMEGAN_")}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    if not can_make_mount_namespaces():
        pytest.skip("cannot create a mount namespace here (needs root or user namespaces)")
    root = service.root
    tmpfs = " && ".join(f"mount -t tmpfs -o size={size} tmpfs {path}" for path, size in mounts)
    script = (
        f"mount --bind {root} {FILES_AT} && mount -o remount,bind,ro {FILES_AT} && "
        f"mount -o remount,bind,ro / && {tmpfs} && " + 'exec "$@"'
    )
    record, _ = service.jobs.create("batch", OWNER, {"model": "tiny", "size_mode": "original"}, total=3)
    input_keys = []
    for index in range(3):
        key = keys.input(record.id, index, "png")
        service.store.put_bytes(key, png_bytes((64, 48), seed=index))
        input_keys.append(key)
    moved = {
        name: service.env[name].replace(str(root), FILES_AT)
        for name in ("ANIMEGAN_MODELS_DIR", "ANIMEGAN_VGG_WEIGHTS")
    }
    worker = service.start_worker(
        "read-only",
        queues="stylize",
        wrapper=("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"),
        PYTHONDONTWRITEBYTECODE="1",
        **env,
        **moved,
    )
    enqueue.send(chunk_messages(record.id, input_keys, 2), app=service.app)
    finished = service.wait_status(record.id, {"succeeded", "failed"}, timeout=120)
    assert finished.status == "succeeded", f"{finished.error}\n{worker.log()[-3000:]}"
    with zipfile.ZipFile(io.BytesIO(service.store.get_bytes(keys.output_archive(record.id)))) as zf:
        assert len(zf.namelist()) == 3
    assert "Read-only file system" not in worker.log()
