# Sourced by .ci/run: start a throwaway PostgreSQL server for the shared-study tests (tests/test_tune.py).
# Uses the postgres binaries on PATH or Debian's /usr/lib/postgresql/*/bin, installing Debian's
# postgresql package only when neither exists. The server listens on a unix socket in a temp dir
# (no TCP port), runs as the postgres OS user when we are root, holds one database, and is stopped
# and deleted on exit. Exports HONED_TEST_POSTGRES_URL for the tests.

_pg_bin() {
  local d
  for d in "$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || echo /none/initdb)")")" /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/createdb" ]; then echo "$d"; return 0; fi
  done
  return 1
}

PG_BIN="$(_pg_bin || true)"
if [ -z "$PG_BIN" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  PG_BIN="$(_pg_bin)"
fi
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  _as_pg() { runuser -u postgres -- "$@"; }
else
  _as_pg() { "$@"; }
fi
PG_DIR="$(mktemp -d /tmp/honed-pg.XXXXXX)"
[ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"
_as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U honed >/dev/null
_as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -o "-c listen_addresses='' -k $PG_DIR" -l "$PG_DIR/server.log" -w start >/dev/null
trap '_as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$PG_DIR"' EXIT
_as_pg "$PG_BIN/createdb" -h "$PG_DIR" -U honed honed_test
export HONED_TEST_POSTGRES_URL="postgresql://honed@/honed_test?host=$PG_DIR"
echo "$("$PG_BIN/postgres" --version) for the shared-study test: $HONED_TEST_POSTGRES_URL"
