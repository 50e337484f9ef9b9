"""Operator settings: one typed object from ``secretstage run`` flags and ``SECRETSTAGE_*`` variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from secretstage.domain.identity import provider_account
from secretstage.domain.policy import DEFAULT_ENDPOINT_ALLOW, allow_pattern_problem, endpoint_problem, proxy_problem
from secretstage.domain.promotion import K8S_NAME
from secretstage.kms.endpoints import PUBLIC_TEMPLATE, endpoint_template, validate_region
from secretstage.kms.errors import ConfigurationError


class ConfigError(ValueError):
    """A bad setting; names the flag, the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    #: Namespaces to watch; empty = all namespaces (cluster-wide RBAC needed).
    namespaces: tuple[str, ...] = ()
    #: Regexes; a promotion's KMS endpoint URL must fully match one of them.
    endpoint_allow: tuple[str, ...] = DEFAULT_ENDPOINT_ALLOW
    #: Region used when a promotion sets neither spec.regionId nor spec.endpoint.
    default_region: str | None = None
    #: The endpoint of a promotion that names a region and no spec.endpoint: the public gateway, the VPC
    #: gateway, or a URL template with an optional {regionId}. Never a KMS instance's dedicated gateway:
    #: it serves no management operation.
    kms_endpoint_template: str = PUBLIC_TEMPLATE
    #: Client-side KMS request rate (requests/s) and burst, shared by all promotions.
    kms_rate_limit: float = 10.0
    kms_burst: int = 10
    #: Read timeout per KMS HTTP attempt, seconds.
    kms_timeout: float = 15.0
    #: HTTP attempts per KMS call before the promotion itself is retried with backoff.
    kms_max_attempts: int = 3
    #: Namespaces whose promotions may use spec.credentials.operatorIdentity (the operator's own RRSA or
    #: environment identity); ("*",) = every namespace. Empty: nobody.
    operator_identity_namespaces: tuple[str, ...] = ()
    #: The cluster's OIDC provider in RAM; set, it turns on spec.credentials.serviceAccountRef (STS
    #: AssumeRoleWithOIDC with a TokenRequest token of the promotion's own ServiceAccount).
    oidc_provider_arn: str | None = None
    #: Honour ACK's workload annotation pod-identity.alibabacloud.com/role-name for serviceAccountRef, not
    #: only secretstage.io/role-arn (it hands a promotion the role of the namespace's pods).
    accept_ack_role_annotation: bool = False
    #: The operator's own ServiceAccount (namespace, name): never usable through serviceAccountRef. None:
    #: taken from the in-cluster token when there is one.
    operator_service_account: tuple[str, str] | None = None
    #: Prometheus metrics port (0 = off) and liveness probe port (0 = off).
    metrics_port: int = 8080
    health_port: int = 8081
    #: Active/standby replicas through a coordination.k8s.io Lease (see leader.py).
    leader_election: bool = False
    lease_name: str = "secretstage-operator"
    lease_namespace: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    #: Concurrent KMS requests for all promotions together, and for one namespace (0: no cap of its own).
    #: Free slots and rate-limit tokens go round robin to the namespaces that are waiting.
    kms_max_concurrency: int = 20
    kms_max_concurrency_per_namespace: int = 0
    #: Promotions worked on at once (each holds its object and an attempt); the others wait as keys in
    #: a fair queue and cost no memory of their own (workqueue.py).
    workers: int = 20
    #: Extra CA certificates (PEM) trusted for KMS and STS endpoints, besides the public CAs.
    kms_ca_file: str | None = None
    #: The HTTP proxy KMS and STS requests go through (clusters whose egress is only a proxy). Never
    #: taken from HTTP(S)_PROXY: those are the pod's, not a decision about where credentials go.
    kms_proxy: str | None = None
    #: The ValidatingAdmissionPolicy that authenticates approvers (spec.approval): approvals count only
    #: while it and a binding of it are in force (domain.approval).
    approval_policy: str = "secretstage-operator-approvals"


ENV_PREFIX = "SECRETSTAGE_"
# (connect, read) seconds for every Kubernetes API call the operator makes itself (kopf has its own):
# a hung API server must not hold a promotion, or a Lease renewal, forever.
KUBE_REQUEST_TIMEOUT = (5.0, 15.0)


