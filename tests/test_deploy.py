"""deploy/ checked without a Docker engine: YAML structure, settings names and values, and image commands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT_ROOT / "deploy"
K8S = DEPLOY / "k8s"
ANIMEGAN = Path(sys.executable).with_name("animegan")
GPU_WORKERS = ("worker-stylize", "worker-train")


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yml").read_text())


def k8s_objects() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def env_example() -> dict[str, str]:
    lines = (DEPLOY / "env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error} against `env`; $$ is a literal $."""

    def one(match: re.Match) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if op == ":-":
            return arg
        raise AssertionError(f"compose needs ${name} ({arg or 'no default'}); deploy/env.example lacks it")

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value).replace("$$", "$")


def service_env(name: str) -> dict[str, str]:
    env = env_example()
    raw = compose()["services"][name].get("environment", {})
    return {key: interpolate(str(value), env) for key, value in raw.items()}


def setting_env_names() -> set[str]:
    from api.settings import ApiSettings, ClientSettings
    from workers.settings import ENV_PREFIX, WorkerSettings

    fields = {*WorkerSettings.model_fields, *ApiSettings.model_fields, *ClientSettings.model_fields}
    return {f"{ENV_PREFIX}{name.upper()}" for name in fields}


def dockerfile_instructions(name: str) -> dict[str, list[str]]:
    """Instruction -> list of argument strings, with backslash continuations joined."""
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.setdefault(keyword.upper(), []).append(rest.strip())
    return found


def image_command(name: str) -> list[str]:
    """ENTRYPOINT + CMD of an image; both must be exec form (JSON) so the process is PID 1 and gets SIGTERM."""
    ins = dockerfile_instructions(name)
    entrypoint, cmd = json.loads(ins["ENTRYPOINT"][-1]), json.loads(ins["CMD"][-1])
    return entrypoint + cmd


def run_help(args: list[str], block_torch: bool = False) -> subprocess.CompletedProcess:
    """Run the `animegan` console script with `args` + --help, as the image would, outside a container."""
    if not block_torch:
        return subprocess.run([str(ANIMEGAN), *args, "--help"], capture_output=True, text=True, timeout=120)
    return run_cli_without_torch([*args, "--help"])


