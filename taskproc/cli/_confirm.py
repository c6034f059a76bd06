"""Asking before what cannot be undone (``taskproc clear CACHE``, every task): a question on a
terminal; where nobody can answer (a script, a pipe), a refusal that names the flag that says
yes beforehand."""

from __future__ import annotations

import sys
from typing import TextIO

from taskproc.errors import UsageError


def is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # a closed stream
        return False


def confirm(question: str, refusal: str) -> bool:
    """Whether the user answers yes to `question` (``[y/N]``, no by default) on standard input.

    Raises UsageError(`refusal`) when standard input is not a terminal.
    """
    if not is_terminal(sys.stdin):
        raise UsageError(refusal)
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer:  # end of input (Ctrl-D): no, on a line of its own
        sys.stderr.write("\n")
    return answer.strip().lower() in ("y", "yes")
