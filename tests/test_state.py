"""`RunState`: each transition on a small state, compared whole. No executor, thread or disk.

Tasks are strings; a task's class is its first letter (``a1`` and ``a2`` are of class ``a``).
Class ``p`` runs through a prefix (it takes no place on the executor); class ``g`` carries
the limited label ``gpu``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import pytest

from taskproc.run._state import RunState, Slot, Start

SLOTS = {
    "p": Slot((), on_executor=False),
    "g": Slot(("gpu",)),
    "q": Slot(("cpu",), on_executor=False, batch=3),  # batches of 3, `cpu` commands limited
    "w": Slot((), on_executor=False, batch=10, budget=2.5),  # batches within 2.5 s
}


def make(
    upstream: Mapping[str, Sequence[str]],
    *,
    capacity: int = 8,
    policy: str = "eager",
    limits: Mapping[str, int] | None = None,
    keep: Mapping[str, Sequence[str]] | None = None,
    tolerates: Mapping[str, Sequence[str]] | None = None,
    costs: Mapping[str, float] | None = None,
) -> RunState[str]:
    return RunState.plan(
        upstream,
        group_of=lambda t: t[0],
        slot_of=lambda g: SLOTS.get(str(g), Slot(())),
        limits=limits or {"gpu": 1},
        policy=policy,
        capacity=capacity,
        keep=keep,
        tolerates=tolerates,
        cost_of=lambda t: (costs or {}).get(t, 0.0),
    )


def view(state: RunState[str]) -> dict[str, Any]:
    """The whole state as plain data, to compare before and after a transition."""

    def names(x: Any) -> list[str]:
        return sorted(x)

    ready: dict[Hashable, list[str]] = {g: list(q) for g, q in state.ready.items() if q}
    return {
        "ready": ready,
        "running": names(state.running),
        "waiting": dict(sorted(state.waiting.items())),
        "done": list(state.done),
        "failures": list(state.failures),
        "suspects": names(state.suspects),
        "inflight": state.inflight,
        "labels": dict(state.counter.running),
        "stop_new": state.stop_new,
        "abort": state.abort,
    }


def taken(state: RunState[str]) -> list[str]:
    return [s.task for s in state.take()]


DIAMOND = {"a1": [], "a2": [], "b1": ["a1", "a2"], "c1": ["b1"]}


def test_plan_makes_the_roots_ready() -> None:
    state = make(DIAMOND)
    assert view(state) == {
        "ready": {"a": ["a1", "a2"]},
        "running": [],
        "waiting": {},
        "done": [],
        "failures": [],
        "suspects": [],
        "inflight": 0,
        "labels": {"gpu": 0},
        "stop_new": False,
        "abort": False,
    }
    assert state.idle()  # nothing runs or waits yet: take() starts the ready ones


@pytest.mark.parametrize(
    ("upstream", "capacity", "limits", "expect"),
    [
        # every ready task, up to the executor's capacity
        ({"a1": [], "a2": [], "a3": []}, 2, None, ["a1", "a2"]),
        # a label limit holds back the second gpu task, not the others
        ({"g1": [], "g2": [], "a1": []}, 8, {"gpu": 1}, ["g1", "a1"]),
        # prefix runs take no place on the executor
        ({"p1": [], "p2": [], "a1": []}, 1, None, ["p1", "p2", "a1"]),
        # nothing waits on a task that is not ready
        ({"a1": [], "b1": ["a1"]}, 8, None, ["a1"]),
    ],
)
def test_take(
    upstream: dict[str, list[str]],
    capacity: int,
    limits: dict[str, int] | None,
    expect: list[str],
) -> None:
    state = make(upstream, capacity=capacity, limits=limits)
    assert sorted(taken(state)) == sorted(expect)
    assert sorted(state.running) == sorted(expect)
    assert state.inflight == sum(1 for t in expect if not t.startswith("p"))
    assert taken(state) == []  # nothing more fits until something finishes


def test_succeeded_releases_and_readies_downstream() -> None:
    state = make(DIAMOND)
    taken(state)
    state.succeeded("a1")
    before = view(state)
    state.succeeded("a2")
    after = view(state)
    assert before["ready"] == {} and after["ready"] == {"b": ["b1"]}
    assert after["done"] == ["a1", "a2"] and after["running"] == [] and after["inflight"] == 0


def test_a_label_frees_when_its_task_finishes() -> None:
    state = make({"g1": [], "g2": []})
    assert taken(state) == ["g1"]
    assert view(state)["labels"] == {"gpu": 1}
    state.succeeded("g1")
    assert taken(state) == ["g2"]


@pytest.mark.parametrize(
    ("policy", "stop_new", "abort", "then"),
    [
        ("immediate", False, True, []),
        ("eager", True, False, []),
        ("lazy", False, False, ["a3"]),
    ],
)
def test_error_policies(policy: str, stop_new: bool, abort: bool, then: list[str]) -> None:
    state = make({"a1": [], "a2": [], "a3": [], "b1": ["a1"]}, capacity=2, policy=policy)
    assert taken(state) == ["a1", "a2"]
    state.failed("a1")
    after = view(state)
    assert (after["stop_new"], after["abort"]) == (stop_new, abort)
    assert after["failures"] == ["a1"] and after["running"] == ["a2"]
    assert taken(state) == then
    state.succeeded("a2")
    for task in then:
        state.succeeded(task)
    assert "b1" not in sum(view(state)["ready"].values(), [])  # downstream of a failure never
    assert state.idle()


# -- tolerated failures (allow_failed) ---------------------------------------------------
# Trainers t1..t3; m1 picks the best and tolerates their failure; s1 needs them all; r1
# reports on s1 and tolerates its failure; e1 needs s1.
TRAIN = {
    "t1": [],
    "t2": [],
    "t3": [],
    "m1": ["t1", "t2", "t3"],
    "s1": ["t1", "t2", "t3"],
    "r1": ["s1"],
    "e1": ["s1"],
}
TOLERATES = {"m1": ["t1", "t2", "t3"], "r1": ["s1"]}


def view_tolerant(state: RunState[str]) -> dict[str, Any]:
    return {**view(state), "blocked": dict(state.blocked), "skipped": dict(state.skipped)}


def test_lazy_readies_the_tasks_that_tolerate_a_failure_and_skips_the_others() -> None:
    state = make(TRAIN, policy="lazy", tolerates=TOLERATES)
    assert taken(state) == ["t1", "t2", "t3"]
    state.failed("t2")
    assert view_tolerant(state) == {
        **view_tolerant(make(TRAIN)),
        "ready": {},
        "running": ["t1", "t3"],
        "inflight": 2,
        "failures": ["t2"],
        "blocked": {"s1": "t2"},  # it needs t2's result: it will not run
    }
    state.succeeded("t1")
    state.succeeded("t3")
    after = view_tolerant(state)
    # m1 runs with what succeeded; s1 is skipped, a failure to r1 (which tolerates it) and
    # to e1 (which does not: skipped in turn).
    assert after["ready"] == {"m": ["m1"], "r": ["r1"]}
    assert after["skipped"] == {"s1": "t2", "e1": "s1"} and after["blocked"] == {}
    assert after["done"] == ["t1", "t3"] and after["failures"] == ["t2"]
    assert taken(state) == ["m1", "r1"]
    state.succeeded("m1")
    state.succeeded("r1")
    assert state.idle() and taken(state) == []


@pytest.mark.parametrize("policy", ["eager", "immediate"])
def test_only_lazy_runs_past_a_tolerated_failure(policy: str) -> None:
    state = make(TRAIN, policy=policy, tolerates=TOLERATES)
    taken(state)
    state.failed("t2")
    state.succeeded("t1")
    state.succeeded("t3")
    after = view_tolerant(state)
    assert after["ready"] == {} and after["blocked"] == {} and after["skipped"] == {}
    assert taken(state) == []


def test_a_task_that_tolerates_one_failure_needs_its_other_upstream_tasks() -> None:
    state = make({"a1": [], "a2": [], "b1": ["a1", "a2"]}, policy="lazy", tolerates={"b1": ["a1"]})
    taken(state)
    state.failed("a2")  # not tolerated
    state.failed("a1")
    assert view_tolerant(state)["skipped"] == {"b1": "a2"} and taken(state) == []
    assert state.idle()


def test_held_then_requeued_goes_first_and_is_not_announced_again() -> None:
    state = make({"a1": [], "a2": []}, capacity=1)
    assert state.take() == [Start("a1", True)]
    state.held("a1", "claim of runner B")
    assert view(state)["waiting"] == {"a1": "claim of runner B"}
    assert view(state)["inflight"] == 0
    assert state.take() == [Start("a2", True)]
    state.succeeded("a2")
    state.requeue("a1")  # runner B died: take its task over
    assert view(state)["ready"] == {"a": ["a1"]} and view(state)["waiting"] == {}
    assert state.take() == [Start("a1", False)]


def test_a_waiting_task_finished_by_its_holder() -> None:
    state = make({"a1": [], "b1": ["a1"]})
    taken(state)
    state.held("a1", "B")
    state.succeeded("a1")  # B's result is fresh
    assert view(state)["waiting"] == {} and view(state)["ready"] == {"b": ["b1"]}


def test_a_dead_worker_is_traced_to_its_task() -> None:
    state = make({"a1": [], "a2": [], "a3": []}, capacity=3)
    assert taken(state) == ["a1", "a2", "a3"]
    # the pool broke: every task in flight is retried, alone
    for task in ("a1", "a2", "a3"):
        assert state.worker_died(task, can_retry=True)
    assert view(state)["suspects"] == ["a1", "a2", "a3"]
    assert state.take() == [Start("a3", False)]  # one at a time while suspects remain
    assert taken(state) == []
    state.succeeded("a3")
    assert taken(state) == ["a2"]
    assert not state.worker_died("a2", can_retry=True)  # it broke the pool alone: it failed
    state.failed("a2")
    assert view(state)["failures"] == ["a2"]


def test_a_dead_worker_of_a_pool_we_do_not_own_is_a_failure() -> None:
    state = make({"a1": []})
    taken(state)
    assert not state.worker_died("a1", can_retry=False)
    assert view(state)["suspects"] == []


def test_set_aside_leaves_a_task_for_the_next_round() -> None:
    state = make({"a1": [], "b1": ["a1"]})
    taken(state)
    state.set_aside("a1")
    assert view(state)["running"] == [] and view(state)["done"] == []
    assert taken(state) == [] and state.idle()


def test_results_are_freed_after_their_last_user() -> None:
    upstream = {"b1": [], "b2": []}  # both use the cached a1; b2 also uses c1
    keep = {"b1": ["a1"], "b2": ["a1", "c1"]}
    state = make(upstream, keep=keep)
    assert state.consumers == {"a1": 2, "c1": 1}
    taken(state)
    assert state.succeeded("b1", keep["b1"]) == []
    assert state.succeeded("b2", keep["b2"]) == ["a1", "c1"]


def test_every_started_task_is_announced_once() -> None:
    """However a task is requeued, `take` marks only its first start as first: the hooks
    (progress bars, statistics) count each task once."""
    state = make({"a1": [], "a2": []}, capacity=1)
    starts: list[Start[str]] = []
    starts += state.take()
    state.worker_died("a1", can_retry=True)
    starts += state.take()
    state.held("a1", "B")
    state.requeue("a1")
    starts += state.take()
    state.succeeded("a1")
    starts += state.take()
    assert [(s.task, s.first) for s in starts] == [
        ("a1", True),
        ("a1", False),
        ("a1", False),
        ("a2", True),
    ]


def batches(starts: list[Start[str]]) -> list[list[str]]:
    """The tasks of each command started, in order."""
    out: dict[int, list[str]] = {}
    for start in starts:
        assert start.command, start
        out.setdefault(start.command, []).append(start.task)
    return list(out.values())


def test_a_command_runs_a_batch_and_holds_the_place() -> None:
    """Seven ready tasks, batches of 3, two `cpu` commands at once: two batches start; a task
    that finishes frees nothing, the command's end does."""
    state = make({f"q{i}": [] for i in range(1, 8)}, limits={"cpu": 2})
    assert batches(state.take()) == [["q1", "q2", "q3"], ["q4", "q5", "q6"]]
    assert state.take() == []
    before = view(state)
    state.succeeded("q1")
    after = view(state)
    assert after["labels"] == before["labels"] == {"cpu": 2}
    assert after["running"] == ["q2", "q3", "q4", "q5", "q6"] and after["done"] == ["q1"]
    assert state.take() == []
    state.succeeded("q2")
    state.succeeded("q3")
    assert not state.idle() and state.take() == []  # the command has not ended yet
    state.command_ended(1)
    assert view(state)["labels"] == {"cpu": 1} and state.commands == {2: ("cpu",)}
    assert [s.task for s in state.take()] == ["q7"]
    state.command_ended(1)  # a second end changes nothing
    assert view(state)["labels"] == {"cpu": 2}


