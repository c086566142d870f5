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
# Heavy model code the API host must never load (it may not even have torch installed).
MODEL_MODULES = ("torch", "safetensors", "cv2", "animegan.nn", "animegan.inference", "animegan.training")


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
