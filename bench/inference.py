"""Inference benchmark: ms per image of the fp32 eager path vs the fast path (bf16 weights, channels-last,
optionally torch.compile) for v1 and v2 at 256/512/1024 px, PSNR of fast vs fp32, the fast path against the
public PyTorch port of v2, the backends side by side (torch fp32 and fast path, onnxruntime, OpenVINO when
installed, on the same exported model and input), and the peak RSS of a tiled 4096x4096 stylization.
Usage: python bench/inference.py [--quick] [--threads N]
       python bench/inference.py --student models/builtin/hayao-builtin.safetensors \
           models/builtin/hayao-builtin-fast.safetensors   (the student against its teacher)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from animegan.config import GeneratorConfig
from animegan.hardware import bf16_is_native
from animegan.inference import InferenceOptions, Stylizer
from animegan.nn import build_generator

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "photo_01.jpg"
# The held-out pairs of the built-in style, never trained on (scripts/builtin_style.py holds the split).
_spec = importlib.util.spec_from_file_location(
    "builtin_style", Path(__file__).resolve().parents[1] / "scripts" / "builtin_style.py"
)
_builtin_style = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_builtin_style)
VAL_NAMES = _builtin_style.VAL_NAMES
EMULATED_BF16 = (
    "this CPU has neither AMX nor AVX512-BF16, so torch emulates bf16, hundreds of times slower than fp32"
)


def test_image(side: int) -> tuple[Image.Image, str]:
    """A real photo (centre square, area-resized) when the shared data is present, else a smooth synthetic."""
    if PHOTO.is_file():
        rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
        h, w = rgb.shape[:2]
        s = min(h, w)
        crop = rgb[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        interp = cv2.INTER_AREA if side < s else cv2.INTER_CUBIC
        return Image.fromarray(cv2.resize(crop, (side, side), interpolation=interp)), PHOTO.name
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rgb = np.stack([np.sin(9 * xx + c) * np.cos(7 * yy - c) for c in range(3)], axis=2)
    return Image.fromarray(((rgb + 1) * 127.5).astype(np.uint8)), "synthetic"


def generator(arch: str, width: int | None) -> torch.nn.Module:
    """The reference-init generator (seeded). Its tanh output is not saturated (std ~0.6), so PSNR means something."""
    torch.manual_seed(0)
    return build_generator(GeneratorConfig(arch=arch, base_channels=width)).eval()


def time_stylize(stylizer: Stylizer, image: Image.Image, repeat: int) -> tuple[float, Image.Image]:
    """Median ms of stylizer.stylize (decode-free: PIL in, PIL out) after one warm-up call."""
    out = stylizer.stylize(image)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = stylizer.stylize(image)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), out


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def cpu_line() -> str:
    """CPU model and its bf16 units: AMX tiles multiply bf16 ~10x faster than AVX-512 fp32 FMAs, AVX512-BF16
    dot products only ~2x, so the fast path's ceiling depends on which of them this CPU has."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "cpu: unknown"
    model = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?"
    )
    units = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in info.split()]
    return f"cpu: {model}, bf16 units: {', '.join(units) or 'none (emulated)'}"


