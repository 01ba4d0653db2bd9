#!/usr/bin/env bash
# The real-peer tier in one command:
#   peers/run.sh               start every server that has a script, run all rb-peers tests, stop all
#   peers/run.sh kafka nessie  only these servers, and only their tests
# Servers (in this order, each only when peers/scripts/<name>.sh exists):
#   postgres mariadb kafka nessie flink cassandra prometheus alertmanager
# Tests of a server: peers/tests/server_<name>.rs (the server and its harness), diff_<name>*.rs (fake
# vs real), probes_<name>*.rs, actions_<name>*.rs (rb-probes / rb-actions against the real server) and
# lakehouse_<name>*.rs (the lakehouse runbook's playbooks through all five phases on the real server), run
# with
#   cargo test --workspace --all-features --test <t>… -- --ignored --test-threads=1
# `--workspace --all-features` resolves the same features as the fast tier's `cargo test --workspace
# --all-features`, so the test binaries that command built are reused as they are (`-p rb-peers` would
# resolve rb-peers' own feature set and rebuild librdkafka and everything above it). rb-peers' test file
# names are unique in the workspace, so `--test <t>` picks rb-peers' file only.
# Whatever happens (success, failure, Ctrl-C), every server started here is stopped on exit and the
# run fails loudly if one of their processes is left. Exit status: non-zero when a start, a test or
# the final process check failed. The wall time of each phase is printed at the end.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS=$ROOT/peers/scripts
RUN=${RB_PEERS_RUN:-$ROOT/.peers}
# The tests read the env file of this run (not the one of the checkout their binary was built from).
export RB_PEERS_RUN="$RUN" RB_PEERS_ENV="$RUN/env"
ALL=(postgres mariadb kafka nessie flink cassandra prometheus alertmanager)

say() { printf '[peers/run %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

SELECTED=()
if [ $# -eq 0 ]; then
  SELECTED=("${ALL[@]}")
else
  for arg in "$@"; do
    case " ${ALL[*]} " in
      *" $arg "*) SELECTED+=("$arg") ;;
      *) say "unknown server '$arg' (known: ${ALL[*]})"; exit 2 ;;
    esac
  done
fi

T0=$(now)
PHASES=()
STARTED=()
FAILED_STARTS=()
STATUS=0
CLEANED=0

phase() { PHASES+=("$(printf '%-28s %8ss' "$1" "$2")"); }

# Pids recorded by start_daemon (peers/scripts/common.sh) under $RUN/pids for the servers this run
# started (daemon names start with the server's name: kafka, kafka-connect, …), as "name:pid".
recorded_pids() {
  local f name s
  for f in "$RUN"/pids/*.pid; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .pid)
    for s in "${STARTED[@]}"; do
      case "$name" in "$s"*) printf '%s:%s\n' "$name" "$(cat "$f")"; break ;; esac
    done
  done
}

cleanup() {
  [ "$CLEANED" = 1 ] && return
  CLEANED=1
  trap - INT TERM
  local t pids entry name pid left=() i
  t=$(now)
  pids=$(recorded_pids)
  for (( i=${#STARTED[@]}-1; i>=0; i-- )); do
    name=${STARTED[$i]}
    say "stopping $name"
    bash "$SCRIPTS/$name.sh" stop || { say "stopping $name failed"; STATUS=1; }
  done
  # Nothing we started may survive: neither the recorded pids nor anything in their process groups.
  for entry in $pids; do
    name=${entry%%:*}; pid=${entry#*:}
    if kill -0 "$pid" 2>/dev/null || pgrep -g "$pid" >/dev/null 2>&1; then
      left+=("$name (pid/pgid $pid: $(pgrep -g "$pid" -d, 2>/dev/null))")
    fi
  done
  if [ ${#left[@]} -gt 0 ]; then
    say "ERROR: processes left after stop: ${left[*]} — killing them"
    for entry in $pids; do pid=${entry#*:}; kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
    STATUS=1
  else
    say "no process left by the servers started here"
  fi
  phase "stop all" "$(elapsed "$t" "$(now)")"
  phase "total" "$(elapsed "$T0" "$(now)")"
  say "phase wall times:"
  printf '  %s\n' "${PHASES[@]}" >&2
  [ ${#FAILED_STARTS[@]} -eq 0 ] || say "servers that did not start: ${FAILED_STARTS[*]}"
  [ "$STATUS" = 0 ] && say "PASSED" || say "FAILED"
}
on_exit() { cleanup; exit "$STATUS"; }
trap on_exit EXIT
trap 'say "interrupted"; STATUS=130; exit 130' INT TERM

# 1. start
for name in "${SELECTED[@]}"; do
  script=$SCRIPTS/$name.sh
  if [ ! -f "$script" ]; then
    say "no $script: skipping $name"
    continue
  fi
  STARTED+=("$name")
  t=$(now)
  say "starting $name"
  if bash "$script" start; then
    phase "start $name" "$(elapsed "$t" "$(now)")"
  else
    phase "start $name (FAILED)" "$(elapsed "$t" "$(now)")"
    FAILED_STARTS+=("$name")
    STATUS=1
  fi
done

# 2. test
test_targets() {
  local name f
  for name in "$@"; do
    for f in "$ROOT/peers/tests/server_$name.rs" "$ROOT"/peers/tests/diff_"$name"*.rs \
             "$ROOT"/peers/tests/probes_"$name"*.rs "$ROOT"/peers/tests/actions_"$name"*.rs \
             "$ROOT"/peers/tests/lakehouse_"$name"*.rs; do
      [ -f "$f" ] && printf -- '--test %s ' "$(basename "$f" .rs)"
    done
  done
}
OK_SERVERS=()
for name in "${STARTED[@]}"; do
  case " ${FAILED_STARTS[*]} " in *" $name "*) ;; *) OK_SERVERS+=("$name") ;; esac
done
t=$(now)
if [ $# -eq 0 ] && [ ${#FAILED_STARTS[@]} -eq 0 ]; then
  ALL_TARGETS=()
  for f in "$ROOT"/peers/tests/*.rs; do ALL_TARGETS+=(--test "$(basename "$f" .rs)"); done
  say "cargo test --workspace --all-features (every rb-peers test file) -- --ignored --test-threads=1"
  (cd "$ROOT" && cargo test --workspace --all-features --no-fail-fast "${ALL_TARGETS[@]}" -- --ignored --test-threads=1) || STATUS=1
else
  # shellcheck disable=SC2046
  read -r -a TARGETS <<< "$(test_targets "${OK_SERVERS[@]}")"
  if [ ${#TARGETS[@]} -eq 0 ]; then
    say "no test file for the servers that started (${OK_SERVERS[*]:-none})"
  else
    say "cargo test --workspace --all-features ${TARGETS[*]} -- --ignored --test-threads=1"
    (cd "$ROOT" && cargo test --workspace --all-features --no-fail-fast "${TARGETS[@]}" -- --ignored --test-threads=1) || STATUS=1
  fi
fi
phase "tests" "$(elapsed "$t" "$(now)")"
exit "$STATUS"
