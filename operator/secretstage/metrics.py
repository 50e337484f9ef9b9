"""Prometheus metrics of the operator (served by ``secretstage run`` on --metrics-port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


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
        self.credential_refreshes = Counter(
            "secretstage_credential_refreshes_total",
            "Operator-identity (RRSA) credential exchanges",
            registry=self.registry,
        )

    def observe_kms(self, *, action: str, code: str, seconds: float) -> None:
        self.kms_requests.labels(action, code).inc()
        self.kms_latency.labels(action).observe(seconds)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - a pod serves on all its interfaces
        start_http_server(port, addr=addr, registry=self.registry)
