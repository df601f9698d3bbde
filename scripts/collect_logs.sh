#!/usr/bin/env bash
# Capture real sessions' JSON-lines logs into docs/logs/, for every venue:
#   docs/logs/<venue>/        `tickpipe up` against the mock exchange, nothing going wrong
#   docs/logs/<venue>-fault/  the same with faults injected mid-run (Binance: the market stream
#                             dropped, the WebSocket API rate-limited, an order answered 503;
#                             Alpaca: an order rejected, the ingestor killed and restarted)
#   docs/logs/clients.log     both embeddable clients (scripts/client_session.py): a reconnect,
#                             a rate-limit wait, a rejected order, a cancel
#   scripts/collect_logs.sh            DURATION=40 scripts/collect_logs.sh
#   scripts/collect_logs.sh alpaca-fault clients     only these sessions
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
DURATION=${DURATION:-25}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_up() {  # run_up VENUE NAME FAULT-FUNCTION
  local venue=$1 name=$2 fault=${3:-}
  local dir="$work/$name"
  mkdir -p "$dir"
  echo "running tickpipe up for ${DURATION} s: $name ..." >&2
  # A private redis-server and the mock exchange; no local .env, so the run is reproducible.
  env -u REDIS_URL TICKPIPE_VENUE="$venue" TICKPIPE_HYSTERESIS_BPS="${TICKPIPE_HYSTERESIS_BPS:-1}" \
    TICKPIPE_LOG_LEVEL="${TICKPIPE_LOG_LEVEL:-INFO}" \
    "$BIN/tickpipe" --env-file /dev/null up --duration "$DURATION" --data-dir "$dir" \
    --rate 20 --no-dashboard >"$dir/up.txt" 2>&1 &
  local up=$!
  if [ -n "$fault" ]; then
    for _ in $(seq 300); do [ -f "$dir/mock.ready.json" ] && break; sleep 0.1; done
    sleep 8  # let the session settle and trade first
    "$fault" "$dir" "$up"
  fi
  wait "$up"
  rm -rf "docs/logs/$name"
  mkdir -p "docs/logs/$name"
  cp "$dir"/logs/*.log "$dir/up.txt" "docs/logs/$name/"
}

port() {  # port DIR KEY: a port from the mock's ready file
  "$BIN/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$1/mock.ready.json" "$2"
}

binance_faults() {
  local p; p=$(port "$1" binance_port)
  curl -sS -X POST "http://127.0.0.1:$p/_mock/faults" -H 'Content-Type: application/json' -d '[
    {"type": "drop", "kind": "stream"},
    {"type": "rate_limit", "scope": "ws_api", "retry_after": 2, "duration": 8, "at": 3},
    {"type": "order_error", "mode": "error", "kind": "api", "at": 6}]' >&2
  echo >&2
}

alpaca_faults() {
  local p; p=$(port "$1" alpaca_port)
  curl -sS -X POST "http://127.0.0.1:$p/_mock/alpaca/reject_next" >&2
  echo >&2
  # the ingestor dies (SIGKILL); tickpipe up restarts it and it reconnects
  local pid
  pid=$(pgrep -P "$2" -f 'tickpipe[.]ingestor' | head -1 || true)
  if [ -n "$pid" ]; then kill -9 "$pid"; echo "killed the ingestor ($pid)" >&2; fi
}

want() {  # want NAME: whether this run was asked for (every one when none was named)
  [ ${#ONLY[@]} -eq 0 ] && return 0
  local n; for n in "${ONLY[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1
}

ONLY=("$@")
want binance && run_up binance binance
want binance-fault && run_up binance binance-fault binance_faults
want alpaca && run_up alpaca alpaca
want alpaca-fault && run_up alpaca alpaca-fault alpaca_faults
rm -f docs/logs/up.txt docs/logs/dashboard.log docs/logs/ingestor.log \
  docs/logs/mock_ws.log docs/logs/processor-1.log docs/logs/trader.log  # the old flat layout
if want clients; then
  echo "running the client session ..." >&2
  "$BIN/python" scripts/client_session.py >docs/logs/clients.log
fi
echo "in docs/logs/:" >&2
wc -l docs/logs/*/*.log docs/logs/clients.log >&2
