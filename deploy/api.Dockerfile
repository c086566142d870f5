# The API image: FastAPI and the light service layer only; no torch and no CUDA (DESIGN.md, Boundaries).
# Build from the repository root: docker build -f deploy/api.Dockerfile -t animegan-api .
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

WORKDIR /app
# Dependencies first, from the metadata alone (empty package stubs), so a source change reuses this layer.
# The [api] extra pulls no torch; the check makes the build fail if a dependency ever drags it in.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir animegan workers api \
    && touch animegan/__init__.py workers/__init__.py api/__init__.py \
    && pip install -c constraints.txt ".[api]" \
    && rm -rf animegan workers api \
    && python -c "import importlib.util as u, sys; sys.exit('torch was installed' if u.find_spec('torch') else 0)"
COPY animegan ./animegan
COPY workers ./workers
COPY api ./api
RUN pip install --no-deps --force-reinstall .

RUN useradd --system --uid 10001 --no-create-home animegan
USER animegan
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as r; sys.exit(r.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

# Exec form: `animegan serve` (uvicorn) is PID 1 and receives SIGTERM directly for a graceful stop.
ENTRYPOINT ["animegan"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
