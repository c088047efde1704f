# syntax=docker/dockerfile:1
# agentwatch image. Build from the repository root:   docker build -t agentwatch .
# Run (embedded ClickHouse on the volume):
#   docker run -p 4317:4317 -p 4318:4318 -p 9464:9464 -v agentwatch:/var/lib/agentwatch agentwatch
# With your own config:  -v $PWD/my.yaml:/etc/agentwatch/config.yaml:ro
ARG PYTHON_IMAGE=python:3.11-slim

# Build the wheel in a throw-away stage so the source tree and build tools stay out of the image.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY collector ./collector
COPY processors ./processors
COPY exporters ./exporters
COPY extensions ./extensions
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A numeric, fixed UID so Kubernetes' runAsNonRoot can verify it (the chart uses 10001 too).
RUN groupadd --system --gid 10001 agentwatch \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/agentwatch --no-create-home \
        --shell /usr/sbin/nologin agentwatch \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/agentwatch
# Runtime dependencies only (no test extras); every one ships manylinux wheels, so no compiler.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels pip install /wheels/*.whl
COPY configs/default.yaml /etc/agentwatch/config.yaml
# WALs, cumulative-to-delta state and (with no ClickHouse endpoint) the embedded ClickHouse.
ENV AGENTWATCH_DATA_DIR=/var/lib/agentwatch
VOLUME ["/var/lib/agentwatch"]
WORKDIR /var/lib/agentwatch
USER 10001:10001
# OTLP gRPC, OTLP HTTP (also /health and /ready), Prometheus /metrics.
EXPOSE 4317 4318 9464
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4318/health', timeout=2)"]
# SIGTERM drains the queues for up to service.shutdown_timeout (15s by default).
STOPSIGNAL SIGTERM
ENTRYPOINT ["agentwatch"]
CMD ["serve", "-c", "/etc/agentwatch/config.yaml"]
