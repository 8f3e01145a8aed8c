"""Job arrays: ``--shard auto`` from scheduler variables, shards as separate processes (one
of them crashing), ``nstkit status`` and ``nstkit template``."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nstkit.errors import NstkitError
from nstkit.runner.arrays import shard_from_env
from nstkit.runner.manifest import latest_records

# random VGG16 weights: each process builds them faster than it loads the original VGG19
QUICK = ["--size", "32", "--iterations", "2", "--quiet", "--set", "extractor.name=vgg16",
         "--set", "extractor.weights=random"]
OUTPUTS = ["chelsea__starry_night__gatys.png", "chelsea__starry_night_gold__gatys.png",
           "coffee__starry_night__gatys.png", "coffee__starry_night_gold__gatys.png"]


@pytest.mark.parametrize(("env", "shard"), [
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, (2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"},
     (2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "10",
      "SLURM_ARRAY_TASK_STEP": "2"}, (2, 4)),
    # a resubmitted subset (sbatch --array=3,7): SLURM's count and min describe the subset
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "3",
      "NSTKIT_SHARD_COUNT": "8"}, (7, 8)),
    ({"JOB_COMPLETION_INDEX": "0", "NSTKIT_SHARD_COUNT": "3"}, (0, 3)),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, (3, 4)),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "RANK": "0",
      "WORLD_SIZE": "8"}, (1, 2)),  # the array wins over torchrun
])
def test_shard_auto_reads_the_scheduler(env: dict[str, str], shard: tuple[int, int]) -> None:
    assert shard_from_env(env) == shard


@pytest.mark.parametrize(("env", "message"), [
    ({}, "--shard auto: no job-array variables are set; expected SLURM_ARRAY_TASK_ID and "
         "SLURM_ARRAY_TASK_COUNT (sbatch --array), JOB_COMPLETION_INDEX and NSTKIT_SHARD_COUNT "
         "(a Kubernetes Indexed Job), or RANK and WORLD_SIZE (torchrun). Outside a job array, "
         "pass --shard I/N"),
    ({"JOB_COMPLETION_INDEX": "1"}, "--shard auto: JOB_COMPLETION_INDEX (a Kubernetes Indexed "
     "Job; set NSTKIT_SHARD_COUNT to the Job's completions) is set but NSTKIT_SHARD_COUNT is "
     "not"),
    ({"RANK": "1"}, "--shard auto: RANK is set but WORLD_SIZE is not"),
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"},
     "--shard auto: SLURM_ARRAY_TASK_ID must be an integer, got 'x'"),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_STEP": "2"},
     "--shard auto: SLURM array task 3 is not on the array's grid (min 0, step 2)"),
    ({"RANK": "4", "WORLD_SIZE": "4"}, "--shard auto: torchrun index 4 is outside 0..3"),
    ({"JOB_COMPLETION_INDEX": "9", "NSTKIT_SHARD_COUNT": "3"},
     "--shard auto: Kubernetes Indexed Job index 9 is outside 0..2 (count 3)"),
])
def test_shard_auto_errors_name_the_variables(env: dict[str, str], message: str) -> None:
    with pytest.raises(NstkitError) as caught:
        shard_from_env(env)
    assert str(caught.value).startswith(message)


def test_shard_auto_without_a_scheduler_is_a_usage_error(tiny: Path, tmp_path: Path,
                                                         monkeypatch, invoke, run_tiny) -> None:
    for name in ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "RANK"):
        monkeypatch.delenv(name, raising=False)
    result = run_tiny(tmp_path / "out", "--shard", "auto")
    assert result.exit_code == 2
    assert "--shard auto: no job-array variables are set" in result.output
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    monkeypatch.setenv("NSTKIT_SHARD_COUNT", "3")
    planned = invoke("run", "gatys", "--content", tiny / "content", "--style", tiny / "style",
                     "--out", tmp_path / "out", "--shard", "auto", "--dry-run")
    assert "gatys: 1 to do, 0 done" in planned.output  # shard 1 of 3 of 4 jobs


def _nstkit(*args: str, env: dict[str, str] | None = None,
            plugin: str | None = None) -> subprocess.Popen:
    """``python -m nstkit ARGS`` in a new process; ``plugin``: Python code defining ``Plugin``,
    registered before the command runs (the only way to inject a fault into a subprocess)."""
    main = "from nstkit.cli import main; main()"
    if plugin is not None:
        main = (f"{plugin}\nfrom nstkit.plugins import get_host\n"
                f"get_host().add(Plugin(), name='fault')\n{main}")
    return subprocess.Popen([sys.executable, "-c", main, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NSTKIT_DISABLE_PLUGIN_AUTOLOAD": "1",
                                 **(env or {})})


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out + err


# kills its process (as SIGKILL or a node failure would) when the shard's second job starts
CRASH_ON_SECOND_JOB = """
import os
import nstkit
class Plugin:
    started = 0
    @nstkit.hookimpl
    def on_job_start(self, job):
        Plugin.started += 1
        if Plugin.started == 2:
            os._exit(137)
