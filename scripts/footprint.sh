#!/usr/bin/env bash
# Resident memory of a real acv-sidecar process (read from /proc/<pid>/status, VmRSS), at three moments: idle
# before any task, right after a task (the sandbox is loaded), and after it has been idle longer than
# --sandbox-idle (the sandbox is released). Also its peak (VmHWM). Prints figures; asserts nothing about them.
# Needs NATS on 127.0.0.1:4222 (as `make test` does). Run by `make bench`.
# Usage: SIDECAR_BIN=target/release/acv-sidecar BIN_DIR=target/debug scripts/footprint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}"
SIDECAR_BIN="${SIDECAR_BIN:-${CARGO_TARGET_DIR:-target}/release/acv-sidecar}"
GUEST="${ACV_SANDBOX_GUEST:-sandbox/guest/build/acv-guest.wasm}"
IDLE_SECS="${FOOTPRINT_IDLE_SECS:-5}"
export ACV_BUS_NAMESPACE="acv-footprint-$$"
export RUST_LOG="${RUST_LOG:-warn,acv_sandbox=info}"

if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  echo "footprint: skipped (no NATS on 127.0.0.1:4222)"; exit 0
fi
for b in "$SIDECAR_BIN" "$BIN_DIR/acv-local" "$BIN_DIR/acv-shop" "$BIN_DIR/acv-manager"; do
  [ -x "$b" ] || { echo "error: $b is not built" >&2; exit 1; }
done

TMP="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "error: $2 did not come up ($1)" >&2; exit 1; }
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
mib() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1024 }'; }

API="127.0.0.1:$(free_port)"
CAT_PORT="$(free_port)"
ADMIN="127.0.0.1:$(free_port)"
"$BIN_DIR/acv-local" e2e/shop.yaml --api "$API" SHOP_BIN="$BIN_DIR/acv-shop" CATALOGUE_PORT="$CAT_PORT" \
  FRONT_END_PORT=0 CARTS_PORT=0 ORDERS_PORT=0 PAYMENT_PORT=0 SHIPPING_PORT=0 USER_PORT=0 >"$TMP/runtime.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$CAT_PORT/health" "catalogue"

"$SIDECAR_BIN" --component catalogue --bus nats --runtime-api "$API" --admin-addr "$ADMIN" --guest "$GUEST" \
  --watch-interval 0 --settle 1s --sandbox-idle "${IDLE_SECS}s" 2>"$TMP/sidecar.log" &
SIDECAR=$!
PIDS+=($SIDECAR)
wait_http "http://$ADMIN/ready" "sidecar"
sleep 2
IDLE_BEFORE="$(kib "$SIDECAR" VmRSS)"

task() { "$BIN_DIR/acv-manager" --bus nats task send --to catalogue --timeout 300s "$1" >"$TMP/task.out" 2>&1 \
  || { echo "error: task failed: $(cat "$TMP/task.out")" >&2; exit 1; }; }
task "Report the cpu usage of your microservice component."
task "Scale replicas to 2 for your microservice component."
AFTER_TASK="$(kib "$SIDECAR" VmRSS)"
sleep $((IDLE_SECS + 3))
AFTER_IDLE="$(kib "$SIDECAR" VmRSS)"
# The allocator hands freed pages back gradually (jemalloc's decay: 10 s); read again after a longer quiet period.
LONG_SECS="${FOOTPRINT_LONG_IDLE_SECS:-30}"
sleep "$LONG_SECS"
AFTER_LONG="$(kib "$SIDECAR" VmRSS)"
ANON_LONG="$(kib "$SIDECAR" RssAnon)"
FILE_LONG="$(kib "$SIDECAR" RssFile)"
# Where the resident memory is after the long idle: heap/anonymous vs the binary's own pages vs other files.
BIN_REAL="$(readlink -f "$SIDECAR_BIN")"
BREAKDOWN="$(awk -v bin="$BIN_REAL" '/^[0-9a-f]+-[0-9a-f]+ /{ name = ($6 == "" ? "[anonymous]" : $6); if (name == bin) name = "the sidecar binary (code, file-backed)"; else if (name ~ /^\//) name = "other files"; next }
  /^Rss:/{ rss[name] += $2 } END { for (n in rss) if (rss[n] >= 512) printf "  %-30s %7.1f MiB\n", n, rss[n] / 1024 }' "/proc/$SIDECAR/smaps" | sort -k2 -t' ' -rn)"
PEAK="$(kib "$SIDECAR" VmHWM)"
THREADS="$(kib "$SIDECAR" Threads)"

echo "== acv-sidecar footprint ($(basename "$(dirname "$SIDECAR_BIN")") build, sandbox released after ${IDLE_SECS}s idle) =="
printf '%-44s %9s MiB\n' "RSS idle, before any task" "$(mib "$IDLE_BEFORE")"
printf '%-44s %9s MiB\n' "RSS right after two tasks" "$(mib "$AFTER_TASK")"
printf '%-44s %9s MiB\n' "RSS after $((IDLE_SECS + 3)) s idle (sandbox released)" "$(mib "$AFTER_IDLE")"
printf '%-44s %9s MiB\n' "RSS after $((IDLE_SECS + 3 + LONG_SECS)) s idle" "$(mib "$AFTER_LONG")"
printf '%-44s %9s MiB\n' "  of which anonymous (heap, stacks: RssAnon)" "$(mib "$ANON_LONG")"
printf '%-44s %9s MiB\n' "  of which file-backed (code pages: RssFile)" "$(mib "$FILE_LONG")"
echo "$BREAKDOWN"
printf '%-44s %9s MiB\n' "peak RSS (VmHWM)" "$(mib "$PEAK")"
printf '%-44s %9s\n' "threads after idle" "$THREADS"
grep -q "Sandbox released" "$TMP/sidecar.log" || echo "(note: the sidecar did not log a sandbox release)"
