#!/usr/bin/env bash
# Start the single-node SLURM and SGE clusters the cluster test suite runs on.
#
#   bash .ci/cluster-up.sh        # CI: installs (apt) and starts the daemons, as root
#   source .ci/cluster-up.sh      # same, and keeps SGE_ROOT/SGE_CELL/LOGNAME in this shell
#
# The scripts live in ../shared/cluster (override with GLMFLOW_SHARED_CLUSTER); they are
# idempotent, so calling this when the daemons already run costs about a second.
# Prints "cluster up: slurm ok, sge ok" and returns 0, or names what failed and returns 1.

_glmflow_cluster_up() {
  local root shared env_file
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  shared="${GLMFLOW_SHARED_CLUSTER:-$root/../shared/cluster}"
  if [ ! -f "$shared/slurm-up.sh" ] || [ ! -f "$shared/sge-up.sh" ]; then
    echo "cluster up: ERROR: no slurm-up.sh/sge-up.sh in $shared (set GLMFLOW_SHARED_CLUSTER)"
    return 1
  fi
  # nipype's SLURM/SGE plugins build job names from LOGNAME; containers often lack it
  export LOGNAME="${LOGNAME:-$(id -un)}" USER="${USER:-$(id -un)}" NIPYPE_NO_ET=1
  bash "$shared/slurm-up.sh" || { echo "cluster up: ERROR: slurm-up.sh failed"; return 1; }
  bash "$shared/sge-up.sh" || { echo "cluster up: ERROR: sge-up.sh failed"; return 1; }
  # sge-up.sh writes sge-env.sh beside itself, or to /run when that folder is read-only
  for env_file in "$shared/sge-env.sh" /run/sge-env.sh; do
    if [ -f "$env_file" ]; then
      # shellcheck disable=SC1090
      source "$env_file"
      break
    fi
  done
  scontrol ping | grep -q UP || { echo "cluster up: ERROR: slurmctld does not answer"; return 1; }
  qstat -f >/dev/null || { echo "cluster up: ERROR: sge_qmaster does not answer"; return 1; }
  echo "cluster up: slurm ok, sge ok (SGE_ROOT=${SGE_ROOT:-unset}, LOGNAME=$LOGNAME)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _glmflow_cluster_up
  exit $?
else
  _glmflow_cluster_up
fi
