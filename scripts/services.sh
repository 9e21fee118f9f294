#!/usr/bin/env bash
# Private Postgres and Redis servers for Vexil's tests, on loopback only.
#
#   eval "$(scripts/services.sh start)"   # installs what is missing, starts both, exports
#                                         # VEXIL_TEST_DATABASE_URL and VEXIL_TEST_REDIS_URL
#   scripts/services.sh install           # only installs what is missing
#   scripts/services.sh status            # says what runs
#   scripts/services.sh stop              # stops both
#
# Idempotent: starting what runs, or stopping what does not, is fine. Runs as root on Debian
# (apt-get installs postgresql and redis-server when missing). Postgres runs as the `postgres`
# OS user in a cluster of its own under the cache directory, with trust authentication on
# loopback and without fsync: it holds test data only. Nothing but the export lines goes to
# standard output.
#
# Settings (environment):
#   VEXIL_CACHE_DIR   where the cluster and logs live (default /var/cache/vexil)
#   VEXIL_PG_PORT     Postgres port (default 55432)
#   VEXIL_REDIS_PORT  Redis port (default 56379)
#   VEXIL_PG_SYNCHRONOUS_COMMIT  off (default: fast) or on (a commit survives a killed
#                     Postgres, as the fault suite needs)

set -euo pipefail

CACHE_DIR=${VEXIL_CACHE_DIR:-/var/cache/vexil}
PG_PORT=${VEXIL_PG_PORT:-55432}
REDIS_PORT=${VEXIL_REDIS_PORT:-56379}
PG_SYNCHRONOUS_COMMIT=${VEXIL_PG_SYNCHRONOUS_COMMIT:-off}
PG_DATA=$CACHE_DIR/pg
PG_RUN=$CACHE_DIR/pg-run
REDIS_DIR=$CACHE_DIR/redis

log() { echo "services: $*" >&2; }
die() { log "error: $*"; exit 1; }

# The newest installed PostgreSQL server binaries (15 on Debian 12).
pg_bin() {
    if [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
        echo /usr/lib/postgresql/15/bin
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n $dir && -x $dir/initdb ]]; then
        echo "$dir"
    fi
}

as_postgres() { runuser -u postgres -- "$@"; }

install_missing() {
    local missing=()
    [[ -n $(pg_bin) ]] || missing+=(postgresql)
    command -v pg_isready >/dev/null || missing+=(postgresql-client)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-tools)
    ((${#missing[@]} == 0)) && return
    [[ $(id -u) == 0 ]] || die "installing ${missing[*]} needs root"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only when they do not know the packages yet.
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        log "refreshing package lists"
        apt-get update >&2
    fi
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
    [[ -n $(pg_bin) ]] || die "postgresql server binaries not found after install"
}

pg_running() {
    local bin
    bin=$(pg_bin)
    [[ -n $bin && -f $PG_DATA/PG_VERSION ]] && as_postgres "$bin/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

redis_running() {
    command -v redis-cli >/dev/null &&
        [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

start_postgres() {
    local bin
    bin=$(pg_bin)
    id postgres >/dev/null 2>&1 || die "no postgres OS user (the postgresql package creates it)"
    install -d -m 755 "$CACHE_DIR"
    install -d -o postgres -g postgres -m 700 "$PG_DATA"
    install -d -o postgres -g postgres -m 755 "$PG_RUN"
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        log "creating the postgres cluster in $PG_DATA"
        as_postgres "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C >&2
    fi
    if pg_running; then
        log "postgres already runs"
    else
        log "starting postgres on 127.0.0.1:$PG_PORT"
        as_postgres "$bin/pg_ctl" start -w -t 60 -D "$PG_DATA" -l "$PG_RUN/postgres.log" \
            -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_RUN -c max_connections=300 -c fsync=off -c synchronous_commit=$PG_SYNCHRONOUS_COMMIT -c full_page_writes=off" >&2 ||
            { tail -n 20 "$PG_RUN/postgres.log" >&2 || true; die "postgres did not start"; }
    fi
    local i
    for ((i = 0; i < 60; i++)); do
        pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && return
        sleep 0.5
    done
    die "postgres does not answer on 127.0.0.1:$PG_PORT"
}

start_redis() {
    install -d -m 755 "$REDIS_DIR"
    if redis_running; then
        log "redis already runs"
    else
        log "starting redis on 127.0.0.1:$REDIS_PORT"
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
            --daemonize yes --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" \
            --logfile "$REDIS_DIR/redis.log" >&2
    fi
    local i
    for ((i = 0; i < 60; i++)); do
        redis_running && return
        sleep 0.5
    done
    die "redis does not answer on 127.0.0.1:$REDIS_PORT"
}

print_env() {
    echo "export VEXIL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "export VEXIL_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
}

stop_all() {
    if pg_running; then
        log "stopping postgres"
        as_postgres "$(pg_bin)/pg_ctl" stop -w -m fast -D "$PG_DATA" >&2
    else
        log "postgres is not running"
    fi
    if redis_running; then
        log "stopping redis"
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        local i
        for ((i = 0; i < 20; i++)); do
            redis_running || return 0
            sleep 0.25
        done
        die "redis did not stop"
    else
        log "redis is not running"
    fi
}

case ${1:-} in
start)
    install_missing
    start_postgres
    start_redis
    print_env
    ;;
install)
    install_missing
    ;;
stop)
    stop_all
    ;;
status)
    pg_running && log "postgres runs on 127.0.0.1:$PG_PORT" || log "postgres is not running"
    redis_running && log "redis runs on 127.0.0.1:$REDIS_PORT" || log "redis is not running"
    ;;
env)
    print_env
    ;;
*)
    echo "usage: $0 start|install|stop|status|env" >&2
    exit 2
    ;;
esac
