#!/usr/bin/env bash
# Install and start the cluster back ends that tests/cluster/ runs against, on loopback only:
#   - a one-host Slurm cluster (munge, slurmctld, virtual nodes c[1-4] in partition `cpu`,
#     g[1-2] with one fake GPU each in partition `gpu`), all daemons run as root from Debian
#     packages with no systemd;
#   - dask.distributed, pip-installed into the current Python environment.
# Then writes $TASKPROC_CLUSTER_ENV (default /tmp/taskproc-cluster.env), which the tests read.
#
# Idempotent: a second run finds the cluster up and only checks it. Stop it with
# .ci/cluster-down.sh (daemons are stopped by pid file). Needs root and Debian's apt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${TASKPROC_CLUSTER_DIR:-/tmp/taskproc-slurm}"
ENV_FILE="${TASKPROC_CLUSTER_ENV:-/tmp/taskproc-cluster.env}"
PYTHON="${PYTHON:-python3}"
N_CPU_NODES="${TASKPROC_SLURM_CPU_NODES:-4}"
CPUS_PER_NODE="${TASKPROC_SLURM_CPUS_PER_NODE:-4}"
N_GPU_NODES=2
N_PORTS=$((2 + N_CPU_NODES + N_GPU_NODES))  # slurmctld, the default slurmd port, one per node
FIRST_PORT=6817  # Slurm's own default; where they are taken (another Slurm), the next free ones
CONF="$DIR/etc/slurm.conf"
START=$(date +%s.%N)

