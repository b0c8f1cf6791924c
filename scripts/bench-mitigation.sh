#!/usr/bin/env bash
# Time-to-detect and time-to-mitigate per fault (CPU stress, pod failure, memory hog, bad release, rising traffic)
# on the local shop with a watching catalogue sidecar: runs e2e/tests/mitigation.rs one test at a time and prints
# the MITIGATION lines those tests write. Each test is bounded (about a minute on a 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
$CARGO test --workspace --locked --test mitigation -- --nocapture --test-threads=1 >"$log" 2>&1 || status=$?
echo "fault           time-to-detect / time-to-mitigate (from injection; SLOs measured by the test)"
grep '^MITIGATION ' "$log" | sed 's/^MITIGATION //' || echo "(no results)"
grep -E '^test result|FAILED|panicked' "$log" || true
exit $status
