#!/usr/bin/env bash
# Apache Kafka 4.x in KRaft mode, three brokers, plus a Kafka Connect distributed worker, for the
# real-peer tier:
#   peers/scripts/kafka.sh start|stop|status
#   peers/scripts/kafka.sh stop-broker N | start-broker N     (N = 2 or 3; bounded waits)
# Layout (loopback only; the same ports on each address):
#   node 1  127.0.0.1  broker 19092 + the KRaft controller 19093 (the quorum's only voter,
#                      formatted with --standalone; it is never stopped on its own)
#   node 2  127.0.0.2  broker 19092 (broker only, formatted with the same cluster id)
#   node 3  127.0.0.3  broker 19092 (broker only)
#   each node also has a SASL_SSL listener on 19094: TLS with a certificate for 127.0.0.1–3 signed
#   by a CA made here with openssl ($DIR/tls/ca.pem; the broker reads a PKCS#12 key store), SASL
#   PLAIN (JAAS) and SCRAM-SHA-256/512 (the user is added when the storage is formatted). Test-only
#   credentials: user rb-probe, password rb-peers-scram-pw-7f3a.
#   Connect 127.0.0.1:18083 (REST), a worker of group rb-connect, internal topics RF 3; its plugins
#           are found through their ServiceLoader manifests only (plugin.discovery=service_load:
#           the reflection scan of the classpath took about 18 s of its start).
# Stopping broker 2 or 3 (TERM: a controlled shutdown) leaves the controller and a majority of the
# replicas up, so partitions that have a replica on it show under-replicated and those it held
# alone show offline, for real; `start-broker` brings it back and it rejoins the ISR.
# Internal topics (__consumer_offsets, transactions, Connect's) have RF 3 and min.insync 1, so a
# stopped broker never takes a group coordinator or the worker down with it. Topics are created
# with RF 1 unless a test asks otherwise (default.replication.factor=1).
# Each node: $RUN/kafka/node-N/{server.properties,data,broker.log}, heap 384 MB, pid name kafka-N.
# Jars come from Maven Central (peers/scripts/kafka/pom.xml, cached in $CACHE/kafka-lib); the
# FileStream connectors sit alone on the worker's plugin.path.
# Env keys: KAFKA_BOOTSTRAP (all three brokers) KAFKA_SECURE_BOOTSTRAP (their SASL_SSL listeners)
# KAFKA_CA_FILE KAFKA_SASL_USER KAFKA_SASL_PASSWORD KAFKA_BROKERS (id@host:port,…) KAFKA_SCRIPT (this
# script, for stop-broker/start-broker) CONNECT_URL KAFKA_CLASSPATH (for `java -cp` of the CLI
# tools) KAFKA_JAVA KAFKA_VERSION KAFKA_CONNECT_FILES (a directory the worker reads files from).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NODES=(1 2 3)
BROKER_PORT=19092
SECURE_PORT=19094
SASL_USER=rb-probe
SASL_PASSWORD=rb-peers-scram-pw-7f3a
KEYSTORE_PASSWORD=rb-peers-keystore
# Bump when the storage must be formatted again for this layout (the SCRAM user is written then).
LAYOUT=scram-user-v1
CONTROLLER_PORT=19093
CONNECT_PORT=18083
CONTROLLER=127.0.0.1:$CONTROLLER_PORT
DIR=$RUN/kafka
LIB=$CACHE/kafka-lib
POM=$ROOT/peers/scripts/kafka/pom.xml
CONNECT_HOST=127.0.0.1
CONNECT_URL="http://$CONNECT_HOST:$CONNECT_PORT"
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka.sh

host_of() { echo "127.0.0.$1"; }
node_dir() { echo "$DIR/node-$1"; }
bootstrap() { local n out=""; for n in "${NODES[@]}"; do out="$out${out:+,}$(host_of "$n"):$BROKER_PORT"; done; echo "$out"; }
secure_bootstrap() { local n out=""; for n in "${NODES[@]}"; do out="$out${out:+,}$(host_of "$n"):$SECURE_PORT"; done; echo "$out"; }
brokers_list() { local n out=""; for n in "${NODES[@]}"; do out="$out${out:+,}$n@$(host_of "$n"):$BROKER_PORT"; done; echo "$out"; }

