#!/usr/bin/env bash
# acv demo on one machine, no Kubernetes: the testbed shop runs on the embedded local runtime, a sidecar maintains
# `catalogue` (rules planner, Python steps in the wasmtime sandbox), the manager listens, and tasks go
# CLI -> bus -> sidecar -> bus -> CLI. Ends with an L5 episode: a bad release is detected and rolled back by the
# sidecar on its own. Usage: [TRANSPORT=amqp|nats|memory] BIN_DIR=target/debug scripts/demo.sh
# Without TRANSPORT: amqp if RabbitMQ answers on :5672, else nats if NATS answers on :4222, else `memory`: the same
# tasks in one process (acv-all-in-one: local runtime, manager and sidecar on the in-memory bus, no broker).
set -euo pipefail
cd "$(dirname "$0")/.."
TRANSPORT="${TRANSPORT:-}"
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}"
API="127.0.0.1:${DEMO_API_PORT:-17070}"
CAT_PORT="${DEMO_CATALOGUE_PORT:-18081}"
SIDECAR_ADMIN="127.0.0.1:${DEMO_SIDECAR_ADMIN_PORT:-19991}"
MANAGER_ADMIN="127.0.0.1:${DEMO_MANAGER_ADMIN_PORT:-19990}"
GUEST="${ACV_SANDBOX_GUEST:-sandbox/guest/build/acv-guest.wasm}"   # built by `make guest`
export ACV_BUS_NAMESPACE="${ACV_BUS_NAMESPACE:-acv-demo-$$}"
export RUST_LOG="${RUST_LOG:-info,acv::audit=warn}"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "$TRANSPORT" ]; then
  if port_open 5672; then TRANSPORT=amqp
  elif port_open 4222; then TRANSPORT=nats
  else
    TRANSPORT=memory
    echo "No broker answers on 127.0.0.1:5672 (RabbitMQ) or :4222 (NATS): running everything in one process on the"
    echo "in-memory bus. For the distributed version (separate processes over a broker): scripts/brokers.sh, then"
    echo "make demo TRANSPORT=amqp (or TRANSPORT=nats)."
  fi
fi
case "$TRANSPORT" in
  amqp) PORT=5672 ;;
  nats) PORT=4222 ;;
  memory) PORT= ;;
  *) echo "error: TRANSPORT must be amqp, nats or memory (got '$TRANSPORT')" >&2; exit 64 ;;
esac
if [ -n "$PORT" ] && ! port_open "$PORT"; then
  echo "error: no $TRANSPORT broker on 127.0.0.1:$PORT — run scripts/brokers.sh (installs and starts it), or" \
    "make demo without TRANSPORT to run all in one process" >&2
  exit 69
fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; if [ -n "${STATE_DIR:-}" ]; then rm -rf "$STATE_DIR"; fi; }
trap cleanup EXIT
wait_http() { # url what
  for _ in $(seq 1 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "error: $2 did not come up ($1)" >&2; exit 1
}
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
task() { say "acv-manager task send --to catalogue \"$1\""
  "$BIN_DIR/acv-manager" --bus "$TRANSPORT" task send --to catalogue --timeout 60s "$1" || echo "(exit code $?)"; }
status() { curl -fsS "http://$API/v1/components/catalogue/status" | python3 -c '
import json,sys; s=json.load(sys.stdin)
print("   runtime says: image=%s desired=%d ready=%d env=%s replicas=%s" % (s["image"], s["desired_replicas"],
      s["ready_replicas"], s["env"], [r["state"] for r in s["replicas"]]))' 2>/dev/null || true; }

if [ "$TRANSPORT" = memory ]; then
  say "acv-all-in-one: the shop on the local runtime (control API $API, catalogue on :$CAT_PORT), the manager and a" \
    "sidecar for catalogue, on the in-memory bus"
  # Light load in the background so the P99 task has requests to measure.
  ( for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$CAT_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
    "$BIN_DIR/acv-loadgen" --target "127.0.0.1:$CAT_PORT" --rps 20 --secs 20 --path /catalogue >/dev/null ) &
  PIDS+=($!)
  # TODO(manager HTTP API): once the manager serves tasks over HTTP, send these with the CLI to the running process
  # as the distributed version does; until then acv-all-in-one sends them itself (--task) over its in-memory bus.
  "$BIN_DIR/acv-all-in-one" e2e/shop.yaml --guest "$GUEST" --api "$API" --components catalogue --to catalogue --timeout 60s \
    --watch-interval 3s --watch-window-secs 10 --settle 2s \
    --task "Report the cpu usage of your microservice component." \
    --task "Scale replicas to 3 for your microservice component." \
    --task "Update your deployment and set the environment variable logger_flag to true." \
    --task "Report the P99 latency of your microservice component." \
    --task "Update the image version of your microservice component to 0.3.6." \
    SHOP_BIN="$BIN_DIR/acv-shop" CATALOGUE_PORT="$CAT_PORT" \
    FRONT_END_PORT=0 CARTS_PORT=0 ORDERS_PORT=0 PAYMENT_PORT=0 SHIPPING_PORT=0 USER_PORT=0 &
  AIO=$!
  PIDS+=($AIO)
  say "L5: after the bad release (0.3.6 crashes at start) the sidecar must put the good one back (its no-regression guard, or else its own health check)"
  for _ in $(seq 1 120); do
    sleep 1
    if curl -fsS "http://$API/v1/components/catalogue/status" 2>/dev/null | grep -q '"image":"weaveworksdemos/catalogue:0.3.6"'; then
      break
    fi
  done
  for _ in $(seq 1 60); do
    sleep 1
    if curl -fsS "http://$API/v1/components/catalogue/status" 2>/dev/null | grep -q '"image":"weaveworksdemos/catalogue:0.3.5"'; then
      break
    fi
  done
  sleep 3
  status
  kill -INT "$AIO" 2>/dev/null || true
  wait "$AIO" 2>/dev/null || true
  exit 0
fi

say "starting the testbed shop on the local runtime (control API $API, catalogue on :$CAT_PORT)"
"$BIN_DIR/acv-local" e2e/shop.yaml --api "$API" SHOP_BIN="$BIN_DIR/acv-shop" CATALOGUE_PORT="$CAT_PORT" \
  FRONT_END_PORT=0 CARTS_PORT=0 ORDERS_PORT=0 PAYMENT_PORT=0 SHIPPING_PORT=0 USER_PORT=0 \
  > >(sed 's/^/[runtime] /') 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$CAT_PORT/health" "catalogue"

say "starting acv-manager serve and acv-sidecar for catalogue on $TRANSPORT"
STATE_DIR="$(mktemp -d -t acv-demo-manager.XXXXXX)"
MANAGER_API="127.0.0.1:${DEMO_MANAGER_API_PORT:-19080}"
"$BIN_DIR/acv-manager" --bus "$TRANSPORT" serve --admin-addr "$MANAGER_ADMIN" --api-addr "$MANAGER_API" \
  --runtime-api "$API" --state-dir "$STATE_DIR" 2> >(sed 's/^/[manager] /' >&2) &
PIDS+=($!)
"$BIN_DIR/acv-sidecar" --component catalogue --bus "$TRANSPORT" --runtime-api "$API" --admin-addr "$SIDECAR_ADMIN" \
  --guest "$GUEST" --watch-interval 3s --watch-window-secs 10 --settle 2s --heartbeat 5s 2> >(sed 's/^/[sidecar] /' >&2) &
PIDS+=($!)
wait_http "http://$MANAGER_ADMIN/ready" "manager"
wait_http "http://$SIDECAR_ADMIN/ready" "sidecar"

say "L1 tasks (the paper's phrasing)"
task "Report the cpu usage of your microservice component."
task "Scale replicas to 3 for your microservice component."
status
task "Update your deployment and set the environment variable logger_flag to true."
status

say "light load for 8 s, then an L1 metrics task"
"$BIN_DIR/acv-loadgen" --target "127.0.0.1:$CAT_PORT" --rps 20 --secs 8 --path /catalogue >/dev/null
task "Report the P99 latency of your microservice component."

say "mechanism 2: a declarative goal through the manager, judged by the manager's own measurement (under load)"
"$BIN_DIR/acv-loadgen" --target "127.0.0.1:$CAT_PORT" --rps 20 --secs 20 --path /catalogue >/dev/null &
LOAD=$!
sleep 5
say "acvctl goal create --wait \"Reduce the P99 latency of Catalogue to under 300 ms.\""
ACV_MANAGER_URL="http://$MANAGER_API" "$BIN_DIR/acvctl" goal create --wait --timeout 60s \
  "Reduce the P99 latency of Catalogue to under 300 ms." || echo "(exit code $?)"
wait "$LOAD" 2>/dev/null || true

say "L5: a bad release (0.3.6 crashes at start); the sidecar must put the good one back (its no-regression guard, or else its own health check)"
task "Update the image version of your microservice component to 0.3.6."
status
for _ in $(seq 1 60); do
  sleep 1
  if curl -fsS "http://$API/v1/components/catalogue/status" 2>/dev/null | grep -q '"image":"weaveworksdemos/catalogue:0.3.5"'; then
    break
  fi
done
sleep 3
status
say "sidecar metrics"
curl -fsS "http://$SIDECAR_ADMIN/metrics" | grep '^acv_' || true
