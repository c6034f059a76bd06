"""Running a plan: one fresh process per case, with reuse, skipping and clean-up.

- A case whose system is unavailable (venv not built, engine not importable) is an ERROR
  with that cause, without starting anything.
- After a TIMEOUT or ERROR, the larger sizes of the same series are SKIPPED: they would fail
  the same way, only slower.
- A cached rerun runs in the work folder of the first of its ``reuse`` cases that succeeded.
- Cases of one batch (the thread pools of 2 to 64 threads compared by a target) run in rounds,
  one run of each per round, at the place of the batch's first case.
- A work folder is set aside as soon as no later case needs it, and deleted at the end of the
  run. Deleting it at once would slow down the cases that follow: on ext4 without a journal
  (as on the benchmark machines) allocating an inode skips every inode freed in the last 60 s
  (360 s while its table block is dirty), one buffer lookup each, so removing a 60,000-file
  cache made the next case's file creations several times slower. When the disk runs low on
  space or inodes, the set-aside folders are deleted and the run waits for that window to pass.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from suite.measure import error_line, parse_result, run_process
from suite.records import Case, Measurement, Status
from suite.systems import system_named


@dataclass(frozen=True, slots=True)
class RunSettings:
    venvs_dir: Path
    work_dir: Path
    timeout_s: float
    unavailable: Mapping[str, str]  # system -> why it cannot run
    settle_s: float = 0.0  # wait after deleting scratch folders mid-run (see the docstring)


# Delete the set-aside folders mid-run when fewer inodes or bytes than these are left.
_MIN_FREE_INODES = 3_000_000
_MIN_FREE_BYTES = 20 << 30


class _Trash:
    """Scratch folders set aside, to be deleted when deleting them slows down nothing."""

    def __init__(self, work_dir: Path, settle_s: float) -> None:
        self._dir = work_dir / ".trash"
        self._settle_s = settle_s
        self._names = itertools.count()

    def discard(self, folder: Path) -> None:
        if not folder.exists():
            return
        self._dir.mkdir(exist_ok=True)
        target = self._dir / f"{next(self._names)}-{folder.name}"
        while target.exists():
            target = self._dir / f"{next(self._names)}-{folder.name}"
        os.rename(folder, target)

    def purge(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def purge_if_low(self) -> None:
        """Delete now if the disk runs short, then let the freed inodes age (see above)."""
        if not self._dir.exists():
            return
        st = os.statvfs(self._dir)
        if st.f_favail >= _MIN_FREE_INODES and st.f_bavail * st.f_frsize >= _MIN_FREE_BYTES:
            return
        self.purge()
        os.sync()  # clean inode table blocks age out after 60 s, dirty ones after 360 s
        time.sleep(self._settle_s)


def _last_uses(plan: Sequence[Case]) -> dict[str, int]:
    """For each case id, the index of the last case that may run in its work folder."""
    last: dict[str, int] = {}
    for index, case in enumerate(plan):
        last[case.id] = max(last.get(case.id, index), index)
        for source in case.reuse:
            last[source] = index
    return last


def _skip_reason(
    case: Case, done: Mapping[str, Measurement], failed: Mapping[tuple[str, str, str], Measurement]
) -> str:
    earlier = failed.get(case.series)
    if earlier is not None:
        return f"after {earlier.status.value} at {earlier.case.size:,}"
    if case.reuse and not any(done.get(r, None) and done[r].ok for r in case.reuse):
        return "no cache to rerun: its fresh run did not succeed"
    return ""


def _work_folder(case: Case, done: Mapping[str, Measurement], settings: RunSettings) -> Path:
    for source in case.reuse:
        if source in done and done[source].ok:
            return settings.work_dir / done[source].case.slug
    return settings.work_dir / case.slug


def run_case(case: Case, work: Path, settings: RunSettings) -> Measurement:
    load = os.getloadavg()[0]  # recorded so a reader can tell a busy machine's figures apart
    system = system_named(case.system)
    params = json.dumps({**system.params, **case.params})
    command = system.command(settings.venvs_dir, case.workload, params, work)
    logs = settings.work_dir / "logs" / case.slug
    outcome = run_process(command, system.env(), settings.work_dir, settings.timeout_s, logs)
    if outcome.timed_out:
        # No peak memory for a failed case: wait4's figure includes this runner's (see
        # measure.py) and the workload could not report its own.
        return Measurement(
            case,
            Status.TIMEOUT,
            wall_s=outcome.wall_s,
            error=f"no result within {settings.timeout_s:.0f} s",
        )
    result = parse_result(outcome.stdout)
    if outcome.returncode != 0 or result is None:
        why = error_line(outcome.stderr, outcome.stdout) or f"exit status {outcome.returncode}"
        return Measurement(case, Status.ERROR, wall_s=outcome.wall_s, error=why)
    return Measurement(
        case,
        Status.OK,
        time_s=float(result["time_s"]),
        n_tasks=int(result["n_tasks"]) if "n_tasks" in result else None,
        nbytes=int(result["nbytes"]) if "nbytes" in result else None,
        # The workload's own figure: wait4's would include this runner's peak (see common.py).
        peak_rss=int(result.get("peak_rss", outcome.peak_rss)),
        wall_s=outcome.wall_s,
        fields={**result, "load_before": load},
    )


def _best_of(case: Case, work: Path, settings: RunSettings, trash: _Trash) -> Measurement:
    """The fastest of ``case.repeats`` runs; the first failure if none succeeded."""
    return _in_rounds([(case, work)], settings, trash)[case.id]


def _in_rounds(
    cases: Sequence[tuple[Case, Path]], settings: RunSettings, trash: _Trash
) -> dict[str, Measurement]:
    """Each case (in its work folder) run once per round, ``repeats`` rounds (the most of the
    cases'); a case stops at its first failure. By case id: the fastest run of each, or its
    failure if none succeeded."""
    runs: dict[str, list[Measurement]] = {case.id: [] for case, _ in cases}
    for round_no in range(max(case.repeats for case, _ in cases)):
        for case, work in cases:
            done = runs[case.id]
            if round_no >= case.repeats or (done and not done[-1].ok):
                continue
            if work.name == case.slug:
                trash.discard(work)  # a fresh run starts from nothing
            done.append(run_case(case, work, settings))
    out = {}
    for case, _ in cases:
        ok = [m for m in runs[case.id] if m.ok]
        if not ok:
            out[case.id] = runs[case.id][-1]
            continue
        best = min(ok, key=lambda m: m.time_s or 0.0)
        out[case.id] = replace(best, fields={**best.fields, "times": [m.time_s for m in ok]})
    return out


def run_plan(
    plan: Sequence[Case], settings: RunSettings, report: Callable[[int, Measurement], None]
) -> list[Measurement]:
    """Run every case in order; ``report(index, measurement)`` is called after each."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    trash = _Trash(settings.work_dir, settings.settle_s)
    trash.purge()  # left by an interrupted run
    try:
        return _run_plan(plan, settings, report, trash)
    finally:
        trash.purge()


def _run_plan(
    plan: Sequence[Case],
    settings: RunSettings,
    report: Callable[[int, Measurement], None],
    trash: _Trash,
) -> list[Measurement]:
    last_use = _last_uses(plan)
    done: dict[str, Measurement] = {}
    failed: dict[tuple[str, str, str], Measurement] = {}
    batched: dict[str, Measurement] = {}  # measured with the first case of their batch
    for index, case in enumerate(plan):
        if case.id in batched:
            measurement = batched.pop(case.id)
        elif case.system in settings.unavailable:
            measurement = Measurement(case, Status.ERROR, error=settings.unavailable[case.system])
        elif reason := _skip_reason(case, done, failed):
            measurement = Measurement(case, Status.SKIPPED, error=reason)
        elif case.batch:
            batch = [
                (c, _work_folder(c, done, settings))
                for c in plan[index:]
                if c.batch == case.batch
                and c.system not in settings.unavailable
                and not _skip_reason(c, done, failed)
            ]
            batched.update(_in_rounds(batch, settings, trash))
            measurement = batched.pop(case.id)
        else:
            measurement = _best_of(case, _work_folder(case, done, settings), settings, trash)
        done[case.id] = measurement
        if measurement.status in (Status.ERROR, Status.TIMEOUT):
            failed.setdefault(case.series, measurement)
        report(index, measurement)
        for case_id, last in last_use.items():
            if last == index and case_id in done:
                trash.discard(settings.work_dir / done[case_id].case.slug)
        trash.purge_if_low()
    return list(done.values())