"""


@pytest.mark.slow
def test_three_shard_processes_cover_every_job_once_and_a_crashed_shard_is_rerun(
        tiny: Path, tmp_path: Path, invoke) -> None:
    out = tmp_path / "out"
    args = ["run", "gatys", "--content", str(tiny / "content"), "--style", str(tiny / "style"),
            "--out", str(out), *QUICK, "--shard", "auto"]
    array = {"SLURM_ARRAY_TASK_COUNT": "3"}
    # shard 0 has two of the four jobs (the sorted plan, round robin): it crashes in the second
    shards = [_nstkit(*args, env={**array, "SLURM_ARRAY_TASK_ID": "0"},
                      plugin=CRASH_ON_SECOND_JOB)]
    shards += [_nstkit(*args, env={**array, "SLURM_ARRAY_TASK_ID": str(i)}) for i in (1, 2)]
    codes = [_finish(process) for process in shards]
    assert codes[0][0] == 137
    assert [code for code, _ in codes[1:]] == [0, 0], codes
    outputs = [json.loads(line)["output"] for path in sorted(out.glob("manifest*.jsonl"))
               for line in path.read_text().splitlines()]
    assert sorted(outputs) == sorted(set(outputs))  # no job ran twice
    assert sorted(outputs) == [OUTPUTS[0], *OUTPUTS[1:3]]  # all but the crashed one
    status = invoke("status", out)
    assert status.exit_code == 1
    assert "4 jobs (gatys, 3 shards): 3 done, 0 failed, 1 missing" in status.output
    assert f"{OUTPUTS[3]}" in status.output
    assert "resubmit shards: 0" in status.output
    code, output = _finish(_nstkit(*args, env={**array, "SLURM_ARRAY_TASK_ID": "0"}))
    assert code == 0, output
    assert "1 job(s) already done" in output
    assert sorted(latest_records(out)) == OUTPUTS
    assert len([line for path in out.glob("manifest*.jsonl")
                for line in path.read_text().splitlines()]) == 4
    done = invoke("status", out)
    assert done.exit_code == 0, done.output
    assert "4 done, 0 failed, 0 missing" in done.output


@pytest.mark.slow
def test_status_lists_failed_and_damaged_jobs(tiny: Path, tmp_path: Path, invoke, fast) -> None:
    content = tmp_path / "content"
    content.mkdir()
    (content / "broken.png").write_bytes(b"not an image")
    (content / "chelsea.png").write_bytes((tiny / "content" / "chelsea.png").read_bytes())
    out = tmp_path / "out"
    assert invoke("run", "gatys", "--content", content, "--style", tiny / "style" /
                  "starry_night_gold.png", "--out", out, *fast).exit_code == 1
    result = invoke("status", out)
    assert result.exit_code == 1
    assert "2 jobs (gatys, 1 shard): 1 done, 1 failed, 0 missing" in result.output
    assert "UnidentifiedImageError" in result.output
    assert "rerun the same nstkit run command" in result.output
    (out / "chelsea__starry_night_gold__gatys.png").write_bytes(b"tampered")
    assert "1 done, 1 failed" in invoke("status", out).output  # cheap: no hashing
    verified = invoke("status", out, "--verify")
    assert "0 done, 1 failed, 1 missing" in verified.output
    assert "the output file differs from the one recorded" in verified.output


def test_status_of_a_folder_that_is_not_a_run(tmp_path: Path, invoke) -> None:
    result = invoke("status", tmp_path)
    assert result.exit_code == 2
    assert "has no plan.json: not an nstkit run output folder" in result.output
    (tmp_path / "plan.json").write_text("{")
    assert "cannot be read" in invoke("status", tmp_path).output


@pytest.mark.slow
def test_template_slurm_is_a_valid_script_running_its_shard(tiny: Path, tmp_path: Path,
                                                            monkeypatch, invoke) -> None:
    result = invoke("template", "slurm", "--shards", "3", "--content", str(tiny / "content"),
                    "--style", str(tiny / "style"), "--out", str(tmp_path / "my out"))
    assert result.exit_code == 0
    script = tmp_path / "job.sbatch"
    script.write_text(result.output)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "#SBATCH --array=0-2\n" in result.output
    assert "export NSTKIT_SHARD_COUNT=3 " in result.output
    command = result.output.split("\nnstkit run ", 1)[1].replace("\\\n", " ")
    args = shlex.split(command)
    assert args[args.index("--out") + 1] == str(tmp_path / "my out")
    assert args[-3:] == ["--shard", "auto", "--quiet"]
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("NSTKIT_SHARD_COUNT", "3")
    planned = invoke("run", *args, "--dry-run")
    assert "fast-wasserstein: 1 to do, 0 done" in planned.output  # the recommended recipe


def test_template_k8s_is_an_indexed_job_running_its_shard(tiny: Path, tmp_path: Path,
                                                          monkeypatch, invoke) -> None:
    result = invoke("template", "k8s", "--shards", "4", "--recipe", "improved", "--content",
                    str(tiny / "content"), "--style", str(tiny / "style"), "--out",
                    str(tmp_path / "out"))
    assert result.exit_code == 0
    job = yaml.safe_load(result.output)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
        "Indexed", 4, 4)
    [container] = spec["template"]["spec"]["containers"]
    assert {e["name"]: e["value"] for e in container["env"]} == {"NSTKIT_SHARD_COUNT": "4"}
    assert job["metadata"]["name"] == "nstkit-improved"
    command = container["command"]
    assert command[:3] == ["nstkit", "run", "improved"]
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "3")
    monkeypatch.setenv("NSTKIT_SHARD_COUNT", "4")
    planned = invoke(*command[1:], "--dry-run")
    assert "improved: 1 to do, 0 done" in planned.output


def test_template_needs_a_known_scheduler(invoke) -> None:
    result = invoke("template", "pbs")
    assert result.exit_code == 2
    assert "slurm" in result.output
