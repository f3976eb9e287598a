#!/usr/bin/env bash
# make check's LOG_DRIVER: runs one suite, keeps its whole output in its
# .log, and writes one :test-result: line per case into its .trs, so the
# totals in test-suite.log (and ./dev test's last line) count cases, not
# programs. Called by automake's harness as
#
#   suite-driver.sh --test-name NAME --log-file F.log --trs-file F.trs \
#       [--color-tests yes|no] [--expect-failure yes|no] \
#       [--enable-hard-errors yes|no] -- PROGRAM [ARGS...]
#
# What counts, from the suite's output:
# - A Check suite's last "N%: Checks: N, Failures: F, Errors: E" line. Check
#   has no skip: a case that does not apply prints a line
#       SKIP <suite>: <test name>[<backend>]: <reason>
#   and returns; each distinct such case is counted skipped and taken off
#   Check's passes.
# - Any other suite's last "<name>: N passed, N failed, N skipped" line
#   (tests/integration/run.py, tests/conformance.py).
# A suite that prints neither (it crashed, or was killed) counts as one
# error; a non-zero exit status with no failure counted adds one; exit 77
# with no summary is one skip, as automake's own driver has it.
set -uo pipefail

usage() {
	echo "usage: suite-driver.sh --test-name NAME --log-file FILE --trs-file FILE" \
		"[--color-tests yes|no] [--expect-failure yes|no]" \
		"[--enable-hard-errors yes|no] -- PROGRAM [ARGS...]" >&2
	exit 2
}

name= log= trs= color=no
while [ $# -gt 0 ]; do
	case $1 in
	--test-name) name=$2 ;;
	--log-file) log=$2 ;;
	--trs-file) trs=$2 ;;
	--color-tests) color=$2 ;;
	--expect-failure | --enable-hard-errors | --collect-skipped-logs) ;;
	--) shift && break ;;
	*) usage ;;
	esac
	shift 2 || usage
done
[ -n "$name" ] && [ -n "$log" ] && [ -n "$trs" ] && [ $# -gt 0 ] || usage

# A VPATH build has no tests/integration/ of its own until now.
mkdir -p "$(dirname "$log")" "$(dirname "$trs")" || exit 99
# In a subshell that waits for it, so a crash's "Segmentation fault" lands
# in the log too.
("$@"; exit $?) >"$log" 2>&1
rc=$?

passed=0 failed=0 skipped=0 errors=0
why=
check=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" | tail -n 1)
plain=$(grep -E '^[a-z]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1)
if [ -n "$check" ]; then
	read -r n f e < <(sed -E 's/.*Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2 \3/' \
		<<<"$check")
	# One per case: a forked test's buffered output can repeat a line.
	skipped=$(grep -E '^SKIP [^ :]+: [^ :]+: ' "$log" |
		sed -E 's/^(SKIP [^ :]+: [^ :]+):.*/\1/' | sort -u | wc -l)
	failed=$f
	errors=$e
	passed=$((n - f - e - skipped))
	if [ "$passed" -lt 0 ]; then
		why="more SKIP lines than passing cases"
		passed=0
		errors=$((errors + 1))
	fi
elif [ -n "$plain" ]; then
	read -r passed failed skipped < <(sed -E \
		's/^[a-z]+: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/' <<<"$plain")
elif [ "$rc" -eq 77 ]; then
	skipped=1
	why="skipped as a whole (exit 77)"
else
	errors=1
	why="no summary line (exit status $rc)"
fi
if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ $((failed + errors)) -eq 0 ]; then
	errors=1
	why="exit status $rc, but no case reported failing"
fi

if [ $((failed + errors)) -gt 0 ]; then
	result=FAIL
	[ "$failed" -eq 0 ] && result=ERROR
elif [ "$passed" -eq 0 ] && [ "$skipped" -gt 0 ]; then
	result=SKIP
else
	result=PASS
fi

{
	for ((i = 0; i < passed; i++)); do echo ":test-result: PASS"; done
	for ((i = 0; i < skipped; i++)); do echo ":test-result: SKIP"; done
	for ((i = 0; i < failed; i++)); do echo ":test-result: FAIL"; done
	for ((i = 0; i < errors; i++)); do echo ":test-result: ERROR"; done
	echo ":global-test-result: $result"
	if [ "$result" = PASS ] || [ "$result" = SKIP ]; then
		echo ":recheck: no"
		echo ":copy-in-global-log: no"
	else
		echo ":recheck: yes"
		echo ":copy-in-global-log: yes"
	fi
} >"$trs"

# The console: every failing and skipped case by name, then the suite.
grep -E '^(FAIL|SKIP) |:[FE]:' "$log" | head -n 100 | sed 's/^/  /'
[ -n "$why" ] && echo "$name: $why (see $log)" >>"$log"
col= std=
if [ "$color" = yes ]; then
	std=$'\e[m'
	case $result in
	PASS) col=$'\e[0;32m' ;;
	SKIP) col=$'\e[1;34m' ;;
	*) col=$'\e[0;31m' ;;
	esac
fi
echo "${col}${result}${std}: $name: $passed passed, $((failed + errors)) failed, $skipped skipped${why:+ ($why)}"
exit 0