def run_cli_without_torch(args: list[str]) -> subprocess.CompletedProcess:
    """`animegan ARGS` as on the API host, which has no torch: importing it fails the way it would there."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'cv2', 'safetensors'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked: API host)', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from animegan.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    cmd = [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)


def test_compose_services_wait_on_health():
    services = compose()["services"]
    assert set(services) >= {"redis", "minio", "minio-init", "api", *GPU_WORKERS}
    for name, svc in services.items():
        one_shot = svc.get("restart") == "no"
        if not one_shot:
            assert svc.get("healthcheck", {}).get("test"), f"compose service {name!r} has no healthcheck"
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name!r}: depends_on must name a condition for each dependency"
        for dep, spec in deps.items():
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), (
                    f"{name!r} waits on {dep!r}, which has no healthcheck"
                )
            else:
                assert condition == "service_completed_successfully", f"{name!r} -> {dep!r}: {condition!r}"
                assert services[dep].get("restart") == "no", f"{dep!r} is waited on to finish but restarts"
    for name in ("api", *GPU_WORKERS):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "minio-init" in services[name]["depends_on"], f"{name!r} would start before the bucket exists"


def test_compose_persistence_bucket_and_gpus():
    services = compose()["services"]
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes", "Redis must persist the queue (AOF)"
    assert "mc mb" in " ".join(services["minio-init"]["command"])
    for name in GPU_WORKERS:
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d["capabilities"] for d in devices), f"{name!r} reserves no GPU"
    assert "deploy" not in services["api"], "the API needs no GPU"
    queues = {name: services[name]["environment"]["ANIMEGAN_QUEUES"] for name in GPU_WORKERS}
    assert queues == {"worker-stylize": "stylize,webhooks", "worker-train": "train"}


def test_every_animegan_variable_in_deploy_is_a_setting():
    used: dict[str, set[str]] = {}
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            for name in re.findall(r"\bANIMEGAN_[A-Z0-9_]+", path.read_text()):
                used.setdefault(name, set()).add(path.relative_to(PROJECT_ROOT).as_posix())
    assert len(used) >= 10, f"expected deploy/ to configure the services, found only {sorted(used)}"
    unknown = {name: sorted(where) for name, where in used.items() if name not in setting_env_names()}
    assert not unknown, f"ANIMEGAN_* names in deploy/ that no settings class reads: {unknown}"


def test_compose_environment_values_validate(monkeypatch, tmp_path):
    from api.settings import ApiSettings
    from workers.settings import WorkerSettings, load_settings

    # Paths inside the image get local stand-ins so the settings' existence checks can run here.
    (tmp_path / "vgg19.npy").write_bytes(b"")
    stand_ins = {"ANIMEGAN_MODELS_DIR": str(tmp_path), "ANIMEGAN_VGG_WEIGHTS": str(tmp_path / "vgg19.npy")}
    for service, cls in [
        ("api", ApiSettings),
        ("worker-stylize", WorkerSettings),
        ("worker-train", WorkerSettings),
    ]:
        env = service_env(service)
        env.update({key: value for key, value in stand_ins.items() if key in env})
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings(cls)
        assert settings.storage_scheme == "s3" and settings.s3_endpoint_url == "http://minio:9000"
        for key in env:
            monkeypatch.delenv(key)


def test_images_exec_their_process_and_check_health():
    api, worker = dockerfile_instructions("api.Dockerfile"), dockerfile_instructions("worker.Dockerfile")
    for name, ins in [("api", api), ("worker", worker)]:
        assert ins.get("HEALTHCHECK"), f"{name} image has no HEALTHCHECK"
        assert ins.get("USER"), f"{name} image runs as root"
    assert not any("cuda" in line.lower() for line in api["FROM"]), "the API image must not be a CUDA image"
    assert any('".[api]"' in line for line in api["RUN"])
    assert "nvidia/cuda" in " ".join(worker["ARG"] + worker["FROM"])
    assert any("download.pytorch.org/whl/cu" in line for line in worker["ARG"])
    assert image_command("api.Dockerfile")[:2] == ["animegan", "serve"]
    assert image_command("worker.Dockerfile")[:2] == ["animegan", "worker"]


def test_api_image_command_runs_without_torch():
    args = image_command("api.Dockerfile")[1:]
    proc = run_help(args, block_torch=True)
    assert proc.returncode == 0, f"`animegan {' '.join(args)}` without torch failed:\n{proc.stderr[-2000:]}"
    assert "--port" in proc.stdout


def test_library_command_without_torch_says_which_extra_is_missing(tmp_path):
    proc = run_cli_without_torch(["info", str(tmp_path / "g.safetensors")])
    assert proc.returncode == 1
    assert "[ml] extra" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_every_container_command_parses():
    commands = [image_command("api.Dockerfile")[1:], image_command("worker.Dockerfile")[1:]]
    commands += [
        svc["command"]
        for svc in compose()["services"].values()
        if svc.get("image", "").startswith("animegan") and "command" in svc
    ]
    for doc in k8s_objects():
        if doc["kind"] == "Deployment":
            commands += [c["args"] for c in doc["spec"]["template"]["spec"]["containers"]]
    assert len(commands) >= 7
    for args in commands:
        proc = run_help(args)
        assert proc.returncode == 0, f"`animegan {' '.join(args)} --help` failed:\n{proc.stderr[-2000:]}"


def test_worker_healthcheck_reaches_the_celery_app():
    # The images' worker healthcheck is `celery -A workers.celery_app inspect ping ...`.
    celery = Path(sys.executable).with_name("celery")
    cmd = [str(celery), "-A", "workers.celery_app", "inspect", "ping", "--help"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_k8s_objects_are_complete_and_consistent():
    from workers.contracts import Queues

    objects = k8s_objects()
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in objects:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    assert {"Deployment", "Service", "ConfigMap", "Secret", "ScaledObject"} <= set(by_kind)
    secret_keys = {k for s in by_kind["Secret"].values() for k in s.get("stringData", {})}
    for name, dep in by_kind["Deployment"].items():
        template = dep["spec"]["template"]
        labels = dep["spec"]["selector"]["matchLabels"]
        assert labels.items() <= template["metadata"]["labels"].items(), f"{name}: selector misses its pods"
        for container in template["spec"]["containers"]:
            gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
            assert (gpus == 1) == name.startswith("animegan-worker"), f"{name}: GPU limit {gpus!r}"
            for ref in container.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in by_kind["ConfigMap"]
                else:
                    assert ref["secretRef"]["name"] in by_kind["Secret"]
        for volume in template["spec"].get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            assert claim is None or claim in by_kind["PersistentVolumeClaim"], f"{name}: no PVC {claim!r}"
    for svc in by_kind["Service"].values():
        targets = [
            d
            for d in by_kind["Deployment"].values()
            if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"Service {svc['metadata']['name']} selects no Deployment"
    queue_names = {queue.value for queue in Queues}
    for name, scaled in by_kind["ScaledObject"].items():
        assert scaled["spec"]["scaleTargetRef"]["name"] in by_kind["Deployment"]
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "redis"
            assert trigger["metadata"]["listName"] in queue_names, f"{name}: not a Celery queue"
            assert int(trigger["metadata"]["listLength"]) >= 1
            auth = by_kind["TriggerAuthentication"][trigger["authenticationRef"]["name"]]
            assert all(ref["key"] in secret_keys for ref in auth["spec"]["secretTargetRef"])


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed: kustomize rendering not checked")
    proc = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rendered = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    assert len(rendered) == len(k8s_objects())
    assert all(
        doc["metadata"].get("namespace") == "animegan" for doc in rendered if doc["kind"] != "Namespace"
    )


def extra_requirements(extra: str) -> set[str]:
    """Distribution names `pip install ".[extra]"` asks for, following the project's self-referencing extras."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    names, pending, seen = (
        set(),
        [*project["dependencies"], *project["optional-dependencies"][extra]],
        {extra},
    )
    while pending:
        req = Requirement(pending.pop())
        if req.name == project["name"]:
            for sub in req.extras - seen:
                seen.add(sub)
                pending += project["optional-dependencies"][sub]
        else:
            names.add(req.name.lower())
    return names


def test_api_extra_installs_no_torch_and_worker_extra_does():
    heavy = {"torch", "opencv-python-headless", "safetensors"}
    api = extra_requirements("api")
    assert not api & heavy, f"pip install '.[api]' would pull {sorted(api & heavy)}"
    assert {"fastapi", "uvicorn", "celery", "redis", "boto3", "pydantic-settings"} <= api
    assert heavy | {"celery", "boto3"} <= extra_requirements("worker")
    pins = (PROJECT_ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in pins, "constraints.txt must pin torch without a local (+cpu/+cuXXX) label"
