#!/usr/bin/env bash
# Prometheus for the real-peer tier: `peers/scripts/prometheus.sh start|stop|status`.
# Debian's `prometheus` package (installed with apt-get when missing, without starting the package's
# own service), run from our own config and TSDB under $RUN/prometheus, listening on 127.0.0.1:19090
# only and scraping itself every second (job `prometheus`).
# Env keys: PROM_URL PROM_VERSION.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=prometheus
HOST=127.0.0.1
PORT=19090
URL=http://$HOST:$PORT
DIR=$RUN/prometheus
LOGF=$DIR/prometheus.log

ensure_installed() {
  command -v prometheus >/dev/null && return 0
  log "prometheus: installing the Debian package"
  apt-get update -qq >/dev/null || die "apt-get update failed"
  # the package would start its own service on :9090: forbid service starts for this install
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null || {
    [ "$created" = 1 ] && rm -f "$policy"; die "apt-get install prometheus failed"; }
  [ "$created" = 1 ] && rm -f "$policy"
  command -v prometheus >/dev/null || die "prometheus installed but not on PATH"
}

# ready and holding at least one sample of its own `up`
ready() {
  curl -sf --max-time 2 "$URL/-/ready" >/dev/null &&
    curl -sf --max-time 2 "$URL/api/v1/query?query=up" | grep -q '"value"'
}

write_env() {
  set_env PROM_URL "$URL"
  set_env PROM_VERSION "$(prometheus --version 2>&1 | sed -n 's/^prometheus, version \([^ ]*\).*/\1/p' | head -1)"
}

start() {
  command -v curl >/dev/null || die "curl is needed"
  ensure_installed
  if daemon_alive "$NAME" && ready; then
    log "prometheus: already running on $HOST:$PORT"
    write_env
    return 0
  fi
  port_open "$HOST" "$PORT" && die "prometheus: port $PORT is taken by a process we did not start"
  mkdir -p "$DIR/data"
  cat > "$DIR/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['$HOST:$PORT']
YML
  start_daemon "$NAME" "$LOGF" prometheus --config.file="$DIR/prometheus.yml" \
    --storage.tsdb.path="$DIR/data" --web.listen-address="$HOST:$PORT" \
    --storage.tsdb.retention.time=1d --log.level=warn
  wait_daemon "$NAME" "prometheus on $HOST:$PORT" 90 ready || { tail -20 "$LOGF" >&2; die "prometheus did not start"; }
  write_env
  log "prometheus: up on $HOST:$PORT ($(prometheus --version 2>&1 | head -1))"
}

stop() {
  stop_daemon "$NAME"
  unset_env PROM_
  log "prometheus: stopped"
}

status() {
  if daemon_alive "$NAME" && port_open "$HOST" "$PORT"; then echo "prometheus: running on $HOST:$PORT"; else echo "prometheus: stopped"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
