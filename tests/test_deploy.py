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
    assert redis_cmd[redis_cmd.index("--maxmemory-policy") + 1] == "noeviction", (
        "Redis must never evict tasks"
    )
    assert "mc mb" in " ".join(services["minio-init"]["command"])
    env = env_example()
    gpu_ids = []
    for name in GPU_WORKERS:
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert all("gpu" in d["capabilities"] and "count" not in d for d in devices), f"{name!r}: {devices}"
        gpu_ids += [interpolate(i, env) for d in devices for i in d["device_ids"]]
    assert len(set(gpu_ids)) == len(GPU_WORKERS), f"the GPU workers share a GPU: {gpu_ids}"
    assert "deploy" not in services["api"], "the API needs no GPU"
    queues = {
        name: services[name]["environment"]["ANIMEGAN_QUEUES"] for name in [*GPU_WORKERS, "worker-webhooks"]
    }
    assert queues == {"worker-stylize": "stylize", "worker-train": "train", "worker-webhooks": "webhooks"}
    # Webhooks on the API image (no torch, no GPU), like deploy/k8s/worker-webhooks.yaml.
    assert services["worker-webhooks"]["build"]["dockerfile"] == "deploy/api.Dockerfile"
    assert "deploy" not in services["worker-webhooks"]
    # A missing vgg19.npy must not restart-loop the training worker.
    assert service_env("worker-train")["ANIMEGAN_VGG_WEIGHTS_OPTIONAL"] == "true"


