# syntax=docker/dockerfile:1
# Multi-stage: build the wheel, then install only the wheel into a clean slim image.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="secretstage-operator" \
      org.opencontainers.image.description="Kubernetes operator that promotes Alibaba Cloud KMS secret version stages" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/secretstage/secretstage-operator"
# No .pyc writes: the chart mounts the root filesystem read-only (only /tmp is writable).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/secretstage_operator-*.whl \
    && rm -rf /tmp/dist
# A numeric UID, so runAsNonRoot can be verified without /etc/passwd; matches the chart's securityContext.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["secretstage"]
CMD ["run"]
