"""Scratch folders of killed tasks are removed at worker start; a live task's folder, and the caches, stay."""

from __future__ import annotations

import os
import time

from workers.scratch import remove_stale_task_folders


def test_only_quiet_task_folders_are_removed(tmp_path):
    old = time.time() - 3600
    killed = tmp_path / "animegan-train-job1-abcd"
    (killed / "run").mkdir(parents=True)
    (killed / "run" / "step-00000010.pt").write_bytes(b"x")
    live = tmp_path / "animegan-train-job2-efgh"
    (live / "run").mkdir(parents=True)
    (live / "run" / "step-00000020.pt").write_bytes(b"y")  # written just now: the folder itself is old
    cache = tmp_path / "animegan-datasets"
    cache.mkdir()
    for path in (killed / "run" / "step-00000010.pt", killed / "run", killed, live, cache):
        os.utime(path, (old, old))
    removed = remove_stale_task_folders(900, tmp_path)
    assert removed == [killed] and not killed.exists()
    assert live.exists() and cache.exists()
