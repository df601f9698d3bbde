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
RUN ./dev install
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
CMD ["tickpipe", "--help"]
