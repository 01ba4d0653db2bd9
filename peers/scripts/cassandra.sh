#!/usr/bin/env bash
# peers/scripts/cassandra.sh start|stop|status|node-stop N|node-kill N|node-start N|nodetool ARGS...
#
# A real three-node Apache Cassandra 5.0 ring on 127.0.0.1, 127.0.0.2 and 127.0.0.3, laid out the way ccm
# lays out a local cluster: one directory per node ($RUN/cassandra/nodeN) with its own conf/cassandra.yaml,
# the same storage and native ports on every address (7000 / 9042), JMX per node on 127.0.0.1:N100
# (7100 / 7200 / 7300), seed 127.0.0.1, single DC `datacenter1`, rack `rack1` (SimpleSnitch).
#
# Cassandra comes from Maven Central: org.apache.cassandra:cassandra-all and its runtime dependencies,
# resolved by cassandra/pom.xml into $CACHE; it runs on Java 17 with the flags in cassandra/jvm17.options.
# nodetool is org.apache.cassandra.tools.NodeTool from the same jars ($RUN/cassandra/bin/nodetool).
#
#   start          idempotent: starts node 1, waits until it answers CQL, then bootstraps nodes 2 and 3
#                  one at a time; writes the env keys
#   stop           stops the three nodes we started
#   status         `nodetool status`
#   node-stop N    graceful stop of node N (SIGTERM; the ring sees it leave via gossip)
#   node-kill N    SIGKILL node N (a crash; the failure detector convicts it)
#   node-start N   start node N again and wait until it answers CQL
#   nodetool ...   run nodetool against node 1 (extra args are passed through)
#
# Env keys: CASSANDRA_NODES CASSANDRA_JMX_PORTS CASSANDRA_NODETOOL CASSANDRA_NODETOOL_CMD CASSANDRA_SCRIPT
#           CASSANDRA_VERSION CASSANDRA_DC CASSANDRA_RACK CASSANDRA_CLUSTER_NAME CASSANDRA_LOG_DIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

HERE=$ROOT/peers/scripts/cassandra
POM=$HERE/pom.xml
VERSION=$(sed -n 's:.*<version>\(5\.0\.[0-9]*\)</version>.*:\1:p' "$POM" | head -1)
LIB=$CACHE/cassandra-$VERSION/lib
BASE=$RUN/cassandra
NODETOOL=$BASE/bin/nodetool
HEAP=${RB_PEERS_CASSANDRA_HEAP:-512M}
NODES=(1 2 3)

node_ip() { echo "127.0.0.$1"; }
node_jmx() { echo "7${1}00"; }
node_dir() { echo "$BASE/node$1"; }

jvm17_flags() { grep -v '^[[:space:]]*#' "$HERE/jvm17.options" | grep -v '^[[:space:]]*$'; }

# cql_ready IP: the node answers a native-protocol v4 OPTIONS frame with SUPPORTED.
cql_ready() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], 9042), timeout=2)
s.settimeout(2)
s.sendall(bytes([0x04, 0, 0, 1, 0x05, 0, 0, 0, 0]))
head = s.recv(9)
sys.exit(0 if len(head) >= 5 and head[0] == 0x84 and head[4] == 0x06 else 1)
PY
}

# wait_cql N IP SECS: wait until node N answers CQL; fail at once if its JVM has died meanwhile.
wait_cql() {
  local n=$1 ip=$2 deadline=$(( $(date +%s) + $3 ))
  until cql_ready "$ip" 2>/dev/null; do
    if ! daemon_alive "cassandra-node$n"; then
      log "cassandra node$n exited; its last output:"
      tail -n 40 "$(node_dir "$n")/logs/console.log" >&2
      tail -n 20 "$(node_dir "$n")/logs/system.log" >&2 2>/dev/null || true
      return 1
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { log "timed out after $3s waiting for node$n on $ip:9042"; return 1; }
    sleep 1
  done
}

