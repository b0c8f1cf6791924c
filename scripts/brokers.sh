#!/usr/bin/env bash
# Makes sure the brokers the tests and the distributed demo use answer on 127.0.0.1: RabbitMQ on :5672 and NATS
# with JetStream on :4222. A broker that already answers is left alone (quick, idempotent). A missing one is
# installed from Debian's packages (rabbitmq-server, nats-server; apt-get, noninteractive, as root or via sudo),
# started, and waited for. Used by `.ci/run` and `make test` / `make brokers`.
#
# Usage: scripts/brokers.sh [--check | --dry-run] [amqp] [nats]
#   (no mode)   install/start what is missing, wait until both answer; exit 0 when they do
#   --check     change nothing; print each broker's state; exit 0 if all answer, 1 if not
#   --dry-run   change nothing; print the commands the default mode would run
#   amqp, nats  only these brokers (default: both)
# Exit codes: 0 ok, 1 a broker is not up (or --check found one down), 64 bad usage, 69 cannot install/start.
set -euo pipefail

MODE=ensure
WANT=()
for arg in "$@"; do
  case "$arg" in
    --check) MODE=check ;;
    --dry-run) MODE=dry ;;
    amqp|nats) WANT+=("$arg") ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$arg' (see --help)" >&2; exit 64 ;;
  esac
done
[ ${#WANT[@]} -gt 0 ] || WANT=(amqp nats)

log() { printf '==> %s\n' "$*"; }
die() { echo "error: $*" >&2; exit "${2:-69}"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # name port seconds
  for _ in $(seq 1 "$3"); do port_open "$2" && { log "$1 is up on 127.0.0.1:$2"; return 0; }; sleep 1; done
  die "$1 did not come up on 127.0.0.1:$2 within $3 s" 1
}
# Runs a command, or prints it in --dry-run mode.
run() { if [ "$MODE" = dry ]; then printf 'would run: %s\n' "$*"; else "$@"; fi; }
# Runs a command as root: directly when root, else through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then run "$@"
  elif command -v sudo >/dev/null 2>&1; then run sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

# broker -> port, package, program
port_of() { case "$1" in amqp) echo 5672 ;; nats) echo 4222 ;; esac; }
pkg_of() { case "$1" in amqp) echo rabbitmq-server ;; nats) echo nats-server ;; esac; }
name_of() { case "$1" in amqp) echo RabbitMQ ;; nats) echo NATS ;; esac; }
installed() { command -v "$(pkg_of "$1")" >/dev/null 2>&1 || [ -x "/usr/sbin/$(pkg_of "$1")" ]; }

if [ "$MODE" = check ]; then
  down=0
  for b in "${WANT[@]}"; do
    if port_open "$(port_of "$b")"; then state="answers on 127.0.0.1:$(port_of "$b")"
    else down=1; state="does not answer on 127.0.0.1:$(port_of "$b")"; fi
    if installed "$b"; then inst="installed"; else inst="not installed (package $(pkg_of "$b"))"; fi
    printf '%-8s %s, %s\n' "$(name_of "$b")" "$inst" "$state"
  done
  exit "$down"
fi

# --- install what is missing (only brokers that do not answer: one running elsewhere, e.g. a container, counts) ---
missing=()
for b in "${WANT[@]}"; do
  port_open "$(port_of "$b")" || installed "$b" || missing+=("$(pkg_of "$b")")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "${missing[*]} missing and no apt-get here; install them yourself (see README, 'Brokers')"
  log "installing ${missing[*]} from Debian's packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- start and wait -------------------------------------------------------------------------------------------
for b in "${WANT[@]}"; do
  port="$(port_of "$b")"
  if port_open "$port"; then
    log "$(name_of "$b") already answers on 127.0.0.1:$port"
    continue
  fi
  case "$b" in
    amqp)
      log "starting RabbitMQ"
      # Without systemd (containers, CI) the package's service is not running; start the node detached.
      # RabbitMQ's connection limit follows its file descriptor limit (the soft limit of 1024 that `su` leaves
      # allows only ~830 sockets) and acv opens a connection per subscription: raise it to the hard limit in the
      # broker's own shell (Debian's layout), else start it the plain way.
      if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && id rabbitmq >/dev/null 2>&1; then
        as_root sh -c 'cd /var/lib/rabbitmq && su rabbitmq -s /bin/sh -c \
          "ulimit -n \$(ulimit -Hn) 2>/dev/null; exec /usr/lib/rabbitmq/bin/rabbitmq-server -detached"' \
          || as_root rabbitmq-server -detached || true
      else
        as_root rabbitmq-server -detached || true
      fi
      if [ "$MODE" = dry ]; then continue; fi
      wait_port RabbitMQ "$port" 90
      # A listening port is not enough: wait until the broker accepts AMQP (the boot finishes after the listener).
      timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || as_root timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || true
      ;;
    nats)
      log "starting NATS with JetStream"
      as_root mkdir -p /var/lib/nats-server
      # Our own pidfile: matching by executable alone would take any other nats-server on the machine (another
      # port, another user's) for ours and start nothing.
      as_root start-stop-daemon --start --oknodo --background --make-pidfile --pidfile /run/acv-nats-server.pid \
        --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p "$port" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
      if [ "$MODE" = dry ]; then continue; fi
      wait_port NATS "$port" 30
      ;;
  esac
done
