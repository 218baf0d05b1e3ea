"""Per-case bounds for the fuzz tests: CPU time and the memory a case may take.

CPU time (not wall-clock time: the machine may be shared) is measured around each case; memory
is the process's resident high-water mark (``ru_maxrss``), which a case that allocates past the
bound raises for good, so one look after the run covers every case.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

CPU_S = 5.0  # CPU seconds one case may take (a decoded 512² image or a header check: ms)
MEMORY_MB = 300  # what one case may add to the process's resident memory


def _max_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class Bounds:
    """Collects each case's CPU time; :meth:`check` asserts the bounds after the run."""

    def __init__(self, name: str, cpu_s: float = CPU_S, memory_mb: float = MEMORY_MB) -> None:
        self.name, self.cpu_s, self.memory_mb = name, cpu_s, memory_mb
        self.cases = 0
        self.worst_cpu_s = 0.0
        self._start_rss_mb = psutil.Process().memory_info().rss / 2**20
        self._start_peak_mb = _max_rss_mb()

    @contextmanager
    def case(self) -> Iterator[None]:
        start = time.process_time()
        try:
            yield
        finally:
            self.cases += 1
            self.worst_cpu_s = max(self.worst_cpu_s, time.process_time() - start)

    def check(self) -> None:
        peak = _max_rss_mb()
        limit = max(self._start_peak_mb, self._start_rss_mb + self.memory_mb)
        print(f"{self.name}: {self.cases} cases, worst {self.worst_cpu_s * 1000:.0f} CPU ms; "
              f"resident peak {peak:.0f} MB (at the start {self._start_rss_mb:.0f} MB, "
              f"bound {limit:.0f} MB)")
        assert self.cases > 0
        assert self.worst_cpu_s <= self.cpu_s, (self.name, self.worst_cpu_s)
        assert peak <= limit, (self.name, peak, limit)