def test_compose_minio_is_local_and_the_services_use_a_scoped_user():
    """MinIO's ports are published on loopback unless MINIO_BIND says otherwise; the root keys reach only MinIO
    and minio-init, which gives the services a user of their own whose policy names the bucket alone."""
    services = compose()["services"]
    env = env_example()
    for port in services["minio"]["ports"]:
        host = interpolate(port, {k: v for k, v in env.items() if k != "MINIO_BIND"})
        assert host.startswith("127.0.0.1:"), f"MinIO published beyond this host by default: {port}"
    roots = {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    for name, svc in services.items():
        text = json.dumps(svc.get("environment", {}))
        if name not in ("minio", "minio-init"):
            assert not any(root in text for root in roots), f"{name!r} gets MinIO's root keys"
    for name in ("api", "worker-webhooks", *GPU_WORKERS):
        values = service_env(name)
        assert values["ANIMEGAN_S3_ACCESS_KEY_ID"] == env["S3_ACCESS_KEY"] != env["MINIO_ROOT_USER"], name
        assert values["ANIMEGAN_S3_SECRET_ACCESS_KEY"] == env["S3_SECRET_KEY"], name
    init = " ".join(services["minio-init"]["command"])
    assert 'mc admin user add local "$$SERVICE_USER"' in init
    assert "mc admin policy attach local animegan-service" in init
    policy = json.loads(re.search(r"printf '(\{.*?\})'", init).group(1).replace("%s", "animegan"))
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {"arn:aws:s3:::animegan", "arn:aws:s3:::animegan/*"}, resources
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert not any(a == "s3:*" or a.startswith("admin:") for a in actions), actions


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
        ("worker-webhooks", WorkerSettings),
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
        # One Python everywhere (the tests and CI run 3.11); torch's wheel brings CUDA, no CUDA base image.
        assert ins["ARG"][0] == "PYTHON_BASE=python:3.11-slim-bookworm", f"{name} image: ARG {ins.get('ARG')}"
        # The base comes from the build argument, so a release build pins it by digest (@sha256:...).
        assert ins["FROM"] == ["${PYTHON_BASE}"], f"{name} image: FROM {ins['FROM']}"
    assert any('".[api]"' in line for line in api["RUN"])
    assert image_command("api.Dockerfile")[:2] == ["animegan", "serve"]
    assert image_command("worker.Dockerfile")[:2] == ["animegan", "worker"]


@pytest.mark.parametrize("name", ["api.Dockerfile", "worker.Dockerfile"])
def test_images_install_dependencies_before_the_source_with_constraints(name):
    lines = [
        line.strip()
        for line in (DEPLOY / name).read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    first_source = next(i for i, line in enumerate(lines) if line.startswith("COPY animegan"))
    deps = next(i for i, line in enumerate(lines) if "pip install -c constraints.txt" in line)
    assert deps < first_source, f"{name}: dependencies must be a layer of their own, before the source"
    assert all(
        "pip install" not in line or "-c constraints.txt" in line or "--no-deps" in line for line in lines
    )


def test_dockerignore_sends_only_what_the_images_copy():
    import fnmatch

    patterns = [
        line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines() if line.strip()
    ]
    patterns = [p for p in patterns if not p.startswith("#")]

    def ignored(path: str) -> bool:
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if (
                fnmatch.fnmatch(path, bare)
                or path.startswith(f"{bare}/")
                or fnmatch.fnmatch(path, f"**/{bare}")
            ):
                result = not negate
        return result

    for path in (".venv/bin/python", "data/storage/x", "tests/conftest.py", ".git/HEAD", "bench/x.py"):
        assert ignored(path), f"{path} would be sent to the Docker daemon"
    for path in (
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "workers/tasks.py",
        "models/builtin/a.safetensors",
        "deploy/docker/requirements-gpu.txt",
    ):
        assert not ignored(path), f"{path} is needed by a Dockerfile COPY"


def test_api_image_command_runs_without_torch():
    args = image_command("api.Dockerfile")[1:]
    proc = run_help(args, block_torch=True)
    assert proc.returncode == 0, f"`animegan {' '.join(args)}` without torch failed:\n{proc.stderr[-2000:]}"
    assert "--port" in proc.stdout


def test_library_command_without_torch_says_which_extra_is_missing(tmp_path):
    proc = run_cli_without_torch(["info", str(tmp_path / "g.safetensors")])
    assert proc.returncode == 1
    assert "[ml] extra" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    """Object name -> pod spec of every workload: Deployments, KEDA ScaledJobs and CronJobs."""
    found = {}
    for doc in objects:
        spec = doc.get("spec", {})
        if doc["kind"] == "Deployment":
            found[doc["metadata"]["name"]] = spec["template"]["spec"]
        elif doc["kind"] == "ScaledJob":
            found[doc["metadata"]["name"]] = spec["jobTargetRef"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            found[doc["metadata"]["name"]] = spec["jobTemplate"]["spec"]["template"]["spec"]
    return found


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def secret_keys() -> set[str]:
    """Keys of animegan-secrets: what the ExternalSecret renders, and what the hand-made example must hold too."""
    external = yaml.safe_load((K8S / "secrets" / "external-secret.yaml").read_text())
    rendered = set(external["spec"]["target"]["template"]["data"])
    example = yaml.safe_load((K8S / "secrets" / "secret.example.yaml").read_text())
    assert set(example["stringData"]) == rendered, "secret.example.yaml and external-secret.yaml disagree"
    assert external["spec"]["target"]["name"] == example["metadata"]["name"] == "animegan-secrets"
    return rendered


def test_every_container_command_parses():
    commands = [image_command("api.Dockerfile")[1:], image_command("worker.Dockerfile")[1:]]
    for name in ("api.Dockerfile", "worker.Dockerfile"):
        check = json.loads(dockerfile_instructions(name)["HEALTHCHECK"][-1].split("CMD", 1)[1].strip())
        if check[0] == "animegan":
            commands.append(check[1:])
    for svc in compose()["services"].values():
        if svc.get("image", "").startswith("animegan"):
            commands += [svc["command"]] if "command" in svc else []
            test = svc["healthcheck"]["test"]
            if test[:2] == ["CMD", "animegan"]:
                commands.append(test[2:])
    for spec in pod_specs(k8s_objects()).values():
        for container in containers(spec):
            commands.append(container["args"])
            probe = container.get("livenessProbe", {}).get("exec", {}).get("command", [])
            if probe[:1] == ["animegan"]:
                commands.append(probe[1:])
    assert len(commands) >= 12
    for args in commands:
        proc = run_help(args)
        assert proc.returncode == 0, f"`animegan {' '.join(args)} --help` failed:\n{proc.stderr[-2000:]}"


def test_worker_liveness_needs_no_redis():
    """The probes read the watchdog's heartbeat file: a Redis blip must not restart every worker at once."""
    probes = [dockerfile_instructions("worker.Dockerfile")["HEALTHCHECK"][-1]]
    probes += [
        str(svc["healthcheck"]["test"]) for name, svc in compose()["services"].items() if "worker" in name
    ]
    for name, spec in pod_specs(k8s_objects()).items():
        if name.startswith("animegan-worker"):
            probes += [str(c["livenessProbe"]) for c in spec["containers"]]
    assert len(probes) >= 6
    for probe in probes:
        assert "worker-alive" in probe and "inspect ping" not in probe, probe


def test_k8s_objects_are_complete_and_consistent():
    from workers import keys
    from workers.contracts.base import Queues

    objects = k8s_objects()
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in objects:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    assert {"Deployment", "Service", "ConfigMap", "ScaledObject", "ScaledJob", "PrometheusRule"} <= set(
        by_kind
    )
    assert "NetworkPolicy" in by_kind and "CronJob" not in by_kind, "a reconciler CronJob made 720 pods a day"
    assert "Secret" not in by_kind, "`kubectl apply -k` would overwrite the real secret with placeholders"
    keys_of_secret = secret_keys()
    specs = pod_specs(objects)
    gpu_workloads = {"animegan-worker-stylize", "animegan-worker-train"}
    for name, spec in specs.items():
        for container in containers(spec):
            gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
            is_main = container in spec["containers"]
            assert (gpus == 1) == (name in gpu_workloads and is_main), f"{name}: GPU limit {gpus!r}"
            assert "memory" in container["resources"]["limits"], f"{name}: no memory limit"
            for ref in container.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in by_kind["ConfigMap"]
                else:
                    assert ref["secretRef"]["name"] == "animegan-secrets"
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            # Read-only roots everywhere (issue 20, B1/B11); what a process writes goes to a mounted emptyDir.
            assert container["securityContext"].get("readOnlyRootFilesystem") is True, (
                f"{name}: writable root"
            )
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        main = spec["containers"][0]
        if name != "animegan-reconciler":  # the reconciler writes nothing
            mounts = {m["mountPath"]: m["name"] for m in main.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: no emptyDir at /tmp on a read-only root"
        if name in gpu_workloads:
            assert spec["priorityClassName"] in by_kind["PriorityClass"], name
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"]), name
            assert spec["containers"][0]["resources"]["limits"].get("ephemeral-storage"), name
    # Only the model workers pull the worker image (torch, CUDA: gigabytes); webhooks and the reconciler run on
    # the API image, which holds the service layer (tests/e2e/test_webhook_worker.py delivers without torch).
    images = {name: {c["image"] for c in containers(spec)} for name, spec in specs.items()}
    for name, used in images.items():
        expected = "animegan-worker" if name in gpu_workloads else "animegan-api"
        assert used == {expected}, f"{name} runs {used}, not {expected}"
    # The VGG19 copy is optional and reads the documented storage key.
    init = specs["animegan-worker-train"]["initContainers"][0]["args"]
    assert init[:2] == ["fetch-object", keys.VGG19_WEIGHTS] and "--optional" in init
    train_env = {e["name"]: e["value"] for e in specs["animegan-worker-train"]["containers"][0]["env"]}
    assert train_env["ANIMEGAN_VGG_WEIGHTS_OPTIONAL"] == "true"
    assert int(train_env["ANIMEGAN_WORKER_IDLE_EXIT_SECONDS"]) > 0
    for svc in by_kind["Service"].values():
        targets = [
            d
            for d in by_kind["Deployment"].values()
            if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"Service {svc['metadata']['name']} selects no Deployment"
    # Whatever an autoscaler sizes carries no `replicas`: `apply -k` would reset it and kill busy pods.
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in by_kind["ScaledObject"].values()}
    scaled |= {h["spec"]["scaleTargetRef"]["name"] for h in by_kind["HorizontalPodAutoscaler"].values()}
    for name in scaled:
        assert name in by_kind["Deployment"] and "replicas" not in by_kind["Deployment"][name]["spec"], name
    assert by_kind["ScaledObject"]["animegan-worker-stylize"]["spec"]["minReplicaCount"] == 0
    # Training runs as Jobs that KEDA never scales down: a running segment is never interrupted by scaling.
    assert "animegan-worker-train" not in by_kind["Deployment"]
    train_job = by_kind["ScaledJob"]["animegan-worker-train"]
    # A ScaledJob update must not delete running training Jobs, nor node consolidation evict them (B8).
    assert train_job["spec"]["rollout"]["strategy"] == "gradual"
    train_annotations = train_job["spec"]["jobTargetRef"]["template"]["metadata"]["annotations"]
    assert train_annotations["karpenter.sh/do-not-disrupt"] == "true"
    assert train_annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    for name in gpu_workloads:  # the CUDA 13 wheels need a driver >= 580 (B4)
        terms = specs[name]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        # One term per GFD label (terms are ORed; expressions within one are ANDed): the current
        # cuda.driver-version.major, and the deprecated cuda.driver.major, which a GFD may stop writing.
        assert [term["matchExpressions"] for term in terms["nodeSelectorTerms"]] == [
            [{"key": f"nvidia.com/cuda.{label}.major", "operator": "Gt", "values": ["579"]}]
            for label in ("driver-version", "driver")
        ], name
    for priority in by_kind["PriorityClass"].values():
        assert priority["preemptionPolicy"] == "Never", "GPU pods must not evict a shared cluster's pods"
    queue_names = {queue.value for queue in Queues}
    for scaler in [*by_kind["ScaledObject"].values(), train_job]:
        for trigger in scaler["spec"]["triggers"]:
            assert trigger["type"] == "redis"
            assert trigger["metadata"]["listName"] in queue_names, (
                f"{scaler['metadata']['name']}: not a queue"
            )
            assert "address" not in trigger["metadata"], "the Redis address belongs in the secret only"
            auth = by_kind["TriggerAuthentication"][trigger["authenticationRef"]["name"]]
            assert all(ref["key"] in keys_of_secret for ref in auth["spec"]["secretTargetRef"])
    budgets = by_kind["PodDisruptionBudget"].values()
    assert "animegan-api" in {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for p in budgets}
    monitor = by_kind["ServiceMonitor"]["animegan-api"]
    assert monitor["spec"]["endpoints"][0]["authorization"]["credentials"]["key"] in keys_of_secret


def test_the_redis_address_is_written_once():
    """Only the secret store knows the Redis address; no manifest or ConfigMap repeats it."""
    manifests = sorted(K8S.glob("*.yaml"))
    # The manifests that would hold it if anything did: a wrong folder would check nothing.
    assert {"configmap.yaml", "worker-train.yaml", "api.yaml"} <= {p.name for p in manifests}, manifests
    for path in manifests:
        text = path.read_text()
        for needle in ("ANIMEGAN_REDIS_URL:", "redis://", "address:"):
            assert needle not in text, f"{path.name} names the Redis address ({needle})"


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed: kustomize rendering not checked")
    proc = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rendered = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    generated = yaml.safe_load((K8S / "kustomization.yaml").read_text()).get("configMapGenerator", [])
    assert len(rendered) == len(k8s_objects()) + len(generated)
    dashboard = next(d for d in rendered if d["metadata"]["name"] == "animegan-dashboard")
    assert json.loads(dashboard["data"]["animegan.json"])["panels"]
    cluster_scoped = {"Namespace", "PriorityClass"}
    assert all(
        doc["metadata"].get("namespace") == "animegan"
        for doc in rendered
        if doc["kind"] not in cluster_scoped
    )
    images = {c["image"] for spec in pod_specs(rendered).values() for c in containers(spec)}
    assert images == {"registry.example.com/animegan-api:0.1.0", "registry.example.com/animegan-worker:0.1.0"}


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


GPU_REQUIREMENTS = DEPLOY / "docker" / "requirements-gpu.txt"


def test_the_gpu_stack_is_pinned_with_hashes_and_installed_with_them():
    """deploy/docker/requirements-gpu.txt (scripts/pin_gpu_wheels.py): each package `==` with its sha256, torch
    at constraints.txt's version; the worker image installs it with --require-hashes before anything else."""
    from packaging.requirements import Requirement

    text = GPU_REQUIREMENTS.read_text()
    entries = [e for e in re.split(r"(?<!\\)\n", text) if e.strip() and not e.lstrip().startswith("#")]
    pinned = {}
    for entry in entries:
        spec, *hashes = [part.strip() for part in entry.split("\\\n")]
        req = Requirement(spec)
        (only,) = req.specifier
        assert only.operator == "==" and "*" not in only.version, f"{spec}: not pinned with =="
        assert hashes and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), spec
        assert req.name not in pinned, f"{req.name} twice"
        pinned[req.name] = only.version
    constraints = dict(
        line.split("==")
        for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    assert pinned["torch"] == constraints["torch"]
    assert "triton" in pinned and any(name.startswith("nvidia-cudnn") for name in pinned)
    run = " ".join(dockerfile_instructions("worker.Dockerfile")["RUN"])
    assert "pip install --require-hashes --no-deps -r requirements-gpu.txt" in run
    assert "deploy/docker/requirements-gpu.txt" in " ".join(
        dockerfile_instructions("worker.Dockerfile")["COPY"]
    )


def exported_metric_names() -> set[str]:
    """Names GET /metrics can show: every metric family api/metrics.py defines, with Prometheus's suffixes."""
    source = (PROJECT_ROOT / "api" / "metrics.py").read_text()
    names = set()
    for kind, name in re.findall(
        r'(Gauge|Counter|Histogram|PromCounter)(?:MetricFamily)?\(\s*"(animegan_\w+)"', source
    ):
        if kind in ("Counter", "PromCounter"):
            names |= {f"{name}_total"}
        elif kind == "Histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def test_alerts_and_the_dashboard_read_metrics_the_service_exports():
    """A misspelt metric in a rule never fires and a dashboard panel stays empty: every animegan_* name they use
    is one that api/metrics.py exports, and every alert says what to do (runbook)."""
    exported = exported_metric_names()
    assert {
        "animegan_oldest_queued_job_age_seconds",
        "animegan_workers",
        "animegan_device_errors_total",
    } <= exported
    rules = yaml.safe_load((K8S / "alerts.yaml").read_text())["spec"]["groups"]
    alerts = [rule for group in rules for rule in group["rules"]]
    assert {"AnimeganTasksWaitWithNoWorker", "AnimeganJobFailureRate", "AnimeganGpuDeviceErrors"} <= {
        a["alert"] for a in alerts
    }
    runbook = (PROJECT_ROOT / "docs" / "runbook.md").read_text()
    for alert in alerts:
        used = set(re.findall(r"\banimegan_\w+", alert["expr"]))
        assert used <= exported, f"{alert['alert']} reads unknown metrics {used - exported}"
        assert "sum(animegan_" not in alert["expr"].replace(" ", ""), f"{alert['alert']}: replicas summed"
        section = re.search(r"Runbook: ([^.]+)\.", alert["annotations"]["description"])
        assert section and f"## {section.group(1)}" in runbook, f"{alert['alert']}: no runbook section"
    panels = json.loads((K8S / "dashboards" / "animegan.json").read_text())["panels"]
    for panel in panels:
        for target in panel["targets"]:
            used = set(re.findall(r"\banimegan_\w+", target["expr"]))
            assert used <= exported, f"panel {panel['title']!r} reads unknown metrics {used - exported}"


RUNBOOK = PROJECT_ROOT / "docs" / "runbook.md"


def test_the_runbooks_job_helper_shows_and_cancels_a_job(redis_url):
    """docs/runbook.md's JOBS_PY, run as written on the reconciler's image (no torch): it reads a job and cancels it
    through JobStore.cancel, the atomic step POST /v1/jobs/ID/cancel takes (a raw HSET of the flag left a queued
    job queued, its tenant slot held and the metrics unchanged)."""
    import redis

    from workers.jobstore import JobStore

    helper = re.search(r"^JOBS_PY='(.*?)'$", RUNBOOK.read_text(), re.M | re.S)
    assert helper, "docs/runbook.md lost its JOBS_PY helper"
    jobs = JobStore(redis.Redis.from_url(redis_url, decode_responses=True))
    record, _ = jobs.create("batch", "tenant-a", {"model": "tiny", "size_mode": "original"}, total=3)
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'cv2', 'safetensors'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked: API image)', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    ) + helper.group(1)
    env = {"PATH": "/usr/bin:/bin", "ANIMEGAN_REDIS_URL": redis_url}

    def run(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT,
            env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.strip()

    shown = json.loads(run("show", record.id))
    assert shown["status"] == "queued" and shown["progress"]["total"] == 3
    assert run("cancel", record.id) == "True"
    assert json.loads(run("show", record.id))["status"] == "canceled"
    assert jobs.get(record.id).status.value == "canceled"
    assert run("show", "no-such-job") == "null"


def test_cluster_fault_drills_are_commands_that_work_on_these_manifests():
    """Each fault the README says only a cluster shows has a drill in the runbook with its commands, and the commands
    fit the manifests and images: a drain of nodes whose pods use emptyDirs needs --delete-emptydir-data (and
    --ignore-daemonsets) or kubectl refuses it; the slim images have no procps, so no pgrep; Redis is external, so
    no `exec` into a Redis pod."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    listed = readme.split("Faults only a cluster shows", 1)[1].split("\n## ", 1)[0]
    bullets = [line for line in listed.splitlines() if line.startswith("- ")]
    runbook = RUNBOOK.read_text()
    drills = runbook.split("## Fault drills (cluster only)", 1)[1].split("\n## ", 1)[0]
    paragraphs = re.findall(r"^\*\*(.+?)\*\*.*?```bash\n(.+?)```", drills, re.M | re.S)
    assert len(bullets) >= 6 and len(paragraphs) == len(bullets), (len(bullets), [p[0] for p in paragraphs])
    assert all("kubectl" in commands or "rcli" in commands for _, commands in paragraphs)
    uses_empty_dirs = any(
        "emptyDir" in volume
        for spec in pod_specs(k8s_objects()).values()
        for volume in spec.get("volumes", [])
    )
    for text in (readme, runbook):
        for drain in re.findall(r"kubectl drain [^\n`]*", text):
            if uses_empty_dirs:
                assert "--delete-emptydir-data" in drain and "--ignore-daemonsets" in drain, drain
        assert "pgrep -" not in text and "REDIS_POD" not in text
    assert "procps" not in (DEPLOY / "worker.Dockerfile").read_text()


def test_ingress_takes_the_largest_request_and_the_api_drains_within_its_grace():
    """Issue 20, low items: the ingress's body limit was 64m under the API's 512 MiB request limit (the controller
    answered 413 first), and uvicorn ran without --forwarded-allow-ips (client addresses and https lost behind the
    proxy) or a graceful timeout (open SSE streams kept a pod past its grace, then SIGKILL)."""
    from api.settings import ApiSettings

    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in k8s_objects()}
    annotations = by_kind[("Ingress", "animegan-api")]["metadata"]["annotations"]
    size = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    number, unit = re.fullmatch(r"(\d+)([kmg])", size.lower()).groups()  # type: ignore[union-attr]
    assert int(number) * 1024 ** "kmg".index(unit) * 1024 >= ApiSettings().max_request_bytes, size
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    spec = pod_specs(k8s_objects())["animegan-api"]
    [api] = spec["containers"]
    args = api["args"]
    assert "--forwarded-allow-ips" in args
    graceful = int(args[args.index("--graceful-timeout") + 1])
    pre_stop = api["lifecycle"]["preStop"]["exec"]["command"]
    delay = float(re.search(r"sleep\((\d+(?:\.\d+)?)\)", " ".join(pre_stop)).group(1))  # type: ignore[union-attr]
    assert delay + graceful < spec["terminationGracePeriodSeconds"], (delay, graceful)


def test_every_deploy_file_the_docs_cite_exists():
    """Issue 20, low: the README cited a deploy/k8s/keda.yaml that did not exist. Every deploy/... file path in the
    README, the runbook and INTERFACES.md names a file of the repository (kubectl's deploy/NAME objects, and the
    files a reader creates, excepted)."""
    created = {"deploy/.env", "deploy/models/builtin"}  # cp deploy/env.example deploy/.env; mkdir -p ...
    cited: set[str] = set()
    for doc in ("README.md", "docs/runbook.md", "docs/INTERFACES.md"):
        text = (PROJECT_ROOT / doc).read_text()
        cited |= set(re.findall(r"(?<![\w/.-])deploy/[A-Za-z0-9_./-]*[A-Za-z0-9_]", text))
    files = {
        path for path in cited if not path.startswith("deploy/animegan-") and path != "deploy/keda-operator"
    }
    assert "deploy/k8s/worker-train.yaml" in files
    missing = sorted(path for path in files - created if not (PROJECT_ROOT / path).exists())
    assert not missing, f"the docs cite files that do not exist: {missing}"


def test_prometheus_objects_carry_the_release_label_and_gpu_pods_have_their_graces():
    """Issue 20: B10, kube-prometheus-stack selects ServiceMonitors and PrometheusRules by its `release` label, so
    without it nothing was scraped nor alerted on; B8, a stylize pod's 60 s grace was shorter than a big chunk or a
    video join (SIGKILL mid-task, redelivered only after the visibility timeout)."""
    objects = k8s_objects()
    for doc in objects:
        if doc["kind"] in ("ServiceMonitor", "PrometheusRule"):
            assert doc["metadata"]["labels"].get("release"), doc["metadata"]["name"]
    specs = pod_specs(objects)
    assert specs["animegan-worker-stylize"]["terminationGracePeriodSeconds"] >= 300
    # A training segment stops within a step on SIGTERM, then uploads its checkpoint.
    assert specs["animegan-worker-train"]["terminationGracePeriodSeconds"] >= 120
