# The worker image: CUDA base, torch from the PyTorch CUDA wheel index, the service layer and the model library.
# Build from the repository root: docker build -f deploy/worker.Dockerfile -t animegan-worker .
# Pick the CUDA flavour of the wheels with --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
# Torch first, from the CUDA index: constraints.txt pins torch==2.13.0, which the +cuXXX build satisfies.
RUN TORCH_PIN="$(grep '^torch==' constraints.txt)" \
    && pip install --index-url "$TORCH_INDEX_URL" "$TORCH_PIN"
COPY animegan ./animegan
COPY workers ./workers
COPY api ./api
RUN pip install -c constraints.txt ".[worker]"

# The built-in styles ship in the image (about 5 MB, fp16): public models from the first start, nothing to mount.
COPY models/builtin /opt/animegan/builtin-models
ENV ANIMEGAN_MODELS_DIR=/opt/animegan/builtin-models

RUN useradd --system --uid 10001 --create-home animegan \
    && mkdir -p /models && chown animegan /models
USER animegan
# The VGG19 file for unpaired training is mounted here (see compose.yml).
VOLUME ["/models"]

# The worker answers a broadcast ping from its own node only; a hung or disconnected worker turns unhealthy.
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "exec celery -A workers.celery_app inspect ping --timeout 10 --destination \"celery@$(hostname)\""]

# Exec form: the Celery worker is PID 1 and gets SIGTERM for a warm shutdown (the current chunk finishes,
# training writes a checkpoint); the orchestrator's grace period must cover that.
ENTRYPOINT ["animegan"]
CMD ["worker", "--queues", "stylize,webhooks", "--concurrency", "1"]
