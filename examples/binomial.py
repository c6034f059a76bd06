"""Binomial coefficients as a graph of cached tasks: the first example of the taskproc README.

Run it from the repository's root with the ``taskproc`` command, which runs the file's ``Main``::

    taskproc examples/binomial.py -o /tmp/taskproc-cache
    taskproc examples/binomial.py -o /tmp/taskproc-cache --kwargs '{"n": 30, "k": 15}'

or as a script (``Main.cli()`` at the bottom takes the same options)::

    python examples/binomial.py -o /tmp/taskproc-cache

Every ``Choose(n, k)`` is cached in ``/tmp/taskproc-cache/binomial.Choose/results/<task id>/``:
the second command computes only the coefficients the first one did not need, and running a
command again computes nothing but ``Main``.
"""

from __future__ import annotations

from taskproc import Const, DefaultCliArguments, Future, Task


class Choose(Task):
    """n choose k, by Pascal's rule: C(n, k) = C(n-1, k-1) + C(n-1, k)."""

    def __init__(self, n: int, k: int) -> None:
        # Upstream tasks are declared as attributes. Nothing runs yet.
        self.left: Future[int]
        self.right: Future[int]
        if 0 < k < n:
            self.left = Choose(n - 1, k - 1)
            self.right = Choose(n - 1, k)
        elif k == 0 or k == n:
            # Const is a future whose value is already known.
            self.left = Const(0)
            self.right = Const(1)
        else:
            raise ValueError(f"{(n, k)}")

    def run_task(self) -> int:
        # Runs after the upstream tasks; their results come from get_result().
        return self.left.get_result() + self.right.get_result()


class Main(Task):
    """The entry point of ``taskproc binomial.py``: prints and returns C(n, k)."""

    def __init__(self, n: int = 6, k: int = 3) -> None:
        self.n = n
        self.k = k
        self.choose = Choose(n, k)

    def run_task(self) -> int:
        value = self.choose.get_result()
        print(f"C({self.n}, {self.k}) = {value}")
        return value


# Defaults for the command line; options given there win. Each task here is an addition, so a
# thread pool (no process start-up, no pickling) is the cheaper executor.
DefaultCliArguments(exec_type="thread").populate()

if __name__ == "__main__":
    Main.cli()
