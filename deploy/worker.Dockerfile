# The worker image: Python 3.11 slim (the version the API and the tests use) and torch from PyPI, whose Linux
# wheel brings its own CUDA and cuDNN libraries (the nvidia-* and cuda-* wheels), so no CUDA base image duplicates
# them; the host needs only the NVIDIA driver (device plugin / container toolkit).
# Build from the repository root: docker build -f deploy/worker.Dockerfile -t animegan-worker .
# Release builds pin the base by digest: --build-arg PYTHON_BASE=python:3.11-slim-bookworm@sha256:<digest>, the
# digest from `docker buildx imagetools inspect python:3.11-slim-bookworm` on the day, reviewed like a lock file.
# None is written here: this repository is built and tested where Docker Hub cannot be reached, so no digest could
# be read, and one from memory would be a guess that fails every build or names an image nobody checked.
ARG PYTHON_BASE=python:3.11-slim-bookworm
FROM ${PYTHON_BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libglib2.0-0: OpenCV's headless wheel still links it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The GPU stack first, every wheel pinned by its sha256 (scripts/pin_gpu_wheels.py writes the file from PyPI):
# gigabytes of CUDA libraries that are byte for byte the ones reviewed, whatever PyPI serves later.
COPY deploy/docker/requirements-gpu.txt ./
RUN pip install --require-hashes --no-deps -r requirements-gpu.txt && rm requirements-gpu.txt
# Then the rest, from the metadata alone (empty package stubs), so a source change reuses this layer;
# constraints.txt pins it, and torch is already there at the same version.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir animegan workers api \
    && touch animegan/__init__.py workers/__init__.py api/__init__.py \
    && pip install -c constraints.txt ".[worker]" \
    && rm -rf animegan workers api
COPY animegan ./animegan
COPY workers ./workers
COPY api ./api
RUN pip install --no-deps --force-reinstall .

# The built-in styles ship in the image (about 5 MB, fp16): public models from the first start, nothing to mount.
COPY models/builtin /opt/animegan/builtin-models
ENV ANIMEGAN_MODELS_DIR=/opt/animegan/builtin-models

RUN useradd --system --uid 10001 --create-home animegan \
    && mkdir -p /models && chown animegan /models
USER animegan
# Optional VGG19 file for unpaired training (compose mounts a host folder; Kubernetes an init container fills it).
VOLUME ["/models"]

# The worker's watchdog thread keeps a heartbeat file fresh; no Redis round trip, so a Redis blip does not
# mark every worker unhealthy at once (the watchdog itself restarts a worker that stopped consuming).
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD ["animegan", "worker-alive"]

# Exec form: the Celery worker is PID 1 and gets SIGTERM for a warm shutdown (the current chunk finishes,
# training writes a checkpoint); the orchestrator's grace period must cover that.
ENTRYPOINT ["animegan"]
CMD ["worker", "--queues", "stylize,webhooks", "--concurrency", "1"]
