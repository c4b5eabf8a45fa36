"""What a benchmark ran on, for its results file."""

from __future__ import annotations

import platform
import time
from pathlib import Path

from cookbook_data.cpus import usable_cores


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """CPUs this process may run on."""
    return usable_cores()


def busy_share(window_s: float = 0.5) -> float | None:
    """Share of all CPU time spent busy over ``window_s`` (None where /proc/stat is missing)."""

    def read() -> tuple[int, int]:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    try:
        total_0, idle_0 = read()
        time.sleep(window_s)
        total_1, idle_1 = read()
    except OSError:
        return None
    return 1 - (idle_1 - idle_0) / max(total_1 - total_0, 1)


def wait_for_idle(max_wait_s: float) -> bool:
    """Wait until other processes leave the CPUs idle (below 10% busy), at most ``max_wait_s``; whether they did."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = busy_share()
        if busy is None or busy < 0.1:
            return True
        if time.monotonic() > deadline:
            return False


def gpu_name() -> str | None:
    """The first CUDA device's name (e.g. 'NVIDIA H200'), or None without one."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def results_name(stem: str, device: str) -> str:
    """A results file name that says which card measured it: ``stem.json`` on CPU, ``stem_h200.json`` on an
    NVIDIA H200."""
    name = gpu_name() if device.startswith("cuda") else None
    if name is None:
        return f"{stem}.json"
    card = name.lower().removeprefix("nvidia ").split()[0].replace("-", "")
    return f"{stem}_{card}.json"