def _bool(value: str, name: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean; use true or false")


def from_sources(cli: Mapping[str, object], environ: Mapping[str, str] | None = None) -> Settings:
    """CLI values (None = not given) win over ``SECRETSTAGE_*`` variables, which win over defaults."""
    env = os.environ if environ is None else environ
    defaults = Settings()

    def pick(key: str, env_name: str) -> object:
        value = cli.get(key)
        if value not in (None, [], ()):
            return value
        return env.get(ENV_PREFIX + env_name)

    def listed(key: str, env_name: str, separator: str) -> list[str]:
        raw = pick(key, env_name)
        if isinstance(raw, str):
            return [item for item in re.split(separator, raw) if item]
        return [str(item) for item in raw] if isinstance(raw, list | tuple) else []

    namespaces = listed("namespaces", "NAMESPACES", r"[,\s]+")
    allow = listed("endpoint_allow", "ENDPOINT_ALLOW", r"\s+")
    for pattern in allow:
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise ConfigError(f"--endpoint-allow {pattern!r} is not a valid regex: {exc}") from None
        problem = allow_pattern_problem(str(pattern))
        if problem:
            raise ConfigError(f"--endpoint-allow / {ENV_PREFIX}ENDPOINT_ALLOW: {problem}")

    def number(key: str, env_name: str, kind: type, default: float, minimum: float) -> float:
        raw = pick(key, env_name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"--{key.replace('_', '-')} / {ENV_PREFIX}{env_name}: {raw!r} is not a number") from None
        if value < minimum:
            raise ConfigError(f"--{key.replace('_', '-')} / {ENV_PREFIX}{env_name} must be >= {minimum}")
        return float(value)

    identity_namespaces = [
        ns
        for item in listed("operator_identity_namespaces", "OPERATOR_IDENTITY_NAMESPACES", r"[,\s]+")
        for ns in re.split(r"[,\s]+", item)
        if ns
    ]
    oidc_provider_arn = str(pick("oidc_provider_arn", "OIDC_PROVIDER_ARN") or "").strip() or None
    if oidc_provider_arn is not None:
        try:
            provider_account(oidc_provider_arn)
        except ValueError as exc:
            raise ConfigError(f"--oidc-provider-arn / {ENV_PREFIX}OIDC_PROVIDER_ARN: {exc}") from None
    given_template = str(pick("kms_endpoint_template", "KMS_ENDPOINT_TEMPLATE") or "")
    flag = f"--kms-endpoint-template / {ENV_PREFIX}KMS_ENDPOINT_TEMPLATE"
    try:
        template = endpoint_template(given_template or "public", field=flag)
    except ConfigurationError as exc:
        raise ConfigError(str(exc)) from None
    sample = template.format(regionId="cn-hangzhou")
    # Checked when it is not the default (which the chart sets explicitly): with the public gateway, an
    # allow-list of explicit endpoints only (promotions that all give spec.endpoint) is fine.
    if template != PUBLIC_TEMPLATE and endpoint_problem(sample, tuple(allow) or defaults.endpoint_allow):
        raise ConfigError(
            f"{flag}: its endpoints (e.g. {sample}) do not pass the endpoint allow-list; add a pattern that "
            "admits them with --endpoint-allow / SECRETSTAGE_ENDPOINT_ALLOW (chart: operator.endpointAllow)"
        )
    default_region = str(pick("default_region", "DEFAULT_REGION") or "").strip() or None
    if default_region is not None:
        try:
            validate_region(default_region, field=f"--default-region / {ENV_PREFIX}DEFAULT_REGION")
        except ConfigurationError as exc:
            raise ConfigError(str(exc)) from None
    election = pick("leader_election", "LEADER_ELECTION")
    accept_ack = pick("accept_ack_role_annotation", "ACCEPT_ACK_ROLE_ANNOTATION")
    own = str(pick("operator_service_account", "OPERATOR_SERVICE_ACCOUNT") or "").strip()
    operator_service_account = None
    if own:
        namespace, _, name = own.partition("/")
        if not (re.fullmatch(K8S_NAME, namespace) and re.fullmatch(K8S_NAME, name)):
            raise ConfigError(
                f"--operator-service-account / {ENV_PREFIX}OPERATOR_SERVICE_ACCOUNT: {own!r} is not NAMESPACE/NAME "
                "(the chart sets it to the release namespace and the operator's ServiceAccount)"
            )
        operator_service_account = (namespace, name)
    settings = Settings(
        namespaces=tuple(namespaces),
        endpoint_allow=tuple(allow) if allow else defaults.endpoint_allow,
        default_region=default_region,
        kms_endpoint_template=template,
        kms_rate_limit=number("kms_rate_limit", "KMS_RATE_LIMIT", float, defaults.kms_rate_limit, 0.01),
        kms_burst=int(number("kms_burst", "KMS_BURST", int, defaults.kms_burst, 1)),
        kms_timeout=number("kms_timeout", "KMS_TIMEOUT", float, defaults.kms_timeout, 0.1),
        kms_max_attempts=int(number("kms_max_attempts", "KMS_MAX_ATTEMPTS", int, defaults.kms_max_attempts, 1)),
        operator_identity_namespaces=tuple(identity_namespaces),
        oidc_provider_arn=oidc_provider_arn,
        accept_ack_role_annotation=accept_ack
        if isinstance(accept_ack, bool)
        else _bool(str(accept_ack or ""), ENV_PREFIX + "ACCEPT_ACK_ROLE_ANNOTATION"),
        operator_service_account=operator_service_account,
        kms_ca_file=str(pick("kms_ca_file", "KMS_CA_FILE") or "") or None,
        kms_proxy=str(pick("kms_proxy", "KMS_PROXY") or "").strip() or None,
        metrics_port=int(number("metrics_port", "METRICS_PORT", int, defaults.metrics_port, 0)),
        health_port=int(number("health_port", "HEALTH_PORT", int, defaults.health_port, 0)),
        leader_election=election
        if isinstance(election, bool)
        else _bool(str(election or ""), ENV_PREFIX + "LEADER_ELECTION"),
        lease_name=str(pick("lease_name", "LEASE_NAME") or defaults.lease_name),
        approval_policy=str(pick("approval_policy", "APPROVAL_POLICY") or defaults.approval_policy),
        lease_namespace=str(pick("lease_namespace", "LEASE_NAMESPACE") or "") or None,
        lease_duration=number("lease_duration", "LEASE_DURATION", float, defaults.lease_duration, 2),
        renew_deadline=number("renew_deadline", "RENEW_DEADLINE", float, defaults.renew_deadline, 1),
        retry_period=number("retry_period", "RETRY_PERIOD", float, defaults.retry_period, 0.1),
        kms_max_concurrency=int(
            number("kms_max_concurrency", "KMS_MAX_CONCURRENCY", int, defaults.kms_max_concurrency, 1)
        ),
        workers=int(number("workers", "WORKERS", int, defaults.workers, 1)),
        kms_max_concurrency_per_namespace=int(
            number(
                "kms_max_concurrency_per_namespace",
                "KMS_MAX_CONCURRENCY_PER_NAMESPACE",
                int,
                defaults.kms_max_concurrency_per_namespace,
                0,
            )
        ),
    )
    if ENV_PREFIX + "ALLOW_OPERATOR_IDENTITY" in env:
        raise ConfigError(
            f"{ENV_PREFIX}ALLOW_OPERATOR_IDENTITY is gone: name the namespaces whose promotions may use the "
            f"operator's identity with --operator-identity-namespaces / {ENV_PREFIX}OPERATOR_IDENTITY_NAMESPACES "
            "(* = all, as before)"
        )
    if settings.kms_ca_file and not os.path.isfile(settings.kms_ca_file):
        raise ConfigError(
            f"--kms-ca-file / {ENV_PREFIX}KMS_CA_FILE: {settings.kms_ca_file} is not a file; give a PEM file "
            "of CA certificates"
        )
    if settings.kms_proxy is not None:
        problem = proxy_problem(settings.kms_proxy)
        if problem is not None:
            raise ConfigError(f"--kms-proxy / {ENV_PREFIX}KMS_PROXY: {problem}")
    if settings.leader_election and not settings.lease_namespace:
        raise ConfigError(
            "--leader-election needs --lease-namespace (env SECRETSTAGE_LEASE_NAMESPACE), "
            "normally the operator's own namespace"
        )
    if settings.renew_deadline >= settings.lease_duration:
        raise ConfigError("--renew-deadline must be shorter than --lease-duration")
    return settings
