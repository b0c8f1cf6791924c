#!/usr/bin/env bash
# Checks the README's "fresh machine" promise for the brokers: in a minimal Debian (debootstrap, bookworm) with its
# own network and PID namespaces — so the host's brokers are invisible — scripts/brokers.sh must install RabbitMQ and
# NATS from Debian's packages, start them, and be idempotent. Not part of `make test` (needs root, Debian's mirror and
# a few minutes); run it by hand after changing brokers.sh: `sudo scripts/fresh-machine.sh`.
# Leaves nothing running: the brokers die with the PID namespace. Removes the chroot unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "error: run as root (debootstrap, namespaces)" >&2; exit 77; }
export DEBIAN_FRONTEND=noninteractive
ROOT="${FRESH_ROOT:-/var/tmp/acv-fresh-debian}"
NS=acvfresh$$
NET=10.233.$((RANDOM % 200 + 20))
log() { printf '==> %s\n' "$*"; }
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap
command -v iptables >/dev/null || apt-get install -y -qq iptables
cleanup() {
  umount "$ROOT/dev" 2>/dev/null || true
  ip link del "v$NS" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  iptables -t nat -D POSTROUTING -s "$NET.0/24" -j MASQUERADE 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"
}
trap cleanup EXIT
log "debootstrap bookworm (minbase) into $ROOT"
[ -x "$ROOT/bin/bash" ] || debootstrap --variant=minbase bookworm "$ROOT" http://deb.debian.org/debian >/dev/null
cp scripts/brokers.sh "$ROOT/root/brokers.sh"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
# Own network namespace (own loopback: nothing answers on 5672/4222) with NAT so apt reaches Debian's mirror.
ip netns add "$NS"
ip link add "v$NS" type veth peer name "p$NS"
ip link set "p$NS" netns "$NS"
ip addr add "$NET.1/24" dev "v$NS"; ip link set "v$NS" up
ip netns exec "$NS" sh -c "ip link set lo up; ip addr add $NET.2/24 dev p$NS; ip link set p$NS up; ip route add default via $NET.1"
echo 1 >/proc/sys/net/ipv4/ip_forward
iptables -t nat -A POSTROUTING -s "$NET.0/24" -j MASQUERADE
log "running brokers.sh on the fresh system"
ip netns exec "$NS" unshare --pid --fork --mount-proc="$ROOT/proc" chroot "$ROOT" \
  /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root bash -c '
  set -u
  bash /root/brokers.sh --check >/dev/null && { echo "FAIL: brokers answer before install"; exit 1; }
  start=$(date +%s)
  bash /root/brokers.sh 2>&1 | grep "^==>\|^error" || true
  bash /root/brokers.sh --check || { echo "FAIL: brokers not up after brokers.sh"; exit 1; }
  echo "install + start took $(( $(date +%s) - start )) s"
  bash /root/brokers.sh | grep -q "already answers" || { echo "FAIL: second run not idempotent"; exit 1; }
  echo "PASS: fresh Debian got RabbitMQ and NATS from brokers.sh"'
