"""Tasks that tolerate failed upstream tasks (`allow_failed`): aggregating over what succeeded.

Six trainers, the odd seeds fail until a flag file is there; `Best` picks the best model of
those that trained. Run on every executor, with the error policies, and again after a fix.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from concurrent.futures import Executor
from pathlib import Path

import pytest

from taskproc import (
    FailedTaskError,
    Future,
    FutureDict,
    FutureList,
    Graph,
    InlineExecutor,
    Task,
    TaskState,
    allow_failed,
)
from taskproc.model import Ledger, Reason
from taskproc.run import collect, decide

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

SEEDS = range(6)
FAILING = [1, 3, 5]


class Data(Task):
    def run_task(self) -> list[int]:
        return list(range(10))


class Train(Task):
    def __init__(self, seed: int, folder: str) -> None:
        self.data = Data()
        self.seed = seed
        self.folder = folder

    def run_task(self) -> float:
        if self.seed in FAILING and not Path(self.folder, "fixed").exists():
            raise ValueError(f"seed {self.seed} diverged")
        return sum(self.data.get_result()) / 10 * self.seed


class Best(Task):
    """The model selection: the best score of the trainers that succeeded."""

    def __init__(self, folder: str) -> None:
        self.models = FutureList([Train(s, folder) for s in SEEDS], allow_failed=True)

    def run_task(self) -> tuple[float, list[str], list[str]]:
        scores = self.models.get_result()
        ok = [s for s in scores if not isinstance(s, FailedTaskError)]
        failed = [s for s in scores if isinstance(s, FailedTaskError)]
        causes = [f"{e.task}: {type(e.__cause__).__name__}: {e.__cause__}" for e in failed]
        return max(ok), [e.task for e in failed], causes


class Average(Task):
    """A sibling consumer that needs every trainer: it never runs while one fails."""

    def __init__(self, folder: str) -> None:
        self.models = FutureList([Train(s, folder) for s in SEEDS])

    def run_task(self) -> float:
        return sum(self.models.get_result()) / len(SEEDS)


class Main(Task):
    def __init__(self, folder: str) -> None:
        self.best = Best(folder)
        self.average = allow_failed(Average(folder))

    def run_task(self) -> tuple[float, list[str]]:
        average = self.average.get_result()
        assert isinstance(average, FailedTaskError)
        cause = average.__cause__
        assert isinstance(cause, FailedTaskError)
        facts = [average.task, str(average).splitlines()[0], cause.task, cause.error_type]
        return self.best.get_result()[0], facts


class Recorder:
    """The hooks: what became of each task name in a run."""

    def __init__(self) -> None:
        self.finished: dict[str, list[str]] = {}

    def run_started(self, plan: Mapping[str, tuple[int, int]]) -> None:
        pass

    def task_started(self, task_name: str) -> None:
        pass

    def task_finished(self, task_name: str, state: TaskState) -> None:
        self.finished.setdefault(task_name.rsplit(".", 1)[-1], []).append(str(state))

    def run_finished(self) -> None:
        pass


def run(
    root: Task, executor: Executor, policy: str = "lazy", prefixes: dict[str, str] | None = None
) -> tuple[ExceptionGroup[FailedTaskError] | None, dict[str, list[str]]]:
    """Run `root`; the failures it raised (None if it did not) and what became of each task."""
    rec = Recorder()
    try:
        root.run_graph(
            executor=executor,
            error_handling=policy,  # type: ignore[arg-type]
            hooks=[rec],
            prefixes=prefixes,
        )
    except ExceptionGroup as group:
        return group, rec.finished
    return None, rec.finished


def failed_tasks(group: ExceptionGroup[FailedTaskError] | None) -> list[str]:
    assert group is not None
    errors = [e for e in group.exceptions if isinstance(e, FailedTaskError)]
    assert len(errors) == len(group.exceptions)
    return sorted(e.task for e in errors)


def test_the_best_of_what_succeeded_then_the_fix_then_cached(
    cache: Path, tmp_path: Path, executor: Executor
) -> None:
    folder = str(tmp_path)
    with Graph(cache):
        best = Best(folder)
        names = [repr(Train(s, folder)) for s in FAILING]
    group, ran = run(best, executor)
    # The failures are reported as always; the tolerant task ran with what succeeded.
    assert failed_tasks(group) == names
    assert ran["Train"].count("failed") == 3 and ran["Train"].count("done") == 3
    assert ran["Best"] == ["done"]
    score, failed, causes = best.get_result()
    assert score == 4.5 * 4  # seed 4, the best of 0, 2, 4
    assert failed == names  # each failed entry names its task, in the list's order
    assert causes == [
        f"{n}: ValueError: seed {s} diverged" for n, s in zip(names, FAILING, strict=True)
    ]

    # The same failures again: the trainers are retried, Best's result is still fresh.
    group, ran = run(best, executor)
    assert failed_tasks(group) == names and ran["Best"] == ["cached"]

    # Fixed: the trainers that failed rerun, and Best with them.
    Path(folder, "fixed").touch()
    group, ran = run(best, executor)
    assert group is None
    assert ran == {"Train": ["done"] * 3, "Best": ["done"]}
    assert best.get_result() == (4.5 * 5, [], [])

    group, ran = run(best, executor)
    assert group is None and ran == {}  # all cached


def test_a_consumer_that_does_not_tolerate_the_failure_is_not_run(
    cache: Path, tmp_path: Path, executor: Executor
) -> None:
    folder = str(tmp_path)
    with Graph(cache):
        main = Main(folder)
        names = [repr(Train(s, folder)) for s in FAILING]
    group, ran = run(main, executor)
    assert failed_tasks(group) == names
    assert "Average" not in ran  # needs every trainer: not run
    assert ran["Best"] == ["done"] and ran["Main"] == ["done"]
    # Main tolerates Average: it gets an error that names Average and the task that failed.
    score, facts = main.get_result()
    assert score == 18.0
    with Graph(cache):
        average = repr(Average(folder))
    cause = facts[2]  # the failure that kept it from running (the first, on a pool)
    assert cause in names
    assert facts == [
        average,
        f"{average} failed: UpstreamFailed: not run, because {cause} failed",
        cause,
        "ValueError",
    ]
    with Graph(cache), pytest.raises(LookupError):
        Average(folder).get_result()


class WrappedBest(Best):
    task_label = "wrapped"


def test_a_tolerant_task_run_through_a_prefix_command(cache: Path, tmp_path: Path) -> None:
    folder = str(tmp_path)
    with Graph(cache):
        best = WrappedBest(folder)
        names = [repr(Train(s, folder)) for s in FAILING]
    group, ran = run(best, InlineExecutor(), prefixes={"wrapped": "env X=1"})
    assert failed_tasks(group) == names and ran["WrappedBest"] == ["done"]
    score, failed, causes = best.get_result()
    assert (score, failed) == (18.0, names)
    assert causes[0] == f"{names[0]}: ValueError: seed 1 diverged"  # sent to the command


@pytest.mark.parametrize("policy", ["eager", "immediate"])
def test_the_policies_that_stop_still_stop(cache: Path, tmp_path: Path, policy: str) -> None:
    with Graph(cache):
        best = Best(str(tmp_path))
        group, ran = run(best, InlineExecutor(), policy)
        assert failed_tasks(group) == [repr(Train(1, str(tmp_path)))]
    assert ran == {"Data": ["done"], "Train": ["done", "failed"]}  # nothing new after it


def test_a_later_result_of_the_failed_input_makes_the_tolerant_task_stale(
    cache: Path, tmp_path: Path
) -> None:
    folder = str(tmp_path)
    with Graph(cache):
        best = Best(folder)
    run(best, InlineExecutor())
    Path(folder, "fixed").touch()
    with Graph(cache):
        for seed in FAILING:  # computed by another pipeline
            Train(seed, folder).run_graph(executor=InlineExecutor())
    with Graph(cache):
        best = Best(folder)
        plan = decide(
            collect(best),
            best,
            force_root=False,
            code_id_of=lambda c: "",
            check_code=False,
            ledger=Ledger(),
        )
    assert plan.stale == {best: Reason.RECOVERED}
    assert Reason.RECOVERED.value == "an upstream task that had failed when it ran has a result now"


class Report(Task):
    """Tolerates one upstream task and one dict of them."""

    def __init__(self, folder: str) -> None:
        self.one = allow_failed(Train(1, folder))
        self.named = FutureDict({f"seed{s}": Train(s, folder) for s in (0, 3)}, allow_failed=True)
        self.first: Future[float | FailedTaskError] = self.named["seed3"]

    def run_task(self) -> dict[str, str]:
        values = {"one": self.one.get_result(), **self.named.get_result()}
        values["first"] = self.first.get_result()
        return {k: type(v).__name__ for k, v in values.items()}


def test_one_future_and_a_dict_that_tolerate_failures(
    cache: Path, tmp_path: Path, executor: Executor
) -> None:
    with Graph(cache):
        report = Report(str(tmp_path))
    group, _ = run(report, executor)
    assert len(failed_tasks(group)) == 2
    assert report.get_result() == {
        "one": "FailedTaskError",
        "seed0": "float",
        "seed3": "FailedTaskError",
        "first": "FailedTaskError",
    }
    # deps/ links follow the tolerated futures as they follow the others.
    deps = {p.name for p in (report.task_worker.task_dir / "deps").iterdir()}
    assert deps == {"one", "named.seed0", "named.seed3", "first.seed3"}


def test_tolerating_is_part_of_the_identity_and_checked(tmp_path: Path) -> None:
    with Graph(tmp_path / "cache"):
        plain = FutureList([Data()])
        tolerant = FutureList([Data()], allow_failed=True)
        assert plain._tp_ref() != tolerant._tp_ref()
        assert repr(tolerant) == "FutureList(<1 futures>, allow_failed=True)"
        with pytest.raises(TypeError, match="allow_failed must be True or False, got 1"):
            FutureList([Data()], allow_failed=1)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match=r"allow_failed\(future\) must be a future"):
            allow_failed(3)  # type: ignore[call-overload]
        main = Main(str(tmp_path))
        assert {t.task_name for t in main._tp.tolerated} == {"test_allow_failed.Average"}
        # A task reached through a tolerant future and a plain one needs its result.
        assert not Both(str(tmp_path), tolerant_first=True)._tp.tolerated
        assert not Both(str(tmp_path), tolerant_first=False)._tp.tolerated


class Both(Task):
    def __init__(self, folder: str, tolerant_first: bool) -> None:
        if tolerant_first:
            self.tolerant = allow_failed(Train(1, folder))
        self.plain = FutureList([Train(0, folder), Train(1, folder)])
        self.tolerant = allow_failed(Train(1, folder))


class BadData(Task):
    def run_task(self) -> list[int]:
        raise OSError("no data")


class Fit(Task):
    def __init__(self, seed: int) -> None:
        self.data = BadData()
        self.seed = seed

    def run_task(self) -> int:
        return len(self.data.get_result()) + self.seed


class Score(Task):
    def __init__(self, seed: int) -> None:
        self.fit = Fit(seed)

    def run_task(self) -> int:
        return self.fit.get_result()


class Collect(Task):
    def __init__(self) -> None:
        self.scores = FutureList([Score(s) for s in range(2)], allow_failed=True)

    def run_task(self) -> list[list[str]]:
        out = []
        for error in self.scores.get_result():
            assert isinstance(error, FailedTaskError)
            chain = [error]
            while isinstance(chain[-1].__cause__, FailedTaskError):
                chain.append(chain[-1].__cause__)
            out.append([f"{e.task} {e.error_type}: {e.error_message}" for e in chain])
        return out


def test_entries_not_run_because_their_upstream_failed(cache: Path, executor: Executor) -> None:
    with Graph(cache):
        collect = Collect()
    group, ran = run(collect, executor)
    assert failed_tasks(group) == ["test_allow_failed.BadData()"]
    assert ran == {"BadData": ["failed"], "Collect": ["done"]}  # Fit and Score never ran
    mine = "test_allow_failed"
    assert collect.get_result() == [
        [
            f"{mine}.Score(seed={s}) UpstreamFailed: not run, because {mine}.BadData() failed",
            f"{mine}.Fit(seed={s}) UpstreamFailed: not run, because {mine}.BadData() failed",
            f"{mine}.BadData() OSError: no data",
        ]
        for s in range(2)
    ]


def _observed(future: Future[object]) -> object:
    """What `get_result` gives now: the value, or the exception's type and first line."""
    try:
        value = future.get_result()
    except Exception as exc:
        return (type(exc).__name__, str(exc).splitlines()[0])
    if isinstance(value, FailedTaskError):
        return ("the failure of", value.task)
    return value


def test_views_change_nothing_a_later_get_result_sees(cache: Path, tmp_path: Path) -> None:
    """why, --dry-run, status and graph plan on a ledger of their own: after each of them,
    every future gives what it gave before (a run's facts never stay on the task objects)."""
    from taskproc.views import dry_run_report, scan, task_states

    with Graph(cache):
        main = Main(str(tmp_path))
    group, _ = run(main, InlineExecutor())
    assert group is not None
    futures: list[Future[object]] = [
        main.best,
        main.best.models,
        main.average,
        main.best.models[0],
        main.best.models[1],
    ]
    before = [_observed(f) for f in futures]
    assert before[2] == ("ResultMissingError", before[2][1])  # outside a run: the store
    main.why()
    dry_run_report(main, detect_source_change=True, force_entrypoint=False)
    scan(main._tp.store)
    task_states(main, detect_source_change=True)
    assert [_observed(f) for f in futures] == before
