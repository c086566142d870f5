"""The export kind: its contract (payload, spec, routing) and the job function on a tiny seeded model, on real
Redis and local storage; the exported graph is run with onnxruntime against the torch generator."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from pydantic import ValidationError

from workers.contracts.base import Queues
from workers.contracts.export import EXPORT, EXPORT_TASK, ExportPayload, ExportSpec, export_message
from workers.contracts.registry import KINDS, TASK_QUEUES
from workers.jobs import JobContext, recorded_outcome
from workers.jobs.export import run_export

OWNER = "tenant-a"


def test_contract_round_trip_and_routing():
    message = export_message("j9")
    assert (message.task, message.task_id) == (EXPORT_TASK, "j9-export")
    wire = json.loads(json.dumps(message.payload.model_dump(mode="json")))
    assert ExportPayload.model_validate(wire) == message.payload
    assert KINDS["export"] is EXPORT and TASK_QUEUES[EXPORT_TASK] == Queues.stylize
    assert ExportSpec(model="m").opset == 17
    for bad in ({"model": "m", "opset": 12}, {"model": "m", "opset": 99}, {"model": "m", "format": "tflite"}):
        with pytest.raises(ValidationError):
            ExportSpec.model_validate(bad)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from animegan.config import GeneratorConfig
    from animegan.nn import build_generator
    from animegan.weights import save_generator

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    generator = build_generator(GeneratorConfig(arch="v2", base_channels=8))
    save_generator(folder / "tiny.safetensors", generator, metadata={"license": "non-commercial"})
    return folder


@pytest.fixture
def ctx(redis_client, redis_url, tmp_path, models_dir) -> JobContext:
    from workers.jobs.models import ModelCache
    from workers.jobstore import JobStore
    from workers.lease import TrainingLease
    from workers.registry import ModelRegistry
    from workers.settings import WorkerSettings, load_settings
    from workers.storage import LocalStore

    settings = load_settings(
        WorkerSettings,
        redis_url=redis_url,
        storage_url=(tmp_path / "storage").as_uri(),
        models_dir=models_dir,
    )
    store = LocalStore(tmp_path / "storage")
    registry = ModelRegistry(redis_client)
    registry.register_builtin_models(models_dir, store)
    return JobContext(
        settings=settings,
        jobs=JobStore.from_settings(redis_client, settings),
        store=store,
        registry=registry,
        models=ModelCache(store, registry, models_dir, device="cpu", capacity=2),
        leases=TrainingLease(redis_client),
        device="cpu",
        on_terminal=lambda job_id: None,
    )


def export_job(ctx, **params) -> str:
    record, _ = ctx.jobs.create("export", OWNER, {"model": "tiny", **params}, total=1)
    return record.id


def test_export_writes_a_graph_that_matches_the_generator(ctx, tmp_path):
    job_id = export_job(ctx, opset=18)
    run_export(ctx, job_id)
    record = ctx.jobs.get(job_id)
    assert record.status == "succeeded", record.error
    result = record.result
    data = ctx.store.get_bytes(result["output_key"])
    assert result["output_key"].endswith(".onnx") and (result["opset"], result["layout"]) == (18, "NCHW")
    assert result["bytes"] == len(data) and result["sha256"] == hashlib.sha256(data).hexdigest()
    assert record.progress["done"] == 1
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    assert json.loads(props["animegan:metadata"])["license"] == "non-commercial"  # the model's terms travel
    generator = ctx.models.get("tiny", OWNER).generator
    for shape in ((1, 3, 64, 64), (2, 3, 40, 72)):
        x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
        with torch.no_grad():
            expected = generator(torch.from_numpy(x)).numpy()
        assert np.abs(session.run(None, {"image": x})[0] - expected).max() <= 1e-3


@pytest.mark.parametrize(
    ("params", "code"), [({"model": "no-such"}, "unknown_model"), ({"opset": 3}, "bad_params")]
)
def test_bad_exports_fail_with_a_code(ctx, params, code):
    job_id = export_job(ctx, **params)
    with recorded_outcome(ctx, job_id):
        run_export(ctx, job_id)
    record = ctx.jobs.get(job_id)
    assert (record.status, record.error["code"]) == ("failed", code)


def test_an_onnx_model_is_not_exported_again(ctx, tmp_path):
    from animegan.onnx_export import export_onnx
    from workers import keys

    graph = export_onnx(ctx.models.get("tiny", OWNER).generator, tmp_path / "g.onnx")
    key = keys.model_prefix("graph", OWNER) + "generator.onnx"
    ctx.store.put_file(key, graph)
    ctx.registry.register("graph", OWNER, key, {"arch": "onnx"}, source="uploaded")
    job_id = export_job(ctx, model="graph")
    with recorded_outcome(ctx, job_id):
        run_export(ctx, job_id)
    assert ctx.jobs.get(job_id).error["code"] == "already_onnx"
