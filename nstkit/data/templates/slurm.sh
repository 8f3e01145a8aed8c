#!/bin/bash
# nstkit as a SLURM job array: {{shards}} tasks, each running its shard of the jobs
# (nstkit run --shard auto reads SLURM_ARRAY_TASK_ID; NSTKIT_SHARD_COUNT fixes the count).
#
#   sbatch nstkit.sbatch                      # submit all {{shards}} shards
#   nstkit status {{out}}                     # done / failed / missing, shards to resubmit
#   sbatch --array=3,7 nstkit.sbatch          # rerun only those shards (finished jobs are skipped)
#
# Every task must see the inputs and the output folder at the same paths (a shared file system).
#SBATCH --job-name=nstkit-{{name}}
#SBATCH --array=0-{{last}}
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=nstkit-%A_%a.log
set -euo pipefail

# source /path/to/venv/bin/activate      # an environment with nstkit installed
export NSTKIT_SHARD_COUNT={{shards}}     # keep equal to the size of --array above

nstkit run {{recipe}} --content {{content}} --style {{style}} --out {{out}} \
    --shard auto --quiet
