"""Slurm through prefix commands, against the real one-host cluster of .ci/cluster-up.sh.

Partition `cpu` has virtual nodes c[1-4]; partition `gpu` has g[1-2] with one (fake) GPU each,
so Slurm sets CUDA_VISIBLE_DEVICES in a gpu job.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cluster_env import Slurm
from cluster_tasks import (
    CpuProbe,
    Fails,
    Gather,
    GpuProbe,
    Rendezvous,
    Short,
    max_overlap,
    read_spans,
)

from taskproc import FailedTaskError, Graph, Task
from taskproc.run import process_pool

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.cluster

PY = sys.executable
RECORDER = Path(__file__).with_name("record_prefix.py")


def failures(group: BaseExceptionGroup[BaseException]) -> list[FailedTaskError]:
    """The FailedTaskErrors of an ExceptionGroup (and only those)."""
    errors = list(group.exceptions)
    assert all(isinstance(e, FailedTaskError) for e in errors), errors
    return [e for e in errors if isinstance(e, FailedTaskError)]


def test_labelled_tasks_run_as_slurm_jobs(slurm: Slurm, tmp_path: Path) -> None:
    """Labelled tasks run through their label's prefix, the rest through the default prefix;
    templates name each job and put its log in the task folder; results are cached."""
    events = str(tmp_path / "events")
    prefixes = {  # the default '*' first: a task's own label wins over it all the same
        "*": f"srun --quiet -p {slurm.cpu_partition} -J {{task_id}}",
        "gpu": f"srun --quiet -p {slurm.gpu_partition} --gres=gpu:1 -J {{task_name}}"
        " -o {log_dir}/slurm.out",
    }
    with Graph(str(tmp_path / "cache")):
        gpu = [GpuProbe(events, i) for i in range(2)]
        cpu = [CpuProbe(events, i) for i in range(2)]
        root = Gather([*gpu, *cpu])
        results, stats = root.run_graph(prefixes=prefixes, rate_limits={"gpu": slurm.gpus})

    gpu_results, cpu_results = results[:2], results[2:]
    for r in gpu_results:
        assert r["SLURM_JOB_PARTITION"] == slurm.gpu_partition
        assert r["CUDA_VISIBLE_DEVICES"].isdigit(), r  # set by Slurm's gres plugin
        assert r["SLURM_JOB_NAME"] == GpuProbe.task_name  # -J {task_name}
        assert (Path(r["task_dir"]) / "slurm.out").is_file()  # -o {log_dir}/slurm.out
    for r in cpu_results:
        assert r["SLURM_JOB_PARTITION"] == slurm.cpu_partition
        assert "CUDA_VISIBLE_DEVICES" not in r
        assert r["SLURM_JOB_NAME"] == Path(r["task_dir"]).name  # -J {task_id}
    # Every task, the root included (default prefix '*'), ran as its own job.
    job_ids = [r["SLURM_JOB_ID"] for r in results]
    assert len(set(job_ids)) == 4 and all(j.isdigit() for j in job_ids)
    assert stats["stats"] == {GpuProbe.task_name: 2, CpuProbe.task_name: 2, Gather.task_name: 1}

    # A rerun finds everything cached and submits no job.
    with Graph(str(tmp_path / "cache")):
        root = Gather(
            [*(GpuProbe(events, i) for i in range(2)), *(CpuProbe(events, i) for i in range(2))]
        )
        again, stats = root.run_graph(prefixes=prefixes)
    assert again == results
    assert sum(stats["stats"].values()) == 0
    assert len(read_spans(events)) == 4


def test_failing_job_is_reported_with_its_output(slurm: Slurm, tmp_path: Path) -> None:
    with Graph(str(tmp_path / "cache")):
        task = Fails("M4RK3R")
        with pytest.raises(BaseExceptionGroup) as info:
            task.run_graph(prefixes={"*": f"srun --quiet -p {slurm.cpu_partition}"})
    (error,) = failures(info.value)
    text = str(error)
    assert "ValueError" in text and "boom M4RK3R" in text
    assert "run_task" in text  # the child's traceback
    assert "stderr M4RK3R" in text  # the tail of its output
    assert error.task_id and Path(error.task_dir).is_dir()
    assert "stdout M4RK3R" in (Path(error.task_dir) / "stdout.txt").read_text()


def test_failing_prefix_is_reported_with_its_output(slurm: Slurm, tmp_path: Path) -> None:
    """srun itself fails (no such partition): the error shows what srun said."""
    with Graph(str(tmp_path / "cache")):
        task = CpuProbe(str(tmp_path / "events"), 0)
        with pytest.raises(BaseExceptionGroup) as info:
            task.run_graph(prefixes={"*": "srun --quiet -p nosuchpartition"})
    (error,) = failures(info.value)
    assert "invalid partition" in str(error).lower(), str(error)
    assert "invalid partition" in (Path(error.task_dir) / "prefix_stderr.txt").read_text().lower()
    assert read_spans(tmp_path / "events") == []


def test_gpu_limit_matches_gpus_so_jobs_never_queue(slurm: Slurm, tmp_path: Path) -> None:
    """With rate_limits equal to the GPU count, taskproc never has more gpu jobs submitted
    than there are GPUs (so none waits in the queue), and it does use every GPU at once."""
    events = tmp_path / "events"
    submitted = tmp_path / "submitted"
    # record_prefix.py records the span of each srun call: from submission to the job's end.
    prefix = f"{PY} {RECORDER} {submitted} srun --quiet -p {slurm.gpu_partition} --gres=gpu:1"
    n = 3 * slurm.gpus
    with Graph(str(tmp_path / "cache")):
        root = Gather([GpuProbe(str(events), i) for i in range(n)])
        results, _ = root.run_graph(prefixes={"gpu": prefix}, rate_limits={"gpu": slurm.gpus})
    assert len(results) == n
    assert max_overlap(read_spans(submitted)) == slurm.gpus  # never more jobs than GPUs...
    assert len(read_spans(submitted)) == n
    nodes = {r["SLURMD_NODENAME"] for r in results}
    assert len(nodes) == slurm.gpus  # ...and every GPU node was used


def test_many_jobs_need_no_executor_slot_each(slurm: Slurm, tmp_path: Path) -> None:
    """16 Slurm jobs at once from a runner whose executor has a single worker: waiting on a
    blocking prefix takes no executor slot. The limit of 16 is never exceeded."""
    parties = min(16, slurm.cpu_slots)
    events = str(tmp_path / "events")
    barrier_dir = str(tmp_path / "barrier")
    with Graph(str(tmp_path / "cache")):
        tasks: list[Task] = [Rendezvous(events, i, barrier_dir, parties) for i in range(parties)]
        tasks += [Short(events, i, 0.0) for i in range(parties)]
        with process_pool(1) as pool:
            results, _ = Gather(tasks).run_graph(
                executor=pool,
                prefixes={"*": f"srun --quiet -p {slurm.cpu_partition}"},
                rate_limits={"*": parties},
            )
    assert results == [*range(parties), *range(parties)]
    spans = read_spans(events)
    assert len(spans) == 2 * parties
    assert len({s.env["SLURM_JOB_ID"] for s in spans}) == 2 * parties
    assert max_overlap([s for s in spans if "Rendezvous" in s.task]) == parties


SLEEPY_MAIN = """
import os
from cluster_tasks import Gather, Sleeper, Square
from taskproc import Task

