#!/usr/bin/env bash
# Fuzzes each target for SECONDS: tests/fuzz/run.sh SECONDS [TARGET...]
#
# TARGET is wire, lines or config (default: all three, one after another).
# Builds build-fuzz with clang and -Dfuzzers=true when needed (FUZZ_BUILD
# names another directory).  Each target starts from a copy of its seed
# corpus, tests/fuzz/corpus/TARGET, in a scratch directory (FUZZ_WORK, or a
# new one under /tmp), so new inputs never land in the committed corpus;
# crash, leak, timeout and oom files go to the same scratch directory.
# Prints the executions of each target and any crash file, and exits 1 when
# a target found one.  Extra libFuzzer flags may be given in FUZZ_FLAGS.
#
# A crash file replays with build-fuzz/tests/fuzz/fuzz_TARGET FILE; to keep
# one as a regression, copy it into tests/fuzz/corpus/TARGET/, where the
# normal unit tests replay it.
set -euo pipefail
cd "$(dirname "$0")/../.."

usage() {
	echo "usage: tests/fuzz/run.sh SECONDS [wire|lines|config]..." >&2
	exit 2
}
[ $# -ge 1 ] || usage
secs=$1
shift
case $secs in '' | *[!0-9]*) usage ;; esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire lines config)
for t in "${targets[@]}"; do
	case $t in wire | lines | config) ;; *) usage ;; esac
done

build=${FUZZ_BUILD:-build-fuzz}
if [ ! -f "$build/build.ninja" ]; then
	CC=clang meson setup "$build" -Dfuzzers=true >/dev/null
elif ! grep -q "fuzz_wire" "$build/build.ninja"; then
	meson configure "$build" -Dfuzzers=true
fi
ninja -C "$build" "${targets[@]/#/tests/fuzz/fuzz_}" >/dev/null

work=${FUZZ_WORK:-$(mktemp -d /tmp/odofs-fuzz.XXXXXX)}
supp="$PWD/tests/fuzz/lsan.supp"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$supp:print_suppressions=0}

echo "fuzzing ${targets[*]} for $secs s each in $work"
found=0
for t in "${targets[@]}"; do
	dir="$work/$t"
	mkdir -p "$dir/corpus"
	cp -n tests/fuzz/corpus/"$t"/* "$dir/corpus/" 2>/dev/null || true
	seeds=$(find "$dir/corpus" -type f | wc -l)
	rc=0
	# shellcheck disable=SC2086
	"$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix="$dir/" ${FUZZ_FLAGS:-} "$dir/corpus" \
	    >"$dir/log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" |
	    tail -1)
	now=$(find "$dir/corpus" -type f | wc -l)
	crashes=$(find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o \
	    -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' -o \
	    -name 'slow-unit-*' \) | sort)
	printf '%-7s %s executions in %s s, corpus %s -> %s inputs\n' "$t" \
	    "${execs:-?}" "$secs" "$seeds" "$now"
	if [ -n "$crashes" ] || [ "$rc" -ne 0 ]; then
		found=1
		echo "$t: libFuzzer exited $rc; log: $dir/log"
		for c in $crashes; do
			echo "  $c"
		done
		grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_[a-z]+: )' "$dir/log" |
		    head -5 | sed 's/^/  /'
	fi
done
[ $found -eq 0 ] && echo "no crashes"
exit $found
