#!/usr/bin/env bash
# Start or stop a private redis-server for the tests: loopback only, its own
# temporary directory, append-only file on, no RDB snapshots.
#
#   tests/redis-server.sh start [PORT [DIR]]
#       Starts redis-server in the background on a free 127.0.0.1 port (or
#       on PORT, with its data in DIR, to restart a server the test killed)
#       and prints one line "PORT PID DIR" once it answers PING.
#       Environment: CAIRN_REDIS_APPENDFSYNC (always, everysec or no;
#       default everysec), REDIS_SERVER (default redis-server).
#   tests/redis-server.sh stop PID [DIR]
#       Stops that server (SIGTERM, then SIGKILL after 5 s) and, when DIR is
#       given, removes it.
#   tests/redis-server.sh kill PID
#       SIGKILL, for tests of a server that dies mid-commit; DIR is kept.
#
# Typical use:  read -r port pid dir < <(tests/redis-server.sh start)
#               CAIRN_REDIS_PORT=$port tests/check_store redis
#               tests/redis-server.sh stop "$pid" "$dir"
set -euo pipefail

REDIS_SERVER=${REDIS_SERVER:-redis-server}
APPENDFSYNC=${CAIRN_REDIS_APPENDFSYNC:-everysec}

die() {
	echo "redis-server.sh: $*" >&2
	exit 1
}

# True once the server on port $1 answers PING and is process $2: a bind
# failure makes our server exit, and another one may own the port.
is_ours() {
	local info
	info=$(redis-cli -h 127.0.0.1 -p "$1" INFO server 2>/dev/null) || return 1
	grep -q "^process_id:$2\b" <<<"$info"
}

start_on() { # port dir -> prints "PORT PID DIR" and returns 0 when up
	local port=$1 dir=$2 pid i
	"$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --dir "$dir" \
		--appendonly yes --appendfsync "$APPENDFSYNC" --save '' \
		--daemonize no --protected-mode yes --logfile "$dir/redis.log" \
		</dev/null >/dev/null 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null || true
			return 1
		fi
		if is_ours "$port" "$pid"; then
			echo "$port $pid $dir"
			return 0
		fi
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	return 1
}

cmd_start() {
	local port=${1:-} dir=${2:-} tries
	command -v "$REDIS_SERVER" >/dev/null || die "$REDIS_SERVER not found"
	if [ -n "$port" ]; then
		[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-redis.XXXXXX")
		start_on "$port" "$dir" || die "cannot start redis-server on port $port (see $dir/redis.log)"
		return
	fi
	[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-redis.XXXXXX")
	for ((tries = 0; tries < 20; tries++)); do
		port=$((20000 + RANDOM % 40000))
		start_on "$port" "$dir" && return
	done
	die "cannot find a free port for redis-server (see $dir/redis.log)"
}

cmd_stop() {
	local pid=${1:?stop needs a PID} dir=${2:-} i
	# PID 0 means "already dead, only remove DIR": kill 0 would signal
	# every process of our own group, the test runner included.
	case $pid in
	'' | *[!0-9]* | 0) pid= ;;
	esac
	if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	if [ -n "$dir" ]; then
		case $dir in
		*/cairn-redis.*) rm -rf -- "$dir" ;;
		*) die "refusing to remove $dir: not made by this script" ;;
		esac
	fi
}

cmd_kill() {
	local pid=${1:?kill needs a PID} i
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.05
	done
}

case ${1:-} in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
kill) shift; cmd_kill "$@" ;;
*) die "usage: $0 start [PORT [DIR]] | stop PID [DIR] | kill PID" ;;
esac
