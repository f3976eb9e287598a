#!/usr/bin/env bash
# Runs one test program with a private three-master Redis Cluster
# (tests/redis-cluster.sh) for the length of its run, as with-redis.sh does
# with one redis-server:
#
#   tests/with-redis-cluster.sh PROGRAM [ARGS...]
#
# The program sees CAIRN_REDIS_CLUSTER=1, CAIRN_REDIS_CLUSTER_PORTS (the
# ports, comma-separated: the three masters, then any replicas) and
# CAIRN_REDIS_PORT (the first of them). CAIRN_REDIS_CLUSTER_REPLICAS=R in
# the environment gives each master R replicas (redis-cluster.sh); the
# program sees it too (0 when unset).
# The cluster is stopped by PID, and its directory removed, once the
# program has exited. The program's exit status is this script's; 99 (a
# hard error to automake's test driver) when the cluster cannot start.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || {
	echo "usage: $0 PROGRAM [ARGS...]" >&2
	exit 2
}

if ! read -r ports pids dir < <("$here/redis-cluster.sh" start); then
	echo "with-redis-cluster: cannot start a private Redis Cluster" >&2
	exit 99
fi
stop() {
	"$here/redis-cluster.sh" stop "$pids" "$dir" >/dev/null 2>&1 || true
}
trap stop EXIT
trap 'exit 130' INT TERM
export CAIRN_REDIS_CLUSTER=1
export CAIRN_REDIS_CLUSTER_REPLICAS=${CAIRN_REDIS_CLUSTER_REPLICAS:-0}
export CAIRN_REDIS_CLUSTER_PORTS=$ports
export CAIRN_REDIS_PORT=${ports%%,*}
"$@"
exit $?
