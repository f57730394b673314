#!/usr/bin/env bash
# Sharded prediction on a real one-node Slurm cluster (Debian's slurm-wlm and
# munge, started on localhost; needs root): deploy/slurm/predict.sbatch as a
# 4-task job array over 100 RAVDESS clips, merged, must equal one process's
# run byte for byte; then shard 2 is killed half-way (EMOFUSE_TEST_ABORT_AFTER_FILES),
# merge must name what is missing, and after rerunning shard 2 alone the
# merged file must again be identical.
#
# usage: scripts/slurm-test.sh [EMOFUSE]   (default: target/debug/emofuse, built if absent)
set -euo pipefail
cd "$(dirname "$0")/.."
emofuse=$(realpath "${1:-target/debug/emofuse}")
[ -x "$emofuse" ] || cargo build --locked
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge > /dev/null
fi
work=$(mktemp -d /tmp/emofuse-slurm.XXXXXX)
state=$work/state
mkdir -p "$state/ctld" "$state/d" "$state/munge"
host=$(hostname -s)
cpus=$(nproc)
export SLURM_CONF=$work/slurm.conf
cat > "$SLURM_CONF" <<CONF
ClusterName=emofuse-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$state/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
# munge's key comes with the package; a private socket keeps a running munged untouched.
[ -s /etc/munge/munge.key ] || mungekey --create --force
munged --force --socket="$state/munge/munge.socket" --pid-file="$state/munge/munged.pid" \
  --log-file="$work/munged.log" --seed-file="$state/munge/seed"
slurmctld
slurmd
stop() {  # the daemons, waited for (a next run needs their ports), then the files
  scancel --quiet --user=root 2>/dev/null || true
  for file in "$state/slurmd.pid" "$state/slurmctld.pid" "$state/munge/munged.pid"; do
    [ -s "$file" ] || continue
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  done
  rm -rf "$work"
}
trap stop EXIT
for _ in $(seq 60); do
  sinfo --noheader --states=idle 2>/dev/null | grep -q . && break
  sleep 1
done
sinfo --noheader --states=idle | grep -q . || { tail -n 20 "$work"/slurm*.log; echo "slurm-test: the node never became idle" >&2; exit 1; }

# 100 clips of four actors, by absolute path, as the job's input list.
find "$(realpath ../shared/data/ravdess)" -name '*.flac' | sort | sed -n '1,100p' > "$work/clips.txt"
submit() {  # submit ARRAY OUT [env…]: one job array, waited for (squeue each second)
  echo "slurm-test: $(date +%T) sbatch --array=$1" >&2
  local array=$1 out=$2 job
  shift 2
  job=$(env "$@" SHARDS=4 EMOFUSE="$emofuse" sbatch --parsable --array="$array" --chdir="$work" \
    deploy/slurm/predict.sbatch "$work/clips.txt" "$work/$out" --chunk-size 8)
  for _ in $(seq 300); do
    [ -z "$(squeue --noheader --jobs="$job")" ] && return 0
    sleep 1
  done
  echo "slurm-test: job $job still running after 5 minutes" >&2
  return 1
}
"$emofuse" predict "$work/clips.txt" --out "$work/single" > /dev/null
"$emofuse" merge "$work/single"
submit 0-3 array
"$emofuse" merge "$work/array"
cmp "$work/single/predictions.jsonl" "$work/array/predictions.jsonl"
echo "slurm-test: 4 array tasks merged = one process ($(wc -l < "$work/array/predictions.jsonl") lines)"

submit 0,1,3 killed
submit 2 killed EMOFUSE_TEST_ABORT_AFTER_FILES=12
grep -q "stopping as if killed" "$work"/emofuse-predict-*_2.log
if "$emofuse" merge "$work/killed" 2> "$work/merge.err"; then
  echo "slurm-test: merge accepted a killed shard" >&2
  exit 1
fi
grep -q "shard-0002-of-0004/chunk-00001.jsonl: missing" "$work/merge.err"
submit 2 killed
"$emofuse" merge "$work/killed"
cmp "$work/single/predictions.jsonl" "$work/killed/predictions.jsonl"
grep -h "done by an earlier run" "$work"/emofuse-predict-*_2.log | tail -1
echo "slurm-test: shard 2 killed after 12 files, rerun alone: merged output identical"
