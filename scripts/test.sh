#!/usr/bin/env bash
# Runs the whole cmkdb test suite: installs what the tests need (idempotent),
# vets, runs every test with the race detector, then gives each fuzz target
# a short run. This is the README's test command and what CI runs.
#
#   scripts/test.sh               every phase: deps vet test fuzz
#   scripts/test.sh vet fuzz      only the phases named
#
# Every phase and every fuzz target runs even when an earlier one failed;
# the failures are listed at the end with a per-phase timing summary, and
# the exit status is non-zero if anything failed.
#
# Environment:
#   CMKDB_FUZZTIME              fuzzing time per target (default 10s)
#   CMKDB_FUZZMINIMIZETIME      time spent minimizing each new input
#                               (default 2s)
#   CMKDB_TEST_TIMEOUT_SCALE    multiplies the tests' own deadlines on a slow
#                               machine (default 1; see e2e/e2etest.Scale)
set -uo pipefail
cd "$(dirname "$0")/.."

phases=("$@")
[ "${#phases[@]}" -eq 0 ] && phases=(deps vet test fuzz)
for p in "${phases[@]}"; do
	case "$p" in
	deps | vet | test | fuzz) ;;
	*)
		echo "test.sh: unknown phase $p (deps, vet, test, fuzz)" >&2
		exit 2
		;;
	esac
done
want() {
	local p
	for p in "${phases[@]}"; do [ "$p" = "$1" ] && return 0; done
	return 1
}

failures=()
timings=()
suite_start=$SECONDS

# timed NAME CMD...: runs CMD, records its duration and, if it fails, NAME.
timed() {
	local name="$1" start=$SECONDS rc=0
	shift
	"$@" || rc=$?
	timings+=("$(printf '%-44s %5ds  %s' "$name" $((SECONDS - start)) "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")")
	[ $rc -ne 0 ] && failures+=("$name")
	return $rc
}

if want deps; then
	echo "== install dependencies"
	# Nothing else can run without them.
	timed "deps" scripts/install-deps.sh || {
		echo "test.sh: installing the dependencies failed" >&2
		exit 1
	}
fi

if want vet; then
	echo "== go vet"
	timed "vet" go vet ./...
fi

if want test; then
	echo "== go test"
	# ./... includes ./e2e: it builds cmkdb (with -race too), runs `cmkdb up`
	# as a child process and drives it with mongosh and the Node driver,
	# which install-deps.sh has just installed into e2e/node, and with the
	# Go driver.
	timed "test (go test -race ./...)" go test -race -count=1 -timeout 45m ./...
fi

# fuzz_targets prints "./pkg Target" for every fuzz target in the module.
fuzz_targets() {
	grep -rl --include='*_test.go' --exclude-dir=node_modules --exclude-dir=.git '^func Fuzz' . |
		while read -r f; do
			grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r t; do
				echo "$(dirname "$f") $t"
			done
		done | sort -u
}

# Go 1.26's fuzzing coordinator can fail a run that found nothing with a bare
# "context deadline exceeded" when -fuzztime expires (golang/go#75804, fixed
# in Go 1.27): a race that a loaded machine makes likelier. A real finding
# always prints "Failing input written to" (or names a failing seed), so a
# bare deadline is retried once and, if it recurs, the target's corpus is
# replayed without fuzzing: a clean replay is reported as a warning.
coordinator_race() {
	grep -q '^[[:space:]]*context deadline exceeded$' "$1" &&
		! grep -q -e 'Failing input written to' -e 'failure while testing seed corpus entry' -e '^panic: ' "$1"
}

fuzz_one() {
	local pkg="$1" target="$2" log attempt
	log="$(mktemp)"
	for attempt in 1 2; do
		# -timeout bounds a target that hangs: fuzzing itself stops after
		# $fuzztime, the rest is building and the baseline coverage run.
		# Minimizing every input that finds new coverage takes up to a
		# minute each by default (the fuzzer executes nothing new
		# meanwhile: "0/sec"); in a short run that would be the whole
		# budget, so it is bounded. A crasher is still written, perhaps
		# less minimized.
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" -fuzzminimizetime="$minimizetime" -timeout=10m "$pkg" 2>&1 | tee "$log"
		if [ "${PIPESTATUS[0]}" -eq 0 ]; then
			rm -f "$log"
			return 0
		fi
		coordinator_race "$log" || {
			rm -f "$log"
			return 1
		}
		echo "fuzz: $target: bare 'context deadline exceeded' with no failing input (Go fuzzing coordinator race, golang/go#75804); attempt $attempt"
	done
	rm -f "$log"
	echo "fuzz: $target: replaying its corpus without fuzzing"
	if go test -count=1 -run="^${target}\$" "$pkg"; then
		warnings+=("$target: fuzzing hit the coordinator deadline race twice (golang/go#75804); corpus replay clean")
		return 0
	fi
	return 1
}

warnings=()
if want fuzz; then
	echo "== fuzz (short runs)"
	fuzztime="${CMKDB_FUZZTIME:-10s}"
	minimizetime="${CMKDB_FUZZMINIMIZETIME:-2s}"
	fuzz_start=$SECONDS
	while read -r pkg target; do
		[ -z "$pkg" ] && continue
		echo "-- $target ($pkg)"
		timed "fuzz $target" fuzz_one "$pkg" "$target"
	done < <(fuzz_targets)
	timings+=("$(printf '%-44s %5ds' "fuzz (all targets)" $((SECONDS - fuzz_start)))")
fi

echo
echo "== timing summary"
printf '%s\n' "${timings[@]}"
printf '%-44s %5ds\n' "total" $((SECONDS - suite_start))
if [ "${#warnings[@]}" -gt 0 ]; then
	echo
	echo "== warnings"
	printf '%s\n' "${warnings[@]}"
fi
if [ "${#failures[@]}" -gt 0 ]; then
	echo
	echo "== FAILED: ${#failures[@]}"
	printf '  %s\n' "${failures[@]}"
	exit 1
fi
echo
echo "== all passed"