fetch() {
  command -v java >/dev/null || die "java (17) is needed"
  command -v mvn >/dev/null || die "mvn is needed to resolve cassandra-all from Maven Central"
  java -version 2>&1 | grep -q 'version "17' || log "WARNING: Cassandra 5.0 wants Java 17; found: $(java -version 2>&1 | head -1)"
  maven_fetch "$LIB" "$POM"
  [ -f "$LIB/cassandra-all-$VERSION.jar" ] || die "no cassandra-all-$VERSION.jar in $LIB"
}

write_nodetool() {
  mkdir -p "$BASE/bin" "$BASE/tools"
  {
    echo '#!/usr/bin/env bash'
    echo "# nodetool of the rb real-peer ring (Cassandra $VERSION from $LIB). Usage: nodetool -h 127.0.0.1 -p 7100 status"
    printf 'exec java -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k'
    jvm17_flags | while read -r f; do printf ' %s' "$f"; done
    printf ' -Dcassandra.storagedir=%q -Dlogback.configurationFile=%q' "$BASE/tools" "$HERE/logback-tools.xml"
    printf ' -cp %q org.apache.cassandra.tools.NodeTool "$@"\n' "$LIB/*"
  } > "$NODETOOL.tmp"
  chmod +x "$NODETOOL.tmp"
  mv -f "$NODETOOL.tmp" "$NODETOOL"
}

write_node_conf() {
  local n=$1 dir ip
  dir=$(node_dir "$n"); ip=$(node_ip "$n")
  mkdir -p "$dir"/{conf,data,commitlog,saved_caches,hints,cdc_raw,logs,triggers}
  sed -e "s|@NODE_DIR@|$dir|g" -e "s|@NODE_IP@|$ip|g" "$HERE/cassandra.yaml.in" > "$dir/conf/cassandra.yaml"
  cp -f "$HERE/logback.xml" "$dir/conf/logback.xml"
}

# bootstrapped N: node N has joined the ring before (its system keyspace exists), so it restarts
# without bootstrapping and can start alongside other such nodes.
bootstrapped() { compgen -G "$(node_dir "$1")/data/system/local-*" >/dev/null; }

# start_node N [nowait]: launch node N unless it runs; wait until it answers CQL unless told not to.
start_node() {
  local n=$1 dir ip jmx flags
  dir=$(node_dir "$n"); ip=$(node_ip "$n"); jmx=$(node_jmx "$n")
  if daemon_alive "cassandra-node$n"; then return 0; fi
  if port_open "$ip" 9042 || port_open 127.0.0.1 "$jmx"; then
    die "something we did not start listens on $ip:9042 or 127.0.0.1:$jmx; not touching it"
  fi
  write_node_conf "$n"
  mapfile -t flags < <(jvm17_flags)
  log "starting cassandra node$n on $ip (jmx 127.0.0.1:$jmx, heap $HEAP)"
  start_daemon "cassandra-node$n" "$dir/logs/console.log" \
    java -Xms"$HEAP" -Xmx"$HEAP" -Xss256k -XX:+UseG1GC -XX:ParallelGCThreads=2 -XX:ConcGCThreads=1 \
      -XX:TieredStopAtLevel=1 -XX:CICompilerCount=1 -XX:MaxDirectMemorySize=256M -XX:+ExitOnOutOfMemoryError \
      "${flags[@]}" \
      -javaagent:"$LIB/jamm-0.4.0.jar" \
      -Djava.net.preferIPv4Stack=true \
      -Djava.rmi.server.hostname=127.0.0.1 \
      -Dcassandra.jmx.local.port="$jmx" \
      -Dcassandra-foreground=yes \
      -Dcassandra.config="file://$dir/conf/cassandra.yaml" \
      -Dcassandra.storagedir="$dir" \
      -Dcassandra.logdir="$dir/logs" \
      -Dlogback.configurationFile="$dir/conf/logback.xml" \
      -Dcassandra.skip_wait_for_gossip_to_settle=0 \
      -Dcassandra.ring_delay_ms=5000 \
      -Dcassandra.superuser_setup_delay_ms=0 \
      -Dcassandra.triggers_dir="$dir/triggers" \
      -cp "$dir/conf:$LIB/*" \
      org.apache.cassandra.service.CassandraDaemon
  [ "${2:-}" = nowait ] && return 0
  wait_cql "$n" "$ip" 300 || die "cassandra node$n did not come up; see $dir/logs"
}

