"""One typed spec per job kind: what the API builds from a form is what the worker reads from the job record, the
same class and the same values, in TrainConfig's names for training; and the media table is the only place the
format -> extension -> content type mapping is written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from tests.api.conftest import PUBLIC_MODEL, png_bytes
from tests.api.test_validation import training, zip_of
from workers.contracts.images import StylizeSpec
from workers.contracts.training import TrainingHyperparameters, TrainingSpec
from workers.jobs import job_spec

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_a_stylize_spec_reaches_the_worker_as_the_same_type(alice, api):
    form = {
        "model": PUBLIC_MODEL,
        "format": "jpeg",
        "quality": "80",
        "size_mode": "max_side",
        "max_side": "64",
        "faces": "false",
    }
    response = alice.post("/v1/stylize", data=form, files={"file": ("cat.png", png_bytes((40, 30)))})
    assert response.status_code == 202, response.text
    spec = job_spec(api.jobs.get(response.json()["id"]), StylizeSpec)
    assert spec == StylizeSpec(
        model=PUBLIC_MODEL, format="jpeg", quality=80, size_mode="max_side", max_side=64, faces=False,
        filename="cat.png", width=40, height=30,
    )  # fmt: skip
    ctx = SimpleNamespace(settings=SimpleNamespace(inference_precision="fp32", inference_batch_size=1))
    from workers.jobs.stylize import inference_options

    assert inference_options(ctx, spec).faces is False  # the worker's Stylizer skips the portrait path
    default = alice.post("/v1/stylize", data={"model": PUBLIC_MODEL}, files={"file": ("a.png", png_bytes())})
    assert inference_options(ctx, job_spec(api.jobs.get(default.json()["id"]), StylizeSpec)).faces is True
    assert (spec.media.ext, spec.media.content_type) == ("jpg", "image/jpeg")
    assert response.json()["params"] == spec.model_dump(
        mode="json"
    )  # the public view shows the spec as stored


def test_a_training_spec_uses_trainconfigs_names_from_the_form_to_the_trainer(alice, api):
    from workers.jobs.train import train_config

    hyper = {
        "preset": "v2-paprika", "image_size": 64, "epochs": 3, "init_epochs": 1, "init_lr": 1e-4, "g_lr": 3e-5,
        "d_lr": 5e-5, "max_total_steps": 7, "base_channels": 8, "seed": 3,
        "losses": {"g_adv": 200, "d_adv": 250, "con": 2.0, "sty": 1.0, "color": 12, "tv": 0.5},
        "paired_losses": {"adv": 0.7, "d_smooth": 0.5, "feature_matching": 2, "color_stats": 1, "outline": 3},
    }  # fmt: skip
    photos, styles = zip_of({"p.png": png_bytes()}), zip_of({"s.png": png_bytes()})
    response = training(alice, photos, styles, hyperparameters=json.dumps(hyper))
    assert response.status_code == 202, response.text
    spec = job_spec(api.jobs.get(response.json()["id"]), TrainingSpec)
    assert spec.hyperparameters == TrainingHyperparameters.model_validate(hyper)
    assert {part: api.store.get_bytes(a.key) for part, a in spec.datasets.items()} == {
        "photos": photos,
        "styles": styles,
    }

    ctx = SimpleNamespace(settings=SimpleNamespace(vgg_weights=Path("vgg19.npy")), device="cpu")
    config = train_config(ctx, spec)
    assert (config.preset, config.image_size, config.epochs, config.init_epochs, config.seed) == (
        "v2-paprika", 64, 3, 1, 3,
    )  # fmt: skip
    assert (config.init_lr, config.g_lr, config.d_lr, config.max_total_steps) == (1e-4, 3e-5, 5e-5, 7)
    assert config.generator.base_channels == 8
    losses = config.losses
    assert (losses.g_adv, losses.d_adv, losses.con, losses.sty, losses.color, losses.tv) == (
        200, 250, 2.0, 1.0, 12, 0.5,
    )  # fmt: skip
    assert losses.d_smooth == 0.005  # not overridden: the v2-paprika preset's own value
    paired = config.paired_losses
    assert (paired.adv, paired.d_smooth, paired.feature_matching, paired.color_stats, paired.outline) == (
        0.7, 0.5, 2, 1, 3,
    )  # fmt: skip


def test_a_record_that_is_not_a_valid_spec_fails_naming_the_field(api):
    from workers.jobs import JobInputError

    record, _ = api.jobs.create("stylize", "alice", {"model": PUBLIC_MODEL, "format": "gif"}, total=1)
    try:
        job_spec(record, StylizeSpec)
    except JobInputError as exc:
        assert exc.code == "bad_params" and "params.format" in exc.message, exc.message
    else:
        raise AssertionError("a gif format parsed as a StylizeSpec")


# Content types and the format -> extension rename, as source text; only workers/media.py may spell them.
MEDIA_SPELLINGS = re.compile(
    r"image/(png|jpeg|webp|bmp)|video/mp4|application/zip|[\"']jpeg[\"']\s*:\s*[\"']jpg"
)


def test_the_media_table_is_the_only_place_the_mapping_is_written():
    sources = [p for folder in ("api", "workers", "scripts") for p in (PROJECT_ROOT / folder).rglob("*.py")]
    sources += list((PROJECT_ROOT / "api" / "web").glob("*.js"))
    spelled = sorted(
        str(p.relative_to(PROJECT_ROOT))
        for p in sources
        if MEDIA_SPELLINGS.search(p.read_text()) and p != PROJECT_ROOT / "workers" / "media.py"
    )
    assert spelled == [], f"{spelled} spell a format, extension or content type; use workers.media"