def matmul_gmacs(dtype: torch.dtype, device: str, n: int = 2048, repeat: int = 10) -> float:
    """Measured multiply-accumulates per second (1e9) of an n x n matmul: the peak the convolutions approach."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n**3 * repeat / (time.perf_counter() - start) / 1e9


def generator_gmacs(model: torch.nn.Module, side: int) -> float:
    """Multiply-accumulates (1e9) of one side x side forward pass: counted at 64 px and scaled by area, which is
    exact for sides that are multiples of 4 (every layer's output scales with the input area)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 64, 64))
    return counter.get_total_flops() / 2 / 1e9 * (side / 64) ** 2


def port_comparison(
    sizes: list[int], repeat: int, device: str, width: int | None, fast: InferenceOptions
) -> None:
    """v2 against the public PyTorch port (bryandlee/animegan2-pytorch model.py; the re-implementation from the
    spec in tests/animegan/bl_reference.py) run as the port's test.py runs it: fp32, eager, NCHW, no_grad, on a
    prepared tensor. Same weights (the port's format, imported as the worker imports a .pt), same image; ours
    goes through the Stylizer (PIL in, PIL out), so its figure also pays the conversions."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from animegan.inference.tiling import to_tensor
    from animegan.weights import bryandlee_config, build_loaded
    from tests.animegan.bl_reference import Generator as PortGenerator
    from tests.animegan.bl_reference import random_state_dict

    state = random_state_dict(width=width or 32)
    port = PortGenerator(width or 32).eval()
    port.load_state_dict(state)
    port.to(device)
    ours = build_loaded(state, bryandlee_config(state, Path("port.pt")), Path("port.pt"))
    print("| public port, v2 | px | port fp32 ms | our fast ms | speed-up | PSNR ours vs port dB |")
    print("|---|---|---|---|---|---|")
    for side in sizes:
        image, _ = test_image(side)
        x = to_tensor(np.asarray(image), torch.device(device))
        with torch.no_grad():
            y = port(x)
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                y = port(x)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - start) * 1000)
        port_ms = statistics.median(times)
        port_out = ((y[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        fast_ms, out = time_stylize(Stylizer(ours, device=device, options=fast), image, repeat)
        print(
            f"| bryandlee port | {side} | {port_ms:.0f} | {fast_ms:.0f} | {port_ms / fast_ms:.1f}x "
            f"| {psnr(Image.fromarray(port_out), out):.1f} |",
            flush=True,
        )


def student_comparison(full: Path, student: Path, sizes: list[int], repeat: int, device: str) -> None:
    """The shipped student against its teacher, both on the default fast path (precision auto): ms per image
    side by side, then PSNR of the student's output against the teacher's on the held-out validation photos."""
    from animegan.weights import load_generator

    models = {"full": load_generator(full).model, "student": load_generator(student).model}
    options = InferenceOptions(size_mode="original")
    stylizers = {name: Stylizer(m, device=device, options=options) for name, m in models.items()}
    gmacs = {name: generator_gmacs(m, 256) for name, m in models.items()}
    print(
        f"\nstudent {student.name} ({gmacs['student']:.2f} GMAC at 256 px) vs {full.name} ({gmacs['full']:.2f})"
    )
    print("| px | full fast ms | student fast ms | speed-up |\n|---|---|---|---|")
    for side in sizes:
        image, _ = test_image(side)
        full_ms, _ = time_stylize(stylizers["full"], image, repeat)
        student_ms, _ = time_stylize(stylizers["student"], image, repeat)
        print(f"| {side} | {full_ms:.0f} | {student_ms:.0f} | {full_ms / student_ms:.1f}x |", flush=True)
    photos = sorted(PHOTO.parent.glob("*.jpg"))
    val = [p for p in photos if p.stem in VAL_NAMES]
    if not val:
        print("(no validation photos beside the checkout: PSNR skipped)")
        return
    reference = InferenceOptions()  # the reference size rule, as served
    full_ref, student_ref = (
        Stylizer(models[n], device=device, options=reference) for n in ("full", "student")
    )
    scores = []
    for path in val:
        photo = Image.open(path).convert("RGB")
        scores.append(psnr(full_ref.stylize(photo), student_ref.stylize(photo)))
    listed = ", ".join(f"{p.stem} {v:.1f}" for p, v in zip(val, scores, strict=True))
    print(f"PSNR student vs full on {len(val)} validation photos: mean {np.mean(scores):.2f} dB ({listed})")


def time_call(call, repeat: int) -> float:
    """Median ms of call() after one warm-up call."""
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def backend_comparison(
    archs: list[str], sizes: list[int], repeat: int, width: int | None, native_bf16: bool
) -> None:
    """One model per arch, exported to ONNX once, run by each backend on the same (1, 3, S, S) input in
    [-1, 1]: forward only (no decode, sizing or encode), this process's thread count for every backend.
    bf16 columns are measured only where bf16 is native (torch emulates it elsewhere; OpenVINO is not asked)."""
    import tempfile

    from animegan.inference.onnx_generator import OnnxGenerator
    from animegan.onnx_export import export_onnx

    try:
        import openvino
    except ImportError:
        openvino = None
    threads = torch.get_num_threads()
    print(
        f"\nbackends ({threads} thread{'s' if threads > 1 else ''}; forward only; onnxruntime "
        f"{importlib.metadata.version('onnxruntime')}, openvino "
        f"{openvino.__version__.split('-')[0] if openvino else 'not installed'})"
    )
    print(
        "| model | px | torch fp32 ms | torch bf16 fast ms | onnxruntime fp32 ms | openvino fp32 ms "
        "| openvino bf16 ms | fastest | onnxruntime max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for arch in archs:
        model = generator(arch, width)
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, Path(tmp) / f"{arch}.onnx")
            graph = OnnxGenerator(path, threads=threads)
            compiled = {}
            if openvino is not None:
                core = openvino.Core()
                hints = {"fp32": "f32", **({"bf16": "bf16"} if native_bf16 else {})}
                for name, hint in hints.items():
                    config = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads}
                    compiled[name] = core.compile_model(str(path), "CPU", config).create_infer_request()
        fast = Stylizer(model, options=InferenceOptions(size_mode="original", precision="bf16"))
        for side in sizes:
            rng = np.random.default_rng(0)
            x = torch.from_numpy(rng.uniform(-1, 1, (1, 3, side, side)).astype(np.float32))
            cells, diff = measure_backends(model, fast, graph, compiled, x, repeat, native_bf16)
            measured = {k: v for k, v in cells.items() if v is not None}
            fastest = min(measured, key=measured.__getitem__)
            shown = {k: backend_cell(k, v, openvino is not None) for k, v in cells.items()}
            print(
                f"| backends {arch} | {side} | {shown['torch fp32']} | {shown['torch bf16']} "
                f"| {shown['onnxruntime fp32']} | {shown['openvino fp32']} | {shown['openvino bf16']} "
                f"| {fastest} | {diff:.1e} |",
                flush=True,
            )


def measure_backends(
    model: torch.nn.Module,
    fast: Stylizer,
    graph,  # OnnxGenerator
    compiled: dict,  # "fp32"/"bf16" -> an OpenVINO infer request
    x: torch.Tensor,
    repeat: int,
    native_bf16: bool,
) -> tuple[dict[str, float | None], float]:
    """ms per forward of each backend on `x` (None: not measured), and onnxruntime's max abs diff to torch fp32."""
    feed = x.numpy()
    cells: dict[str, float | None] = {"torch bf16": None, "openvino fp32": None, "openvino bf16": None}
    with torch.inference_mode():
        reference = model(x).numpy()
        cells["torch fp32"] = time_call(lambda: model(x), repeat)
        if native_bf16:
            cells["torch bf16"] = time_call(lambda: fast.forward(fast.model, x), repeat)
    cells["onnxruntime fp32"] = time_call(lambda: graph.session.run(None, {"image": feed}), repeat)
    diff = float(np.abs(graph.session.run(None, {"image": feed})[0] - reference).max())
    for name, request in compiled.items():
        cells[f"openvino {name}"] = time_call(lambda r=request: r.infer({0: feed}), repeat)
    return cells, diff


def backend_cell(name: str, value: float | None, have_openvino: bool) -> str:
    if value is not None:
        return f"{value:.0f}"
    return "not installed" if name.startswith("openvino") and not have_openvino else "skipped"


def rss_child(arch: str, side: int, tile: int, width: int | None, device: str) -> None:
    """Run in a fresh process: stylize one side x side image with tiling and print peak RSS as JSON."""
    small, _ = test_image(1024)
    image = small.resize((side, side), Image.BICUBIC)
    del small
    model = generator(arch, width)
    opts = InferenceOptions(size_mode="original", precision="auto", tile_size=tile)
    start = time.perf_counter()
    out = Stylizer(model, device=device, options=opts).stylize(image)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
    result = {"arch": arch, "side": side, "tile": tile, "size": out.size, "seconds": seconds}
    print(json.dumps({**result, "peak_rss_mb": peak_mb, "peak_gpu_mb": gpu_mb}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="CI smoke: width 8, 64/128 px, 512 px RSS run")
    p.add_argument("--archs", nargs="+", default=["v1", "v2"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    p.add_argument("--repeat", type=int, default=3, help="timed runs per cell (median reported)")
    p.add_argument("--compile", action="store_true", help="also time the fast path with torch.compile")
    p.add_argument("--rss-side", type=int, default=4096, help="side of the tiled RSS run (0: skip)")
    p.add_argument("--rss-tile", type=int, default=1024, help="tile size of the RSS run (the CLI default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch (and onnxruntime/OpenVINO) threads")
    p.add_argument(
        "--backends-only",
        action="store_true",
        help="only the backend comparison (torch, onnxruntime, OpenVINO)",
    )
    p.add_argument(
        "--no-bf16",
        action="store_true",
        help="measure as where bf16 is emulated: fp32 rows only, bf16 skipped",
    )
    p.add_argument("--rss-child", nargs=2, metavar=("ARCH", "SIDE"), help=argparse.SUPPRESS)
    p.add_argument("--width", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--student",
        nargs=2,
        type=Path,
        metavar=("FULL", "STUDENT"),
        help="only compare a distilled student with its full model (e.g. the two models/builtin exports)",
    )
    args = p.parse_args()
    width = 8 if args.quick else args.width
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]), args.rss_tile, width, args.device)
        return 0
    sizes, repeat, rss_side = ([64, 128], 3, 512) if args.quick else (args.sizes, args.repeat, args.rss_side)
    if args.quick:
        args.rss_tile = 256
        # The smoke run of the tests: one thread, so a loaded machine slows it in proportion (two threads'
        # barriers waiting on a preempted sibling slowed it several-fold on a busy 2-core machine).
        torch.set_num_threads(1)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Only what this machine runs natively is measured: where bf16 is emulated (an AVX2-only CPU) one bf16
    # forward of v2 at 256 px takes minutes, so its rows would measure the emulation, and the fast path is fp32.
    native_bf16 = bf16_is_native(torch.device(args.device)) and not args.no_bf16
    fast = InferenceOptions(size_mode="original", precision="bf16" if native_bf16 else "fp32")
    where = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{torch.get_num_threads()} threads"
    )
    path = "bf16 fast path" if native_bf16 else "fp32 fast path (bf16 is emulated here)"
    print(f"torch {torch.__version__}, {where}, {path}; image: {test_image(8)[1]}")
    # Quick mode: a 1024 matmul (2 GMAC a call) keeps the peak's cost under a second on the slowest CPU met.
    n = 1024 if args.quick else 2048
    fp32_peak = matmul_gmacs(torch.float32, args.device, n)
    machine = cpu_line() if args.device == "cpu" else where
    if native_bf16:
        peak = matmul_gmacs(torch.bfloat16, args.device, n)
        print(
            f"{machine}; matmul peak: fp32 {fp32_peak:.0f}, bf16 {peak:.0f} GMAC/s ({peak / fp32_peak:.1f}x)"
        )
    else:
        peak = fp32_peak
        why = "--no-bf16" if args.no_bf16 and bf16_is_native(torch.device(args.device)) else EMULATED_BF16
        print(f"{machine}; matmul peak: fp32 {fp32_peak:.0f} GMAC/s; bf16 skipped: {why}")
    if args.student:
        student_comparison(*args.student, [512, 1024] if not args.quick else sizes, repeat, args.device)
        return 0
    if args.backends_only:
        backend_comparison(args.archs, sizes, repeat, width, native_bf16 and args.device == "cpu")
        return 0
    # ceiling: the speed-up if the fast path did nothing but its multiply-accumulates at the matmul peak of its
    # precision (bf16 where native, else fp32).
    if not native_bf16:
        print("skipped: the v1 'all bf16' rows (bf16 is not measured in this run)")
    print(
        "| arch | px | fp32 eager ms | fast ms | speed-up | PSNR fast vs fp32 dB | GMAC | ceiling |"
        + (" compiled ms | speed-up |" if args.compile else "")
    )
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if args.compile else ""))
    for arch in args.archs:
        model = generator(arch, width)
        for side in sizes:
            image, _ = test_image(side)
            ref_ms, ref = time_stylize(
                Stylizer(
                    model,
                    device=args.device,
                    options=InferenceOptions(size_mode="original", precision="fp32"),
                ),
                image,
                repeat,
            )
            gmacs = generator_gmacs(model, side)
            ceiling = ref_ms / (gmacs / peak * 1000)
            # v1's fast path keeps its encoder in fp32 (GeneratorV1.fp32_submodules); the all-bf16 row shows
            # what that costs and buys.
            variants = [(arch, fast)]
            if native_bf16 and getattr(model, "fp32_submodules", ()):
                variants.append((f"{arch} all bf16", replace(fast, fp32_submodules=())))
            for label, opts in variants:
                fast_ms, out = time_stylize(Stylizer(model, device=args.device, options=opts), image, repeat)
                row = (
                    f"| {label} | {side} | {ref_ms:.0f} | {fast_ms:.0f} | {ref_ms / fast_ms:.1f}x "
                    f"| {psnr(ref, out):.1f} | {gmacs:.3g} | {ceiling:.1f}x |"
                )
                if args.compile:
                    compiled = Stylizer(model, device=args.device, options=replace(opts, compile=True))
                    comp_ms, _ = time_stylize(compiled, image, repeat)
                    row += f" {comp_ms:.0f} | {ref_ms / comp_ms:.1f}x |"
                print(row, flush=True)
    if "v2" in args.archs:
        port_comparison(sizes, repeat, args.device, width, fast)
    if args.device == "cpu":
        # Quick mode: v2 only (each arch costs an export); bf16 columns as the main table decides.
        backend_comparison(["v2"] if args.quick else args.archs, sizes, repeat, width, native_bf16)
    if rss_side:
        for arch in args.archs:
            cmd = [
                sys.executable,
                __file__,
                "--rss-child",
                arch,
                str(rss_side),
                "--rss-tile",
                str(args.rss_tile),
                "--device",
                args.device,
            ]
            if width:
                cmd += ["--width", str(width)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"tiled {arch} {r['side']}x{r['side']} (tile {r['tile']}, precision auto): "
                f"{r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, peak GPU {r['peak_gpu_mb']:.0f} MB",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
