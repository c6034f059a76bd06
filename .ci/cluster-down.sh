#!/usr/bin/env bash
# Stop what .ci/cluster-up.sh started: cancel leftover jobs, then stop slurmd, slurmctld and
# (if cluster-up started it) munged, each by its pid file. Idempotent; never kills by name.
set -uo pipefail

DIR="${TASKPROC_CLUSTER_DIR:-/tmp/taskproc-slurm}"
export SLURM_CONF="$DIR/etc/slurm.conf"

# Whether process $1 is still the daemon a pid file named (pids are reused after a reboot).
is_daemon() {
    local cmdline
    # (2>/dev/null before the <: redirections apply in order, and a gone pid has no cmdline)
    cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
    [[ "$cmdline" == *slurmd* || "$cmdline" == *slurmctld* || "$cmdline" == *munged* ]]
}

# Stop the daemons whose pid files are given: SIGTERM to all at once (a slurmd takes about 2 s
# to stop), wait up to 10 s, then SIGKILL what is left. Pid files are removed.
stop() {
    local pidfile pid pids=()
    for pidfile in "$@"; do
        [[ -f "$pidfile" ]] || continue
        pid="$(cat "$pidfile")"
        if [[ "$pid" =~ ^[0-9]+$ ]] && is_daemon "$pid"; then
            kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        fi
        rm -f "$pidfile"
    done
    for _ in $(seq 1 100); do
        local left=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
        pids=("${left[@]}")
        [[ ${#pids[@]} == 0 ]] && return 0
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null
}

if [[ -f "$DIR/run/slurmctld.pid" ]] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null; then
    timeout 10 scancel --quiet --full "--user=$(id -un)" 2>/dev/null || true
fi
shopt -s nullglob
daemons=("$DIR"/run/slurmd-*.pid "$DIR/run/slurmctld.pid")
if [[ -z "${TASKPROC_KEEP_MUNGE:-}" && -f "$DIR/run/munged.ours" ]]; then
    daemons+=(/run/munge/munged.pid)
    rm -f "$DIR/run/munged.ours"
fi
stop "${daemons[@]}"
echo "cluster-down: stopped" >&2
