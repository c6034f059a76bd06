"""Labels, limits and prefixes: the resource-control example of the taskproc README.

Run it from the repository's root::

    taskproc examples/cluster.py -o /tmp/taskproc-cluster

Every task carries three kinds of labels: its task name (``cluster.TaskUsingGPU``), the labels
of its class's ``task_label``, and ``'*'`` (every task). The defaults at the bottom set:

- ``rate_limits``: at most 2 tasks labelled ``gpu`` run at once (of either class), at most 1
  labelled ``memory``, and at most 5 ``TaskUsingGPU`` (a per-task-name limit);
- ``prefixes``: tasks labelled ``gpu`` are started through a command. On a cluster that command
  submits the task as a job and waits for it, e.g.
  ``jbsub -wait -queue x86_1h -cores 16+1 -mem 64g`` (LSF) or
  ``srun --gres=gpu:1 --job-name={task_name}`` (Slurm). Here ``env TASKPROC_JOB={task_name}``
  stands in, so the example runs on any machine. Try your own without editing the file:
  ``--prefixes '{"gpu": "srun --gres=gpu:1"}'``. See docs/cluster.md.

Each task reports where it ran; ``Main`` prints one line per task.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TypedDict

from taskproc import DefaultCliArguments, FutureList, Task


class Placement(TypedDict):
    task: str
    job: str  # the job name the prefix command gave us
    host: str
    pid: int
    start: float
    end: float


def work(task: Task, seconds: float) -> Placement:
    """Pretend to use a GPU for `seconds`; say where and when."""
    start = time.time()
    time.sleep(seconds)
    return Placement(
        task=repr(task),
        job=os.environ.get("TASKPROC_JOB") or os.environ.get("SLURM_JOB_NAME", "-"),
        host=socket.gethostname(),
        pid=os.getpid(),
        start=start,
        end=time.time(),
    )


class TaskUsingGPU(Task):
    task_label = "gpu"

    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> Placement:
        return work(self, 0.5)


class AnotherTaskUsingGPU(Task):
    task_label = ["gpu", "memory"]

    def __init__(self, i: int) -> None:
        self.i = i

    def run_task(self) -> Placement:
        return work(self, 0.5)


class Main(Task):
    def __init__(self, n: int = 3) -> None:
        self.light = FutureList([TaskUsingGPU(i) for i in range(n)])
        self.heavy = FutureList([AnotherTaskUsingGPU(i) for i in range(n)])

    def run_task(self) -> list[Placement]:
        placements = self.light.get_result() + self.heavy.get_result()
        t0 = min(p["start"] for p in placements)
        for p in sorted(placements, key=lambda p: p["start"]):
            span = f"{p['start'] - t0:4.1f}-{p['end'] - t0:4.1f} s"
            print(f"{p['task']:34} {span}  job {p['job']} on {p['host']} (pid {p['pid']})")
        return placements


DefaultCliArguments(
    rate_limits={
        "gpu": 2,  # at most 2 tasks labelled "gpu" at once
        "memory": 1,  # ... and at most 1 labelled "memory"
        TaskUsingGPU.task_name: 5,  # each task is also labelled with its task_name
    },
    prefixes={
        # On LSF: "jbsub -wait -queue x86_1h -cores 16+1 -mem 64g"; on Slurm: "srun --gres=gpu:1".
        # When several labels of a task have a prefix, the first label in task_label wins.
        "gpu": "env TASKPROC_JOB={task_name}",
    },
).populate()
