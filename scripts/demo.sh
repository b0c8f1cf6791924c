#!/usr/bin/env bash
# Walking-skeleton demo: a task goes manager CLI -> bus -> sidecar -> bus -> manager CLI on a real broker.
# Usage: TRANSPORT=amqp|nats BIN_DIR=target/debug scripts/demo.sh
set -euo pipefail
TRANSPORT="${TRANSPORT:-amqp}"
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}"
ADMIN_PORT="${ADMIN_PORT:-19991}"
export ACV_BUS_NAMESPACE="${ACV_BUS_NAMESPACE:-acv-demo}"
export RUST_LOG="${RUST_LOG:-info}"

case "$TRANSPORT" in
  amqp) PORT=5672 ;;
  nats) PORT=4222 ;;
  *) echo "error: TRANSPORT must be amqp or nats for a multi-process demo (got '$TRANSPORT')" >&2; exit 64 ;;
esac
if ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "error: no $TRANSPORT broker on 127.0.0.1:$PORT — start it (see README, 'Brokers')" >&2
  exit 69
fi

echo "==> starting acv-sidecar for 'catalogue' on $TRANSPORT (admin on 127.0.0.1:$ADMIN_PORT)"
"$BIN_DIR/acv-sidecar" --component catalogue --bus "$TRANSPORT" --admin-addr "127.0.0.1:$ADMIN_PORT" \
  --heartbeat 2s 2> >(sed 's/^/[sidecar] /' >&2) &
SIDECAR=$!
trap 'kill $SIDECAR 2>/dev/null; wait $SIDECAR 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 $SIDECAR 2>/dev/null; then echo "error: sidecar exited" >&2; exit 1; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$ADMIN_PORT/ready" >/dev/null || { echo "error: sidecar not ready" >&2; exit 1; }

echo "==> acv-manager task send --to catalogue \"Report your status\""
set +e
"$BIN_DIR/acv-manager" --bus "$TRANSPORT" task send --to catalogue --timeout 20s "Report your status"
rc=$?
set -e
echo "==> exit code $rc (0 = RESPONSE, 3 = ISSUE, 4 = no report in time)"
echo "==> sidecar metrics:"
curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^acv_' || true
# An ISSUE is the honest answer while no planner is configured; anything else is a failure of the demo.
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]
