# One slim runtime image for every stage, built in two steps: the first installs tickpipe and its
# runtime extras into a virtualenv (no dev tools, no tests, no build cache), the second copies only
# that virtualenv onto a fresh base. Build context: see .dockerignore (no .venv, .tickpipe, .env).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/tickpipe && /opt/tickpipe/bin/pip install -q --no-cache-dir --upgrade pip
COPY pyproject.toml README.md LICENSE ./
COPY common ./common
COPY mock_ws ./mock_ws
COPY ingestor ./ingestor
COPY processor ./processor
COPY trader ./trader
COPY dashboard ./dashboard
COPY archive ./archive
COPY deploy ./deploy
COPY venues ./venues
COPY tools ./tools
# the one import root: links to the folders above (python -m tickpipe.<stage>)
COPY tickpipe ./tickpipe
# a regular (not editable) install: the runtime image needs none of /src
RUN /opt/tickpipe/bin/pip install -q --no-cache-dir ".[fast,dashboard,metrics]" \
    && /opt/tickpipe/bin/pip uninstall -q -y pip

FROM python:3.11-slim-bookworm
COPY --from=build /opt/tickpipe /opt/tickpipe
# Stages run as an unprivileged user whose only writable place is /data (a volume in compose):
# the ingestor's spill journal (TICKPIPE_DATA_DIR/ingestor-journal), the mock's ground truth.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /data tickpipe \
    && mkdir -p /data && chown tickpipe:tickpipe /data && chmod 0700 /data
ENV PATH=/opt/tickpipe/bin:$PATH PYTHONUNBUFFERED=1 TICKPIPE_DATA_DIR=/data
WORKDIR /data
USER tickpipe
VOLUME ["/data"]
# SIGTERM finishes the current batch (see docs/deploying.md).
STOPSIGNAL SIGTERM
CMD ["tickpipe", "--help"]
