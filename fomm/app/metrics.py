"""Prometheus metrics of one app: jobs by state, queue depth, workers, job and frame durations.

Each app has its own registry (tests build many apps in one process). Counts are read from the
:class:`~fomm.app.jobs.JobQueue` when scraped; durations are observed as jobs finish.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fomm.app.jobs import JobQueue

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = ("queued", "running", "succeeded", "failed", "cancelled")


class _QueueCollector(Collector):
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Any]:
        counts = self.queue.counts()
        jobs = GaugeMetricFamily(
            "fomm_jobs", "Jobs known to the server, by state", labels=["state"]
        )
        for state in STATES:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        stats = self.queue.stats()
        yield GaugeMetricFamily("fomm_queue_depth", "Jobs waiting to run", value=stats["queued"])
        yield GaugeMetricFamily(
            "fomm_workers",
            "Workers that run jobs: threads here, or fomm worker processes with a broker",
            value=stats["workers"],
        )
        yield GaugeMetricFamily(
            "fomm_workers_busy", "Workers running a job now", value=stats["running"]
        )


class Metrics:
    """The registry of one app; :meth:`observe` after each job, :meth:`render` for /metrics."""

    def __init__(self, queue: JobQueue) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_QueueCollector(queue))
        self.job_seconds = Histogram(
            "fomm_job_duration_seconds",
            "Time from start to end of a job that ran",
            ["status"],
            registry=self.registry,
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
        )
        self.frame_seconds = Histogram(
            "fomm_frame_duration_seconds",
            "Mean time per driving frame of a succeeded job",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )

    def observe(self, status: str, seconds: float, frames: int) -> None:
        """Record a job that ran for ``seconds`` and ended ``status`` after ``frames`` frames."""
        self.job_seconds.labels(status).observe(seconds)
        if status == "succeeded" and frames > 0:
            self.frame_seconds.observe(seconds / frames)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
