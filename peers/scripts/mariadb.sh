#!/usr/bin/env bash
# MariaDB for the real-peer tier: `peers/scripts/mariadb.sh start|stop|status`.
# The Debian `mariadb-server` package's binaries (installed with apt-get when missing; the system-wide
# service is never started or touched), our own datadir under $RUN/mariadb (mariadb-install-db),
# `mariadbd --no-defaults` on 127.0.0.1:13306 with its own socket in $RUN/mariadb, max_connections=40,
# a database `rb` and a user `rb`@`%` (password `rb-peer-pass`) with PROCESS (to see every session).
# Env keys: MYSQL_URL MYSQL_HOST MYSQL_PORT MYSQL_USER MYSQL_PASSWORD MYSQL_DB MYSQL_SOCKET
# MYSQL_MAX_CONNECTIONS.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=mariadb
HOST=127.0.0.1
PORT=13306
DB_USER=rb
DB_PASSWORD=rb-peer-pass
DB_NAME=rb
MAX_CONN=40
DIR=$RUN/mariadb
DATA=$DIR/data
SOCK=$DIR/mariadb.sock
LOGF=$DIR/mariadb.log

ensure_installed() {
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || {
    log "mariadb: installing the Debian package mariadb-server"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    # policy-rc.d-less machines would start the system service on install: forbid it for this install.
    local policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null || {
      [ "$created" = 1 ] && rm -f "$policy"; die "apt-get install mariadb-server failed"; }
    [ "$created" = 1 ] && rm -f "$policy"
  }
  MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
  [ -x "$MARIADBD" ] || die "mariadb-server installed but no mariadbd found"
}

client() { mariadb --no-defaults --protocol=socket -S "$SOCK" -u root "$@"; }
ready() { client -N -e 'SELECT 1'; }

write_env() {
  set_env MYSQL_URL "mysql://$DB_USER:$DB_PASSWORD@$HOST:$PORT/$DB_NAME"
  set_env MYSQL_HOST "$HOST"
  set_env MYSQL_PORT "$PORT"
  set_env MYSQL_USER "$DB_USER"
  set_env MYSQL_PASSWORD "$DB_PASSWORD"
  set_env MYSQL_DB "$DB_NAME"
  set_env MYSQL_SOCKET "$SOCK"
  set_env MYSQL_MAX_CONNECTIONS "$MAX_CONN"
}

start() {
  ensure_installed
  if daemon_alive "$NAME" && ready >/dev/null 2>&1; then
    log "mariadb: already running on $HOST:$PORT"
    write_env
    return 0
  fi
  port_open "$HOST" "$PORT" && die "mariadb: port $PORT is taken by a process we did not start"
  id mysql >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /bin/false mysql
  mkdir -p "$DIR"
  if [ ! -d "$DATA/mysql" ]; then
    log "mariadb: mariadb-install-db in $DATA"
    rm -rf "$DATA"; mkdir -p "$DATA"; chown -R mysql: "$DIR"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DATA" --auth-root-authentication-method=socket \
      --skip-test-db >>"$DIR/install-db.log" 2>&1 || die "mariadb-install-db failed, see $DIR/install-db.log"
  fi
  chown -R mysql: "$DIR"
  local p=$DIR
  while [ "$p" != "/" ]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  start_daemon "$NAME" "$LOGF" "$MARIADBD" --no-defaults --user=mysql --datadir="$DATA" \
    --bind-address="$HOST" --port="$PORT" --socket="$SOCK" --pid-file="$DIR/mariadbd.pid" \
    --max-connections="$MAX_CONN" --skip-name-resolve --skip-log-bin --innodb-buffer-pool-size=64M \
    --innodb-log-file-size=16M --innodb-flush-log-at-trx-commit=2 --performance-schema=OFF \
    --log-error="$DIR/error.log"
  wait_daemon "$NAME" "mariadb on $SOCK" 60 ready || { tail -20 "$DIR/error.log" >&2; die "mariadb did not start"; }
  client <<SQL || die "mariadb: creating user/database failed"
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
ALTER USER '$DB_USER'@'%' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'%';
GRANT PROCESS ON *.* TO '$DB_USER'@'%';
FLUSH PRIVILEGES;
SQL
  wait_for "mariadb on $HOST:$PORT" 30 port_open "$HOST" "$PORT" || die "mariadb does not listen on $HOST:$PORT"
  write_env
  log "mariadb: up on $HOST:$PORT ($("$MARIADBD" --version | head -1))"
}

stop() {
  if daemon_alive "$NAME"; then
    client -e 'SHUTDOWN' >/dev/null 2>&1 || true
    local pid; pid=$(cat "$RUN/pids/$NAME.pid")
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  stop_daemon "$NAME"
  unset_env MYSQL_
  log "mariadb: stopped"
}

status() {
  if daemon_alive "$NAME" && port_open "$HOST" "$PORT"; then echo "mariadb: running on $HOST:$PORT"; else echo "mariadb: stopped"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
