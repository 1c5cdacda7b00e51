# Sourced by the benchmark scripts: a throwaway PostgreSQL cluster in DIR on PORT
# (fsync on), run as the `postgres` user because Postgres refuses root.
#   start_throwaway_postgres DIR PORT DATABASE...   creates the databases named
#   stop_throwaway_postgres DIR
start_throwaway_postgres() {
  local dir=$1 port=$2 pgbin db
  shift 2
  pgbin=$(dirname "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -n1)")
  mkdir -p "$dir" && chown postgres "$dir"
  runuser -u postgres -- "$pgbin/initdb" -D "$dir" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir" -o "-p $port -k /tmp -c fsync=on" -l "$dir/log" start >/dev/null
  for _ in $(seq 50); do
    runuser -u postgres -- "$pgbin/pg_isready" -h /tmp -p "$port" >/dev/null 2>&1 && break
    sleep 0.2
  done
  for db in "$@"; do
    runuser -u postgres -- psql -h /tmp -p "$port" -q -c "CREATE DATABASE $db" postgres
  done
}

stop_throwaway_postgres() {
  runuser -u postgres -- pg_ctl -D "$1" -m immediate stop >/dev/null 2>&1 || true
}
