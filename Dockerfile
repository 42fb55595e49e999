# syntax=docker/dockerfile:1
# The operator image: a virtualenv with the operator and its locked dependencies, nothing else.

FROM python:3.11.7-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, in their own layer: it changes only when the lock or the requirements do.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
 && /opt/venv/bin/pip install --constraint constraints.txt --requirement requirements.txt
COPY README.md ./
COPY operator ./operator
RUN PIP_CONSTRAINT=/src/constraints.txt /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM python:3.11.7-slim-bookworm
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Numeric, so that Kubernetes can check runAsNonRoot without looking the name up.
USER 65532:65532
ENTRYPOINT ["/opt/venv/bin/doks-access"]
CMD ["run"]
