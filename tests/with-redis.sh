#!/usr/bin/env bash
# Runs one test program with a private redis-server for the length of its
# run: make check's LOG_COMPILER. The Redis cases of check_store and of the
# integration tests use the server on $CAIRN_REDIS_PORT, and fail (never
# skip) without one, so a missing redis-server fails here, loudly.
#
#   tests/with-redis.sh PROGRAM [ARGS...]
#
# With CAIRN_REDIS_PORT already set (a server the caller runs), the program
# runs against that one. Otherwise tests/redis-server.sh starts one on a
# free loopback port and stops it, and removes its directory, once the
# program has exited. The program's exit status is this script's; 99 (a
# hard error to automake's test driver) when the server cannot start.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || {
	echo "usage: $0 PROGRAM [ARGS...]" >&2
	exit 2
}
[ -n "${CAIRN_REDIS_PORT:-}" ] && exec "$@"

if ! read -r port pid dir < <("$here/redis-server.sh" start); then
	echo "with-redis: cannot start a private redis-server" >&2
	exit 99
fi
stop() {
	"$here/redis-server.sh" stop "$pid" "$dir" >/dev/null 2>&1 || true
}
trap stop EXIT
trap 'exit 130' INT TERM
export CAIRN_REDIS_PORT=$port
"$@"
exit $?
