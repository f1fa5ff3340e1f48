# One image for every llmserve process: the operator, the proxy sidecar, the download Job
# (fetch-model) and the simulator are all `llmserve <command>`.
#
#   docker build -t ghcr.io/llmserve/llmserve:0.1.0 .
#
# The base is pinned by tag (a digest was not at hand when this was written: add one with
# `docker buildx imagetools inspect python:3.11.14-slim-bookworm` and keep the tag beside it).
# Bookworm (glibc 2.36) is what requirements.lock's hashes were taken for (tools/lock.py).

# --- build: the dependencies from the lock, then llmserve's wheel, into one virtualenv ----------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# The virtualenv gets no pip of its own: the base image's pip installs into it (`--python`).
# Dependencies first, in their own layer: it changes only when requirements.lock does. Exact
# versions, wheels only, every file hash-checked; the same step as tools/testbin.py's
# locked_venv, which the unit tests run.
COPY requirements.lock /tmp/requirements.lock
RUN python -m venv --without-pip /opt/llmserve \
    && python -m pip --python /opt/llmserve/bin/python install \
        --require-hashes --no-deps --only-binary=:all: -r /tmp/requirements.lock

# The wheel, built from the package sources alone with a pinned build backend.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m pip install setuptools==84.2.1 wheel==0.48.0 \
    && python -m pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
    && python -m pip --python /opt/llmserve/bin/python install --no-deps /dist/llmserve-*.whl \
    && python -m pip --python /opt/llmserve/bin/python check

# --- runtime: the base image and the virtualenv; no pip, setuptools or wheel --------------------
FROM python:3.11.14-slim-bookworm AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="llmserve" \
      org.opencontainers.image.description="A Kubernetes operator that runs open LLMs on GPU clusters from one small custom resource." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"

ENV PATH=/opt/llmserve/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The build tools the base image ships are not needed to run; the user is fixed so that
# runAsUser in the Helm chart can name it. Pods may run the image as another UID (model pods
# use 2000): everything here is readable by all and nothing is written outside mounted volumes.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
    && groupadd --system --gid 10001 llmserve \
    && useradd --no-log-init --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin llmserve

COPY --from=build /opt/llmserve /opt/llmserve

USER 10001:10001
ENTRYPOINT ["llmserve"]
CMD ["--help"]
