"""``--shard auto``: the shard index and count of this process, read from the variables that
job-array schedulers set (SLURM job arrays, Kubernetes Indexed Jobs, torchrun)."""

from __future__ import annotations

from collections.abc import Mapping

from nstkit.errors import NstkitError

AUTO_HELP = ("SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (sbatch --array), "
             "JOB_COMPLETION_INDEX and NSTKIT_SHARD_COUNT (a Kubernetes Indexed Job), or "
             "RANK and WORLD_SIZE (torchrun)")


def _int(env: Mapping[str, str], name: str) -> int:
    value = env.get(name, "").strip()
    try:
        return int(value)
    except ValueError:
        raise NstkitError(f"--shard auto: {name} must be an integer, got {value!r}") from None


def _need(env: Mapping[str, str], name: str, why: str) -> int:
    if not env.get(name, "").strip():
        raise NstkitError(f"--shard auto: {why} is set but {name} is not")
    return _int(env, name)


def _slurm(env: Mapping[str, str]) -> tuple[int, int]:
    task = _int(env, "SLURM_ARRAY_TASK_ID")
    count = _need(env, "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID")
    first = _int(env, "SLURM_ARRAY_TASK_MIN") if env.get("SLURM_ARRAY_TASK_MIN") else 0
    step = _int(env, "SLURM_ARRAY_TASK_STEP") if env.get("SLURM_ARRAY_TASK_STEP") else 1
    offset = task - first
    if step < 1 or offset % step:
        raise NstkitError(f"--shard auto: SLURM array task {task} is not on the array's grid "
                          f"(min {first}, step {step}); use a contiguous array such as "
                          f"--array=0-{count - 1}")
    return offset // step, count


def shard_from_env(env: Mapping[str, str]) -> tuple[int, int]:
    """``(index, count)`` of this process, 0-based, from ``env``.

    Read in this order: a SLURM job array (``SLURM_ARRAY_TASK_ID`` less
    ``SLURM_ARRAY_TASK_MIN``, divided by ``SLURM_ARRAY_TASK_STEP``; count
    ``SLURM_ARRAY_TASK_COUNT``), a Kubernetes Indexed Job (``JOB_COMPLETION_INDEX``; count
    ``NSTKIT_SHARD_COUNT``, which the Job sets to its ``completions``), torchrun (``RANK``,
    ``WORLD_SIZE``).

    ``NSTKIT_SHARD_COUNT``, when set, is the count for every scheduler and the index is the
    task id as it is: so a resubmitted subset (``sbatch --array=3,7``, where SLURM's own count
    and minimum describe the subset) still runs shards 3 and 7 of the original count.

    Raises:
        NstkitError: none of them is set, one is incomplete or not an integer, or the index is
            outside ``0 .. count - 1``.
    """
    fixed = _int(env, "NSTKIT_SHARD_COUNT") if env.get("NSTKIT_SHARD_COUNT", "").strip() else None
    if fixed is not None and env.get("SLURM_ARRAY_TASK_ID", "").strip():
        index, count, source = _int(env, "SLURM_ARRAY_TASK_ID"), fixed, "SLURM array"
    elif env.get("SLURM_ARRAY_TASK_ID", "").strip():
        index, count, source = *_slurm(env), "SLURM array"
    elif env.get("JOB_COMPLETION_INDEX", "").strip():
        index = _int(env, "JOB_COMPLETION_INDEX")
        count = _need(env, "NSTKIT_SHARD_COUNT", "JOB_COMPLETION_INDEX (a Kubernetes Indexed "
                      "Job; set NSTKIT_SHARD_COUNT to the Job's completions)")
        source = "Kubernetes Indexed Job"
    elif env.get("RANK", "").strip():
        index, source = _int(env, "RANK"), "torchrun"
        count = fixed if fixed is not None else _need(env, "WORLD_SIZE", "RANK")
    else:
        raise NstkitError(f"--shard auto: no job-array variables are set; expected {AUTO_HELP}. "
                          f"Outside a job array, pass --shard I/N")
    if not 0 <= index < count:
        raise NstkitError(f"--shard auto: {source} index {index} is outside 0..{count - 1} "
                          f"(count {count})")
    return index, count
