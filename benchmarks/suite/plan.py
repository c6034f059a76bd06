"""Which cases a run measures, for each size profile.

Sizes are per (workload group, system); the first key found of ``system:variant``,
``system``, ``*:variant`` and ``*`` gives them. The published taskproc 0.25.3 gets small
sizes only: it runs about 4 tasks a second on a thread pool, and its larger runs would only
time out.

Cases are ordered by workload, then size, then variant, then system, so the systems compared
by a ratio are measured next to each other in time (the machine is shared and noisy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from suite.records import Case
from suite.systems import DASK, DASK_GRAPH, FLOOR, TASKPROC, TASKPROC_OLD

Sizes = Mapping[str, tuple[int, ...]]

GROUPS = ("fanin", "cached", "choose", "chain", "big", "cpu")
WORKERS = 2  # the machine's cores; every pool gets this many workers unless stated
# Thread pools larger than the machine, as I/O-bound pipelines run them (Python's default
# ThreadPoolExecutor() has cores + 4 threads): the thread-pool fan-in and Choose cases are also
# run on these, for taskproc and the floor only, at one size (`Profile.thread_sizes`).
THREAD_COUNTS = (6, 32, 64)
_THREADED = (FLOOR, TASKPROC)
BIG_VARIANTS = ("random-9", "random-0", "compressible-9", "compressible-0")
OLD_SYS = TASKPROC_OLD


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    timeout_s: float
    cpu_seconds: float
    sizes: Mapping[str, Sizes]
    # Best of N (by workload) for the short cases whose figure a busy neighbour can swamp:
    # cached reruns and big-result loads (well under a second) and the CPU-bound speed-up
    # (needs both cores free).
    repeats: Mapping[str, int] = field(default_factory=dict)
    # The size of the fan-in and Choose cases run on THREAD_COUNTS threads, by group.
    thread_sizes: Mapping[str, int] = field(default_factory=dict)


def threads_variant(workers: int) -> str:
    """The variant of a thread-pool case with `workers` threads (2 workers: plain "thread")."""
    return "thread" if workers == WORKERS else f"{workers} threads"


def thread_count(variant: str) -> int | None:
    """The number of threads of a thread-pool variant; None for any other variant."""
    if variant == "thread":
        return WORKERS
    count, _, rest = variant.partition(" ")
    return int(count) if rest == "threads" and count.isdigit() else None


def variant_key(variant: str) -> tuple[str, int]:
    """Sorts the thread-pool variants by thread count, right after each other."""
    count = thread_count(variant)
    return ("thread", count) if count is not None else (variant, 0)


_ALL = (FLOOR, TASKPROC, TASKPROC_OLD, DASK, DASK_GRAPH)
_CACHING = (FLOOR, TASKPROC, TASKPROC_OLD)

SMOKE = Profile(
    "smoke",
    timeout_s=60,
    cpu_seconds=0.2,
    sizes={
        "fanin": {
            "*": (50, 500),
            DASK: (50,),
            f"{OLD_SYS}:process": (20,),
            f"{OLD_SYS}:thread": (5,),
        },
        "cached": {"*": (50, 500), OLD_SYS: (20,)},
        "choose": {"*": (8, 12), OLD_SYS: (4,)},
        "chain": {"*": (20, 200), OLD_SYS: (5,)},
        "big": {"*": (8,)},
        "cpu": {"*": (4,)},
    },
    thread_sizes={"fanin": 500, "choose": 12},
)

# 100,000-task fan-ins run on the thread pool only (the cached rerun and the memory target
# need one); --size full adds the process pool there and 1,000,000. taskproc 0.25.3 takes
# 30 s for Choose(20, 10) on a thread pool and times out on Choose(40, 20), so it stops at 20.
DEFAULT = Profile(
    "default",
    timeout_s=240,
    cpu_seconds=0.5,
    sizes={
        "fanin": {
            "*:thread": (100, 1_000, 10_000, 100_000),
            "*:process": (100, 1_000, 10_000),
            DASK: (100, 1_000, 10_000),
            f"{OLD_SYS}:process": (100, 1_000),
            f"{OLD_SYS}:thread": (100,),
        },
        "cached": {"*": (100, 1_000, 10_000, 100_000), OLD_SYS: (100, 1_000)},
        "choose": {"*": (20, 40, 70, 100), OLD_SYS: (20,)},
        "chain": {"*": (100, 1_000, 10_000, 100_000), DASK: (100, 1_000), OLD_SYS: (30, 1_000)},
        "big": {"*": (200,)},
        "cpu": {"*": (8,)},
    },
    repeats={"fanin": 2, "cached": 3, "choose": 3, "big_load": 3, "cpu": 3},
    thread_sizes={"fanin": 10_000, "choose": 100},
)

FULL = Profile(
    "full",
    timeout_s=1_200,
    cpu_seconds=0.5,
    sizes={
        "fanin": {
            "*": (100, 1_000, 10_000, 100_000, 1_000_000),
            DASK: (100, 1_000, 10_000, 100_000),
            f"{OLD_SYS}:process": (100, 1_000),
            f"{OLD_SYS}:thread": (100,),
        },
        "cached": {"*": (100, 1_000, 10_000, 100_000, 1_000_000), OLD_SYS: (100, 1_000)},
        "choose": {"*": (20, 40, 70, 100), OLD_SYS: (20, 40)},
        "chain": {
            "*": (100, 1_000, 10_000, 100_000),
            DASK: (100, 1_000, 10_000),
            OLD_SYS: (30, 1_000),
        },
        "big": {"*": (200,)},
        "cpu": {"*": (8,)},
    },
    repeats={"cached": 3, "big_load": 3, "cpu": 3},
    thread_sizes={"fanin": 10_000, "choose": 100},
)

PROFILES = {p.name: p for p in (SMOKE, DEFAULT, FULL)}


def sizes_for(profile: Profile, group: str, system: str, variant: str) -> tuple[int, ...]:
    table = profile.sizes[group]
    for key in (f"{system}:{variant}", system, f"*:{variant}", "*"):
        if key in table:
            return table[key]
    return ()


def _threaded(profile: Profile, group: str) -> list[tuple[str, int, int, str]]:
    """(variant, size, threads, system) of the cases on THREAD_COUNTS threads."""
    size = profile.thread_sizes.get(group)
    if size is None:
        return []
    return [(threads_variant(w), size, w, s) for s in _THREADED for w in THREAD_COUNTS]


def _batched(profile: Profile, cases: list[Case]) -> list[Case]:
    """The cases compared across thread counts (2 threads and THREAD_COUNTS, at the thread
    size, taskproc and the floor) are measured in rounds: one batch per workload."""
    out = []
    for case in cases:
        group = group_of(case.workload)
        count = thread_count(case.variant)
        if (
            count is not None
            and case.system in _THREADED
            and case.size == profile.thread_sizes.get(group)
        ):
            case = replace(case, batch=f"{case.workload}/{case.size}")
        out.append(case)
    return out


def _fanin(profile: Profile) -> list[Case]:
    return [
        Case("fanin", ex, n, system, {"n": n, "executor": ex, "workers": WORKERS})
        for system in _ALL
        for ex in ("thread", "process")
        for n in sizes_for(profile, "fanin", system, ex)
    ] + [
        Case("fanin", variant, n, system, {"n": n, "executor": "thread", "workers": w})
        for variant, n, w, system in _threaded(profile, "fanin")
    ]


def _cached(profile: Profile) -> list[Case]:
    # Rerun on whichever fresh run of the same size succeeded (thread pool first).
    return [
        Case(
            "cached",
            "new process",
            n,
            system,
            {"n": n},
            reuse=tuple(f"fanin/{ex}/{n}/{system}" for ex in ("thread", "process")),
        )
        for system in _CACHING
        for n in sizes_for(profile, "cached", system, "new process")
    ]


def _choose(profile: Profile) -> list[Case]:
    return [
        Case("choose", "thread", n, system, {"n": n, "workers": WORKERS})
        for system in _ALL
        for n in sizes_for(profile, "choose", system, "thread")
    ] + [
        Case("choose", variant, n, system, {"n": n, "workers": w})
        for variant, n, w, system in _threaded(profile, "choose")
    ]


def _chain_styles(system: str) -> tuple[str, ...]:
    # The two ways of writing a chain are a taskproc API matter; the others have one way.
    return ("init", "arg") if system in (TASKPROC, TASKPROC_OLD) else ("loop",)


def _chain(profile: Profile) -> list[Case]:
    return [
        Case("chain", style, d, system, {"depth": d, "style": style, "workers": WORKERS})
        for system in _ALL
        for style in _chain_styles(system)
        for d in sizes_for(profile, "chain", system, style)
    ]


def _big(profile: Profile) -> list[Case]:
    cases: list[Case] = []
    for system in _CACHING:
        for variant in BIG_VARIANTS:
            kind, level = variant.split("-")
            for mb in sizes_for(profile, "big", system, variant):
                params = {"nbytes": mb * 1_000_000, "kind": kind, "level": int(level)}
                save = Case("big_save", variant, mb, system, params)
                cases += [save, Case("big_load", variant, mb, system, params, reuse=(save.id,))]
    return cases


def _cpu(profile: Profile) -> list[Case]:
    return [
        Case(
            "cpu", f"{w} worker", n, system, {"n": n, "seconds": profile.cpu_seconds, "workers": w}
        )
        for system in _ALL
        for w in (1, 2)
        for n in sizes_for(profile, "cpu", system, f"{w} worker")
    ]


_BUILDERS = {
    "fanin": _fanin,
    "cached": _cached,
    "choose": _choose,
    "chain": _chain,
    "big": _big,
    "cpu": _cpu,
}


def group_of(workload: str) -> str:
    return "big" if workload.startswith("big_") else workload


def _order(cases: Sequence[Case]) -> list[Case]:
    # Stable sort: within one size and variant, keep the systems' listed order, and keep a
    # big result's save just before its load. A cached rerun goes right after the fresh runs
    # of its size, so their caches can be deleted before the next size fills the disk. Thread
    # pools of one size run by thread count, one after the other (their ratios are targets).
    def key(case: Case) -> tuple[int, int, bool, tuple[str, int]]:
        group = "fanin" if case.workload == "cached" else group_of(case.workload)
        return (
            GROUPS.index(group),
            case.size,
            case.workload == "cached",
            variant_key(case.variant),
        )

    return sorted(cases, key=key)


def build_plan(
    profile: Profile, groups: Sequence[str] = GROUPS, systems: Sequence[str] = _ALL
) -> list[Case]:
    """The cases of the selected groups and systems, plus the cases they reuse."""
    everything = _order(
        [
            replace(c, repeats=profile.repeats.get(c.workload, 1))
            for g in GROUPS
            for c in _batched(profile, _BUILDERS[g](profile))
        ]
    )
    by_id = {c.id: c for c in everything}
    wanted = {c.id for c in everything if group_of(c.workload) in groups and c.system in systems}
    wanted |= {r for c in everything if c.id in wanted for r in c.reuse if r in by_id}
    return [c for c in everything if c.id in wanted]
