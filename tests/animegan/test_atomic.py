"""animegan.atomic: a write replaces its target whole or not at all, and leaves no temporary file behind."""

from __future__ import annotations

import pytest

from animegan.atomic import atomic_path, atomic_write


def test_a_finished_write_replaces_the_file_and_an_interrupted_one_leaves_it(tmp_path):
    target = tmp_path / "deep" / "result.bin"
    with atomic_write(target, fsync=True) as handle:
        handle.write(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError, match="crash"), atomic_write(target) as handle:
        handle.write(b"half of the sec")
        assert target.read_bytes() == b"first", "the target changed before the write finished"
        raise RuntimeError("crash")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.bin"]


def test_atomic_path_hands_a_hidden_name_beside_the_target(tmp_path):
    target = tmp_path / "export.safetensors"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and not target.exists()
        tmp.write_bytes(b"tensors")
    assert target.read_bytes() == b"tensors" and not tmp.exists()


def test_a_finished_file_has_the_mode_a_plain_open_would_give_it(tmp_path):
    # mkstemp's 0600 must not leak into models and checkpoints that other local users (or a sidecar) read.
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    target = tmp_path / "atomic.bin"
    with atomic_write(target) as handle:
        handle.write(b"x")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
