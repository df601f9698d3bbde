#!/usr/bin/env bash
# Run `tickpipe up --duration 20` against the mock exchange and keep the session's JSON-lines logs
# (connection, authentication, subscription, data handling, trading) in docs/logs/.
#   scripts/collect_logs.sh            DURATION=40 scripts/collect_logs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
DURATION=${DURATION:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "running tickpipe up for ${DURATION} s (state in $work) ..." >&2
# A private redis-server and the mock exchange; no local .env, so the run is reproducible.
env -u REDIS_URL TICKPIPE_HYSTERESIS_BPS="${TICKPIPE_HYSTERESIS_BPS:-1}" TICKPIPE_LOG_LEVEL="${TICKPIPE_LOG_LEVEL:-INFO}" \
  "$BIN/tickpipe" --env-file /dev/null up --duration "$DURATION" --data-dir "$work" \
  --rate 20 | tee "$work/up.txt"

mkdir -p docs/logs
rm -f docs/logs/*.log docs/logs/up.txt
cp "$work"/logs/*.log docs/logs/
cp "$work/up.txt" docs/logs/up.txt
echo "copied to docs/logs/:" >&2
wc -l docs/logs/*.log >&2
