#!/usr/bin/env bash
# Installs and runs the real servers the integration tests use, on loopback only, under
# target/test-servers/, and writes target/test-servers.env for scripts/test.sh to source.
#
#   scripts/servers.sh install   # apt-get what is missing (Debian 12; root or sudo)
#   scripts/servers.sh start     # install, then (re)start everything and write the env file
#   scripts/servers.sh stop      # stop ours; any other redis (e.g. Debian's on 6379) is left alone
#   scripts/servers.sh status    # which of ours are up
#   scripts/servers.sh env       # path of the env file
#
# Fixed ports, all away from Debian's default 6379: 6390 redis (+ ACL user), 6391 redis TLS,
# 7101-7103 redis cluster (cluster bus on 17101-17103).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
DIR=$ROOT/target/test-servers
TLS_DIR=$DIR/tls
ENV_FILE=$ROOT/target/test-servers.env

REDIS_PORT=6390
TLS_PORT=6391
CLUSTER_PORTS=(7101 7102 7103)
ACL_USER=oas_user
ACL_PASS=oas-secret-pw

# redis-cli connection arguments. Starting verifies TLS against our CA, as the tests do; stop and
# status skip verification so a server whose certificates were wiped can still be found.
REDIS_CLI=(-h 127.0.0.1 -p "$REDIS_PORT")
TLS_CLI=(--tls --cacert "$TLS_DIR/ca.crt" -h localhost -p "$TLS_PORT")
TLS_ANY_CLI=(--tls --insecure -h 127.0.0.1 -p "$TLS_PORT")

log() { echo "servers.sh: $*" >&2; }

# redis-cli with a deadline: a TLS client talking to a plain server (or the reverse) waits forever.
rcli() { timeout 5 redis-cli "$@"; }

# fail NAME MESSAGE: a server that does not work fails the run loudly, with its log tail.
fail() {
  log "error: $1: $2"
  if [ -s "$DIR/$1.log" ]; then
    log "last lines of $DIR/$1.log:"
    tail -n 30 "$DIR/$1.log" >&2
  fi
  exit 1
}

# Single-quote for the env file, which is sourced by bash.
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# ---------------------------------------------------------------------------------- install ---

cmd_install() {
  local -a missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v openssl >/dev/null || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  # The package may start Debian's own redis on 6379; harmless, nothing here uses that port.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
}

# ------------------------------------------------------------------- generic redis handling ---
# Each redis is known by a NAME: pid file $DIR/NAME.pid, log $DIR/NAME.log, and a working dir
# under $DIR. "Ours" is decided by what the server itself reports, never by process name, so a
# foreign redis on one of our ports is never stopped nor mistaken for a healthy one of ours.

# ours NAME CLI-ARGS...: the server answering there is the one started as NAME.
ours() {
  local name=$1; shift
  [ "$(rcli "$@" config get pidfile 2>/dev/null | sed -n 2p)" = "$DIR/$name.pid" ]
}

