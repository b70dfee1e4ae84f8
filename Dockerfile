# The retrieval API (recsys-serve) with the index builder. No index baked in: mount one at /data/indexes
# (ROOT/current, as published by `index-builder build --out ROOT`); without one, the demo index is built at start.
#
#   docker build -t recsys-retrieval .
#   docker run -p 5000:5000 -v "$PWD/indexes/demo:/data/indexes" recsys-retrieval
#
# One worker per container by default (RECSYS_WORKERS): the orchestrator scales containers (deploy/README.md).

# ---- build stage: a virtualenv with the dependencies, then the project ----------------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies get a layer of their own, rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY index_format ./index_format
COPY index_builder ./index_builder
COPY api ./api
COPY bulk_score ./bulk_score
RUN pip install --no-deps .

# ---- runtime stage: the virtualenv, the demo data and the entry script; a non-root user -----------------------
FROM python:3.11-slim
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
