#!/usr/bin/env bash
# Stop what .ci/s3-up.sh started (by the pid in its env file, never by name) and remove its
# data folder, its socket files in /tmp and the env file. Idempotent.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python3}" tests/s3server.py down
