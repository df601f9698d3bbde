# One image for every stage; installed the way the README does (./dev install).
FROM python:3.11-slim-bookworm
WORKDIR /app
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md LICENSE dev ./
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
RUN ./dev install
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
# Stages run as an unprivileged user; SIGTERM finishes the current batch (see docs/deploying.md).
RUN useradd --system --no-create-home --home-dir /app tickpipe && mkdir -p /data \
    && chown tickpipe /data
USER tickpipe
STOPSIGNAL SIGTERM
CMD ["tickpipe", "--help"]
