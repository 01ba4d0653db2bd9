#!/usr/bin/env bash
# Apache Kafka 4.x (KRaft, one node that is both broker and controller) plus a Kafka Connect
# distributed worker, for the real-peer tier: `peers/scripts/kafka.sh start|stop|status`.
# Jars come from Maven Central (peers/scripts/kafka/pom.xml, cached in $CACHE/kafka-lib); the
# FileStream connectors sit alone on the worker's plugin.path. Loopback only:
#   broker 127.0.0.1:19092, controller 127.0.0.1:19093, Connect REST 127.0.0.1:18083.
# Env keys: KAFKA_BOOTSTRAP CONNECT_URL KAFKA_CLASSPATH (for `java -cp` of the CLI tools) KAFKA_JAVA
# KAFKA_VERSION KAFKA_CONNECT_FILES (a directory the worker reads files from).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

HOST=127.0.0.1
BROKER_PORT=19092
CONTROLLER_PORT=19093
CONNECT_PORT=18083
DIR=$RUN/kafka
LIB=$CACHE/kafka-lib
POM=$ROOT/peers/scripts/kafka/pom.xml
CONNECT_URL="http://$HOST:$CONNECT_PORT"

ensure_tools() {
  if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    log "kafka: installing a JDK and Maven from Debian"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null \
      || die "apt-get install openjdk-17-jdk-headless maven failed"
  fi
  JAVA=$(command -v java)
  maven_fetch "$LIB" "$POM"
  KAFKA_VERSION=$(ls "$LIB" | sed -n 's/^kafka_2\.13-\(.*\)\.jar$/\1/p' | head -1)
  [ -n "$KAFKA_VERSION" ] || die "kafka: no kafka_2.13 jar in $LIB"
}

# The worker's classpath: every jar but the FileStream connectors, which are loaded from plugin.path.
connect_classpath() {
  local jar cp=""
  for jar in "$LIB"/*.jar; do
    case "$(basename "$jar")" in connect-file-*) continue ;; esac
    cp="$cp${cp:+:}$jar"
  done
  echo "$cp"
}

write_configs() {
  mkdir -p "$DIR/data" "$DIR/plugins/connect-file" "$DIR/connect-files"
  rm -f "$DIR"/plugins/connect-file/*.jar
  cp "$LIB"/connect-file-*.jar "$DIR/plugins/connect-file/"
  cat > "$DIR/log4j2.properties" <<EOF
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = warn
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.worker.name = org.apache.kafka.connect.runtime
logger.worker.level = info
logger.server.name = kafka.server.BrokerServer
logger.server.level = info
logger.reflections.name = org.reflections
logger.reflections.level = error
EOF
  cat > "$DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$BROKER_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$BROKER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=16777216
EOF
  cat > "$DIR/connect-distributed.properties" <<EOF
bootstrap.servers=$HOST:$BROKER_PORT
group.id=rb-connect
listeners=http://$HOST:$CONNECT_PORT
rest.advertised.host.name=$HOST
rest.advertised.port=$CONNECT_PORT
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
config.storage.topic=rb-connect-configs
offset.storage.topic=rb-connect-offsets
status.storage.topic=rb-connect-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=3
status.storage.partitions=1
offset.flush.interval.ms=1000
scheduled.rebalance.max.delay.ms=0
plugin.path=$DIR/plugins
plugin.discovery=hybrid_warn
EOF
}

broker_ready() {
  port_open "$HOST" "$BROKER_PORT" && grep -q "Transition from STARTING to STARTED" "$DIR/broker.log"
}
connect_ready() { curl -sf "$CONNECT_URL/connectors" >/dev/null; }

write_env() {
  set_env KAFKA_BOOTSTRAP "$HOST:$BROKER_PORT"
  set_env CONNECT_URL "$CONNECT_URL"
  set_env KAFKA_CLASSPATH "$LIB/*"
  set_env KAFKA_JAVA "$JAVA"
  set_env KAFKA_VERSION "$KAFKA_VERSION"
  set_env KAFKA_CONNECT_FILES "$DIR/connect-files"
}

java_opts() { echo "-Xms$1 -Xmx$1 -XX:+UseSerialGC -Djava.awt.headless=true -Dlog4j2.configurationFile=$DIR/log4j2.properties"; }

start() {
  ensure_tools
  if daemon_alive kafka && daemon_alive kafka-connect && port_open "$HOST" "$BROKER_PORT" && connect_ready; then
    log "kafka: already running (broker $HOST:$BROKER_PORT, connect $CONNECT_URL)"
    write_env
    return 0
  fi
  mkdir -p "$DIR"
  write_configs
  if ! daemon_alive kafka; then
    port_open "$HOST" "$BROKER_PORT" && die "kafka: port $BROKER_PORT is taken by a process we did not start"
    if [ ! -f "$DIR/data/meta.properties" ]; then
      local cid
      cid=$("$JAVA" -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
      [ -n "$cid" ] || die "kafka: StorageTool random-uuid gave nothing"
      log "kafka: formatting storage (cluster $cid)"
      # shellcheck disable=SC2046
      "$JAVA" $(java_opts 256m) -cp "$LIB/*" kafka.tools.StorageTool format -t "$cid" \
        -c "$DIR/server.properties" --standalone >>"$DIR/format.log" 2>&1 || die "kafka: storage format failed, see $DIR/format.log"
    fi
    : > "$DIR/broker.log"
    # shellcheck disable=SC2046
    start_daemon kafka "$DIR/broker.log" "$JAVA" $(java_opts 512m) -cp "$LIB/*" kafka.Kafka "$DIR/server.properties"
  fi
  wait_daemon kafka "kafka broker on $HOST:$BROKER_PORT" 120 broker_ready || { tail -30 "$DIR/broker.log" >&2; die "kafka broker did not start"; }
  if ! daemon_alive kafka-connect; then
    port_open "$HOST" "$CONNECT_PORT" && die "kafka: port $CONNECT_PORT is taken by a process we did not start"
    : > "$DIR/connect.log"
    # shellcheck disable=SC2046
    start_daemon kafka-connect "$DIR/connect.log" "$JAVA" $(java_opts 512m) -cp "$(connect_classpath)" \
      org.apache.kafka.connect.cli.ConnectDistributed "$DIR/connect-distributed.properties"
  fi
  wait_daemon kafka-connect "kafka connect on $CONNECT_URL" 180 connect_ready || { tail -30 "$DIR/connect.log" >&2; die "kafka connect did not start"; }
  curl -sf "$CONNECT_URL/connector-plugins" | grep -q FileStreamSourceConnector \
    || die "kafka connect: FileStreamSourceConnector is not on the plugin path"
  write_env
  log "kafka: up (Kafka $KAFKA_VERSION; broker $HOST:$BROKER_PORT, connect $CONNECT_URL)"
}

stop() {
  stop_daemon kafka-connect
  stop_daemon kafka
  unset_env KAFKA_
  unset_env CONNECT_
  log "kafka: stopped"
}

status() {
  local rc=0
  if daemon_alive kafka && port_open "$HOST" "$BROKER_PORT"; then echo "kafka: broker running on $HOST:$BROKER_PORT"; else echo "kafka: broker stopped"; rc=1; fi
  if daemon_alive kafka-connect && connect_ready; then echo "kafka: connect running on $CONNECT_URL"; else echo "kafka: connect stopped"; rc=1; fi
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
