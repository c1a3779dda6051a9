# syntax=docker/dockerfile:1
# The Tidings image: the platform (`tidings`) and its operator (`tidings-operator`).
#
#   docker build --build-arg REVISION=$(git rev-parse HEAD) -t ghcr.io/tidings/tidings:0.1.0 .
#   docker run --rm -p 8080:8080 ghcr.io/tidings/tidings:0.1.0      # `tidings up`: all in one
#
# Port 8080 serves clients; 9090 (TIDINGS_OPS_PORT) serves /metrics and analytics: publish
# it only where Prometheus reaches it.
#
# Kubernetes runs `tidings serve <component>` (the operator's pods) and
# `tidings-operator run` (the Helm chart), both as uid 10001 on a read-only root.
# Without Docker or a registry, `scripts/image build` builds it with podman on a base made
# from Debian's Python (--build-arg PYTHON_IMAGE=...): see scripts/README.md.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: wheels of the project and of every dependency, pinned by constraints.txt
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY platform/ platform/
COPY operator/ operator/
RUN pip wheel --wheel-dir /wheels -c constraints.txt .

# ---- final: the wheels installed into a venv; no compilers, no caches, no wheels left
FROM ${PYTHON_IMAGE} AS final
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tidings" \
      org.opencontainers.image.description="End-to-end encrypted messaging platform and its Kubernetes operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PATH=/opt/tidings/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TIDINGS_HOST=0.0.0.0 \
    TIDINGS_PORT=8080 \
    TIDINGS_OPS_PORT=9090 \
    TIDINGS_DATA_DIR=/var/lib/tidings
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/tidings \
    && /opt/tidings/bin/pip install --no-cache-dir --no-index --find-links /wheels tidings \
    && groupadd --system --gid 10001 tidings \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tidings --no-create-home \
       --shell /usr/sbin/nologin tidings \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/tidings
WORKDIR /var/lib/tidings
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["tidings"]
CMD ["up"]
