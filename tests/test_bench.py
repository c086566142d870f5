"""The model benchmarks still run: their smallest settings, as subprocesses, as bench/RESULTS.md invokes them.

Figures are not checked (this machine is shared and noisy); what is checked is that every table row is printed
and its numbers parse, so a refactor of the library cannot silently break the scripts the results come from.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from animegan.hardware import cpu_has_fast_bf16
from tests.conftest import PROJECT_ROOT

ROW = re.compile(
    r"^\| (v[12][^|]*) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+)x \| ([\d.]+|inf) \| ([\d.e+-]+) \| ([\d.]+)x \|$"
)

BACKEND_ROW = re.compile(
    r"^\| backends (v2) \| (\d+) \| (\d+) \| (\d+|skipped) \| (\d+) \| (\d+|not installed) "
    r"\| (\d+|skipped|not installed) \| ([a-z0-9 ]+) \| ([\d.e+-]+) \|$",
    re.M,
)


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("bf16", ["native where the CPU has it", "--no-bf16"])
def test_inference_bench_quick_prints_every_row_and_the_ceiling(bf16):
    measured = bf16 != "--no-bf16" and cpu_has_fast_bf16()
    out = run("bench/inference.py", "--quick", *([bf16] if bf16.startswith("--") else []))
    rows = [ROW.match(line) for line in out.splitlines() if line.startswith("| v")]
    assert all(rows), out
    if measured:
        assert re.search(r"matmul peak: fp32 \d+, bf16 \d+ GMAC/s", out), out
        # v1 twice per size (its fp32 encoder, then all bf16), v2 once; two sizes.
        assert [m.group(1) for m in rows] == ["v1", "v1 all bf16", "v1", "v1 all bf16", "v2", "v2"], out
    else:  # bf16 emulated (or ruled out): not measured, and the output says so
        why = "--no-bf16" if cpu_has_fast_bf16() else "emulates bf16"
        assert re.search(rf"matmul peak: fp32 \d+ GMAC/s; bf16 skipped: .*{why}", out), out
        assert "skipped: the v1 'all bf16' rows" in out, out
        assert [m.group(1) for m in rows] == ["v1", "v1", "v2", "v2"], out
    port_rows = re.findall(
        r"^\| bryandlee port \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+)x \| ([\d.]+|inf) \|$", out, re.M
    )
    assert [int(row[0]) for row in port_rows] == [64, 128], out
    assert len(re.findall(r"tiled v[12] 512x512 .* peak RSS \d+ MB", out)) == 2, out
    # The backends side by side on the same exported model: torch, onnxruntime, OpenVINO where installed.
    backends = BACKEND_ROW.findall(out)
    assert [(arch, int(px)) for arch, px, *_ in backends] == [("v2", 64), ("v2", 128)], out
    for _, _, torch_fp32, torch_bf16, ort_fp32, ov_fp32, ov_bf16, fastest, diff in backends:
        assert torch_fp32.isdigit() and ort_fp32.isdigit() and float(diff) <= 1e-3, out
        assert ov_fp32.isdigit() or ov_fp32 == "not installed", out
        # bf16 columns only where bf16 is measured: never the emulated bf16 of a CPU without AMX/AVX512-BF16.
        assert torch_bf16.isdigit() == measured and (ov_bf16.isdigit() <= measured), out
        assert fastest in ("torch fp32", "torch bf16", "onnxruntime fp32", "openvino fp32", "openvino bf16")


def test_v1_precision_bench_prints_budget_and_psnr():
    out = run("bench/v1_precision.py", "--side", "32", "--photos", "photo_01.jpg")
    shares = [int(s) for s in re.findall(r"^\| [\w.]+ \| (\d+)% \|$", out, re.M)]
    assert len(shares) == 8 and 97 <= sum(shares) <= 103, out
    psnr_rows = re.findall(r"^\| [\w.]+ \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out, re.M)
    assert len(psnr_rows) == 2, out


def test_inference_bench_compares_a_student_with_its_full_model(tmp_path):
    import torch

    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator
    from animegan.weights import save_generator

    torch.manual_seed(0)
    full = save_generator(tmp_path / "full.safetensors", build_generator(GeneratorConfig(base_channels=16)))
    student = save_generator(
        tmp_path / "student.safetensors", build_generator(GeneratorConfig(base_channels=8))
    )
    out = run("bench/inference.py", "--quick", "--student", str(full), str(student))
    rows = re.findall(r"^\| (\d+) \| (\d+) \| (\d+) \| ([\d.]+)x \|$", out, re.M)
    assert [int(r[0]) for r in rows] == [64, 128], out
    assert re.search(r"PSNR student vs full on \d+ validation photos: mean [\d.]+ dB|PSNR skipped", out), out
