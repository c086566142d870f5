"""Print the Markdown table of every ANIMEGAN_* setting, read from the settings classes and their comments.

README.md's settings table is this script's output (`make settings-table`); tests/test_readme.py checks it.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
import textwrap
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from api.settings import ApiSettings, ClientSettings  # noqa: E402
from workers.settings import ENV_PREFIX, ServiceSettings, WorkerSettings  # noqa: E402

# (class, which processes read its own fields); subclasses list only the fields they add.
SETTINGS_CLASSES: list[tuple[type[BaseSettings], str]] = [
    (ServiceSettings, "api, worker"),
    (WorkerSettings, "worker"),
    (ApiSettings, "api"),
    (ClientSettings, "CLI client"),
]


def field_comments(cls: type) -> dict[str, str]:
    """The comment lines right above each field in the class body; a field without one shares its group's."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    comments: dict[str, str] = {}
    previous = ""
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        block = []
        index = node.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#"):
            block.insert(0, lines[index].strip().lstrip("#").strip())
            index -= 1
        text = " ".join(block) or previous
        comments[node.target.id] = text
        previous = text
    return comments


def default_text(cls: type[BaseSettings], name: str) -> str:
    field = cls.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    text = (
        str(value).replace(PROJECT_ROOT.as_uri(), "file://<project>").replace(str(PROJECT_ROOT), "<project>")
    )
    return f"`{text}`"


def rows() -> list[tuple[str, str, str, str]]:
    """(variable, used by, default, meaning) for every field, each listed once under the class that adds it."""
    out = []
    for cls, used_by in SETTINGS_CLASSES:
        inherited = {name for base in cls.__mro__[1:] for name in getattr(base, "model_fields", {})}
        comments = field_comments(cls)
        for name in cls.model_fields:
            if name in inherited:
                continue
            meaning = comments.get(name, "").replace("|", "\\|")
            out.append((f"`{ENV_PREFIX}{name.upper()}`", used_by, default_text(cls, name), meaning))
    return out


def markdown() -> str:
    lines = ["| Variable | Read by | Default | Meaning |", "|---|---|---|---|"]
    lines += [f"| {var} | {used} | {default} | {meaning} |" for var, used, default, meaning in rows()]
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- settings-table:begin -->\n", "<!-- settings-table:end -->"


def write_into(path: Path) -> None:
    """Replace the table between the settings-table markers of `path` (README.md)."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(
            f"{path}: markers {BEGIN.strip()} ... {END} not found; add them where the table goes"
        )
    path.write_text(text[: start + len(BEGIN)] + markdown() + text[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, metavar="FILE", help="update the table inside FILE (README.md)")
    args = parser.parse_args(argv)
    if args.write:
        write_into(args.write)
        print(f"updated the settings table in {args.write}")
    else:
        sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
