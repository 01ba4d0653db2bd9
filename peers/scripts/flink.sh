#!/usr/bin/env bash
# peers/scripts/flink.sh start|stop|status|tm-kill|tm-start
#
# A real Apache Flink 2.3.0 standalone session cluster on 127.0.0.1: one JobManager (adaptive scheduler,
# REST on 127.0.0.1:18081) and one TaskManager (4 slots), file checkpoints retained on cancellation, and
# our keyed-state streaming job (peers/scripts/flink/CounterJob.java) running on it.
#
# Two more jobs are built (not submitted) for the lakehouse runbook's Flink situations
# (peers/tests/lakehouse_flink.rs submits them when needed):
#   FLINK_ORDERS_JAR  peers/scripts/flink/OrdersJob.java: `orders-enrichment` on generated data, a
#                     broken build that crash-loops on a schema change and the fixed build
#   FLINK_KAFKA_JAR   peers/scripts/flink/OrdersKafkaJob.java: `orders-enrichment` reading a Kafka topic
#                     as a consumer group, packed with flink-connector-kafka and kafka-clients from Maven
#                     Central (peers/scripts/flink/pom.xml, cached in $CACHE/flink-kafka-lib)
#
# Flink comes from PyPI: apache-flink-libraries (the jars) + apache-flink --no-deps (bin/ and conf/) in a
# venv under $CACHE; the Flink home is the venv's `pyflink` folder. Each JVM is started in the foreground
# by start_daemon, so the pid files under $RUN/pids are the JVMs themselves.
#
#   start     idempotent: brings up whatever is missing, (re)submits the job if none is active, writes env keys
#   stop      stops the TaskManager and JobManager we started (no other process is touched)
#   status    prints what is running; exit 1 when the cluster or the job is not healthy
#   tm-kill   SIGKILL the TaskManager JVM (the runbook's "TaskManager lost")
#   tm-start  start a TaskManager again and wait until it registers
#
# Env keys: FLINK_URL FLINK_JOB_ID FLINK_JOB_NAME FLINK_HOME FLINK_CONF_DIR FLINK_JAR FLINK_SCRIPT
#           FLINK_TM_PID FLINK_CHECKPOINT_DIR FLINK_SAVEPOINT_DIR FLINK_VERSION FLINK_ORDERS_JAR
#           FLINK_KAFKA_JAR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

FLINK_VERSION=2.3.0
REST_PORT=18081
RPC_PORT=16123
BLOB_PORT=16124
TM_RPC_PORT=16125
TM_DATA_PORT=16126
QUERY_PORTS=16127-16129
JOB_NAME=rb-peers-counter
JOB_RATE=100
URL="http://127.0.0.1:${REST_PORT}"

VENV=$CACHE/flink-$FLINK_VERSION-venv
BASE=$RUN/flink
CONF=$BASE/conf
JOBS=$ROOT/peers/scripts/flink
SRC=$JOBS/CounterJob.java
KAFKA_POM=$JOBS/pom.xml
KAFKA_LIB=$CACHE/flink-kafka-lib
export FLINK_CONF_DIR=$CONF

# ---------------------------------------------------------------------------------------------- helpers
jget() { curl -sf --max-time 5 "$URL$1"; }
# json EXPR: evaluate a Python expression over the JSON document on stdin (bound to d).
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

flink_home() { "$VENV/bin/python" -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))'; }

install_flink() {
  local home
  if home=$(flink_home 2>/dev/null) && [ -f "$home/lib/flink-dist-$FLINK_VERSION.jar" ] \
      && [ -f "$home/bin/jobmanager.sh" ]; then
    echo "$home"; return 0
  fi
  log "installing Flink $FLINK_VERSION from PyPI into $VENV (about 330 MB, once)"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (is python3-venv installed?)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "apache-flink-libraries==$FLINK_VERSION" \
    || die "pip could not install apache-flink-libraries==$FLINK_VERSION"
  # --no-deps: the Python dependencies (apache-beam, pandas, ...) only matter for PyFlink jobs.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "apache-flink==$FLINK_VERSION" \
    || die "pip could not install apache-flink==$FLINK_VERSION"
  home=$(flink_home) || die "pyflink is not importable from $VENV"
  [ -f "$home/lib/flink-dist-$FLINK_VERSION.jar" ] || die "no flink-dist-$FLINK_VERSION.jar in $home/lib"
  echo "$home"
}

