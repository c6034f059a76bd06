"""Keeping a cache: ``taskproc accept`` (re-key stored results to the current code without
running), ``taskproc gc`` (delete what given pipelines no longer reach), ``taskproc clear
--failed`` (remove failed tasks), and ``taskproc push`` / ``pull`` (copy results between a
folder and a bucket).

The only layer besides a run that writes to a store; it sits over the views, whose plans and
explanations it uses to decide and to say why.
"""

from taskproc.upkeep._accept import Accepted, AcceptReport, Verdict, accept_code, format_accept
from taskproc.upkeep._clear import ClearedFailures, clear_failed
from taskproc.upkeep._gc import GcName, GcReport, format_gc, gc_cache
from taskproc.upkeep._transfer import Transfer, format_transfer, transfer

__all__ = [
    "AcceptReport",
    "Accepted",
    "ClearedFailures",
    "GcName",
    "GcReport",
    "Transfer",
    "Verdict",
    "accept_code",
    "clear_failed",
    "format_accept",
    "format_gc",
    "format_transfer",
    "gc_cache",
    "transfer",
]