write_env() {
  local nodes="" jmx="" n
  for n in "${NODES[@]}"; do
    nodes+="${nodes:+,}$(node_ip "$n"):9042"
    jmx+="${jmx:+,}$(node_jmx "$n")"
  done
  set_env CASSANDRA_VERSION "$VERSION"
  set_env CASSANDRA_NODES "$nodes"
  set_env CASSANDRA_JMX_PORTS "$jmx"
  set_env CASSANDRA_NODETOOL "$NODETOOL"
  set_env CASSANDRA_NODETOOL_CMD "$NODETOOL -h 127.0.0.1 -p $(node_jmx 1)"
  set_env CASSANDRA_SCRIPT "$ROOT/peers/scripts/cassandra.sh"
  set_env CASSANDRA_DC datacenter1
  set_env CASSANDRA_RACK rack1
  set_env CASSANDRA_CLUSTER_NAME rb-peers
  set_env CASSANDRA_LOG_DIR "$BASE"
}

# all_up: nodetool on node 1 shows every node UN.
all_up() {
  local out
  out=$("$NODETOOL" -h 127.0.0.1 -p "$(node_jmx 1)" status 2>/dev/null) || return 1
  [ "$(printf '%s\n' "$out" | grep -c '^UN ')" -ge "${#NODES[@]}" ]
}

cmd_start() {
  local t0 n
  t0=$(date +%s)
  fetch
  write_nodetool
  start_node 1
  # Nodes that joined before restart together; a new node bootstraps alone, one at a time.
  local again=()
  for n in "${NODES[@]:1}"; do
    if ! daemon_alive "cassandra-node$n" && bootstrapped "$n"; then start_node "$n" nowait; again+=("$n"); fi
  done
  for n in "${again[@]}"; do
    wait_cql "$n" "$(node_ip "$n")" 300 || die "cassandra node$n did not come up; see $(node_dir "$n")/logs"
  done
  for n in "${NODES[@]:1}"; do start_node "$n"; done
  wait_for "all ${#NODES[@]} nodes UN in nodetool status" 120 all_up \
    || { "$NODETOOL" -h 127.0.0.1 -p "$(node_jmx 1)" status >&2 || true; die "the ring is not all UN"; }
  write_env
  log "cassandra ring up: $(node_ip 1) $(node_ip 2) $(node_ip 3) ($(( $(date +%s) - t0 ))s)"
}

cmd_stop() {
  local n
  for n in 3 2 1; do stop_daemon "cassandra-node$n"; done
  unset_env CASSANDRA_
  log "cassandra stopped"
}

check_n() { case "${1:-}" in 1|2|3) ;; *) die "node number must be 1, 2 or 3 (got '${1:-}')" ;; esac; }

cmd_node_stop() {
  check_n "${1:-}"
  daemon_alive "cassandra-node$1" || die "node$1 is not running"
  stop_daemon "cassandra-node$1"
  log "node$1 stopped"
}

cmd_node_kill() {
  local pid
  check_n "${1:-}"
  daemon_alive "cassandra-node$1" || die "node$1 is not running"
  pid=$(cat "$RUN/pids/cassandra-node$1.pid")
  kill -KILL "$pid"
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  rm -f "$RUN/pids/cassandra-node$1.pid"
  log "node$1 killed (pid $pid)"
}

cmd_node_start() {
  check_n "${1:-}"
  fetch
  write_nodetool
  start_node "$1"
  log "node$1 answers CQL"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) [ -x "$NODETOOL" ] || die "not started"; "$NODETOOL" -h 127.0.0.1 -p "$(node_jmx 1)" status ;;
  node-stop) cmd_node_stop "${2:-}" ;;
  node-kill) cmd_node_kill "${2:-}" ;;
  node-start) cmd_node_start "${2:-}" ;;
  nodetool) shift; [ -x "$NODETOOL" ] || die "not started"; "$NODETOOL" -h 127.0.0.1 -p "$(node_jmx 1)" "$@" ;;
  *) echo "usage: $0 start|stop|status|node-stop N|node-kill N|node-start N|nodetool ARGS..." >&2; exit 2 ;;
esac