ensure_tools() {
  if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    log "kafka: installing a JDK and Maven from Debian"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null \
      || die "apt-get install openjdk-17-jdk-headless maven failed"
  fi
  if ! command -v openssl >/dev/null 2>&1; then
    log "kafka: installing openssl from Debian"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null || die "apt-get install openssl failed"
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

write_log4j() {
  cat > "$DIR/log4j2.properties" <<EOC
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
EOC
}

# The SASL_SSL listeners' TLS material, made once: a CA, a broker certificate naming 127.0.0.1–3
# (and localhost) signed by it, and the PKCS#12 key store the brokers read.
make_tls() {
  local t=$DIR/tls
  [ -f "$t/broker.p12" ] && [ -f "$t/ca.pem" ] && return 0
  rm -rf "$t"; mkdir -p "$t"
  log "kafka: making the SASL_SSL listeners' CA and certificate"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=rb peers test CA" \
    -keyout "$t/ca.key" -out "$t/ca.pem" >"$t/openssl.log" 2>&1 || die "kafka: openssl could not make the CA, see $t/openssl.log"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$t/broker.key" -out "$t/broker.csr" >>"$t/openssl.log" 2>&1 \
    || die "kafka: openssl could not make the broker key, see $t/openssl.log"
  printf 'subjectAltName=IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$t/ext.cnf"
  openssl x509 -req -in "$t/broker.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -days 3650 \
    -extfile "$t/ext.cnf" -out "$t/broker.pem" >>"$t/openssl.log" 2>&1 || die "kafka: openssl could not sign the broker certificate, see $t/openssl.log"
  openssl pkcs12 -export -in "$t/broker.pem" -inkey "$t/broker.key" -certfile "$t/ca.pem" -name broker \
    -passout "pass:$KEYSTORE_PASSWORD" -out "$t/broker.p12" >>"$t/openssl.log" 2>&1 \
    || die "kafka: openssl could not write the key store, see $t/openssl.log"
}

# write_node_config N: node N's server.properties (node 1 also runs the controller).
write_node_config() {
  local n=$1 host d
  host=$(host_of "$n"); d=$(node_dir "$n")
  mkdir -p "$d/data"
  {
    if [ "$n" = 1 ]; then
      echo "process.roles=broker,controller"
      echo "listeners=PLAINTEXT://$host:$BROKER_PORT,SASL_SSL://$host:$SECURE_PORT,CONTROLLER://$CONTROLLER"
    else
      echo "process.roles=broker"
      echo "listeners=PLAINTEXT://$host:$BROKER_PORT,SASL_SSL://$host:$SECURE_PORT"
    fi
    cat <<EOC
node.id=$n
controller.quorum.bootstrap.servers=$CONTROLLER
controller.listener.names=CONTROLLER
advertised.listeners=PLAINTEXT://$host:$BROKER_PORT,SASL_SSL://$host:$SECURE_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$DIR/tls/broker.p12
ssl.keystore.password=$KEYSTORE_PASSWORD
ssl.key.password=$KEYSTORE_PASSWORD
log.dirs=$d/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=4000
log.retention.hours=24
log.segment.bytes=16777216
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
EOC
  } > "$d/server.properties"
}

write_configs() {
  local n
  mkdir -p "$DIR/plugins/connect-file" "$DIR/connect-files"
  rm -f "$DIR"/plugins/connect-file/*.jar
  cp "$LIB"/connect-file-*.jar "$DIR/plugins/connect-file/"
  write_log4j
  make_tls
  for n in "${NODES[@]}"; do write_node_config "$n"; done
  cat > "$DIR/connect-distributed.properties" <<EOC
bootstrap.servers=$(bootstrap)
group.id=rb-connect
listeners=http://$CONNECT_HOST:$CONNECT_PORT
rest.advertised.host.name=$CONNECT_HOST
rest.advertised.port=$CONNECT_PORT
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
config.storage.topic=rb-connect-configs
offset.storage.topic=rb-connect-offsets
status.storage.topic=rb-connect-status
config.storage.replication.factor=3
offset.storage.replication.factor=3
status.storage.replication.factor=3
offset.storage.partitions=3
status.storage.partitions=1
offset.flush.interval.ms=1000
scheduled.rebalance.max.delay.ms=0
plugin.path=$DIR/plugins
plugin.discovery=service_load
EOC
}

java_opts() {
  echo "-Xms$1 -Xmx$1 -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true -Dlog4j2.configurationFile=$DIR/log4j2.properties"
}

# Format the three nodes' storage when any of them is not formatted, or was formatted for an
# older layout (a fresh cluster id for all; the data of the one-node layout, $DIR/data, is
# dropped). The formats run side by side. Node 1's (the controller's) writes the SCRAM user into
# the cluster's first metadata.
format_storage() {
  local n missing=0 cid pids=()
  [ -f "$DIR/$LAYOUT" ] || missing=1
  for n in "${NODES[@]}"; do [ -f "$(node_dir "$n")/data/meta.properties" ] || missing=1; done
  [ "$missing" = 1 ] || return 0
  for n in "${NODES[@]}"; do
    daemon_alive "kafka-$n" && die "kafka: broker $n runs but a node is not formatted; run stop, then start"
  done
  rm -rf "$DIR/data"
  for n in "${NODES[@]}"; do rm -rf "$(node_dir "$n")/data"; mkdir -p "$(node_dir "$n")/data"; done
  cid=$("$JAVA" -cp "$LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  [ -n "$cid" ] || die "kafka: StorageTool random-uuid gave nothing"
  log "kafka: formatting the storage of nodes ${NODES[*]} (cluster $cid)"
  for n in "${NODES[@]}"; do
    local extra=()
    [ "$n" = 1 ] && extra=(--standalone
      --add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]"
      --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]")
    # shellcheck disable=SC2046
    "$JAVA" $(java_opts 128m) -cp "$LIB/*" kafka.tools.StorageTool format -t "$cid" \
      -c "$(node_dir "$n")/server.properties" "${extra[@]}" >"$(node_dir "$n")/format.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || die "kafka: storage format of node ${NODES[$i]} failed, see $(node_dir "${NODES[$i]}")/format.log"
  done
  rm -f "$DIR"/scram-user-v*
  : > "$DIR/$LAYOUT"
}

broker_ready() {
  local n=$1
  port_open "$(host_of "$n")" "$BROKER_PORT" && port_open "$(host_of "$n")" "$SECURE_PORT" && grep -q "Transition from STARTING to STARTED" "$(node_dir "$n")/broker.log"
}
connect_ready() { curl -sf "$CONNECT_URL/connectors" >/dev/null; }

# launch_broker N: start node N unless it runs (its port must be free).
launch_broker() {
  local n=$1 d
  d=$(node_dir "$n")
  daemon_alive "kafka-$n" && return 0
  port_open "$(host_of "$n")" "$BROKER_PORT" && die "kafka: $(host_of "$n"):$BROKER_PORT is taken by a process we did not start"
  port_open "$(host_of "$n")" "$SECURE_PORT" && die "kafka: $(host_of "$n"):$SECURE_PORT is taken by a process we did not start"
  : > "$d/broker.log"
  # shellcheck disable=SC2046
  start_daemon "kafka-$n" "$d/broker.log" "$JAVA" $(java_opts 384m) -cp "$LIB/*" kafka.Kafka "$d/server.properties"
}

wait_broker() {
  local n=$1 secs=$2
  wait_daemon "kafka-$n" "kafka broker $n on $(host_of "$n"):$BROKER_PORT" "$secs" broker_ready "$n" \
    || { tail -30 "$(node_dir "$n")/broker.log" >&2; die "kafka broker $n did not start"; }
}

write_env() {
  set_env KAFKA_BOOTSTRAP "$(bootstrap)"
  set_env KAFKA_BROKERS "$(brokers_list)"
  set_env KAFKA_SECURE_BOOTSTRAP "$(secure_bootstrap)"
  set_env KAFKA_CA_FILE "$DIR/tls/ca.pem"
  set_env KAFKA_SASL_USER "$SASL_USER"
  set_env KAFKA_SASL_PASSWORD "$SASL_PASSWORD"
  set_env KAFKA_SCRIPT "$SELF"
  set_env CONNECT_URL "$CONNECT_URL"
  set_env KAFKA_CLASSPATH "$LIB/*"
  set_env KAFKA_JAVA "$JAVA"
  set_env KAFKA_VERSION "$KAFKA_VERSION"
  set_env KAFKA_CONNECT_FILES "$DIR/connect-files"
}

all_brokers_alive() {
  local n
  for n in "${NODES[@]}"; do daemon_alive "kafka-$n" && port_open "$(host_of "$n")" "$BROKER_PORT" && port_open "$(host_of "$n")" "$SECURE_PORT" || return 1; done
}

start() {
  local n
  ensure_tools
  if all_brokers_alive && daemon_alive kafka-connect && connect_ready; then
    log "kafka: already running (brokers $(bootstrap), connect $CONNECT_URL)"
    write_env
    return 0
  fi
  mkdir -p "$DIR"
  write_configs
  format_storage
  # Node 1 (the controller) first; the other two wait for its quorum on their own.
  for n in "${NODES[@]}"; do launch_broker "$n"; done
  for n in "${NODES[@]}"; do wait_broker "$n" 120; done
  if ! daemon_alive kafka-connect; then
    port_open "$CONNECT_HOST" "$CONNECT_PORT" && die "kafka: port $CONNECT_PORT is taken by a process we did not start"
    : > "$DIR/connect.log"
    # shellcheck disable=SC2046
    start_daemon kafka-connect "$DIR/connect.log" "$JAVA" $(java_opts 512m) -cp "$(connect_classpath)" \
      org.apache.kafka.connect.cli.ConnectDistributed "$DIR/connect-distributed.properties"
  fi
  wait_daemon kafka-connect "kafka connect on $CONNECT_URL" 180 connect_ready || { tail -30 "$DIR/connect.log" >&2; die "kafka connect did not start"; }
  curl -sf "$CONNECT_URL/connector-plugins" | grep -q FileStreamSourceConnector \
    || die "kafka connect: FileStreamSourceConnector is not on the plugin path"
  write_env
  log "kafka: up (Kafka $KAFKA_VERSION; brokers $(bootstrap), controller $CONTROLLER, connect $CONNECT_URL)"
}

# A broker that may be stopped and started on its own: 2 or 3 (node 1 holds the controller).
check_node() {
  case "${1:-}" in
    2|3) ;;
    1) die "kafka: node 1 runs the controller quorum and is not stopped on its own (use 2 or 3)" ;;
    *) die "kafka: no broker '${1:-}' to stop or start (use 2 or 3)" ;;
  esac
}

# stop-broker N: TERM (a controlled shutdown: the controller moves leadership away and shrinks the
# ISR), KILL after 20 s; returns when the process is gone.
stop_broker() {
  local n=$1 t
  check_node "$n"
  daemon_alive "kafka-$n" || { log "kafka: broker $n is not running"; return 0; }
  t=$(date +%s)
  stop_daemon "kafka-$n"
  port_open "$(host_of "$n")" "$BROKER_PORT" && die "kafka: broker $n still listens after stop"
  log "kafka: broker $n stopped in $(( $(date +%s) - t ))s"
}

# start-broker N: start it again and wait (at most 60 s) until it is STARTED (registered, caught up
# with the metadata and unfenced).
start_broker() {
  local n=$1 t
  check_node "$n"
  ensure_tools
  [ -f "$(node_dir "$n")/data/meta.properties" ] || die "kafka: broker $n has no formatted storage; run start first"
  t=$(date +%s)
  launch_broker "$n"
  wait_broker "$n" 60
  log "kafka: broker $n started in $(( $(date +%s) - t ))s"
}

stop() {
  local n
  stop_daemon kafka-connect
  # Brokers 2 and 3 side by side (each a controlled shutdown), then node 1 with the controller.
  local pids=()
  for n in 3 2; do stop_daemon "kafka-$n" & pids+=($!); done
  wait "${pids[@]}"
  stop_daemon kafka-1
  stop_daemon kafka  # the pid name of the former one-node layout
  unset_env KAFKA_
  unset_env CONNECT_
  log "kafka: stopped"
}

status() {
  local rc=0 n
  for n in "${NODES[@]}"; do
    if daemon_alive "kafka-$n" && port_open "$(host_of "$n")" "$BROKER_PORT"; then
      echo "kafka: broker $n running on $(host_of "$n"):$BROKER_PORT"
    else
      echo "kafka: broker $n stopped"; rc=1
    fi
  done
  if daemon_alive kafka-connect && connect_ready; then echo "kafka: connect running on $CONNECT_URL"; else echo "kafka: connect stopped"; rc=1; fi
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  stop-broker) stop_broker "${2:-}" ;;
  start-broker) start_broker "${2:-}" ;;
  *) echo "usage: $0 start|stop|status|stop-broker N|start-broker N" >&2; exit 2 ;;
esac
