"""ONNX through real worker processes on local and S3 storage: an export job writes a graph that matches the
torch generator, and that graph, registered as a model, stylizes images through onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.e2e.conftest import BUILTIN_MODEL, OWNER, make_service
from workers import enqueue
from workers.contracts.export import export_message

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["local", "s3"])
def service(request, tmp_path_factory):
    svc = make_service(tmp_path_factory.mktemp(f"e2e-onnx-{request.param}"), request.param, request)
    try:
        svc.registry.register_builtin_models(svc.root / "models", svc.store)
        svc.worker = svc.start_worker("onnx")
        yield svc
    finally:
        svc.close()


def export(service, model: str = BUILTIN_MODEL, opset: int = 17) -> str:
    record, _ = service.jobs.create("export", OWNER, {"model": model, "opset": opset}, total=1)
    enqueue.send(export_message(record.id), app=service.app)
    return record.id


def test_an_export_job_writes_a_graph_that_matches_the_generator(service):
    from animegan.weights import load_generator

    job_id = export(service, opset=17)
    record = service.wait_status(job_id, {"succeeded", "failed"}, timeout=120)
    assert record.status == "succeeded", record.error
    data = service.store.get_bytes(record.result["output_key"])
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    generator = load_generator(service.root / "models" / f"{BUILTIN_MODEL}.safetensors").model
    for shape in ((1, 3, 64, 64), (1, 3, 96, 48)):
        x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
        with torch.no_grad():
            expected = generator(torch.from_numpy(x)).numpy()
        assert np.abs(session.run(None, {"image": x})[0] - expected).max() <= 1e-3


def test_an_unknown_model_fails_the_export_clearly(service):
    record = service.wait_status(export(service, model="no-such-model"), {"succeeded", "failed"})
    assert (record.status, record.error["code"]) == ("failed", "unknown_model")


def register_graph(service, name: str, path, config: dict) -> None:
    """What POST /v1/models does with an accepted ONNX upload: store it under a .onnx key and register it."""
    from workers import keys

    key = keys.model_prefix(name, OWNER) + "generator.onnx"
    service.store.put_file(key, path)
    service.registry.register(name, OWNER, key, config, source="uploaded")


@pytest.fixture(scope="module")
def graphs(service, tmp_path_factory):
    """Our export of the built-in 'tiny', and the same generator as an NHWC graph of batch 1 (AnimeGANv3's shape)."""
    from animegan.onnx_export import export_onnx
    from animegan.weights import load_generator

    folder = tmp_path_factory.mktemp("graphs")
    generator = load_generator(service.root / "models" / f"{BUILTIN_MODEL}.safetensors").model
    register_graph(service, "tiny-onnx", export_onnx(generator, folder / "ours.onnx"), {"arch": "onnx"})

    class Nhwc(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.generator = generator

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.generator(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    nhwc = folder / "nhwc.onnx"
    torch.onnx.export(
        Nhwc(), (torch.zeros(1, 64, 64, 3),), str(nhwc), dynamo=False, opset_version=17, input_names=["x"],
        dynamic_axes={"x": {1: "h", 2: "w"}},
    )  # fmt: skip
    register_graph(service, "tiny-nhwc", nhwc, {"arch": "onnx"})
    return ("tiny-onnx", "tiny-nhwc")


def test_onnx_models_stylize_images_and_batches_like_the_torch_model(service, graphs):
    import io

    from PIL import Image

    from tests.e2e.conftest import png_bytes
    from tests.e2e.test_worker_images import submit_batch, submit_stylize

    # 64x64: no padding on either side (a graph of another project is padded to multiples of 32, which changes
    # what its norm layers see, so only unpadded sizes compare exactly).
    images = [png_bytes((64, 64), seed=i) for i in range(3)]
    outputs = {}
    for model in (BUILTIN_MODEL, *graphs):
        single = service.wait_status(submit_stylize(service, images[0], model=model), {"succeeded", "failed"})
        assert single.status == "succeeded", (model, single.error)
        outputs[model] = np.asarray(
            Image.open(io.BytesIO(service.store.get_bytes(single.result["output_key"])))
        )
        batch = service.wait_status(
            submit_batch(service, images, chunk_size=3, model=model), {"succeeded", "failed", "partial"}
        )
        assert batch.status == "succeeded", (model, batch.error)
    for model in graphs:  # fp32 on both sides (the e2e workers run ANIMEGAN_INFERENCE_PRECISION=fp32)
        assert outputs[model].shape == (64, 64, 3)
        assert np.abs(outputs[model].astype(int) - outputs[BUILTIN_MODEL].astype(int)).max() <= 1, model


def test_an_onnx_model_stylizes_a_video(service, graphs, tmp_path):
    from animegan.video import plan_segments, probe_video
    from tests.video_clips import count_frames, write_clip
    from workers import keys
    from workers.contracts.video import VideoSegmentSpec, VideoSpec, segment_messages
    from workers.jobstore import new_job_id

    clip = write_clip(tmp_path / "clip.mp4", frames=12, fps=12, width=64, height=48, gop=6)
    info = probe_video(clip)
    segments = plan_segments(info, 0.5)
    job_id = new_job_id()
    params = VideoSpec(
        model=graphs[1], source_key=keys.input(job_id, 0, "mp4"),
        time_base=f"{info.time_base.numerator}/{info.time_base.denominator}", frames=info.frames,
        width=info.width, height=info.height, fps=info.fps, duration=info.duration, audio_codec=info.audio_codec,
        preset="ultrafast", segments=[VideoSegmentSpec(**s.to_dict()) for s in segments],
    ).model_dump(mode="json")  # fmt: skip
    service.jobs.create("video", OWNER, params, total=info.frames, job_id=job_id)
    service.store.put_file(keys.input(job_id, 0, "mp4"), clip)
    enqueue.send(segment_messages(job_id, len(segments)), app=service.app)
    record = service.wait_status(job_id, {"succeeded", "failed", "partial"}, timeout=180)
    assert record.status == "succeeded", record.error
    assert (record.result["frames"], record.result["segments"]) == (12, len(segments)) and len(segments) >= 2
    service.store.get_file(record.result["output_key"], tmp_path / "out.mp4")
    assert count_frames(tmp_path / "out.mp4")[0] == 12
