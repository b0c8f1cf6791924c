#!/usr/bin/env bash
# Measures the shop catalogue's CPU (% of its 200m limit) and P99 against request rate, one replica, on this
# machine: the curve in docs/local-runtime.md ("Calibration"). Uses its own ports (the shop's demo ports stay free).
# BIN_DIR: where acv-local and acv-loadgen are (default: $CARGO_TARGET_DIR/debug). RATES: the rates to measure.
set -euo pipefail
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
RATES=${RATES:-"1 20 50 80 100"}
SECS=${SECS:-15}
API=127.0.0.1:${CAL_API_PORT:-17571}
PORT=${CAL_PORT:-18581}
cd "$(dirname "$0")/.."
"$BIN_DIR/acv-local" e2e/shop.yaml --api "$API" SHOP_BIN="$BIN_DIR/acv-shop" FRONT_END_PORT=0 CATALOGUE_PORT="$PORT" \
  CARTS_PORT=0 ORDERS_PORT=0 PAYMENT_PORT=0 SHIPPING_PORT=0 USER_PORT=0 >/tmp/acv-calibrate.$$.log 2>&1 &
LOCAL=$!
trap 'kill $LOCAL 2>/dev/null; wait $LOCAL 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://$API/v1/components/catalogue/status" >/dev/null && break; sleep 0.2; done
printf '%8s %14s %10s %10s %12s\n' "rps" "achieved_rps" "cpu_%" "p99_ms" "loadgen_p99"
for rps in $RATES; do
  out=$("$BIN_DIR/acv-loadgen" --target "127.0.0.1:$PORT" --path /catalogue --rps "$rps" --secs "$SECS" 2>&1 || true)
  m=$(curl -sf "http://$API/v1/components/catalogue/metrics?window_secs=$((SECS - 3))")
  python3 - "$rps" "$m" "$out" <<'PY'
import json, re, sys
rps, m, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
lp = re.search(r'"?p99_ms"?[=:]\s*([0-9.]+)', out)
f = lambda v: "-" if v is None else "%.1f" % v
print("%8s %14s %10s %10s %12s" % (rps, f(m.get("request_rate")), f(m.get("cpu_percent_of_limit")), f(m.get("p99_ms")),
      lp.group(1) if lp else "-"))
PY
done