def test_tasks_a_batch_never_started_go_back_first() -> None:
    state = make({f"q{i}": [] for i in range(1, 6)}, limits={"cpu": 1})
    assert batches(state.take()) == [["q1", "q2", "q3"]]
    state.succeeded("q1")
    state.failed("q2")  # the running one, when the command died
    state.requeue("q3")  # not started
    state.command_ended(1)
    state.stop_new = False  # (as with 'lazy', where nothing downstream is blocked)
    starts = state.take()
    assert batches(starts) == [["q3", "q4", "q5"]]
    assert [s.first for s in starts] == [False, True, True]  # hooks heard of b3 once


def test_batches_are_spread_over_free_places() -> None:
    state = make({f"q{i}": [] for i in range(1, 5)}, limits={"cpu": 4})
    assert batches(state.take()) == [["q1"], ["q2"], ["q3"], ["q4"]]


def test_a_batch_is_filled_within_its_budget() -> None:
    costs = {"w1": 1.0, "w2": 1.0, "w3": 1.0, "w4": 2.0, "w5": 0.0, "w6": 3.0}
    state = make({t: [] for t in costs}, costs=costs)
    assert batches(state.take()) == [["w1", "w2"], ["w3"], ["w4", "w5"], ["w6"]]


def test_prefix_runs_without_batches_are_commands_of_one() -> None:
    state = make({"p1": [], "p2": []})
    starts = state.take()
    assert batches(starts) == [["p1"], ["p2"]] and not state.idle()
    state.succeeded("p1")
    state.succeeded("p2")
    assert not state.idle()
    state.command_ended(1)
    state.command_ended(2)
    assert state.idle()