# pid_ours PID: a live redis-server running in one of our working dirs (guards against pid reuse).
pid_ours() {
  [ -n "${1:-}" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = redis-server ] &&
    [[ "$(readlink "/proc/$1/cwd" 2>/dev/null)" == "$DIR"/* ]]
}

# launch NAME WORKDIR SERVER-ARGS...: a daemonized, non-persisting redis on loopback.
launch() {
  local name=$1 wd=$2; shift 2
  mkdir -p "$wd"
  rm -f "$DIR/$name.pid"
  : >"$DIR/$name.log"
  redis-server --daemonize yes --bind 127.0.0.1 --pidfile "$DIR/$name.pid" \
    --logfile "$DIR/$name.log" --dir "$wd" --save '' --appendonly no "$@" ||
    fail "$name" "redis-server refused to start"
}

# wait_up NAME CLI-ARGS...: poll up to 20 s for PING; give up early if the process died.
wait_up() {
  local name=$1 t0=$SECONDS; shift
  while [ $((SECONDS - t0)) -lt 20 ]; do
    ours "$name" "$@" && [ "$(rcli "$@" ping 2>/dev/null)" = PONG ] && return 0
    if [ $((SECONDS - t0)) -ge 2 ] && ! pid_ours "$(cat "$DIR/$name.pid" 2>/dev/null)"; then
      fail "$name" "redis-server exited (port taken by another server?)"
    fi
    sleep 0.2
  done
  fail "$name" "no answer to PING within 20 s"
}

# halt NAME CLI-ARGS...: SHUTDOWN NOSAVE, then the pid file's process; tolerates either being gone.
halt() {
  local name=$1 pid i; shift
  pid=$(cat "$DIR/$name.pid" 2>/dev/null || true)
  if ours "$name" "$@"; then
    # The pid file may be gone (target/ wiped) while the server still runs.
    [ -n "$pid" ] || pid=$(rcli "$@" info server | tr -d '\r' | sed -n 's/^process_id://p' || true)
    rcli "$@" shutdown nosave >/dev/null 2>&1 || true
  fi
  for i in $(seq 25); do pid_ours "$pid" || break; sleep 0.2; done
  if pid_ours "$pid"; then kill "$pid" 2>/dev/null || true; sleep 1; fi
  if pid_ours "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$DIR/$name.pid"
}

# ------------------------------------------------------------------------ standalone redis ---

start_redis() {
  launch redis "$DIR/redis" --port "$REDIS_PORT"
  wait_up redis "${REDIS_CLI[@]}"
  # An ACL user for the username+password tests; the default user stays passwordless.
  [ "$(rcli "${REDIS_CLI[@]}" acl setuser "$ACL_USER" on ">$ACL_PASS" '~*' '&*' '+@all')" = OK ] ||
    fail redis "ACL SETUSER $ACL_USER failed"
  # WHOAMI, not PING: after a failed AUTH redis-cli carries on as the passwordless default user.
  [ "$(rcli "${REDIS_CLI[@]}" --user "$ACL_USER" --pass "$ACL_PASS" --no-auth-warning acl whoami)" = "$ACL_USER" ] ||
    fail redis "ACL user $ACL_USER cannot log in"
}

# ------------------------------------------------------------------------------- TLS redis ---

# A throwaway CA and a localhost server certificate; kept across runs while they still verify.
make_certs() {
  local t=$TLS_DIR
  if [ -s "$t/server.key" ] && openssl verify -CAfile "$t/ca.crt" "$t/server.crt" >/dev/null 2>&1; then
    return 0
  fi
  rm -rf "$t" && mkdir -p "$t"
  # Explicit v3 extensions: rustls/webpki rejects CA certs without CA:TRUE and servers without SAN.
  openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 -subj "/CN=oas test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$t/ca.key" -out "$t/ca.crt" 2>/dev/null
  openssl req -new -nodes -newkey rsa:2048 -sha256 -subj "/CN=localhost" \
    -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$t/server.ext"
  openssl x509 -req -sha256 -days 3650 -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" \
    -CAcreateserial -extfile "$t/server.ext" -out "$t/server.crt" 2>/dev/null
  openssl verify -CAfile "$t/ca.crt" "$t/server.crt" >/dev/null || fail redis-tls "certificate generation failed"
}

start_redis_tls() {
  make_certs
  launch redis-tls "$DIR/redis-tls" --port 0 --tls-port "$TLS_PORT" \
    --tls-cert-file "$TLS_DIR/server.crt" --tls-key-file "$TLS_DIR/server.key" \
    --tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-auth-clients no
  wait_up redis-tls "${TLS_CLI[@]}"
}

# --------------------------------------------------------------------------- redis cluster ---

start_redis_cluster() {
  local p n ok addrs=() t0
  for p in "${CLUSTER_PORTS[@]}"; do
    # A fresh cluster every time: old node ids/slot maps would make "cluster create" refuse.
    rm -rf "$DIR/cluster/$p"
    launch "cluster-$p" "$DIR/cluster/$p" --port "$p" --cluster-enabled yes \
      --cluster-config-file "$DIR/cluster/$p/nodes-$p.conf" --cluster-node-timeout 2000
    addrs+=("127.0.0.1:$p")
  done
  for p in "${CLUSTER_PORTS[@]}"; do wait_up "cluster-$p" -h 127.0.0.1 -p "$p"; done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
    >"$DIR/cluster-create.log" 2>&1 || fail cluster-create "redis-cli --cluster create failed"
  # Slots are assigned, but each node must also learn the others through gossip.
  t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 30 ]; do
    n=0
    for p in "${CLUSTER_PORTS[@]}"; do
      [[ "$(rcli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null)" == *cluster_state:ok* ]] && n=$((n + 1))
    done
    [ "$n" -eq "${#CLUSTER_PORTS[@]}" ] && ok=1 && break
    sleep 0.2
  done
  [ -n "${ok:-}" ] || fail "cluster-${CLUSTER_PORTS[0]}" "cluster_state not ok on all nodes within 30 s"
}

stop_redis_cluster() {
  local p
  for p in "${CLUSTER_PORTS[@]}"; do halt "cluster-$p" -h 127.0.0.1 -p "$p"; done
}

# -------------------------------------------------------------------------- DynamoDB Local ---
# TODO (later): start_dynamodb / stop_dynamodb / a status line and OAS_TEST_DYNAMODB_* exports.
# Hook them into cmd_start, cmd_stop, cmd_status and write_env below, like the redis ones.

# ---------------------------------------------------------------------------------- commands ---

write_env() {
  local ca=$TLS_DIR/ca.crt cluster
  cluster=$(IFS=,; echo "${CLUSTER_PORTS[*]/#/127.0.0.1:}")
  {
    echo "# Written by scripts/servers.sh start; valid while those servers run."
    echo "export OAS_TEST_REDIS_URL=$(sq "redis://127.0.0.1:$REDIS_PORT/")"
    echo "export OAS_TEST_REDIS_ACL_URL=$(sq "redis://$ACL_USER:$ACL_PASS@127.0.0.1:$REDIS_PORT/")"
    echo "export OAS_TEST_REDISS_URL=$(sq "rediss://localhost:$TLS_PORT/?tls_ca_file=$ca")"
    echo "export OAS_TEST_TLS_CA=$(sq "$ca")"
    echo "export OAS_TEST_REDIS_CLUSTER_URL=$(sq "redis+cluster://$cluster/")"
    # Not resolved through symlinks: Debian's redis-server is a link that dispatches on its name.
    echo "export OAS_TEST_REDIS_SERVER_BIN=$(sq "$(command -v redis-server)")"
  } >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

cmd_stop() {
  rm -f "$ENV_FILE"
  halt redis "${REDIS_CLI[@]}"
  halt redis-tls "${TLS_ANY_CLI[@]}"
  stop_redis_cluster
}

cmd_start() {
  cmd_install
  cmd_stop # idempotent: whatever of ours runs is restarted from scratch
  mkdir -p "$DIR"
  # On failure stop what did start: test.sh only installs its stop trap after a successful start.
  trap 'log "start failed; stopping the servers already started"; cmd_stop' EXIT
  start_redis
  start_redis_tls
  start_redis_cluster
  write_env
  trap - EXIT
  echo "test servers (logs and pid files in $DIR):"
  echo "  redis          127.0.0.1:$REDIS_PORT  (ACL user $ACL_USER)"
  echo "  redis TLS      localhost:$TLS_PORT  (CA $TLS_DIR/ca.crt)"
  echo "  redis cluster  127.0.0.1:$(IFS=,; echo "${CLUSTER_PORTS[*]}")  (3 masters, no replicas)"
  echo "  env file       $ENV_FILE"
}

cmd_status() {
  local p
  up() { if ours "$@"; then echo "up"; else echo "down"; fi; }
  echo "redis          127.0.0.1:$REDIS_PORT  $(up redis "${REDIS_CLI[@]}")"
  echo "redis TLS      127.0.0.1:$TLS_PORT  $(up redis-tls "${TLS_ANY_CLI[@]}")"
  for p in "${CLUSTER_PORTS[@]}"; do
    echo "redis cluster  127.0.0.1:$p  $(up "cluster-$p" -h 127.0.0.1 -p "$p")"
  done
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "$ENV_FILE" ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
