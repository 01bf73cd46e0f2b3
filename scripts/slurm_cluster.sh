#!/usr/bin/env bash
# A real one-node SLURM cluster living in one scratch folder, for the tests and CI. Installs nothing
# (Debian: apt-get install slurmctld slurmd slurm-client munge); must run as root.
#
#   scripts/slurm_cluster.sh start DIR    write DIR/slurm.conf, start slurmctld + slurmd from an empty
#                                         state (a cluster already running from DIR is stopped first),
#                                         wait until a probe job has run, then print on stdout:
#                                           export SLURM_CONF=DIR/slurm.conf
#   scripts/slurm_cluster.sh stop DIR     cancel every job, wait until squeue is empty, stop the daemons
#                                         by their pid files (a no-op when nothing runs from DIR)
#   scripts/slurm_cluster.sh status DIR   exit 0 and print the node state when the cluster answers, else 1
#
# In a shell: eval "$(scripts/slurm_cluster.sh start /tmp/slurm)"; ...; scripts/slurm_cluster.sh stop /tmp/slurm
#
# Environment:
#   SLURM_CLUSTER_AUTH  auto (default) | none | munge. auto takes auth/none + cred/none where this SLURM
#                       still ships those plugins (22.05 does; later releases removed them), else munge,
#                       with a munged of our own (socket, pid and log under DIR/munge).
#
# Every daemon is started with FACECLI_SLURM_CLUSTER=DIR in its environment, so `stop` can also find the
# processes of a cluster whose pid files were lost (slurmd, the slurmstepd it forks, their children).
# Ports: 6817/6818 unless something listens there (another cluster): then the next free pair.
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
log() { echo "slurm_cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 2 ] || usage
cmd=$1
dir=$(realpath -m -- "$2")
[[ $dir =~ [[:space:]] ]] && die "DIR must not contain whitespace (slurm.conf cannot quote it): $dir"
conf=$dir/slurm.conf
marker=$dir/.facecli-slurm-cluster

# --- small helpers -------------------------------------------------------------------------------

now_ms() { date +%s%3N; }

# running PID: the process exists and is not a zombie (PID 1 of a container may be slow to reap)
running() {
  local line
  read -r line <"/proc/$1/stat" 2>/dev/null || return 1
  line=${line##*) }
  [ "${line%% *}" != Z ]
}

# alive PIDFILE: the pid in PIDFILE names a running process
alive() { [ -s "$1" ] && running "$(cat "$1")"; }

# listening_ports: every local TCP port in LISTEN state (from /proc, no tools needed)
listening_ports() {
  local f sl local_addr rest
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    while read -r sl local_addr _ st rest; do
      [ "$st" = 0A ] && echo $((16#${local_addr##*:}))
    done < <(tail -n +2 "$f")
  done
}

# free_port_pair FIRST: the first P >= FIRST such that neither P nor P+1 is listened on
free_port_pair() {
  local p=$1 used
  used=" $(listening_ports | sort -un | tr '\n' ' ') "
  while [[ $used == *" $p "* || $used == *" $((p + 1)) "* ]]; do p=$((p + 2)); done
  echo "$p"
}

# cluster_pids: processes started for this DIR (FACECLI_SLURM_CLUSTER=DIR in their environment, or a
# slurmstepd working in DIR) and all their descendants (the jobs), excluding this script itself
cluster_pids() {
  local roots
  roots=$(grep -lzxF "FACECLI_SLURM_CLUSTER=$dir" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | grep -vx "$$" || true)
  # slurmstepd overwrites its environment (process title) and detaches from slurmd; it keeps slurmd's
  # working folder, which is under DIR
  local comm cwd name
  for comm in /proc/[0-9]*/comm; do
    read -r name <"$comm" 2>/dev/null && [ "$name" = slurmstepd ] || continue
    cwd=$(readlink "${comm%/comm}/cwd" 2>/dev/null) || continue
    if [[ $cwd == "$dir" || $cwd == "$dir"/* ]]; then roots+=" ${comm//[!0-9]/}"; fi
  done
  [ -n "$roots" ] || return 0
  # add descendants (children of any collected pid) until the set stops growing
  local all grew=1 stat line rest pid ppid
  all=" $(echo $roots) "
  while [ $grew = 1 ]; do
    grew=0
    for stat in /proc/[0-9]*/stat; do
      read -r line <"$stat" 2>/dev/null || continue
      pid=${line%% *}
      rest=${line##*) }  # after the command name, which may contain spaces: "S PPID ..."
      ppid=${rest#* }
      ppid=${ppid%% *}
      if [[ $all == *" $ppid "* && $all != *" $pid "* ]]; then all+="$pid "; grew=1; fi
    done
  done
  echo $all
}

# stop_pid PIDFILE NAME: TERM, up to 10 s, then KILL
stop_pid() {
  local pidfile=$1 name=$2 pid i
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do running "$pid" || break; sleep 0.1; done
  if running "$pid"; then log "$name ($pid) ignored SIGTERM for 10 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
}

# controller_answers: the controller at DIR's port is up AND is the one of DIR (its StateSaveLocation
# is DIR/state): after a reboot another cluster may have taken the port, and its jobs are not ours
controller_answers() {
  local saved
  saved=$(SLURM_CONF=$conf timeout 10 scontrol show config 2>/dev/null | sed -n 's/^StateSaveLocation *= *//p')
  [ "$saved" = "$dir/state" ]
}

# --- stop ----------------------------------------------------------------------------------------

stop_cluster() {
  [ -f "$conf" ] || return 0
  export SLURM_CONF=$conf
  if controller_answers; then
    local jobs i
    jobs=$(squeue -h -o %F 2>/dev/null | sort -u | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      # jobs get SIGTERM at once and SIGKILL after KillWait (5 s); leave room for slow epilogues
      for i in $(seq 200); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.1
      done
      if [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
        log "jobs still listed 20 s after scancel: $(squeue -h -o '%i %T' | tr '\n' ' ')"
      fi
    fi
  fi
  stop_pid "$dir/run/slurmd.pid" slurmd
  stop_pid "$dir/run/slurmctld.pid" slurmctld
  stop_pid "$dir/munge/munged.pid" munged
  # anything of this cluster still alive (lost pid files, orphaned slurmstepd/job processes)
  local left
  left=$(cluster_pids)
  if [ -n "$left" ]; then
    log "killing leftover processes of $dir: $left"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
  fi
}

# --- start ---------------------------------------------------------------------------------------

choose_auth() {
  local want=${SLURM_CLUSTER_AUTH:-auto} plugindir
  case $want in
    none|munge) echo "$want"; return ;;
    auto) ;;
    *) die "SLURM_CLUSTER_AUTH must be auto, none or munge (got $want)" ;;
  esac
  for plugindir in /usr/lib/*/slurm-wlm /usr/lib/slurm /usr/lib64/slurm /usr/local/lib/slurm; do
    if [ -e "$plugindir/auth_none.so" ] && [ -e "$plugindir/cred_none.so" ]; then echo none; return; fi
  done
  echo munge
}

start_munged() {
  command -v munged >/dev/null || die "munged not found (apt-get install munge) and auth/none is unavailable"
  id munge >/dev/null 2>&1 || die "no 'munge' user to run munged as"
  install -d -o munge -g munge -m 0755 "$dir/munge"
  runuser -u munge -- env FACECLI_SLURM_CLUSTER="$dir" munged --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" \
    || die "munged failed to start: $(tail -n 3 "$dir/munge/munged.log" 2>/dev/null)"
  munge -S "$dir/munge/munge.socket" -n | unmunge -S "$dir/munge/munge.socket" >/dev/null \
    || die "munge -n | unmunge fails on $dir/munge/munge.socket"
}

node_line() {
  # first line of `slurmd -C` (CPUs, sockets, cores, RealMemory as slurmd sees them), named as slurmd
  # will look itself up, at an address that needs no name resolution
  local line
  line=$(slurmd -C | head -n 1)
  [[ $line == NodeName=* ]] || die "slurmd -C printed no node line: $line"
  echo "NodeName=$(hostname -s) NodeAddr=127.0.0.1 ${line#NodeName=* }"
}

write_conf() {
  local auth=$1 ctld_port=$2 host
  host=$(hostname -s)
  {
    echo "# written by scripts/slurm_cluster.sh: a one-node test cluster, everything under $dir"
    echo "ClusterName=ci"
    echo "SlurmctldHost=$host(127.0.0.1)"
    echo "SlurmctldPort=$ctld_port"
    echo "SlurmdPort=$((ctld_port + 1))"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    if [ "$auth" = none ]; then
      echo "AuthType=auth/none"
      echo "CredType=cred/none"
    else
      echo "AuthType=auth/munge"
      echo "CredType=cred/munge"
      echo "AuthInfo=socket=$dir/munge/munge.socket"
    fi
    echo "StateSaveLocation=$dir/state"
    echo "SlurmdSpoolDir=$dir/spool"
    echo "SlurmctldPidFile=$dir/run/slurmctld.pid"
    echo "SlurmdPidFile=$dir/run/slurmd.pid"
    echo "SlurmctldLogFile=$dir/log/slurmctld.log"
    echo "SlurmdLogFile=$dir/log/slurmd.log"
    echo "SlurmctldDebug=info"
    echo "SlurmdDebug=info"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "JobCompType=jobcomp/filetxt"
    echo "JobCompLoc=$dir/jobcomp.txt"
    echo "MpiDefault=none"
    echo "SwitchType=switch/none"
    echo "MailProg=/bin/true"
    echo "SchedulerType=sched/backfill"
    echo "SchedulerParameters=batch_sched_delay=0"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "ReturnToService=2"
    echo "KillWait=5"
    node_line
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
  } >"$conf.tmp"
  mv "$conf.tmp" "$conf"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.1 s until it succeeds
wait_for() {
  local seconds=$1 what=$2 i
  shift 2
  for i in $(seq $((seconds * 10))); do
    "$@" && return 0
    sleep 0.1
  done
  log "timed out after ${seconds} s waiting for $what"
  return 1
}

node_idle() { [ "$(sinfo -h -o %T 2>/dev/null)" = idle ]; }
job_gone() { [ -z "$(squeue -h -j "$1" -o %i 2>/dev/null)" ]; }

show_logs() {
  local f
  for f in "$dir/log/slurmctld.log" "$dir/log/slurmd.log" "$dir/log/slurmd.stderr" "$dir/log/slurmctld.stderr"; do
    [ -s "$f" ] && { log "--- last lines of $f"; tail -n 15 "$f" >&2; }
  done
  return 0
}

start_cluster() {
  [ "$(id -u)" = 0 ] || die "must run as root (slurmd starts jobs as their owner)"
  local b
  for b in slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
    command -v "$b" >/dev/null || die "$b not found (Debian: apt-get install slurmctld slurmd slurm-client munge)"
  done
  local t0 auth port
  t0=$(now_ms)
  mkdir -p "$dir"
  touch "$marker"
  stop_cluster
  rm -rf "$dir/state" "$dir/spool" "$dir/log" "$dir/run" "$dir/munge" "$dir/jobcomp.txt"
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/run"

  auth=$(choose_auth)
  [ "$auth" = munge ] && start_munged
  port=$(free_port_pair 6817)
  write_conf "$auth" "$port"
  export SLURM_CONF=$conf

  FACECLI_SLURM_CLUSTER=$dir slurmctld -f "$conf" 2>"$dir/log/slurmctld.stderr" \
    || { show_logs; die "slurmctld failed to start"; }
  FACECLI_SLURM_CLUSTER=$dir slurmd -f "$conf" 2>"$dir/log/slurmd.stderr" \
    || { show_logs; stop_cluster; die "slurmd failed to start"; }
  if ! wait_for 30 "the node to be idle" node_idle; then
    show_logs; stop_cluster; die "the node never became idle (sinfo: $(sinfo -h -o '%T %E' 2>&1 | head -n 1))"
  fi
  # the first batch job is scheduled only ~3 s after slurmctld starts: the cluster is usable once a
  # probe job has actually run
  local probe state
  probe=$(sbatch --parsable -J probe -o /dev/null -e /dev/null --chdir="$dir" --wrap true) \
    || { show_logs; stop_cluster; die "sbatch of the probe job failed"; }
  if ! wait_for 60 "probe job $probe" job_gone "$probe"; then
    show_logs; stop_cluster; die "probe job $probe never finished"
  fi
  state=$(scontrol show job "$probe" 2>/dev/null | grep -o 'JobState=[A-Z_]*' || true)
  if [ "$state" != JobState=COMPLETED ]; then
    show_logs; stop_cluster; die "probe job $probe ended as '${state:-unknown}'"
  fi
  log "up in $(( $(now_ms) - t0 )) ms (auth/$auth, ports $port/$((port + 1)), node $(hostname -s))"
  echo "export SLURM_CONF=$conf"
}

status_cluster() {
  if [ -f "$conf" ] && alive "$dir/run/slurmctld.pid" && controller_answers; then
    echo "running: node $(SLURM_CONF=$conf sinfo -h -o %T), jobs $(SLURM_CONF=$conf squeue -h | wc -l), SLURM_CONF=$conf"
    return 0
  fi
  echo "not running ($dir)"
  return 1
}

case $cmd in
  start) start_cluster ;;
  stop)
    t0=$(now_ms)
    if [ -f "$conf" ]; then stop_cluster; log "stopped in $(( $(now_ms) - t0 )) ms"; fi
    ;;
  status) status_cluster ;;
  *) usage ;;
esac
