#!/usr/bin/env bash
# Stop what .ci/cluster-up.sh started: cancel leftover jobs, then stop slurmd, slurmctld and
# (if cluster-up started it) munged, each by its pid file. Idempotent; never kills by name.
set -uo pipefail

DIR="${TASKPROC_CLUSTER_DIR:-/tmp/taskproc-cluster}"
export SLURM_CONF="$DIR/etc/slurm.conf"

stop() {  # stop PIDFILE: SIGTERM, wait up to 5 s, then SIGKILL
    local pidfile=$1 pid
    [[ -f "$pidfile" ]] || return 0
    pid="$(cat "$pidfile")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

if [[ -f "$DIR/run/slurmctld.pid" ]] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null; then
    timeout 10 scancel --quiet --full "--user=$(id -un)" 2>/dev/null || true
fi
for pidfile in "$DIR"/run/slurmd-*.pid; do stop "$pidfile"; done
stop "$DIR/run/slurmctld.pid"
if [[ -z "${TASKPROC_KEEP_MUNGE:-}" && -f "$DIR/run/munged.ours" ]]; then
    stop /run/munge/munged.pid
    rm -f "$DIR/run/munged.ours"
fi
echo "cluster-down: stopped" >&2
