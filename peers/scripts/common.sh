#!/usr/bin/env bash
# Shared helpers for the real-peer tier scripts. Source it; do not run it.
#   ROOT   the repository root
#   CACHE  downloads (git-ignored, kept between runs): $ROOT/.cache/peers
#   RUN    data, logs, pid files and the env file of running servers (git-ignored): $ROOT/.peers
# Every server binds to 127.0.0.x only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${RB_PEERS_CACHE:-$ROOT/.cache/peers}
RUN=${RB_PEERS_RUN:-$ROOT/.peers}
ENV_FILE=$RUN/env
mkdir -p "$CACHE" "$RUN"

log() { printf '[peers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# set_env KEY VALUE: record a fact about a running server for the Rust harness (KEY=VALUE lines).
set_env() {
  local key=$1 value=$2 tmp
  touch "$ENV_FILE"
  tmp=$(mktemp "$RUN/env.XXXXXX")
  grep -v "^${key}=" "$ENV_FILE" > "$tmp" || true
  printf '%s=%s\n' "$key" "$value" >> "$tmp"
  mv -f "$tmp" "$ENV_FILE"
}
# unset_env PREFIX: forget every key starting with PREFIX.
unset_env() {
  local prefix=$1 tmp
  [ -f "$ENV_FILE" ] || return 0
  tmp=$(mktemp "$RUN/env.XXXXXX")
  grep -v "^${prefix}" "$ENV_FILE" > "$tmp" || true
  mv -f "$tmp" "$ENV_FILE"
}

# wait_for DESCRIPTION SECONDS CMD...: poll CMD every 0.5 s until it succeeds or time runs out.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.5
  done
}

# port_open HOST PORT: is something listening?
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# start_daemon NAME LOGFILE CMD...: start CMD in the background with its own process group,
# record its pid in $RUN/pids/NAME.pid.
start_daemon() {
  local name=$1 logf=$2; shift 2
  mkdir -p "$RUN/pids" "$(dirname "$logf")"
  setsid "$@" >>"$logf" 2>&1 < /dev/null &
  echo $! > "$RUN/pids/$name.pid"
}

# stop_daemon NAME: stop the process group we started as NAME (TERM, then KILL after 20 s).
stop_daemon() {
  local name=$1 pf="$RUN/pids/$1.pid" pid
  [ -f "$pf" ] || return 0
  pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pf"
}

# daemon_alive NAME
daemon_alive() { local pf="$RUN/pids/$1.pid"; [ -f "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null; }

# maven_fetch DIR POMFILE: copy a pom's runtime dependencies into DIR (cached; ~/.m2 is reused).
maven_fetch() {
  local dir=$1 pom=$2
  if [ -f "$dir/.complete" ] && cmp -s "$pom" "$dir/.pom"; then return 0; fi
  rm -rf "$dir"; mkdir -p "$dir"
  log "resolving $(basename "$pom") from Maven Central into $dir"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$dir" -DincludeScope=runtime \
    || die "maven could not resolve $pom"
  cp "$pom" "$dir/.pom"; touch "$dir/.complete"
}

# wait_daemon NAME DESCRIPTION SECONDS CMD...: like wait_for, but give up at once when the daemon
# started as NAME has exited (its log then tells why).
wait_daemon() {
  local name=$1 what=$2 secs=$3; shift 3
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    daemon_alive "$name" || { log "$what: the process exited before it was ready"; return 1; }
    [ "$(date +%s)" -lt "$deadline" ] || { log "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.5
  done
}

# java_at_least MAJOR: print the first java (JAVA_HOME, PATH, then /usr/lib/jvm/*) whose major version
# is at least MAJOR; fail when there is none.
java_at_least() {
  local want=$1 j v
  for j in ${JAVA_HOME:+$JAVA_HOME/bin/java} $(command -v java 2>/dev/null) /usr/lib/jvm/*/bin/java; do
    [ -x "$j" ] || continue
    v=$("$j" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
    [ -n "$v" ] && [ "$v" -ge "$want" ] && { echo "$j"; return 0; }
  done
  return 1
}
