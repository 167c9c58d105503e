#!/usr/bin/env bash
# A throwaway PostgreSQL cluster (Debian's postgresql package) on loopback, run as the postgres
# system user (the server refuses root), for scripts/servers.sh and for tests that need a server
# of their own (faults: SIGKILL, SIGSTOP).
#
#   scripts/postgres-instance.sh init DIR PORT   # initdb into DIR (outside /root), TLS, test role
#   scripts/postgres-instance.sh start DIR       # start it; prints the postmaster's pid
#   scripts/postgres-instance.sh stop DIR        # fast shutdown by PID (SIGINT), SIGKILL after 20 s
#   scripts/postgres-instance.sh pid DIR         # the postmaster's pid (empty when not running)
#
# The cluster: password authentication (scram-sha-256) over TCP for the role oas_test (password
# oas-pg-secret, owner of database oas_test); TLS with a self-signed CA made by openssl
# (DIR/tls/ca.crt; the server key owned by postgres, mode 0600); unix socket in DIR only.
set -euo pipefail

PG_ROLE=oas_test
PG_PASSWORD=oas-pg-secret
PG_DB=oas_test

log() { echo "postgres-instance.sh: $*" >&2; }

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  log "error: no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)"
  exit 1
}

as_pg() { runuser -u postgres -- "$@"; }

make_certs() {
  local t=$1/tls
  mkdir -p "$t"
  openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 -subj "/CN=oas postgres test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$t/ca.key" -out "$t/ca.crt" 2>/dev/null
  openssl req -new -nodes -newkey rsa:2048 -sha256 -subj "/CN=localhost" \
    -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$t/server.ext"
  openssl x509 -req -sha256 -days 3650 -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" \
    -CAcreateserial -extfile "$t/server.ext" -out "$t/server.crt" 2>/dev/null
  # A second CA that signed nothing here: the "wrong CA" tests trust it.
  openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 -subj "/CN=oas other CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$t/other-ca.key" -out "$t/other-ca.crt" 2>/dev/null
  chown postgres:postgres "$t/server.key" "$t/server.crt"
  chmod 0600 "$t/server.key"
}

cmd_init() {
  local dir=$1 port=$2 bin
  bin=$(bindir)
  case "$dir" in /root|/root/*) log "error: $dir is under /root, which postgres cannot reach"; exit 1 ;; esac
  id postgres >/dev/null 2>&1 || { log "error: no postgres system user (apt-get install postgresql)"; exit 1; }
  rm -rf "$dir" && mkdir -p "$dir"
  chmod 0755 "$dir"
  make_certs "$dir"
  mkdir -p "$dir/data" && chown postgres:postgres "$dir" "$dir/data" && chmod 0700 "$dir/data"
  printf '%s\n' "$PG_PASSWORD" >"$dir/pwfile" && chown postgres "$dir/pwfile" && chmod 0600 "$dir/pwfile"
  as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { tail -20 "$dir/initdb.log" >&2; exit 1; }
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
shared_buffers = 64MB
fsync = off
full_page_writes = off
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
password_encryption = 'scram-sha-256'
log_min_messages = warning
CONF
  cat >"$dir/data/pg_hba.conf" <<HBA
local all all trust
host all all 127.0.0.1/32 scram-sha-256
HBA
  cmd_start "$dir" >/dev/null
  as_pg "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE ROLE $PG_ROLE LOGIN PASSWORD '$PG_PASSWORD'" \
    -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE" >/dev/null
  as_pg "$bin/psql" -h "$dir" -p "$port" -U postgres -d "$PG_DB" -v ON_ERROR_STOP=1 -q \
    -c "GRANT ALL ON SCHEMA public TO $PG_ROLE" >/dev/null
}

cmd_pid() {
  local dir=$1 pid
  pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then echo "$pid"; fi
}

cmd_start() {
  local dir=$1 bin
  bin=$(bindir)
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null ||
    { tail -20 "$dir/server.log" >&2; exit 1; }
  cmd_pid "$dir"
}

cmd_stop() {
  local dir=$1 pid i
  pid=$(cmd_pid "$dir")
  [ -n "$pid" ] || return 0
  kill -INT "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}

case "${1:-}" in
  init) cmd_init "$2" "$3" ;;
  start) cmd_start "$2" ;;
  stop) cmd_stop "$2" ;;
  pid) cmd_pid "$2" ;;
  *) echo "usage: $0 init DIR PORT | start DIR | stop DIR | pid DIR" >&2; exit 2 ;;
esac
