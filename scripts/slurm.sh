#!/usr/bin/env bash
# A private single-node SLURM cluster on this machine, for trying and testing the cluster
# path (hydra/launcher=slurm, DDP over SLURM tasks, requeue) without a real cluster.
#
#   scripts/slurm.sh up   [DIR]   install Debian's packages if missing, start munged,
#                                 slurmctld and slurmd, wait until the node is idle
#   scripts/slurm.sh down [DIR]   cancel its jobs and stop its three daemons
#   scripts/slurm.sh status [DIR] what sinfo says (exit status 1 when it is not up)
#
# Then `export SLURM_CONF=DIR/slurm.conf` points sbatch, squeue, scontrol (and so submitit)
# at it. DIR (default $VAE_LAB_SLURM_DIR, else /tmp/vae_lab_slurm) holds everything: the
# config, a munge key of its own, the daemons' sockets, state, pid files and logs, and the
# ports are free ones picked at start, so it neither needs nor touches /etc/slurm or
# /etc/munge, and several can run side by side. Needs root (apt-get, munged as the munge
# user, slurmd). `up` on a running cluster and `down` on a stopped one do nothing.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
COMMANDS=(slurmctld slurmd sinfo munged)
ACTION=${1:-}
DIR=${2:-${VAE_LAB_SLURM_DIR:-/tmp/vae_lab_slurm}}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)
export SLURM_CONF=$CONF

die() { echo "error: $*" >&2; exit 1; }

running() { # running PID: the process exists and is not a zombie
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$state" ] && [ "$state" != Z ]
}

alive() { # alive PIDFILE NAME: the process the pid file names is running and is NAME
    [ -s "$1" ] && running "$(cat "$1")" && [ "$(cat "/proc/$(cat "$1")/comm")" = "$2" ]
}

install_packages() {
    local cmd missing=0
    for cmd in "${COMMANDS[@]}"; do command -v "$cmd" >/dev/null || missing=1; done
    [ "$missing" = 0 ] && return
    command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get to install ${PACKAGES[*]}"
    echo "Installing ${PACKAGES[*]} (apt-get) ..."
    # Keep the packages' own services from starting: this cluster runs its own daemons.
    local policy=/usr/sbin/policy-rc.d added=""
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && added=1
    fi
    local log status=0
    log=$(mktemp)
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${PACKAGES[@]}"; } >"$log" 2>&1 || status=$?
    [ -n "$added" ] && rm -f $policy
    if [ "$status" != 0 ]; then
        tail -n 3 "$log" >&2
        rm -f "$log"
        die "apt-get could not install ${PACKAGES[*]} (no network or package mirror?)"
    fi
    rm -f "$log"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_config() {
    # This machine as slurmd sees it (CPUs, sockets, cores, threads, memory), under the
    # name slurmctld knows it by; addressed as 127.0.0.1 so that no DNS is needed.
    local node
    node=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$HOST/")
    cat >"$CONF" <<EOF
# Written by scripts/slurm.sh: a single-node cluster in $DIR.
ClusterName=vaelab
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again after this many seconds (default 120)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups (containers rarely allow them): processes tracked by parentage, no binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
# No slurmdbd: no job accounting, so sacct has nothing to show.
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# Seconds between the SIGTERM and the SIGKILL that end a job step (default 30).
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munged() {
    # munged checks ownership and modes: a key readable by munge alone, a socket
    # directory that everyone may enter.
    mkdir -p "$DIR/munge"
    chown munge:munge "$DIR/munge"
    chmod 755 "$DIR/munge"
    local key=$DIR/munge/munge.key
    if [ ! -s "$key" ]; then
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$key"
    chmod 400 "$key"
    runuser -u munge -- munged --key-file="$key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start; see $DIR/munge/munged.log"
}

wait_idle() {
    local state="" i
    for i in $(seq 1 60); do
        state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
        [ "$state" = idle ] && return
        sleep 0.5
    done
    echo "--- $DIR/log/slurmctld.log" >&2; tail -n 5 "$DIR/log/slurmctld.log" >&2 || true
    echo "--- $DIR/log/slurmd.log" >&2; tail -n 5 "$DIR/log/slurmd.log" >&2 || true
    die "the node did not become idle within 30 s (sinfo says '${state:-nothing}'); try slurmd -Dvvv -f $CONF"
}

up() {
    if alive "$DIR/munge/munged.pid" munged && alive "$DIR/slurmctld.pid" slurmctld \
        && alive "$DIR/slurmd.pid" slurmd; then
        wait_idle
        echo "SLURM is up: export SLURM_CONF=$CONF"
        return
    fi
    down >/dev/null # whatever half of an earlier cluster is left
    install_packages
    mkdir -p "$DIR"
    chmod 755 "$DIR" # munged (as the munge user) must reach its socket below it
    rm -rf "$DIR/state" "$DIR/spool"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    write_config
    start_munged
    slurmctld -c -f "$CONF" || die "slurmctld did not start; see $DIR/log/slurmctld.log"
    slurmd -f "$CONF" || die "slurmd did not start; see $DIR/log/slurmd.log (or run slurmd -Dvvv -f $CONF)"
    wait_idle
    echo "SLURM is up: export SLURM_CONF=$CONF"
}

stop() { # stop PIDFILE NAME: SIGTERM, then SIGKILL after 10 s
    alive "$1" "$2" || { rm -f "$1"; return 0; }
    local pid i
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        running "$pid" || break
        sleep 0.2
    done
    running "$pid" && kill -9 "$pid" 2>/dev/null
    rm -f "$1"
}

down() {
    [ -d "$DIR" ] || return 0
    if alive "$DIR/slurmctld.pid" slurmctld; then
        # Cancel every job, then wait for them to end: slurmd kills their processes.
        scancel --quiet --full --user="$(id -un)" 2>/dev/null || true
        local i
        for i in $(seq 1 40); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.25
        done
    fi
    stop "$DIR/slurmd.pid" slurmd
    stop "$DIR/slurmctld.pid" slurmctld
    stop "$DIR/munge/munged.pid" munged
    echo "SLURM in $DIR is down."
}

status() {
    alive "$DIR/slurmctld.pid" slurmctld || { echo "SLURM in $DIR is not running."; return 1; }
    sinfo
}

case "$ACTION" in
    up | down | status)
        if [ "$(id -u)" != 0 ]; then
            command -v sudo >/dev/null && sudo -n true 2>/dev/null \
                || die "scripts/slurm.sh needs root (apt-get, munged, slurmd); run it as root or with sudo"
            exec sudo -n VAE_LAB_SLURM_DIR="$DIR" "$0" "$ACTION" "$DIR"
        fi
        "$ACTION"
        ;;
    *)
        echo "usage: $0 up|down|status [DIR]" >&2
        exit 2
        ;;
esac
