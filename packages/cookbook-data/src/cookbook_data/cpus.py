"""How many CPUs this process may use: the bound for its decoding threads."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """CPUs this process may run on (its affinity where the system has one, e.g. inside a container or a Ray
    worker pinned to some cores), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_for(tasks: int, most: int | None = None) -> int:
    """Threads for ``tasks`` independent pieces of work: one each, up to the usable CPUs (and ``most``)."""
    return max(1, min(tasks, usable_cores(), most or tasks))
