#!/bin/sh
# Runs inside the Debian root that tests/package-test.sh built, after the
# cairn package was installed: the broker from the installed files, as
# root (it drops to the cairn user), and a publish/subscribe round trip
# with mosquitto_pub and mosquitto_sub on 127.0.0.1:PORT. Every line it
# prints starts with "roundtrip:"; any failure exits non-zero.
set -eu
port=$1
conf=/etc/cairn/cairn.conf
say() { echo "roundtrip: $*"; }
fail() {
	say "FAIL: $*"
	[ -f /tmp/cairn.log ] && sed 's/^/roundtrip: log: /' /tmp/cairn.log
	[ -n "${pid:-}" ] && kill -KILL "$pid" 2>/dev/null
	exit 1
}

getent passwd cairn >/dev/null || fail "no cairn user after the install"
[ "$(stat -c %U /var/lib/cairn)" = cairn ] || fail "/var/lib/cairn does not belong to cairn"
dpkg-query -W -f='${Conffiles}\n' cairn | grep -q /etc/cairn/cairn.conf ||
	fail "/etc/cairn/cairn.conf is not a conffile"
[ -f /lib/systemd/system/cairn.service ] || fail "no unit installed"
/usr/sbin/cairn -t -c "$conf" >/dev/null || fail "cairn -t rejects the packaged config"
# The test's own port, beside the packaged defaults.
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >>"$conf"

/usr/sbin/cairn -c "$conf" >/tmp/cairn.log 2>&1 &
pid=$!
i=0
until mosquitto_pub -h 127.0.0.1 -p "$port" -t probe -m x 2>/dev/null; do
	i=$((i + 1))
	[ "$i" -lt 100 ] || fail "the broker does not serve on port $port"
	kill -0 "$pid" 2>/dev/null || fail "the broker exited at start-up"
	sleep 0.1
done
uid=$(awk '/^Uid:/ {print $2 $3 $4 $5}' "/proc/$pid/status")
cairn_uid=$(id -u cairn)
[ "$uid" = "$cairn_uid$cairn_uid$cairn_uid$cairn_uid" ] ||
	fail "the broker runs as uid $uid, not cairn ($cairn_uid)"
say "the broker runs as cairn (uid $cairn_uid)"

# A subscriber, then a QoS 1 message, and a retained one read by a second
# subscriber.
mosquitto_sub -h 127.0.0.1 -p "$port" -t test/rt -q 1 -C 1 -W 10 >/tmp/got &
sub=$!
i=0
while :; do
	mosquitto_pub -h 127.0.0.1 -p "$port" -t test/rt -q 1 -m "hello from the package"
	sleep 0.2
	[ -s /tmp/got ] && break
	i=$((i + 1))
	[ "$i" -lt 25 ] || fail "the subscriber got nothing"
done
wait "$sub" || fail "mosquitto_sub failed"
[ "$(cat /tmp/got)" = "hello from the package" ] || fail "got '$(cat /tmp/got)'"
mosquitto_pub -h 127.0.0.1 -p "$port" -t test/kept -q 1 -r -m kept
got=$(mosquitto_sub -h 127.0.0.1 -p "$port" -t test/kept -C 1 -W 5) || fail "no retained message"
[ "$got" = kept ] || fail "retained: got '$got'"
say "publish/subscribe round trip and a retained message: ok"

kill -TERM "$pid"
wait "$pid" || fail "the broker exited with status $? after SIGTERM"
pid=
owner=$(stat -c %U /var/lib/cairn/cairn.db) || fail "no store in /var/lib/cairn"
[ "$owner" = cairn ] || fail "the store belongs to $owner, not cairn"
say "stopped cleanly; the store /var/lib/cairn/cairn.db belongs to cairn"
