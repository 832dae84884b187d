"""Prometheus metrics, one registry per app (so that several apps in one process, as in tests, never share or
collide): request counts and latencies by route template and status, and gallery sizes read at scrape time."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Latency buckets for a service answering in milliseconds, with room for a slow multi-image enrollment.
BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GalleryCollector(Collector):
    """Gauges read when scraped: subjects and faces in the store, vectors in the FAISS index (None: not loaded)."""

    def __init__(self, sizes: Callable[[], dict[str, int] | None]) -> None:
        self.sizes = sizes

    def collect(self):  # type: ignore[no-untyped-def]
        sizes = self.sizes()
        if sizes is None:
            return
        for key, help_text in (
            ("subjects", "Subjects enrolled in the gallery."),
            ("faces", "Faces enrolled in the gallery."),
            ("index_size", "Vectors in the FAISS index over faces (over subject means with SIAMFACE_MATCH=mean)."),
        ):
            g = GaugeMetricFamily(f"siamface_{key if key == 'index_size' else key + '_enrolled'}", help_text)
            g.add_metric([], float(sizes[key]))
            yield g


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "siamface_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "siamface_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method, str(status)).observe(seconds)

    def watch_gallery(self, sizes: Callable[[], dict[str, int] | None]) -> None:
        self.registry.register(GalleryCollector(sizes))


class MetricsMiddleware:
    """Times every HTTP request. The route label is the matched route's template ("/subjects/{subject_id}"),
    "unmatched" otherwise, so that clients cannot blow up the label set with made-up paths."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(route, scope.get("method", ""), status, time.perf_counter() - start)
