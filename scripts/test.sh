#!/usr/bin/env bash
# Runs the whole cmkdb test suite: installs what the tests need (idempotent),
# vets, runs every test with the race detector, then gives each fuzz target
# a short run. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

echo "== go vet"
go vet -composites=false ./...

echo "== go test"
# ./... includes ./e2e: it builds cmkdb (with -race too), runs `cmkdb up` as a
# child process and drives it with mongosh and the Node driver, which
# install-deps.sh has just installed into e2e/node, and with the Go driver.
go test -race -count=1 -timeout 45m ./...

echo "== fuzz (short runs)"
fuzztime="${CMKDB_FUZZTIME:-10s}"
# package:target pairs; each target gets its own short run.
while read -r pkg target; do
	[ -z "$pkg" ] && continue
	go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"
done < <(grep -rl --include='*_test.go' '^func Fuzz' internal | while read -r f; do
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r t; do
		echo "./$(dirname "$f") $t"
	done
done | sort -u)
