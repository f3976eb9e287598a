#!/usr/bin/env bash
# Start or stop a private three-master Redis Cluster for the tests: loopback
# only, one temporary directory, append-only files on, no RDB snapshots, no
# replicas.
#
#   tests/redis-cluster.sh start
#       Starts three redis-server processes with --cluster-enabled yes on
#       free 127.0.0.1 ports (each also uses its port + 10000 for the
#       cluster bus), joins them with redis-cli --cluster create and prints
#       one line "P1,P2,P3 PID1,PID2,PID3 DIR" once every node reports
#       cluster_state:ok. Environment: CAIRN_REDIS_APPENDFSYNC (default
#       everysec), REDIS_SERVER (default redis-server).
#   tests/redis-cluster.sh stop PID1,PID2,PID3 [DIR]
#       Stops those servers (SIGTERM, then SIGKILL after 5 s) and, when DIR
#       is given, removes it.
set -euo pipefail

REDIS_SERVER=${REDIS_SERVER:-redis-server}
APPENDFSYNC=${CAIRN_REDIS_APPENDFSYNC:-everysec}

die() {
	echo "redis-cluster.sh: $*" >&2
	exit 1
}

is_ours() { # port pid
	local info
	info=$(redis-cli -h 127.0.0.1 -p "$1" INFO server 2>/dev/null) || return 1
	grep -q "^process_id:$2\b" <<<"$info"
}

start_node() { # port dir -> prints the PID, returns 0 when it answers
	local port=$1 dir=$2 pid i
	mkdir -p "$dir/$port"
	"$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --dir "$dir/$port" \
		--cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
		--cluster-node-timeout 5000 \
		--appendonly yes --appendfsync "$APPENDFSYNC" --save '' \
		--daemonize no --protected-mode yes --logfile "$dir/redis-$port.log" \
		</dev/null >/dev/null 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null || true
			return 1
		fi
		if is_ours "$port" "$pid"; then
			echo "$pid"
			return 0
		fi
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	return 1
}

stop_pids() { # comma-separated PIDs
	local pid i
	for pid in ${1//,/ }; do
		case $pid in
		'' | *[!0-9]* | 0) continue ;;
		esac
		kill -TERM "$pid" 2>/dev/null || continue
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
}

cmd_start() {
	local dir ports=() pids=() port pid tries i ok p
	command -v "$REDIS_SERVER" >/dev/null || die "$REDIS_SERVER not found"
	dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-redis.XXXXXX")
	for ((i = 0; i < 3; i++)); do
		for ((tries = 0; tries < 20; tries++)); do
			# The bus port (port + 10000) must be free and valid too.
			port=$((20000 + RANDOM % 30000))
			if pid=$(start_node "$port" "$dir"); then
				ports+=("$port")
				pids+=("$pid")
				break
			fi
		done
		if [ ${#ports[@]} -ne $((i + 1)) ]; then
			stop_pids "$(
				IFS=,
				echo "${pids[*]}"
			)"
			die "cannot start redis-server number $((i + 1)) (see $dir)"
		fi
	done
	local pidlist portlist
	pidlist=$(
		IFS=,
		echo "${pids[*]}"
	)
	portlist=$(
		IFS=,
		echo "${ports[*]}"
	)
	if ! redis-cli --cluster create "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" \
		"127.0.0.1:${ports[2]}" --cluster-replicas 0 --cluster-yes \
		>"$dir/create.log" 2>&1 </dev/null; then
		stop_pids "$pidlist"
		die "redis-cli --cluster create failed (see $dir/create.log)"
	fi
	for ((i = 0; i < 200; i++)); do
		ok=1
		for p in "${ports[@]}"; do
			redis-cli -h 127.0.0.1 -p "$p" CLUSTER INFO 2>/dev/null |
				grep -q '^cluster_state:ok' || ok=0
		done
		if [ $ok -eq 1 ]; then
			echo "$portlist $pidlist $dir"
			return 0
		fi
		sleep 0.05
	done
	stop_pids "$pidlist"
	die "the cluster did not reach cluster_state:ok within 10 s (see $dir)"
}

cmd_stop() {
	local list=${1:?stop needs the PIDs} dir=${2:-}
	stop_pids "$list"
	if [ -n "$dir" ]; then
		case $dir in
		*/cairn-redis.*) rm -rf -- "$dir" ;;
		*) die "refusing to remove $dir: not made by this script" ;;
		esac
	fi
}

case ${1:-} in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
*) die "usage: $0 start | stop PID1,PID2,PID3 [DIR]" ;;
esac