write_config() {
  local home=$1 opts
  mkdir -p "$CONF" "$BASE"/{log,pid,tmp,web,checkpoints,savepoints}
  for f in log4j.properties log4j-console.properties log4j-cli.properties log4j-session.properties \
           logback.xml logback-console.xml logback-session.xml; do
    [ -f "$home/conf/$f" ] && cp -f "$home/conf/$f" "$CONF/$f"
  done
  # The JVM module flags Flink itself ships (env.java.opts.all of the distribution's config.yaml).
  opts=$(sed -n 's/^ *all: *//p' "$home/conf/config.yaml" | head -1)
  cat > "$CONF/config.yaml" <<EOF
env.java.opts.all: ${opts}
env.log.dir: $BASE/log
env.pid.dir: $BASE/pid
io.tmp.dirs: $BASE/tmp
web.tmpdir: $BASE/web
jobmanager.bind-host: 127.0.0.1
jobmanager.rpc.address: 127.0.0.1
jobmanager.rpc.port: ${RPC_PORT}
jobmanager.memory.process.size: 1024m
jobmanager.scheduler: adaptive
jobmanager.execution.failover-strategy: region
jobmanager.adaptive-scheduler.executing.cooldown-after-rescaling: 5s
jobmanager.adaptive-scheduler.executing.resource-stabilization-timeout: 5s
web.adaptive-scheduler.rescale-history.size: 20
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
taskmanager.rpc.port: "${TM_RPC_PORT}"
taskmanager.data.port: ${TM_DATA_PORT}
taskmanager.numberOfTaskSlots: 4
taskmanager.memory.process.size: 1536m
metrics.internal.query-service.port: "${QUERY_PORTS}"
parallelism.default: 1
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: ${REST_PORT}
blob.server.port: "${BLOB_PORT}"
execution.checkpointing.interval: 2s
execution.checkpointing.dir: file://$BASE/checkpoints
execution.checkpointing.savepoint-dir: file://$BASE/savepoints
execution.checkpointing.num-retained: 3
execution.checkpointing.externalized-checkpoint-retention: RETAIN_ON_CANCELLATION
state.backend.type: hashmap
restart-strategy.type: fixed-delay
restart-strategy.fixed-delay.attempts: 1000
restart-strategy.fixed-delay.delay: 2s
heartbeat.interval: 2000
heartbeat.timeout: 8000
EOF
  echo "127.0.0.1:${REST_PORT}" > "$CONF/masters"
  echo "127.0.0.1" > "$CONF/workers"
}

# build_jar HOME: compile the job (javac --release 11) into a jar cached by the source's checksum.
build_jar() {
  local home=$1 sum dir
  sum=$(sha256sum "$SRC" | cut -c1-16)
  dir=$CACHE/flink-job/$sum
  if [ ! -f "$dir/rb-peers-counter.jar" ]; then
    log "compiling $(basename "$SRC")"
    rm -rf "$dir"; mkdir -p "$dir/classes"
    javac --release 11 -nowarn -cp "$home/lib/*" -d "$dir/classes" "$SRC" >&2 || die "javac failed on $SRC"
    jar --create --file "$dir/rb-peers-counter.jar" --main-class rb.peers.CounterJob -C "$dir/classes" . \
      || die "jar failed"
  fi
  echo "$dir/rb-peers-counter.jar"
}

# build_orders_jar HOME: OrdersJob.java alone (it needs nothing beyond Flink's lib/), cached by checksum.
build_orders_jar() {
  local home=$1 src=$JOBS/OrdersJob.java sum dir
  sum=$(sha256sum "$src" | cut -c1-16)
  dir=$CACHE/flink-job/orders-$sum
  if [ ! -f "$dir/orders-enrichment.jar" ]; then
    log "compiling $(basename "$src")"
    rm -rf "$dir"; mkdir -p "$dir/classes"
    javac --release 11 -nowarn -cp "$home/lib/*" -d "$dir/classes" "$src" >&2 || die "javac failed on $src"
    jar --create --file "$dir/orders-enrichment.jar" --main-class rb.peers.OrdersJob -C "$dir/classes" . \
      || die "jar failed"
  fi
  echo "$dir/orders-enrichment.jar"
}

