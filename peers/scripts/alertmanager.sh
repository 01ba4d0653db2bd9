#!/usr/bin/env bash
# Alertmanager for the real-peer tier: `peers/scripts/alertmanager.sh start|stop|status`.
# Debian's `prometheus-alertmanager` package (installed with apt-get when missing, without starting the
# package's own service), run from our own config and data under $RUN/alertmanager, listening on
# 127.0.0.1:19193 only (19093 is the Kafka controller's), clustering off. One route to one receiver, `rb`: a webhook to
# http://127.0.0.1:19798/alertmanager/webhook (where the test serves rb's receiver) with a bearer
# token read from a file, grouped by alertname, group_wait 1s, group_interval 2s, resolutions sent.
# Env keys: AM_URL AM_VERSION AM_WEBHOOK_URL AM_WEBHOOK_TOKEN_FILE.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=alertmanager
HOST=127.0.0.1
PORT=19193
URL=http://$HOST:$PORT
HOOK_PORT=19798
HOOK_URL=http://$HOST:$HOOK_PORT/alertmanager/webhook
DIR=$RUN/alertmanager
LOGF=$DIR/alertmanager.log
BIN=prometheus-alertmanager

ensure_installed() {
  command -v "$BIN" >/dev/null && return 0
  log "alertmanager: installing the Debian package"
  apt-get update -qq >/dev/null || die "apt-get update failed"
  # the package would start its own service on :9093: forbid service starts for this install
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null || {
    [ "$created" = 1 ] && rm -f "$policy"; die "apt-get install prometheus-alertmanager failed"; }
  [ "$created" = 1 ] && rm -f "$policy"
  command -v "$BIN" >/dev/null || die "$BIN installed but not on PATH"
}

ready() {
  curl -sf --max-time 2 "$URL/-/ready" >/dev/null &&
    curl -sf --max-time 2 "$URL/api/v2/alerts" | grep -q '^\['
}

write_env() {
  set_env AM_URL "$URL"
  set_env AM_VERSION "$("$BIN" --version 2>&1 | sed -n 's/^alertmanager, version \([^ ]*\).*/\1/p' | head -1)"
  set_env AM_WEBHOOK_URL "$HOOK_URL"
  set_env AM_WEBHOOK_TOKEN_FILE "$DIR/webhook.token"
}

start() {
  command -v curl >/dev/null || die "curl is needed"
  ensure_installed
  if daemon_alive "$NAME" && ready; then
    log "alertmanager: already running on $HOST:$PORT"
    write_env
    return 0
  fi
  port_open "$HOST" "$PORT" && die "alertmanager: port $PORT is taken by a process we did not start"
  mkdir -p "$DIR/data"
  # a fresh token per start; the test reads it from the file named in the env
  (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/webhook.token")
  cat > "$DIR/alertmanager.yml" <<YML
route:
  receiver: rb
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: rb
    webhook_configs:
      - url: '$HOOK_URL'
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: '$DIR/webhook.token'
YML
  start_daemon "$NAME" "$LOGF" "$BIN" --config.file="$DIR/alertmanager.yml" \
    --storage.path="$DIR/data" --web.listen-address="$HOST:$PORT" \
    --cluster.listen-address= --log.level=warn
  wait_daemon "$NAME" "alertmanager on $HOST:$PORT" 60 ready || { tail -20 "$LOGF" >&2; die "alertmanager did not start"; }
  write_env
  log "alertmanager: up on $HOST:$PORT ($("$BIN" --version 2>&1 | head -1))"
}

stop() {
  stop_daemon "$NAME"
  unset_env AM_
  log "alertmanager: stopped"
}

status() {
  if daemon_alive "$NAME" && port_open "$HOST" "$PORT"; then echo "alertmanager: running on $HOST:$PORT"; else echo "alertmanager: stopped"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
