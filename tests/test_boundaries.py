"""The import boundaries of DESIGN.md: checked at run time in fresh interpreters and statically in the source."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

SERVICE_MODULES = ("celery", "kombu", "redis", "boto3", "botocore", "fastapi", "starlette", "uvicorn")
LIBRARY_MODULES = (
    "animegan",
    "animegan.nn",
    "animegan.inference",
    "animegan.training",
    "animegan.data",
    "animegan.weights",
    "animegan.losses",
    "animegan.config",
)
# Heavy model code the API host must never load (it may not even have torch installed); the API checks ONNX
# uploads with animegan.onnx_graph (pure Python), never with onnx or onnxruntime.
MODEL_MODULES = (
    "torch",
    "safetensors",
    "cv2",
    "animegan.nn",
    "animegan.inference",
    "animegan.training",
    "onnx",
    "onnxruntime",
)


def loaded_after_import(modules: tuple[str, ...]) -> set[str]:
    """Import `modules` in a fresh interpreter and return the top-level and dotted names it ended up loading."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"importing {modules} failed:\n{proc.stderr[-3000:]}"
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def offenders(loaded: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f for f in forbidden if f in loaded or any(m.startswith(f + ".") for m in loaded))


def test_api_main_loads_no_torch():
    loaded = loaded_after_import(("api.main",))
    assert "api.main" in loaded
    bad = offenders(loaded, MODEL_MODULES + ("workers.tasks", "workers.jobs"))
    assert not bad, f"`import api.main` loaded {bad}; the API host has no torch (DESIGN.md, Boundaries)"


def test_model_library_loads_no_service_code():
    loaded = loaded_after_import(LIBRARY_MODULES)
    bad = offenders(loaded, SERVICE_MODULES + ("api", "workers"))
    assert not bad, f"importing the model library loaded {bad}; animegan/ must stay usable on its own"


def test_light_service_modules_load_no_torch():
    # What the API and the parent worker process import: contracts, settings, storage, records, CLI hooks.
    modules = (
        "workers.settings",
        "workers.storage",
        "workers.keys",
        "workers.jobstore",
        "workers.registry",
        "workers.contracts.registry",
        "workers.enqueue",
        "workers.celery_app",
        "workers.cli",
        "api.cli",
    )
    bad = offenders(loaded_after_import(modules), MODEL_MODULES)
    assert not bad, f"importing {modules} loaded {bad}; torch belongs to the worker child, not these modules"


def test_console_script_module_loads_nothing_heavy():
    # `animegan serve` runs on the API host (no torch): building the parser must not import torch or services.
    bad = offenders(loaded_after_import(("animegan.cli",)), MODEL_MODULES + SERVICE_MODULES)
    assert not bad, f"`import animegan.cli` loaded {bad}; command modules import heavy code inside run()"


