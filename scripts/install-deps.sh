#!/usr/bin/env bash
# Installs what cmkdb's tests need on a fresh Debian machine with Go:
# Go modules (pinned in go.mod). Idempotent: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go modules"
go mod download
