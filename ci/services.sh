#!/usr/bin/env bash
# The services the tests need, started for one run and stopped after it. Source this file, then:
#   services_start   starts a throwaway PostgreSQL server and exports
#                    BPU_TEST_POSTGRES=postgres://bpu@127.0.0.1:PORT/bpu_test
#   services_stop    stops it and removes its directory (safe to call twice, or without a start;
#                    ci/test.sh calls it from `trap ... EXIT`)
# The server: initdb into a new directory ${TMPDIR:-/tmp}/bpu-test-pg.XXXXXX, listening on
# 127.0.0.1 only (a free port in 5433..6932, below the tests' own ports and away from `bpu up`'s
# 7050/7150) and on a socket in that directory, trust authentication for the superuser role
# `bpu`, fsync off (nothing in it outlives the run). PostgreSQL refuses to run as root, so as root
# it runs as the `postgres` user (made by Debian's postgresql package). A server left behind by a
# run that was killed before its EXIT trap (its owning shell gone) is stopped, and its directory
# removed, by the next services_start; servers of runs still alive are left alone.
# Needs Debian's postgresql package (ci/setup.sh installs it).

BPU_PG_PREFIX="${TMPDIR:-/tmp}/bpu-test-pg."
BPU_PG_USER=bpu
BPU_PG_DB=bpu_test

_svc_log() { echo "services: $*" >&2; }

# The newest installed server's bin directory (initdb, pg_ctl, pg_isready, createdb).
_svc_pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    _svc_log "no PostgreSQL server in /usr/lib/postgresql/*/bin (run ci/setup.sh)"; return 1
  fi
  echo "$d"
}

# Runs a server command as the user that owns the server: `postgres` when we are root.
_svc_as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A process's start time (clock ticks since boot), to tell a live pid from a reused one.
_svc_start_time() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo "${20}"
}

# Whether a process runs (a zombie does not: where pid 1 does not reap, a stopped server's
# postmaster stays one).
_svc_alive() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [ "${s%% *}" != Z ]
}

# Stops the server of one directory (if it runs) and removes the directory.
_svc_pg_stop_dir() {
  local dir=$1 data=$1/data pid="" bin
  if [ -f "$data/postmaster.pid" ]; then pid=$(head -1 "$data/postmaster.pid" 2>/dev/null || true); fi
  if [[ "$pid" =~ ^[0-9]+$ ]] && _svc_alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; then
    bin=$(_svc_pg_bin) || bin=""
    if [ -n "$bin" ]; then
      _svc_as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        _svc_as_pg "$bin/pg_ctl" -D "$data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
    fi
    if _svc_alive "$pid"; then
      _svc_log "PostgreSQL $pid did not stop: killing it"
      kill -KILL "$pid" 2>/dev/null || true
      local i
      for i in $(seq 100); do _svc_alive "$pid" || break; sleep 0.1; done
    fi
  fi
  rm -rf "$dir" 2>/dev/null || _svc_log "could not remove $dir"
}

# Stops the servers of earlier runs whose owning shell is gone (killed before its EXIT trap).
_svc_pg_reap_leftovers() {
  local dir owner_pid owner_start
  for dir in "$BPU_PG_PREFIX"*; do
    [ -d "$dir" ] || continue
    [ -w "$dir" ] || continue # another user's run
    owner_pid="" owner_start=""
    if [ -f "$dir/owner" ]; then
      read -r owner_pid owner_start <"$dir/owner" || true
    elif [ -n "$(find "$dir" -maxdepth 0 -mmin -1 2>/dev/null)" ]; then
      continue # just made by a run that has not written its owner file yet
    fi
    if [ -n "$owner_start" ] && [ "$(_svc_start_time "$owner_pid" 2>/dev/null)" = "$owner_start" ]; then
      continue # its run is still going
    fi
    _svc_log "removing the leftover server directory $dir"
    _svc_pg_stop_dir "$dir"
  done
}

services_start() {
  if [ -n "${BPU_PG_DIR:-}" ]; then _svc_log "already started ($BPU_PG_DIR)"; return 0; fi
  local bin dir port attempt ready=""
  bin=$(_svc_pg_bin) || return 1
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    _svc_log "running as root and there is no postgres user to run PostgreSQL as"; return 1
  fi
  _svc_pg_reap_leftovers

  dir=$(mktemp -d "${BPU_PG_PREFIX}XXXXXX") || return 1
  BPU_PG_DIR=$dir # from here on, services_stop removes it
  echo "$$ $(_svc_start_time $$)" >"$dir/owner"
  mkdir "$dir/data" "$dir/sock"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$dir"; fi
  if ! _svc_as_pg "$bin/initdb" -D "$dir/data" -U "$BPU_PG_USER" --auth=trust -E UTF8 --no-locale \
    --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2; _svc_log "initdb failed"; return 1
  fi
  cat >>"$dir/data/postgresql.conf" <<EOF
# ci/services.sh: a throwaway server for one test run
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

  # A free port: skip ones something listens on; a port taken between the check and the bind
  # makes the server exit with "could not bind", and the next port is tried.
  for attempt in $(seq 20); do
    port=$((5433 + RANDOM % 1500))
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    if _svc_as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start \
      >/dev/null 2>&1; then
      ready=1; break
    fi
    if grep -q "could not bind\|could not create any TCP/IP sockets" "$dir/server.log" 2>/dev/null; then
      _svc_log "port $port is taken, trying another (attempt $attempt)"
      : >"$dir/server.log"
      continue
    fi
    break
  done
  if [ -z "$ready" ]; then
    tail -20 "$dir/server.log" >&2 2>/dev/null || true; _svc_log "PostgreSQL did not start"; return 1
  fi

  # Ready when it accepts connections on 127.0.0.1:PORT, within 60 s.
  local deadline=$((SECONDS + 60))
  until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$BPU_PG_USER" -d postgres; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -20 "$dir/server.log" >&2; _svc_log "PostgreSQL on port $port not ready after 60 s"
      return 1
    fi
    sleep 0.1
  done
  if ! "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$BPU_PG_USER" "$BPU_PG_DB"; then
    _svc_log "createdb $BPU_PG_DB failed"; return 1
  fi
  export BPU_TEST_POSTGRES="postgres://$BPU_PG_USER@127.0.0.1:$port/$BPU_PG_DB"
  _svc_log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') at $BPU_TEST_POSTGRES ($dir)"
}

services_stop() {
  if [ -n "${BPU_PG_DIR:-}" ]; then
    _svc_pg_stop_dir "$BPU_PG_DIR"
    _svc_log "PostgreSQL stopped, $BPU_PG_DIR removed"
  fi
  unset BPU_PG_DIR BPU_TEST_POSTGRES
  return 0
}
