# syntax=docker/dockerfile:1
# Multi-stage: build the wheel, then install the locked dependencies and the wheel into a clean slim image.
# The base, pinned by digest (multi-arch index of python:3.11.14-slim-bookworm; amd64 and arm64):
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
# A PyPI mirror, e.g. https://mirrors.aliyun.com/pypi/simple/ where pypi.org is slow or unreachable.
ARG PIP_INDEX_URL=https://pypi.org/simple
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE}
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG VERSION=0.2.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="secretstage-operator" \
      org.opencontainers.image.description="Kubernetes operator that promotes Alibaba Cloud KMS secret version stages" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/secretstage/secretstage-operator"
# No .pyc writes: the chart mounts the root filesystem read-only (only /tmp is writable).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Every dependency at the version and with the file hashes of requirements.lock (make lock), whatever
# the index: two builds of one tag get the same packages. Then our wheel alone, and a check that the
# lock satisfies it.
COPY requirements.lock /tmp/requirements.lock
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock \
    && pip install --no-cache-dir --no-deps /tmp/dist/secretstage_operator-*.whl \
    && pip check \
    && rm -rf /tmp/dist /tmp/requirements.lock
# A numeric UID, so runAsNonRoot can be verified without /etc/passwd; matches the chart's securityContext.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["secretstage"]
CMD ["run"]
