#!/usr/bin/env bash
# Project Nessie server for the real-peer tier: `peers/scripts/nessie.sh start|stop|status`.
# The Quarkus runner jar from Maven Central (peers/scripts/nessie/pom.xml, cached in
# $CACHE/nessie-lib), in-memory version store, HTTP API on 127.0.0.1:19120 and the Quarkus
# management interface (/q/health, /q/metrics) on 127.0.0.1:19000. Needs Java >= 21 (the first one
# found in JAVA_HOME, PATH, /usr/lib/jvm/*; e.g. the Temurin 25 JDK); set RB_NESSIE_JAVA to choose.
# Env keys: NESSIE_URL (…/api/v2) NESSIE_BASE_URL NESSIE_MGMT_URL NESSIE_VERSION.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NAME=nessie
HOST=127.0.0.1
PORT=19120
MGMT_PORT=19000
DIR=$RUN/nessie
LIB=$CACHE/nessie-lib
POM=$ROOT/peers/scripts/nessie/pom.xml

ensure_tools() {
  if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    log "nessie: installing a JDK and Maven from Debian"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null \
      || die "apt-get install openjdk-17-jdk-headless maven failed"
  fi
  # Nessie 0.99's classes are Java 21 bytecode (class file 65): the default Java 17 cannot run them.
  JAVA=${RB_NESSIE_JAVA:-$(java_at_least 21)} \
    || die "nessie: needs Java >= 21 and none was found (JAVA_HOME, PATH, /usr/lib/jvm/*); set RB_NESSIE_JAVA"
  maven_fetch "$LIB" "$POM"
  JAR=$(ls "$LIB"/nessie-quarkus-*-runner.jar 2>/dev/null | head -1)
  [ -n "$JAR" ] || die "nessie: no nessie-quarkus runner jar in $LIB"
  NESSIE_VERSION=$(basename "$JAR" | sed 's/^nessie-quarkus-\(.*\)-runner\.jar$/\1/')
}

ready() { curl -sf "http://$HOST:$MGMT_PORT/q/health/ready" >/dev/null && curl -sf "http://$HOST:$PORT/api/v2/config" >/dev/null; }

write_env() {
  set_env NESSIE_URL "http://$HOST:$PORT/api/v2"
  set_env NESSIE_BASE_URL "http://$HOST:$PORT"
  set_env NESSIE_MGMT_URL "http://$HOST:$MGMT_PORT"
  set_env NESSIE_VERSION "$NESSIE_VERSION"
}

start() {
  ensure_tools
  if daemon_alive "$NAME" && ready; then
    log "nessie: already running on $HOST:$PORT"
    write_env
    return 0
  fi
  port_open "$HOST" "$PORT" && die "nessie: port $PORT is taken by a process we did not start"
  port_open "$HOST" "$MGMT_PORT" && die "nessie: port $MGMT_PORT is taken by a process we did not start"
  mkdir -p "$DIR"
  : > "$DIR/nessie.log"
  start_daemon "$NAME" "$DIR/nessie.log" "$JAVA" -Xms256m -Xmx512m -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dquarkus.http.host="$HOST" -Dquarkus.http.port="$PORT" \
    -Dquarkus.management.host="$HOST" -Dquarkus.management.port="$MGMT_PORT" \
    -Dnessie.version.store.type=IN_MEMORY -Dquarkus.log.file.enable=false \
    -Dquarkus.log.category.\"io.quarkus.http.access-log\".level=WARN \
    -Dquarkus.otel.sdk.disabled=true -Dquarkus.otel.enabled=false \
    -jar "$JAR"
  wait_daemon "$NAME" "nessie on $HOST:$PORT" 180 ready || { tail -30 "$DIR/nessie.log" >&2; die "nessie did not start"; }
  write_env
  log "nessie: up on $HOST:$PORT (Nessie $NESSIE_VERSION, $("$JAVA" -version 2>&1 | head -1))"
}

stop() {
  stop_daemon "$NAME"
  unset_env NESSIE_
  log "nessie: stopped"
}

status() {
  if daemon_alive "$NAME" && port_open "$HOST" "$PORT"; then echo "nessie: running on $HOST:$PORT"; else echo "nessie: stopped"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