log() { echo "cluster-up: $*" >&2; }
alive() {  # alive PIDFILE: the daemon it names is running (not a process that reused its pid)
    local pid
    pid="$(cat "$1" 2>/dev/null)" && [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # (2>/dev/null before the <: redirections apply in order, and a gone pid has no cmdline)
    [[ "$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" =~ (slurmd|slurmctld|munged) ]]
}
free_ports() {  # free_ports N FROM: the first of N consecutive TCP ports, from FROM on, all free
    "$PYTHON" - "$1" "$2" <<'PY'
import socket
import sys

n, port = int(sys.argv[1]), int(sys.argv[2])


def taken(p: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", p))  # every address, as the daemons listen
        except OSError:
            return True
    return False


while port + n <= 65536:
    busy = [p for p in range(port, port + n) if taken(p)]
    if not busy:
        sys.exit(print(port))
    port = busy[-1] + 1
sys.exit(1)
PY
}
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" \
    "$START" "$(date +%s.%N)"; }

# ---- packages ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v srun >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
            >"/tmp/taskproc-cluster-apt.log" 2>&1; then
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
            >"/tmp/taskproc-cluster-apt.log" 2>&1 \
            || { cat /tmp/taskproc-cluster-apt.log >&2; exit 1; }
    fi
fi
if ! "$PYTHON" -c "import distributed" 2>/dev/null; then
    log "installing dask[distributed] into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
    "$PYTHON" -m pip install -q --disable-pip-version-check "dask[distributed]>=2023.1" \
        >/tmp/taskproc-cluster-pip.log 2>&1 || { cat /tmp/taskproc-cluster-pip.log >&2; exit 1; }
fi

# ---- munge ------------------------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 700 /etc/munge
    runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
fi
install -d -o munge -g munge -m 755 /run/munge
mkdir -p "$DIR/run"
if ! alive /run/munge/munged.pid; then
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged
    touch "$DIR/run/munged.ours"   # cluster-down stops munged only if we started it
fi

# ---- ports ------------------------------------------------------------------------------------
# A cluster of ours that is running keeps its ports; otherwise the first block of free ports from
# Slurm's default on (another Slurm on this host may hold 6817 and up).
PORT0=""
if alive "$DIR/run/slurmctld.pid" && [[ -f "$CONF" ]]; then
    PORT0="$(sed -n 's/^SlurmctldPort=\([0-9]*\)$/\1/p' "$CONF")"
fi
if [[ -z "$PORT0" ]]; then
    PORT0="$(free_ports "$N_PORTS" "$FIRST_PORT")" \
        || { log "no $N_PORTS free TCP ports in a row from $FIRST_PORT on"; exit 1; }
    if [[ "$PORT0" != "$FIRST_PORT" ]]; then
        log "ports $FIRST_PORT-$((FIRST_PORT + N_PORTS - 1)) are in use (another Slurm on this" \
            "host?): this cluster uses $PORT0-$((PORT0 + N_PORTS - 1))"
    fi
fi
CTLD_PORT=$PORT0
SLURMD_PORT=$((PORT0 + 1))
CPU_PORT0=$((PORT0 + 2))
GPU_PORT0=$((CPU_PORT0 + N_CPU_NODES))

# ---- Slurm configuration ----------------------------------------------------------------------
HOST="$(hostname -s)"
cpu_nodes="c[1-$N_CPU_NODES]"
gpu_nodes="g[1-$N_GPU_NODES]"
cpu_ports="[$CPU_PORT0-$((CPU_PORT0 + N_CPU_NODES - 1))]"
gpu_ports="[$GPU_PORT0-$((GPU_PORT0 + N_GPU_NODES - 1))]"
mkdir -p "$DIR/etc" "$DIR/state" "$DIR/log" "$DIR/dev"
sed -e "s|@HOST@|$HOST|g" -e "s|@DIR@|$DIR|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
    -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@CPU_NODES@|$cpu_nodes|g" \
    -e "s|@GPU_NODES@|$gpu_nodes|g" -e "s|@CPU_PORTS@|$cpu_ports|g" \
    -e "s|@GPU_PORTS@|$gpu_ports|g" -e "s|@CPUS@|$CPUS_PER_NODE|g" \
    "$HERE/cluster/slurm.conf.in" >"$CONF.new"
# Fake GPUs: character devices aliasing /dev/null (major 1, minor 3), one per gpu node.
: >"$DIR/etc/gres.conf.new"
for i in $(seq 1 "$N_GPU_NODES"); do
    dev="$DIR/dev/nvidia$((i - 1))"
    [[ -c "$dev" ]] || { rm -f "$dev"; mknod -m 666 "$dev" c 1 3; }
    echo "NodeName=g$i Name=gpu File=$dev" >>"$DIR/etc/gres.conf.new"
done
changed=0
for f in "$CONF" "$DIR/etc/gres.conf"; do
    if ! cmp -s "$f.new" "$f"; then changed=1; mv "$f.new" "$f"; else rm -f "$f.new"; fi
done
export SLURM_CONF="$CONF"

nodes=()
for i in $(seq 1 "$N_CPU_NODES"); do nodes+=("c$i"); done
for i in $(seq 1 "$N_GPU_NODES"); do nodes+=("g$i"); done

all_up() {
    alive "$DIR/run/slurmctld.pid" || return 1
    local n
    for n in "${nodes[@]}"; do alive "$DIR/run/slurmd-$n.pid" || return 1; done
    # every node idle or allocated (no down/drain/unknown)
    local states
    states="$(timeout 10 sinfo -h -N -o '%N %T' 2>/dev/null | sort -u)" || return 1
    [[ "$(wc -l <<<"$states")" -ge "${#nodes[@]}" ]] || return 1
    ! grep -vE ' (idle|allocated|mixed|completing)$' <<<"$states" >/dev/null
}

if [[ $changed == 0 ]] && all_up; then
    log "already running"
else
    # Stop whatever is left of an earlier run (stale pid files, a changed config), then start.
    TASKPROC_KEEP_MUNGE=1 "$HERE/cluster-down.sh" >/dev/null 2>&1 || true
    mkdir -p "$DIR/run"
    rm -rf "$DIR/state" && mkdir -p "$DIR/state"
    for n in "${nodes[@]}"; do rm -rf "$DIR/spool/$n"; mkdir -p "$DIR/spool/$n"; done
    slurmctld -c -f "$CONF"
    for n in "${nodes[@]}"; do slurmd -N "$n" -f "$CONF"; done
    for _ in $(seq 1 150); do all_up && break; sleep 0.2; done
    if ! all_up; then
        log "the cluster did not come up; sinfo and daemon logs follow"
        sinfo -N -l >&2 || true
        tail -n 20 "$DIR"/log/*.log >&2 || true
        log "the cluster did not come up (why: above); TASKPROC_NO_CLUSTER=1 bash .ci/run runs" \
            "the tests without it (the cluster tests skip)"
        exit 1
    fi
fi

cat >"$ENV_FILE.new" <<EOF
# Written by .ci/cluster-up.sh; read by tests/cluster/ and benchmarks/bench_cluster.py.
export SLURM_CONF=$CONF
export TASKPROC_CLUSTER_DIR=$DIR
export TASKPROC_SLURM_CPU_PARTITION=cpu
export TASKPROC_SLURM_GPU_PARTITION=gpu
export TASKPROC_SLURM_CPU_SLOTS=$((N_CPU_NODES * CPUS_PER_NODE))
export TASKPROC_SLURM_GPUS=$N_GPU_NODES
EOF
mv "$ENV_FILE.new" "$ENV_FILE"
log "Slurm up ($(sinfo -h -o '%P:%D' | tr '\n' ' ')), dask $("$PYTHON" -c \
    'import distributed; print(distributed.__version__)'); env in $ENV_FILE; took $(elapsed) s"
