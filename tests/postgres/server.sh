#!/usr/bin/env bash
# A throwaway PostgreSQL for the postgres:: tests (Debian's `postgresql` package):
#   tests/postgres/server.sh start DIR   initdb and start on a free loopback port; prints
#                                        the URL to export as COOC_TEST_POSTGRES
#   tests/postgres/server.sh stop DIR    stop it (DIR can then be removed)
# initdb refuses root, so as root the server runs as the `postgres` user. Logins are
# trusted on loopback except for the role cooc_secret, which must give its password
# (scram-sha-256): the tests check a refused login with it.
set -euo pipefail
cmd=${1:?start or stop}
dir=${2:?a scratch directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "error: no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
fi
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case $cmd in
start)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log"
  cat >"$dir/data/pg_hba.conf" <<'HBA'
local all all trust
host all cooc_secret 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
HBA
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" -w start >/dev/null
  echo "postgresql://postgres@127.0.0.1:$port/postgres"
  ;;
stop)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
