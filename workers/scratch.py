"""Scratch folders that killed tasks left behind: a SIGKILLed segment or video task never runs the cleanup of its
TemporaryDirectory, and in a pod the /tmp emptyDir outlives a container restart. Removed at worker start."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# The per-task folders of workers.jobs (train, video segment and join, model download); the dataset and
# smoothing caches beside them are bounded by their own settings and reused, so they stay.
TASK_PREFIXES = ("animegan-train-", "animegan-video-", "animegan-join-", "animegan-model-")


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            try:
                newest = max(newest, (Path(dirpath) / name).stat().st_mtime)
            except FileNotFoundError:
                continue
    return newest


def remove_stale_task_folders(older_than_seconds: float, root: Path | None = None) -> list[Path]:
    """Remove task folders in `root` (the temp folder) with nothing written for `older_than_seconds`: no live task
    is that quiet (the pool kills one at task_time_limit), so a worker sharing the folder loses nothing."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    cutoff = time.time() - older_than_seconds
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.is_dir() and folder.name.startswith(TASK_PREFIXES) and _newest_mtime(folder) < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        logger.warning(
            "removed %d scratch folder(s) of killed tasks: %s", len(removed), [p.name for p in removed]
        )
    return removed
