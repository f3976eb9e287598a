#!/usr/bin/env bash
# Start or stop a private three-master Redis Cluster for the tests: loopback
# only, one temporary directory, append-only files on, no RDB snapshots;
# no replicas unless asked for.
#
#   tests/redis-cluster.sh start
#       Starts three redis-server processes with --cluster-enabled yes on
#       free 127.0.0.1 ports (each also uses its port + 10000 for the
#       cluster bus), joins them with redis-cli --cluster create and prints
#       one line "P1,P2,P3 PID1,PID2,PID3 DIR" once every node reports
#       cluster_state:ok. With CAIRN_REDIS_CLUSTER_REPLICAS=R (0 to 2), R
#       more servers per master follow the masters: the line then lists
#       the three masters first, then the replicas (which master each
#       follows is redis-cli's choice: CLUSTER NODES tells), and comes
#       once every replica's link to its master is up
#       (INFO replication: master_link_status:up); the cluster's
#       node timeout is then 1000 ms, so that a failover takes two to three
#       seconds. DIR/START holds each node's command line (one a line,
#       port first) for a test that restarts a node it killed.
#       Environment: CAIRN_REDIS_APPENDFSYNC (default everysec),
#       REDIS_SERVER (default redis-server).
#   tests/redis-cluster.sh stop PID1,PID2,... [DIR]
#       Stops those servers (SIGTERM, then SIGKILL after 5 s) and, when DIR
#       is given, removes it.
set -euo pipefail

REDIS_SERVER=${REDIS_SERVER:-redis-server}
APPENDFSYNC=${CAIRN_REDIS_APPENDFSYNC:-everysec}
REPLICAS=${CAIRN_REDIS_CLUSTER_REPLICAS:-0}
case $REPLICAS in
0) NODE_TIMEOUT=5000 ;;
1 | 2) NODE_TIMEOUT=1000 ;;
*)
	echo "redis-cluster.sh: CAIRN_REDIS_CLUSTER_REPLICAS must be 0, 1 or 2" >&2
	exit 1
	;;
esac

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
	local args=(--port "$port" --bind 127.0.0.1 --dir "$dir/$port"
		--cluster-enabled yes --cluster-config-file "nodes-$port.conf"
		--cluster-node-timeout "$NODE_TIMEOUT"
		--appendonly yes --appendfsync "$APPENDFSYNC" --save ''
		--repl-diskless-sync-delay 0
		--daemonize no --protected-mode yes --logfile "$dir/redis-$port.log")
	mkdir -p "$dir/$port"
	"$REDIS_SERVER" "${args[@]}" </dev/null >/dev/null 2>&1 &
	pid=$!
	# A test that kills this node may start it again with this line.
	printf '%s %q' "$port" "$REDIS_SERVER" >>"$dir/START"
	printf ' %q' "${args[@]}" >>"$dir/START"
	printf '\n' >>"$dir/START"
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
	local total=$((3 * (1 + REPLICAS)))
	dir=$(mktemp -d "${TMPDIR:-/tmp}/cairn-redis.XXXXXX")
	for ((i = 0; i < total; i++)); do
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
	local addrs=()
	for p in "${ports[@]}"; do
		addrs+=("127.0.0.1:$p")
	done
	# redis-cli makes masters of the first three and replicas of the rest.
	if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas "$REPLICAS" \
		--cluster-yes >"$dir/create.log" 2>&1 </dev/null; then
		stop_pids "$pidlist"
		die "redis-cli --cluster create failed (see $dir/create.log)"
	fi
	for ((i = 0; i < 400; i++)); do
		ok=1
		for p in "${ports[@]}"; do
			redis-cli -h 127.0.0.1 -p "$p" CLUSTER INFO 2>/dev/null |
				grep -q '^cluster_state:ok' || ok=0
		done
		for p in "${ports[@]:3}"; do
			[ $ok -eq 1 ] || break
			redis-cli -h 127.0.0.1 -p "$p" INFO replication 2>/dev/null |
				grep -q '^master_link_status:up' || ok=0
		done
		if [ $ok -eq 1 ]; then
			echo "$portlist $pidlist $dir"
			return 0
		fi
		sleep 0.05
	done
	stop_pids "$pidlist"
	die "the cluster did not reach cluster_state:ok with every replica in sync within 20 s (see $dir)"
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
