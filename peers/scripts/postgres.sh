#!/usr/bin/env bash
# PostgreSQL for the real-peer tier: `peers/scripts/postgres.sh start|stop|status`.
# The Debian package's binaries (installed with apt-get when missing), our own cluster under
# $RUN/postgres (initdb as the `postgres` OS user: the server refuses to run as root), listening on
# 127.0.0.1:15432 only, unix socket in $RUN/postgres/sock, max_connections=40 so that saturation is
# reachable, a database `rb` owned by the user `rb` (password `rb-peer-pass`).
# Env keys: PG_URL PG_HOST PG_PORT PG_USER PG_PASSWORD PG_DB PG_MAX_CONNECTIONS PG_BIN.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=postgres
HOST=127.0.0.1
PORT=15432
PG_USER=rb
PG_PASSWORD=rb-peer-pass
PG_DB=rb
MAX_CONN=40
DIR=$RUN/postgres
DATA=$DIR/data
SOCK=$DIR/sock
LOGF=$DIR/postgres.log

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_installed() {
  pg_bindir >/dev/null && return 0
  log "postgres: installing the Debian package"
  apt-get update -qq >/dev/null || die "apt-get update failed"
  # policy-rc.d-less machines would start the package's own cluster on 5432: forbid it for this install.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || {
    [ "$created" = 1 ] && rm -f "$policy"; die "apt-get install postgresql failed"; }
  [ "$created" = 1 ] && rm -f "$policy"
  pg_bindir >/dev/null || die "postgresql installed but no /usr/lib/postgresql/*/bin/postgres found"
}

as_pg() { runuser -u postgres -- "$@"; }

ready() { "$BIN/pg_isready" -q -h "$HOST" -p "$PORT"; }

write_env() {
  set_env PG_URL "postgres://$PG_USER:$PG_PASSWORD@$HOST:$PORT/$PG_DB"
  set_env PG_HOST "$HOST"
  set_env PG_PORT "$PORT"
  set_env PG_USER "$PG_USER"
  set_env PG_PASSWORD "$PG_PASSWORD"
  set_env PG_DB "$PG_DB"
  set_env PG_MAX_CONNECTIONS "$MAX_CONN"
  set_env PG_BIN "$BIN"
}

start() {
  ensure_installed
  BIN=$(pg_bindir)
  if daemon_alive "$NAME" && ready; then
    log "postgres: already running on $HOST:$PORT"
    write_env
    return 0
  fi
  port_open "$HOST" "$PORT" && die "postgres: port $PORT is taken by a process we did not start"
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  mkdir -p "$DIR" "$SOCK"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    log "postgres: initdb in $DATA"
    rm -rf "$DATA"; mkdir -p "$DATA"
    chown -R postgres: "$DIR"
    chmod 700 "$DATA"
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >>"$DIR/initdb.log" 2>&1 || die "initdb failed, see $DIR/initdb.log"
  fi
  chown -R postgres: "$DIR"
  # The RUN directory may sit below directories other users cannot enter: make the path traversable.
  local p=$DIR
  while [ "$p" != "/" ]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  rm -f "$DATA/postmaster.pid"
  start_daemon "$NAME" "$LOGF" runuser -u postgres -- "$BIN/postgres" -D "$DATA" \
    -c listen_addresses="$HOST" -p "$PORT" -c unix_socket_directories="$SOCK" \
    -c max_connections="$MAX_CONN" -c shared_buffers=32MB -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c logging_collector=off -c log_min_messages=warning
  wait_daemon "$NAME" "postgres on $HOST:$PORT" 60 ready || { tail -20 "$LOGF" >&2; die "postgres did not start"; }
  as_pg "$BIN/psql" -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -d postgres >/dev/null <<SQL || die "postgres: creating role/database failed"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB')\gexec
GRANT pg_read_all_stats TO $PG_USER;
GRANT pg_signal_backend TO $PG_USER;
SQL
  write_env
  log "postgres: up on $HOST:$PORT ($("$BIN/postgres" --version))"
}

stop() {
  if daemon_alive "$NAME"; then
    BIN=$(pg_bindir) && as_pg "$BIN/pg_ctl" stop -D "$DATA" -m fast -t 30 >/dev/null 2>&1 || true
  fi
  stop_daemon "$NAME"
  unset_env PG_
  log "postgres: stopped"
}

status() {
  if daemon_alive "$NAME" && port_open "$HOST" "$PORT"; then echo "postgres: running on $HOST:$PORT"; else echo "postgres: stopped"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
