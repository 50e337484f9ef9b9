"""Prometheus metrics of the operator (served by ``secretstage run`` on --metrics-port)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.promotions = Counter(
            "secretstage_promotions_total",
            "Promotion attempts by outcome and reason",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.kms_requests = Counter(
            "secretstage_kms_requests_total",
            "KMS HTTP requests by action and result code",
            ["action", "code"],
            registry=self.registry,
        )
        self.kms_latency = Histogram(
            "secretstage_kms_request_duration_seconds",
            "KMS HTTP request latency",
            ["action"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.in_flight = Gauge(
            "secretstage_promotions_in_flight", "Promotions being handled now", registry=self.registry
        )
        self.approval_decisions = Counter(
            "secretstage_approval_decisions_total",
            "Promotions approved (enough approvals seen) or rejected, by decision",
            ["decision"],
            registry=self.registry,
        )
        # uid -> why it waits as planned or for a trustworthy approval policy; read at scrape time
        self._waiting: dict[str, str] = {}
        self.registry.register(_WaitingCollector(self._waiting))
        self.credential_refreshes = Counter(
            "secretstage_credential_refreshes_total",
            "Operator-identity (RRSA) credential exchanges",
            registry=self.registry,
        )

    def watch_queue(self, lengths: Callable[[], dict[str, tuple[int, int]]], busy: Callable[[], int]) -> None:
        """The work queue, read at scrape time: per namespace, promotions waiting for a worker
        (``state="ready"``) and waiting out a retry's backoff (``state="backoff"``); and busy workers."""
        self.registry.register(_QueueCollector(lengths, busy))

    def waiting_for(self, uid: str, reason: str | None) -> None:
        """This promotion now waits for its schedule or its approvers (``reason``), or no longer does."""
        if reason is None:
            self._waiting.pop(uid, None)
        else:
            self._waiting[uid] = reason

    def observe_kms(self, *, action: str, code: str, seconds: float) -> None:
        self.kms_requests.labels(action, code).inc()
        self.kms_latency.labels(action).observe(seconds)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - a pod serves on all its interfaces
        start_http_server(port, addr=addr, registry=self.registry)


class _QueueCollector(Collector):
    def __init__(self, lengths: Callable[[], dict[str, tuple[int, int]]], busy: Callable[[], int]) -> None:
        self._lengths, self._busy = lengths, busy

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = GaugeMetricFamily(
            "secretstage_queue_length",
            "Promotions waiting in the operator's queue, by namespace and state (ready: for a worker; "
            "backoff: for a retry's delay to pass)",
            labels=["namespace", "state"],
        )
        for namespace, (ready, backoff) in sorted(self._lengths().items()):
            queue.add_metric([namespace, "ready"], ready)
            queue.add_metric([namespace, "backoff"], backoff)
        yield queue
        yield GaugeMetricFamily("secretstage_workers_busy", "Workers handling a promotion now", value=self._busy())


class _WaitingCollector(Collector):
    def __init__(self, waiting: dict[str, str]) -> None:
        self._waiting = waiting

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "secretstage_promotions_waiting",
            "Promotions waiting as planned (reason NotBefore, OutsideWindow, AwaitingApproval) or for an approval "
            "policy in force (ApprovalUntrusted)",
            labels=["reason"],
        )
        counts: dict[str, int] = {}
        for reason in list(self._waiting.values()):
            counts[reason] = counts.get(reason, 0) + 1
        for reason in ("NotBefore", "OutsideWindow", "AwaitingApproval", "ApprovalUntrusted"):
            family.add_metric([reason], counts.get(reason, 0))
        yield family