def test_building_the_command_line_loads_no_torch():
    # Every `animegan` invocation builds the full parser (library and service commands) before it runs one:
    # `animegan serve` on a host with torch installed must not pay for loading it.
    code = (
        "import json, sys\n"
        "from animegan.cli import build_parser\n"
        "build_parser()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    heavy = ("torch", "safetensors", "cv2", "animegan.nn", "animegan.training", "animegan.inference.stylizer")
    bad = offenders(set(json.loads(proc.stdout.strip().splitlines()[-1])), heavy)
    assert not bad, f"building the `animegan` parser loaded {bad}; command modules import heavy code in run()"


def imported_names(path: Path) -> list[tuple[int, str]]:
    """Every module name an `import` or `from ... import` statement in `path` names, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from api import cli` is recorded as api.cli, so allowances and bans work on dotted prefixes.
            names.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return names


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def source_violations(
    folder: str, forbidden: tuple[str, ...], allowed: dict[str, tuple[str, ...]]
) -> list[str]:
    found = []
    for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
        rel = path.relative_to(PROJECT_ROOT).as_posix()
        for lineno, name in imported_names(path):
            if under(name, forbidden) and not under(name, allowed.get(rel, ())):
                found.append(f"{rel}:{lineno} imports {name}")
    return found


def test_api_source_never_imports_tasks_or_models():
    files = list((PROJECT_ROOT / "api").rglob("*.py"))
    assert len(files) > 1, "api/ holds no modules yet"
    bad = source_violations("api", ("workers.tasks", "workers.jobs", "torch") + MODEL_MODULES[1:], {})
    assert not bad, "api/ must enqueue by task name through workers.contracts:\n" + "\n".join(bad)


def test_library_source_never_imports_service_code():
    # The console script is the one meeting point: it registers the service commands of api.cli and
    # workers.cli when those packages import (their register() functions import nothing heavy).
    allowed = {"animegan/cli/__init__.py": ("api.cli", "workers.cli")}
    bad = source_violations("animegan", SERVICE_MODULES + ("api", "workers"), allowed)
    assert not bad, "animegan/ is the pure model library:\n" + "\n".join(bad)


def test_redis_key_names_are_spelled_in_one_module():
    spelled = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for folder in ("api", "workers")
        for path in (PROJECT_ROOT / folder).rglob("*.py")
        if path != PROJECT_ROOT / "workers" / "redis_keys.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if '"animegan:' in line or "'animegan:" in line
    ]
    assert not spelled, "Redis key names belong in workers/redis_keys.py:\n" + "\n".join(spelled)


def runtime_imports(path: Path) -> set[str]:
    """The modules `path` imports when it runs: every import statement outside `if TYPE_CHECKING:` blocks (those
    name types only), with relative imports resolved and `from pkg import name` recorded as both pkg and
    pkg.name (the name may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    typing_only = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for statement in branch.body
        for node in ast.walk(statement)
    }
    package = ".".join(path.relative_to(PROJECT_ROOT).parts[:-1]) if path.is_relative_to(PROJECT_ROOT) else ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_route_module_imports_another():
    # Routes share code through api.submission and api.views, never through each other.
    routes = sorted((PROJECT_ROOT / "api" / "routes").glob("*.py"))
    names = {module_name(path) for path in routes} - {"api.routes"}
    assert len(names) >= 9, names
    bad = [
        f"{module_name(path)} imports {other}"
        for path in routes
        for other in sorted(runtime_imports(path) & names)
        if other != module_name(path)
    ]
    assert not bad, "a route module imports another route module:\n" + "\n".join(bad)


def test_routes_reach_the_model_library_only_through_api_modules():
    # A route never imports animegan.* itself (api/images.py and api/videos.py hold the checks that use it).
    bad = [
        f"{module_name(path)} imports {name}"
        for path in sorted((PROJECT_ROOT / "api" / "routes").glob("*.py"))
        for name in sorted(runtime_imports(path))
        if under(name, ("animegan",))
    ]
    assert not bad, "\n".join(bad)


def import_graph(folders: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the project modules it imports at run time (a package counts as its __init__)."""
    paths = [path for folder in folders for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))]
    modules = {module_name(path): path for path in paths}
    return {
        name: {m for m in runtime_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """An import path from `start` to a module under `goal`, or None."""
    seen, stack = {start}, [[start]]
    while stack:
        path = stack.pop()
        for nxt in sorted(graph.get(path[-1], ())):
            if under(nxt, (goal,)):
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append([*path, nxt])
    return None


def test_the_contracts_import_no_celery_app_and_no_task_code():
    # The circle workers.celery_app <-> workers.contracts is gone: the contracts import neither the Celery app
    # nor anything that sends (workers.enqueue) or runs (workers.tasks, workers.jobs) tasks, not even indirectly.
    graph = import_graph(("workers",))
    contracts = [name for name in graph if under(name, ("workers.contracts",))]
    assert "workers.contracts.registry" in contracts and len(contracts) >= 7, contracts
    for start in contracts:
        for goal in ("workers.celery_app", "workers.enqueue", "workers.tasks", "workers.jobs"):
            path = reaches(graph, start, goal)
            assert path is None, f"{start} reaches {goal}: {' -> '.join(path or [])}"
    assert (
        reaches(graph, "workers.celery_app", "workers.contracts.registry") is not None
    )  # routes come from it


def test_the_checker_sees_a_circle_and_a_route_import(tmp_path):
    # The checks above must be able to fail: the same functions on files that break the rules.
    route = PROJECT_ROOT / "api" / "routes" / "stylize.py"
    assert "api.submission" in runtime_imports(route)
    graph = {"workers.contracts.images": {"workers.enqueue"}, "workers.enqueue": {"workers.celery_app"}}
    assert reaches(graph, "workers.contracts.images", "workers.celery_app") == [
        "workers.contracts.images",
        "workers.enqueue",
        "workers.celery_app",
    ]
    fake = tmp_path / "x.py"
    fake.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import api.routes.jobs\nimport api.views\n"
    )
    assert "api.routes.jobs" not in runtime_imports(fake) and "api.views" in runtime_imports(fake)
