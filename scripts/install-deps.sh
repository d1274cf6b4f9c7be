#!/usr/bin/env bash
# Installs what cmkdb's tests need on a fresh Debian machine with Go, Node 20
# and npm: Go modules (pinned in go.mod); the real KMS peers from Debian
# (SoftHSM2 for PKCS#11, PyKMIP for KMIP); and the real MongoDB clients the
# end-to-end tests drive — mongosh and the Node driver, pinned to exact
# versions in e2e/node/package.json and package-lock.json.
# Idempotent: it skips what is already there. It downloads nothing but Go
# modules and npm packages (install scripts are not run, so no npm package
# fetches binaries from elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== go modules"
go mod download

echo "== Debian packages: softhsm2 (a real PKCS#11 HSM) and python3-pykmip (a real KMIP server)"
need=()
command -v softhsm2-util >/dev/null || need+=(softhsm2)
[ -x /usr/bin/pykmip-server ] || need+=(python3-pykmip)
if [ "${#need[@]}" -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "softhsm2 $(dpkg-query -W -f='${Version}' softhsm2), python3-pykmip $(dpkg-query -W -f='${Version}' python3-pykmip)"

echo "== npm: mongosh and the Node driver (e2e/node)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "install-deps: node and npm are required (Node 20 or newer)" >&2
	exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
	echo "install-deps: Node 20 or newer is required (found $(node --version))" >&2
	exit 1
fi

nodedir=e2e/node
stamp="$nodedir/node_modules/.cmkdb-install-stamp"
want="$(cat "$nodedir/package.json" "$nodedir/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1) node-$node_major"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
	[ -x "$nodedir/node_modules/.bin/mongosh" ] && [ -f "$nodedir/node_modules/mongodb/package.json" ]; then
	echo "up to date"
else
	npm_flags=(--no-audit --no-fund --ignore-scripts --loglevel=error)
	if [ -f "$nodedir/package-lock.json" ]; then
		(cd "$nodedir" && npm ci "${npm_flags[@]}")
	else
		# First run without a lockfile: resolve the pinned versions and write it.
		(cd "$nodedir" && npm install "${npm_flags[@]}")
		want="$(cat "$nodedir/package.json" "$nodedir/package-lock.json" | sha256sum | cut -d' ' -f1) node-$node_major"
	fi
	printf '%s\n' "$want" >"$stamp"
fi
"$nodedir/node_modules/.bin/mongosh" --version | sed 's/^/mongosh /'
node -p 'require("./'"$nodedir"'/node_modules/mongodb/package.json").version' | sed 's/^/mongodb (Node driver) /'