# build_kafka_jar HOME: OrdersKafkaJob.java with flink-connector-kafka and kafka-clients packed in (one jar
# to upload over REST), cached by the checksum of the source and the pom. Left out of the jar: what
# Flink's lib/ already has (slf4j, commons-lang3) and the zstd/snappy codecs (the tier's producers do
# not compress).
build_kafka_jar() {
  local home=$1 src=$JOBS/OrdersKafkaJob.java sum dir lib
  if ! command -v mvn >/dev/null 2>&1; then
    log "flink: installing Maven from Debian (for flink-connector-kafka)"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null \
      || die "apt-get install maven failed"
  fi
  maven_fetch "$KAFKA_LIB" "$KAFKA_POM" >&2
  sum=$(cat "$src" "$KAFKA_POM" | sha256sum | cut -c1-16)
  dir=$CACHE/flink-job/kafka-$sum
  if [ ! -f "$dir/orders-kafka.jar" ]; then
    log "compiling $(basename "$src") against flink-connector-kafka"
    rm -rf "$dir"; mkdir -p "$dir/classes"
    javac --release 11 -nowarn -cp "$home/lib/*:$KAFKA_LIB/*" -d "$dir/classes" "$src" >&2 \
      || die "javac failed on $src"
    for lib in "$KAFKA_LIB"/*.jar; do
      case "$(basename "$lib")" in slf4j-*|commons-lang3-*|zstd-jni-*|snappy-java-*) continue ;; esac
      (cd "$dir/classes" && jar xf "$lib") || die "could not unpack $lib"
    done
    # signatures of the unpacked jars would not match the new one; module descriptors do not apply
    rm -f "$dir"/classes/META-INF/MANIFEST.MF "$dir"/classes/META-INF/*.SF "$dir"/classes/META-INF/*.RSA \
      "$dir"/classes/META-INF/*.DSA "$dir"/classes/module-info.class
    find "$dir/classes/META-INF" -name module-info.class -delete 2>/dev/null || true
    jar --create --file "$dir/orders-kafka.jar" --main-class rb.peers.OrdersKafkaJob -C "$dir/classes" . \
      || die "jar failed"
    rm -rf "$dir/classes"
  fi
  echo "$dir/orders-kafka.jar"
}

rest_up() { jget /overview >/dev/null; }

start_jm() {
  local home=$1
  if daemon_alive flink-jm; then return 0; fi
  if port_open 127.0.0.1 "$REST_PORT"; then
    die "something we did not start already listens on 127.0.0.1:$REST_PORT; not touching it"
  fi
  FLINK_HOME=$home start_daemon flink-jm "$BASE/log/jobmanager.console" "$home/bin/jobmanager.sh" start-foreground
  wait_for "Flink REST on $URL" 90 rest_up || die "JobManager did not answer; see $BASE/log"
}

tm_ids() { jget /taskmanagers | json "' '.join(t['id'] for t in d['taskmanagers'])" 2>/dev/null || true; }
# new_tm_registered IDS...: a TaskManager whose id is not among IDS has registered.
new_tm_registered() {
  local id
  for id in $(tm_ids); do
    case " $* " in *" $id "*) ;; *) return 0 ;; esac
  done
  return 1
}

start_tm() {
  local home=$1 before
  if daemon_alive flink-tm; then return 0; fi
  # A killed TaskManager stays listed until its heartbeat times out: wait for a new id, not a count.
  before=$(tm_ids)
  FLINK_HOME=$home start_daemon flink-tm "$BASE/log/taskmanager.console" "$home/bin/taskmanager.sh" start-foreground
  # shellcheck disable=SC2086
  wait_for "a TaskManager to register" 90 new_tm_registered $before \
    || die "TaskManager did not register; see $BASE/log"
}

active_job() {
  jget /jobs/overview | json "next((j['jid'] for j in d['jobs'] if j['name']=='$JOB_NAME' and j['state'] not in ('FINISHED','CANCELED','FAILED')), '')"
}

job_running_with_checkpoint() {
  local id=$1
  [ "$(jget "/jobs/$id/status" | json "d['status']")" = RUNNING ] \
    && [ "$(jget "/jobs/$id/checkpoints" | json "d['counts']['completed']")" -ge 1 ]
}

write_env() {
  local home=$1 jar=$2 id=$3 orders=$4 kafka=$5
  set_env FLINK_ORDERS_JAR "$orders"
  set_env FLINK_KAFKA_JAR "$kafka"
  set_env FLINK_VERSION "$FLINK_VERSION"
  set_env FLINK_URL "$URL"
  set_env FLINK_HOME "$home"
  set_env FLINK_CONF_DIR "$CONF"
  set_env FLINK_JAR "$jar"
  set_env FLINK_JOB_ID "$id"
  set_env FLINK_JOB_NAME "$JOB_NAME"
  set_env FLINK_SCRIPT "$ROOT/peers/scripts/flink.sh"
  set_env FLINK_CHECKPOINT_DIR "$BASE/checkpoints"
  set_env FLINK_SAVEPOINT_DIR "$BASE/savepoints"
  set_env FLINK_TM_PID "$(cat "$RUN/pids/flink-tm.pid" 2>/dev/null || echo)"
}

cmd_start() {
  local t0 home jar id out orders kafka
  t0=$(date +%s.%N)
  command -v javac >/dev/null || die "javac (JDK 11+) is needed"
  command -v curl >/dev/null || die "curl is needed"
  home=$(install_flink)
  chmod +x "$home"/bin/*.sh "$home/bin/flink" 2>/dev/null || true
  write_config "$home"
  jar=$(build_jar "$home")
  orders=$(build_orders_jar "$home")
  kafka=$(build_kafka_jar "$home")
  start_jm "$home"
  start_tm "$home"
  id=$(active_job || true)
  if [ -z "$id" ]; then
    out=$(FLINK_HOME=$home "$home/bin/flink" run -d "$jar" "$JOB_NAME" "$JOB_RATE" 2>&1) \
      || { printf '%s\n' "$out" >&2; die "flink run failed"; }
    id=$(printf '%s\n' "$out" | sed -n 's/.*JobID \([0-9a-f]\{32\}\).*/\1/p' | tail -1)
    [ -n "$id" ] || { printf '%s\n' "$out" >&2; die "flink run printed no JobID"; }
    log "submitted $JOB_NAME as $id"
  else
    log "job $JOB_NAME already active: $id"
  fi
  wait_for "job $id RUNNING with a completed checkpoint" 120 job_running_with_checkpoint "$id" \
    || die "job $id is not RUNNING with a checkpoint; see $BASE/log"
  write_env "$home" "$jar" "$id" "$orders" "$kafka"
  log "flink up at $URL, job $id ($(python3 -c "import time; print(round(time.time()-$t0,1))")s)"
}

