#!/usr/bin/env bash
# Installs what the tests need when it is missing, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v faketime >/dev/null 2>&1 || need+=(faketime)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # certificates for the MQTT TLS test
# The compiled pass (make compiled): a C compiler and the interpreter's headers.
command -v gcc >/dev/null 2>&1 || need+=(gcc)
"${PYTHON:-python3}" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} with apt-get"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

make -s .venv/.installed

# The compiled build (`make compiled`, what the Docker image and the benchmark run) is made
# in the background at the lowest priority while the suite runs on the plain package.
mkdir -p build
nice -n 19 make -s compiled > build/compile.log 2>&1 &
compiling=$!
status=0
.venv/bin/python -m pytest "$@" || status=$?
if ! wait "$compiling"; then
  cat build/compile.log
  echo "make compiled failed" >&2
  exit 1
fi
[ "$status" -eq 0 ] || exit "$status"

# Then again on the compiled build: every module mypyc compiles, and the wire through it.
# (Given test paths, only those.)
# An absolute path: the end-to-end tests start `sipguard serve` in a directory of its own.
if [ $# -eq 0 ]; then
  set -- tests/sip tests/core tests/policy tests/rules tests/overload \
    tests/e2e/test_proxy_startup.py tests/e2e/test_proxy_basic.py
fi
echo "== again on the compiled call path (build/compiled)"
exec env SIPGUARD_TEST_CORE=compiled PYTHONPATH="$PWD/build/compiled" .venv/bin/python -m pytest "$@"
