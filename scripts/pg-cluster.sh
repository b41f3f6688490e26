#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on a free loopback port, for the tests of the PostgreSQL catalog.
#   pg-cluster.sh start DIR   creates and starts it, then prints its URI (postgres://lake@127.0.0.1:PORT/postgres)
#   pg-cluster.sh stop DIR    stops it
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.
set -euo pipefail
action="${1:?start or stop}"
dir="${2:?cluster directory}"
bindir="$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$action" in
start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_owner "$bindir/initdb" --pgdata="$dir/data" --username=lake --auth=trust --encoding=UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bindir/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://lake@127.0.0.1:$port/postgres"
    ;;
stop)
    as_owner "$bindir/pg_ctl" --pgdata="$dir/data" --mode=fast stop >/dev/null || true
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
