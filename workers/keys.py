"""Every object-storage key, built from ids only, so a retried write lands on the same key.

This is the only module that spells key layouts; backends validate keys again with `validate_key`.
"""

from __future__ import annotations

import re

from workers.exceptions import InvalidKey

# One path segment: starts with a letter, digit or '_' (so never '.', '..' or a hidden tmp file), then
# letters, digits and ._-@+= ; no '/', '\\', ':' or spaces. Owner ids and job ids must fit this too.
SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._\-@+=]{0,127}$")
_EXT_RE = re.compile(r"^[a-z0-9]{1,8}$")
# a training dataset: zips of real photos, style images (unpaired) or targets named as the photos (paired)
DATASET_PARTS = ("photos", "styles", "targets")
MAX_KEY_LENGTH = 1024  # S3's limit in bytes; keys here are ASCII


def validate_key(key: str) -> str:
    """Return `key` if it is a relative 'a/b/c' path of valid segments; raise InvalidKey otherwise."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"storage key {key!r} is empty or not a string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"storage key of {len(key)} characters exceeds {MAX_KEY_LENGTH}")
    for segment in key.split("/"):
        if not SEGMENT_RE.match(segment):
            raise InvalidKey(
                f"storage key {key!r} has segment {segment!r}; keys are relative paths of [A-Za-z0-9._-@+=] "
                "segments with no '..', no leading '/' or '.', and no empty parts"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: '' (everything), or a valid key, optionally ending in '/'."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not SEGMENT_RE.match(value):
        raise InvalidKey(f"{what} {value!r} cannot be used in a storage key; use letters, digits and ._-@+=")
    return value


def _index(value: int, what: str = "index") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidKey(f"{what} {value!r} must be a non-negative integer")
    return value


def _ext(value: str) -> str:
    ext = value.lstrip(".").lower() if isinstance(value, str) else value
    if not isinstance(ext, str) or not _EXT_RE.match(ext):
        raise InvalidKey(f"file extension {value!r} must be 1-8 lowercase letters or digits, e.g. 'png'")
    return ext


# Jobs: inputs uploaded with the job, outputs written by workers.
def inputs_prefix(job_id: str) -> str:
    return f"inputs/{_segment(job_id, 'job id')}/"


def input(job_id: str, index: int, ext: str) -> str:
    """Input image `index` of a job (0 for a stylize job)."""
    return f"{inputs_prefix(job_id)}{_index(index):06d}.{_ext(ext)}"


def outputs_prefix(job_id: str) -> str:
    return f"outputs/{_segment(job_id, 'job id')}/"


def output(job_id: str, index: int, ext: str) -> str:
    """Stylized result of input `index`."""
    return f"{outputs_prefix(job_id)}{_index(index):06d}.{_ext(ext)}"


def output_archive(job_id: str) -> str:
    """A zip of all outputs of a batch job."""
    return f"{outputs_prefix(job_id)}results.zip"


def video_segments_prefix(job_id: str) -> str:
    return f"{outputs_prefix(job_id)}segments/"


def video_segment(job_id: str, segment: int) -> str:
    """Stylized segment `segment` of a video job (H.264 MP4, timestamps from 0); a redelivery overwrites it."""
    return f"{video_segments_prefix(job_id)}{_index(segment, 'segment'):06d}.mp4"


# Training runs: checkpoints to resume from, sample grids to show progress, the resolved config.
def run_prefix(job_id: str) -> str:
    return f"runs/{_segment(job_id, 'job id')}/"


def checkpoints_prefix(job_id: str) -> str:
    return f"{run_prefix(job_id)}checkpoints/"


def checkpoint(job_id: str, step: int) -> str:
    """Zero-padded so listing order is step order."""
    return f"{checkpoints_prefix(job_id)}{_index(step, 'step'):09d}.pt"


def samples_prefix(job_id: str) -> str:
    return f"{run_prefix(job_id)}samples/"


def sample(job_id: str, step: int, ext: str = "png") -> str:
    return f"{samples_prefix(job_id)}{_index(step, 'step'):09d}.{_ext(ext)}"


def run_config(job_id: str) -> str:
    """The resolved TrainConfig of a run (the trainer's config.json), uploaded with each checkpoint."""
    return f"{run_prefix(job_id)}config.json"


def run_losses(job_id: str) -> str:
    """The run's losses.jsonl (one line of named loss terms per step), uploaded with each checkpoint."""
    return f"{run_prefix(job_id)}losses.jsonl"


# Models: public ones (built-in, shared) and each owner's own, so two tenants can both have "my-style".
def model_prefix(name: str, owner: str | None = None) -> str:
    scope = "public" if owner is None else f"users/{_segment(owner, 'owner id')}"
    return f"models/{scope}/{_segment(name, 'model name')}/"


def model(name: str, owner: str | None = None) -> str:
    """Generator export (safetensors) of a registered model; owner None: the public namespace."""
    return f"{model_prefix(name, owner)}generator.safetensors"


def builtin_model(name: str, sha256: str) -> str:
    """A built-in export, under its content (hex sha256): a worker of another version publishing the same name
    never overwrites the file a registered record points to."""
    return f"{model_prefix(name)}{_segment(sha256[:16], 'digest')}/generator.safetensors"


# Training datasets: one uploaded archive per part.
def dataset_prefix(dataset_id: str) -> str:
    return f"datasets/{_segment(dataset_id, 'dataset id')}/"


def dataset_archive(dataset_id: str, part: str) -> str:
    """A zip of one part of a dataset, as uploaded."""
    if part not in DATASET_PARTS:
        raise InvalidKey(f"dataset part {part!r} must be one of {', '.join(DATASET_PARTS)}")
    return f"{dataset_prefix(dataset_id)}{part}.zip"


# Direct uploads (presigned PUT) land here before a job claims them; scoped by owner.
def upload(owner: str, upload_id: str) -> str:
    return f"uploads/{_segment(owner, 'owner id')}/{_segment(upload_id, 'upload id')}"


# Weights the operators upload once, copied to the training workers at start (deploy/k8s/worker-train.yaml).
VGG19_WEIGHTS = "weights/vgg19.npy"