DIR = os.environ["CLUSTER_TEST_DIR"]


class Main(Task):
    def __init__(self) -> None:
        self.quick = Square(DIR + "/events", 7)
        self.slow = Gather([Sleeper(DIR + "/started", i) for i in range(2)])

    def run_task(self) -> object:
        return self.slow.get_result()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_cancels_running_jobs(
    slurm: Slurm, tmp_path: Path, tag: str, subprocess_env: dict[str, str], sig: signal.Signals
) -> None:
    """Ctrl-C or SIGTERM to the CLI while two Slurm jobs run: both jobs leave the queue, the
    finished task's result is kept, and the exit status is 130 / 143."""
    main = tmp_path / "sleepy.py"
    main.write_text(textwrap.dedent(SLEEPY_MAIN))
    started = tmp_path / "started"
    prefixes = {"*": f"srun --quiet -p {slurm.cpu_partition} -J {tag}-{{task_name}}"}
    env = {**subprocess_env, "CLUSTER_TEST_DIR": str(tmp_path)}
    cmd = [PY, "-m", "taskproc", str(main), "-o", str(tmp_path / "cache"), "-t", "thread"]
    cmd += ["--prefixes", json.dumps(prefixes), "--dont-show-progress"]
    runner = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        square = tmp_path / "cache" / "cluster_tasks.Square" / "results"
        while runner.poll() is None and not (
            len(list(started.glob("sleeper-*"))) == 2 and list(square.glob("*/result.pkl.gz"))
        ):
            assert time.monotonic() < deadline, "the Slurm jobs did not start"
            time.sleep(0.05)
        assert runner.poll() is None, runner.communicate()[0]
        jobs = {p.read_text() for p in started.glob("sleeper-*")}
        assert len(slurm.squeue(f"{tag}-cluster_tasks.Sleeper")) == 2
        runner.send_signal(sig)
        output = runner.communicate(timeout=60)[0]
        assert runner.returncode == 128 + sig, output
        # Slurm removes a cancelled job from the queue within KillWait (2 s here).
        deadline = time.monotonic() + 20
        while slurm.squeue(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert slurm.squeue(tag) == [], f"jobs {jobs} still queued"
        assert len(list(square.glob("*/result.pkl.gz"))) == 1  # the finished task is kept
        assert not list((tmp_path / "cache").glob("cluster_tasks.Sleeper/results/*/result.pkl.gz"))
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
        slurm.scancel(tag)


def test_batches_run_as_few_slurm_jobs(slurm: Slurm, tmp_path: Path) -> None:
    """12 tasks at batch 25, at most 3 `srun` commands at once: three Slurm jobs of four
    tasks, one after another in each (`-c {cpus}` from task_resources); every task keeps its
    own folder and result."""
    events = str(tmp_path / "events")
    prefixes = {CpuProbe.task_name: f"srun --quiet -p {slurm.cpu_partition} -c {{cpus}}"}
    CpuProbe.task_resources = {"cpus": 1}
    try:
        with Graph(str(tmp_path / "cache")):
            results, stats = Gather([CpuProbe(events, i) for i in range(12)]).run_graph(
                prefixes=prefixes,
                batch_sizes={"*": 25},
                rate_limits={CpuProbe.task_name: 3},
            )
    finally:
        del CpuProbe.task_resources
    assert [int(r["i"]) for r in results] == list(range(12))
    jobs: dict[str, list[int]] = {}
    for r in results:
        jobs.setdefault(r["SLURM_JOB_ID"], []).append(int(r["i"]))
    assert sorted(len(v) for v in jobs.values()) == [4, 4, 4], jobs
    assert len({r["task_dir"] for r in results}) == 12
    assert stats["stats"][CpuProbe.task_name] == 12
    spans = read_spans(events)
    assert max_overlap(spans) <= 3
