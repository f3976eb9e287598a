#!/usr/bin/env bash
# The Debian package on a clean Debian root: mmdebstrap builds a minimal
# bookworm (apt variant, with mosquitto-clients) in a temp directory, the
# .deb is installed there with "apt-get install ./cairn_*.deb", and
# tests/package-roundtrip.sh runs inside: the broker started from the
# installed files as root (/usr/sbin/cairn -c /etc/cairn/cairn.conf, which
# drops to the cairn user) and a publish/subscribe round trip on a loopback
# port. The root is removed at the end, whatever happened. Needs root.
# Usage: tests/package-test.sh PATH/cairn_VERSION_ARCH.deb
# Ends with "package-test: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."

deb=${1:?usage: tests/package-test.sh PATH/cairn_VERSION_ARCH.deb}
[ -f "$deb" ] || {
	echo "package-test: no $deb" >&2
	exit 2
}
if [ "$(id -u)" -ne 0 ]; then
	echo "package-test: needs root (a chroot, and the broker's drop to cairn)"
	echo "package-test: 0 passed, 0 failed, 1 skipped"
	exit 0
fi
if ! command -v mmdebstrap >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >&2 ||
		{ apt-get update -q >&2 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >&2; }
fi

# A port free on the loopback interface, which the chroot shares.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
root=$work/root
cleanup() {
	rm -rf "$work"
}
trap cleanup EXIT
cp "$deb" "$work/"
debname=$(basename "$deb")
t0=$SECONDS
rc=0
# The hooks run with /proc, /sys and /dev mounted by mmdebstrap, which
# unmounts them again. timeout bounds the whole run (downloads included).
timeout 900 mmdebstrap --variant=apt --include=mosquitto-clients,ca-certificates \
	--customize-hook="copy-in $work/$debname /tmp" \
	--customize-hook="copy-in tests/package-roundtrip.sh /tmp" \
	--customize-hook="chroot \"\$1\" sh -c 'cd /tmp && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./$debname'" \
	--customize-hook="chroot \"\$1\" sh /tmp/package-roundtrip.sh $port" \
	bookworm "$root" >"$work/mmdebstrap.log" 2>&1 || rc=$?
grep -E '^(roundtrip|Setting up cairn|Unpacking cairn)' "$work/mmdebstrap.log" || true
if [ "$rc" -ne 0 ]; then
	tail -40 "$work/mmdebstrap.log"
	echo "package-test: FAIL (status $rc) after $((SECONDS - t0)) s"
	echo "package-test: 0 passed, 1 failed, 0 skipped"
	exit 1
fi
echo "package-test: PASS in $((SECONDS - t0)) s (the root built, the package installed, the round trip)"
echo "package-test: 1 passed, 0 failed, 0 skipped"
