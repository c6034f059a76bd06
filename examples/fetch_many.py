"""Fetch many URLs at once, resuming after an interruption (seed 003's tasks.py).

Network-bound tasks spend their time waiting, so they run on many threads: the defaults at the
bottom are ``-t thread -n 64``. 1,000 requests that each take 0.1 s finish in about 2.5 s on a
2-core machine. A thread per waiting task is simple and fast at this scale: each task is plain
blocking code, with no event loop or monkey-patching.

Try it against the slow local server next to this file, from the repository's root::

    python examples/slow_server.py --port 8765 --delay 0.1 &
    seq 1000 | sed 's|^|http://127.0.0.1:8765/item/|' > urls.txt
    taskproc examples/fetch_many.py -o /tmp/taskproc-fetch --kwargs '{"jobs": "urls.txt"}'

What seed 003 does with ``add``, ``run``, ``status`` and ``reset``:

- add jobs: append URLs to the file (``seq 1001 1200 | sed ... >> urls.txt``) and run again;
- run, and resume: press Ctrl-C while it runs, then run the same command again. Finished
  fetches are cached and not redone; the rest run.
- status: ``taskproc status /tmp/taskproc-fetch`` (from any shell, also while it runs);
- reset: ``taskproc clear /tmp/taskproc-fetch fetch_many.Fetch`` forgets the fetches
  (``rm -r /tmp/taskproc-fetch`` forgets everything).

Each response body is kept in its task's folder: ``<cache>/fetch_many.Fetch/results/<task
id>/data/body``. A failed request is retried twice, then fails its task only
(``error_handling='lazy'``); the run's report lists every failure.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import TypedDict

from taskproc import DefaultCliArguments, FutureList, Task


class Response(TypedDict):
    url: str
    status: int
    size: int


class Fetch(Task):
    """One GET request; the body is saved in the task's folder."""

    task_retries = 2  # network errors happen: try twice more, one second apart
    task_retry_delay = 1.0

    def __init__(self, url: str) -> None:
        self.url = url

    def run_task(self) -> Response:
        with urllib.request.urlopen(self.url, timeout=30) as response:
            body = response.read()
            status = response.status
        (self.task_directory / "body").write_bytes(body)
        return Response(url=self.url, status=status, size=len(body))


class Main(Task):
    """Every URL of the `jobs` file (one a line), fetched once."""

    def __init__(self, jobs: str = "urls.txt") -> None:
        urls = [line.strip() for line in Path(jobs).read_text().splitlines() if line.strip()]
        self.responses = FutureList([Fetch(url) for url in dict.fromkeys(urls)])

    def run_task(self) -> int:
        responses = self.responses.get_result()
        total = sum(r["size"] for r in responses)
        print(f"fetched {len(responses)} URLs, {total} bytes")
        return total


DefaultCliArguments(exec_type="thread", num_workers=64, error_handling="lazy").populate()
