# syntax=docker/dockerfile:1
# The operator image: a virtualenv with the operator and its locked dependencies, nothing else.

# The base image, a current patch release. The release workflow resolves the tag to its digest
# and passes `python:<tag>@sha256:<digest>`, so that a release is built from exactly one image;
# Renovate keeps the tag current (renovate.json).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# No pip or setuptools in the virtualenv: the base image's pip installs into it from outside.
RUN python -m venv --without-pip /opt/venv
# Dependencies first, in their own layer: it changes only when the lock or the requirements do.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
 && python -m pip --python /opt/venv/bin/python install --constraint constraints.txt --requirement requirements.txt
COPY README.md ./
COPY operator ./operator
RUN PIP_CONSTRAINT=/src/constraints.txt python -m pip --python /opt/venv/bin/python install --no-deps . \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${BASE_IMAGE}
# What the image is, for registries and scanners (https://github.com/opencontainers/image-spec).
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="doks-access-operator" \
      org.opencontainers.image.description="Keeps DigitalOcean Kubernetes (DOKS) kubeconfigs fresh in Kubernetes Secrets." \
      org.opencontainers.image.source="https://github.com/doks-access/doks-access-operator" \
      org.opencontainers.image.url="https://github.com/doks-access/doks-access-operator" \
      org.opencontainers.image.documentation="https://github.com/doks-access/doks-access-operator#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# The base image's own pip and setuptools are not needed to run the operator: one thing fewer to
# patch, and no installer at hand for anyone who gets into the container.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
 && rm -rf /usr/local/bin/pip* /usr/local/bin/idle* /usr/local/bin/pydoc*
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Numeric, so that Kubernetes can check runAsNonRoot without looking the name up.
USER 65532:65532
# The operator is PID 1 and handles SIGTERM itself (a clean stop, the Lease handed back).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/doks-access"]
CMD ["run"]
