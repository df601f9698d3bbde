#!/usr/bin/env bash
# Capture real sessions' JSON-lines logs into docs/logs/, for every venue:
#   docs/logs/<venue>/        `tickpipe up` against the mock exchange, nothing going wrong
#   docs/logs/<venue>-fault/  the same with faults injected mid-run (Binance: the market stream
#                             dropped, the WebSocket API rate-limited, an order answered 503;
#                             Alpaca: an order rejected, the ingestor killed and restarted;
#                             IBKR: the socket dropped, the brokerage session expired, an order
#                             POST's answer lost after the gateway placed it)
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

mock_post() {  # mock_post DIR PORT-KEY PATH [JSON]: POST to the mock's control API (TLS or not)
  local dir=$1 body=${4:-'{}'} url opts=()
  url="http://127.0.0.1:$(port "$dir" "$2")$3"
  if [ "$(port "$dir" tls)" = "True" ]; then
    url="https${url#http}"
    opts=(--cacert "$dir/mock-tls/ca.pem")
  fi
  curl -sS "${opts[@]}" -X POST "$url" -H 'Content-Type: application/json' -d "$body" >&2
  echo >&2
}

binance_faults() {
  mock_post "$1" binance_port /_mock/faults '[
    {"type": "drop", "kind": "stream"},
    {"type": "rate_limit", "scope": "ws_api", "retry_after": 2, "duration": 8, "at": 3},
    {"type": "order_error", "mode": "error", "kind": "api", "at": 6}]'
}

alpaca_faults() {
  mock_post "$1" alpaca_port /_mock/alpaca/reject_next
  # the ingestor dies (SIGKILL); tickpipe up restarts it and it reconnects
  local pid
  pid=$(pgrep -P "$2" -f 'tickpipe[.]ingestor' | head -1 || true)
  if [ -n "$pid" ]; then kill -9 "$pid"; echo "killed the ingestor ($pid)" >&2; fi
}

ibkr_faults() {
  mock_post "$1" binance_port /_mock/faults '[
    {"type": "drop", "kind": "stream", "path": "/v1/api/ws"},
    {"type": "order_error", "kind": "rest", "path": "/orders", "mode": "lost", "at": 6}]'
  sleep 3
  mock_post "$1" ibkr_port /_mock/ibkr/expire  # the brokerage session ends
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
want ibkr && run_up ibkr ibkr
want ibkr-fault && run_up ibkr ibkr-fault ibkr_faults
rm -f docs/logs/up.txt docs/logs/dashboard.log docs/logs/ingestor.log \
  docs/logs/mock_ws.log docs/logs/processor-1.log docs/logs/trader.log  # the old flat layout
if want clients; then
  echo "running the client session ..." >&2
  "$BIN/python" scripts/client_session.py >docs/logs/clients.log
fi
echo "in docs/logs/:" >&2
wc -l docs/logs/*/*.log docs/logs/clients.log >&2
