"""One runner of the shared-cache tests: ``python shared_runner.py CACHE EVENTS N HOSTS``.

Builds ``Root(EVENTS, N, HOSTS)`` (N leaves) on the cache folder CACHE, runs it with two
threads and at most two tasks at once, and prints ``{"result": ..., "stats": ...}`` as JSON.
The host name it claims tasks under comes from ``TASKPROC_HOSTNAME`` or the real host name.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

from cluster_tasks import Root

from taskproc import Graph


def main(argv: list[str]) -> int:
    cache, events, n, hosts = argv[0], argv[1], int(argv[2]), int(argv[3])
    with Graph(cache), ThreadPoolExecutor(2) as pool:
        result, stats = Root(events, n, hosts).run_graph(executor=pool, rate_limits={"*": 2})
    print(json.dumps({"result": result, "stats": stats["stats"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
