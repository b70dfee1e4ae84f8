# The retrieval API (recsys-serve) with the index builder. No index baked in: mount one at /data/indexes
# (ROOT/current, as published by `index-builder build --out ROOT`); without one, the demo index is built at start.
#
#   docker build -t recsys-retrieval .
#   docker run -p 5000:5000 -v "$PWD/indexes/demo:/data/indexes" recsys-retrieval
#
# One worker per container by default (RECSYS_WORKERS): the orchestrator scales containers (deploy/README.md).
# BASE_IMAGE: any Debian-like image with python3 (>= 3.11) and its venv module; CI passes one made locally by
# docker/ci_docker_test.sh (no registry there). Both stages must use the same one: the venv links to its Python.
ARG BASE_IMAGE=python:3.11-slim

# ---- build stage: a virtualenv with the runtime dependencies only, then the project, then trimmed -------------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler (and Python's headers where the base image lacks them) for the exact-scan kernel
# (index_format/_norm_scan.c, built by setup.py; optional: without it exact search falls back to numpy). Only this
# stage has them.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && (python3 -c "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
        || apt-get install -y --no-install-recommends python3-dev) \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies get a layer of their own, rebuilt only when pyproject.toml changes (no dev or bench extras).
COPY pyproject.toml setup.py README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY index_format ./index_format
COPY index_builder ./index_builder
COPY api ./api
COPY client ./client
COPY bulk_score ./bulk_score
COPY docker/trim_venv.sh docker/image_smoke.py /tmp/
# Then drop what the server and the builder never load (pip, test suites, headers, pyarrow's Flight and S3
# libraries: ~100 MB of a ~350 MB venv) and check that what they load still imports and reads parquet.
RUN pip install --no-deps . \
    && sh /tmp/trim_venv.sh /opt/venv \
    && python /tmp/image_smoke.py

# ---- runtime stage: the virtualenv, the demo data and the entry script; a non-root user -----------------------
FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    RECSYS_HOST=0.0.0.0 \
    RECSYS_PORT=5000 \
    RECSYS_WORKERS=1 \
    RECSYS_INDEX_ROOT=/data/indexes
RUN useradd --create-home --uid 10001 recsys \
    && mkdir -p /data/indexes \
    && chown recsys /data/indexes
COPY --from=build /opt/venv /opt/venv
COPY data/demo /app/demo
COPY docker/entrypoint.sh /app/entrypoint.sh
USER recsys
WORKDIR /app
VOLUME ["/data/indexes"]
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('RECSYS_PORT', '5000') + '/healthz', timeout=2)"]
ENTRYPOINT ["sh", "/app/entrypoint.sh"]
# The README's serve command; its flags come from the RECSYS_* variables above.
CMD ["recsys-serve"]