cmd_stop() {
  stop_daemon flink-tm
  stop_daemon flink-jm
  rm -f "$BASE"/pid/flink-*.pid
  unset_env FLINK_
  log "flink stopped"
}

cmd_status() {
  local id
  daemon_alive flink-jm || { echo "flink: JobManager not running"; return 1; }
  daemon_alive flink-tm || echo "flink: TaskManager not running"
  jget /overview || { echo "flink: REST not answering on $URL"; return 1; }
  echo
  id=$(active_job || true)
  [ -n "$id" ] || { echo "flink: no active $JOB_NAME job"; return 1; }
  echo "flink: job $id $(jget "/jobs/$id/status")"
  daemon_alive flink-tm
}

cmd_tm_kill() {
  local pid
  daemon_alive flink-tm || die "no TaskManager of ours is running"
  pid=$(cat "$RUN/pids/flink-tm.pid")
  kill -KILL "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  rm -f "$RUN/pids/flink-tm.pid"
  # flink-console.sh also keeps its own pid file; drop it so the next start is clean.
  rm -f "$BASE"/pid/flink-*-taskexecutor.pid
  set_env FLINK_TM_PID ""
  log "killed TaskManager pid $pid"
}

cmd_tm_start() {
  local home
  home=$(install_flink)
  daemon_alive flink-jm || die "the JobManager is not running; use start"
  start_tm "$home"
  set_env FLINK_TM_PID "$(cat "$RUN/pids/flink-tm.pid")"
  log "TaskManager started, pid $(cat "$RUN/pids/flink-tm.pid")"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  tm-kill) cmd_tm_kill ;;
  tm-start) cmd_tm_start ;;
  *) echo "usage: $0 start|stop|status|tm-kill|tm-start" >&2; exit 2 ;;
esac
