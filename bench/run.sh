#!/bin/sh
# `make bench`: direct, Kamailio and sipguard paths in one run; `bench/run.sh --quick` for a
# smoke run. Options are passed to bench/bench.py (see `bench/run.sh --help`).
set -eu
cd "$(dirname "$0")/.."
for tool in sipp tcpdump kamailio; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get install -y -q sip-tester tcpdump kamailio kamailio-sqlite-modules >/dev/null
    else
      echo "bench: $tool is missing (apt-get install sip-tester tcpdump kamailio kamailio-sqlite-modules)" >&2
      exit 2
    fi
  fi
done
if [ ! -e /usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so ] && [ "$(id -u)" = 0 ]; then
  apt-get install -y -q kamailio-sqlite-modules >/dev/null || true
fi
exec .venv/bin/python bench/bench.py "$@"
