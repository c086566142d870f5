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
