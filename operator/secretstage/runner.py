"""``secretstage run``: start the operator (kopf) with our settings, metrics and liveness probe."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import sys
from typing import TYPE_CHECKING, Any

from secretstage import __version__
from secretstage.config import ConfigError, Settings, from_sources
from secretstage.domain.policy import DEFAULT_ENDPOINT_ALLOW

if TYPE_CHECKING:
    from secretstage.reconcile import Runtime

log = logging.getLogger("secretstage.runner")


def add_run_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the operator",
        description="Run the operator with standard kube config resolution (in-cluster, else KUBECONFIG). "
        "Every flag also reads a SECRETSTAGE_* environment variable; the flag wins.",
    )
    p.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help="watch only this namespace (repeatable; env SECRETSTAGE_NAMESPACES, comma-separated); "
        "default: all namespaces",
    )
    p.add_argument(
        "--endpoint-allow",
        dest="endpoint_allow",
        action="append",
        metavar="REGEX",
        help="a regex the whole KMS endpoint URL must match (repeatable; env SECRETSTAGE_ENDPOINT_ALLOW, "
        "space-separated); default: the public and VPC gateways of every region, " + DEFAULT_ENDPOINT_ALLOW[0] + ". "
        "The local emulator must be allowed explicitly, e.g. 'http://127\\.0\\.0\\.1:8079'",
    )
    p.add_argument(
        "--default-region",
        metavar="REGION",
        help="region for promotions without spec.regionId or spec.endpoint (env SECRETSTAGE_DEFAULT_REGION)",
    )
    p.add_argument(
        "--kms-endpoint-template",
        metavar="TEMPLATE",
        help="the KMS endpoint of a promotion that gives spec.regionId (or none: --default-region) and no "
        "spec.endpoint: public (https://kms.{regionId}.aliyuncs.com, the default), vpc "
        "(https://kms-vpc.{regionId}.aliyuncs.com, for clusters without internet egress), or a URL template "
        "({regionId} optional); it must pass --endpoint-allow. Not a KMS instance's dedicated gateway "
        "(cryptoservice.kms.aliyuncs.com): it does not serve UpdateSecretVersionStage "
        "(env SECRETSTAGE_KMS_ENDPOINT_TEMPLATE)",
    )
    p.add_argument(
        "--kms-rate-limit",
        type=float,
        metavar="RPS",
        help="KMS requests per second for all promotions together (default 10; env SECRETSTAGE_KMS_RATE_LIMIT)",
    )
    p.add_argument(
        "--kms-burst", type=int, metavar="N", help="rate limiter burst (default 10; env SECRETSTAGE_KMS_BURST)"
    )
    p.add_argument(
        "--kms-timeout",
        type=float,
        metavar="SECONDS",
        help="read timeout per KMS request (default 15; env SECRETSTAGE_KMS_TIMEOUT)",
    )
    p.add_argument(
        "--kms-max-attempts",
        type=int,
        metavar="N",
        help="quick HTTP retries per KMS call before the promotion backs off (default 3; env "
        "SECRETSTAGE_KMS_MAX_ATTEMPTS)",
    )
    p.add_argument(
        "--operator-identity-namespaces",
        dest="operator_identity_namespaces",
        action="append",
        metavar="NS",
        help="namespaces whose promotions may use spec.credentials.operatorIdentity, the operator's own RRSA or "
        "environment credentials (repeatable or comma-separated; * = all; env "
        "SECRETSTAGE_OPERATOR_IDENTITY_NAMESPACES); default: none",
    )
    p.add_argument(
        "--oidc-provider-arn",
        metavar="ARN",
        help="the cluster's OIDC provider in RAM (ACK: acs:ram::<account>:oidc-provider/ack-rrsa-<cluster-id>); "
        "turns on spec.credentials.serviceAccountRef: each promotion assumes the RAM role its own "
        "ServiceAccount is annotated with (env SECRETSTAGE_OIDC_PROVIDER_ARN)",
    )
    p.add_argument(
        "--accept-ack-role-annotation",
        action="store_const",
        const=True,
        default=None,
        help="with --oidc-provider-arn, also honour ACK's workload annotation "
        "pod-identity.alibabacloud.com/role-name on a promotion's ServiceAccount, not only secretstage.io/role-arn; "
        "anyone who may create promotions in a namespace can then use the RAM role of its workloads "
        "(env SECRETSTAGE_ACCEPT_ACK_ROLE_ANNOTATION=true)",
    )
    p.add_argument(
        "--operator-service-account",
        metavar="NS/NAME",
        help="the operator's own ServiceAccount, which no serviceAccountRef may name (default: the in-cluster "
        "token's; env SECRETSTAGE_OPERATOR_SERVICE_ACCOUNT)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="Prometheus /metrics port, 0 = off (default 8080; env SECRETSTAGE_METRICS_PORT)",
    )
    p.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        help="liveness /healthz port, 0 = off (default 8081; env SECRETSTAGE_HEALTH_PORT)",
    )
    p.add_argument(
        "--approval-policy",
        metavar="NAME",
        help="the ValidatingAdmissionPolicy that authenticates approvers (spec.approval), which must be in force "
        "before approvals are trusted (default secretstage-operator-approvals; env SECRETSTAGE_APPROVAL_POLICY)",
    )
    p.add_argument(
        "--leader-election",
        action="store_const",
        const=True,
        default=None,
        help="run as one of several replicas: only the holder of a Lease is active "
        "(env SECRETSTAGE_LEADER_ELECTION=true)",
    )
    p.add_argument(
        "--lease-name", metavar="NAME", help="Lease name (default secretstage-operator; env SECRETSTAGE_LEASE_NAME)"
    )
    p.add_argument(
        "--lease-namespace",
        metavar="NS",
        help="Lease namespace, normally the operator's own (env SECRETSTAGE_LEASE_NAMESPACE)",
    )
    p.add_argument(
        "--lease-duration",
        type=float,
        metavar="SECONDS",
        help="how long a Lease is valid without renewal (default 15; env SECRETSTAGE_LEASE_DURATION)",
    )
    p.add_argument(
        "--renew-deadline",
        type=float,
        metavar="SECONDS",
        help="the leader steps down when it cannot renew for this long (default 10; env SECRETSTAGE_RENEW_DEADLINE)",
    )
    p.add_argument(
        "--retry-period",
        type=float,
        metavar="SECONDS",
        help="how often to renew or try to acquire (default 2; env SECRETSTAGE_RETRY_PERIOD)",
    )
    p.add_argument(
        "--kms-ca-file",
        metavar="FILE",
        help="extra CA certificates (PEM) to trust for KMS and STS endpoints, besides the public CAs, e.g. a "
        "private endpoint's or the emulator's (env SECRETSTAGE_KMS_CA_FILE)",
    )
    p.add_argument(
        "--kms-proxy",
        metavar="URL",
        help="send KMS and STS requests through this HTTP proxy (http://HOST:PORT), for clusters whose only "
        "egress is a proxy; HTTP(S)_PROXY are never used for them. The proxy's addresses are checked as an "
        "endpoint's; endpoints must still pass --endpoint-allow (env SECRETSTAGE_KMS_PROXY)",
    )
    p.add_argument(
        "--kms-max-concurrency",
        type=int,
        metavar="N",
        help="KMS requests in flight for all promotions together; free slots go round robin to the waiting "
        "namespaces (default 20; env SECRETSTAGE_KMS_MAX_CONCURRENCY)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="promotions worked on at once; the others wait their turn in a queue fair by namespace, as keys "
        "that cost no memory of their own (default 20; env SECRETSTAGE_WORKERS)",
    )
    p.add_argument(
        "--kms-max-concurrency-per-namespace",
        type=int,
        metavar="N",
        help="KMS requests in flight for one namespace, 0 = no cap of its own (default 0; env "
        "SECRETSTAGE_KMS_MAX_CONCURRENCY_PER_NAMESPACE)",
    )


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        settings = from_sources(vars(args))
    except ConfigError as exc:
        parser.error(str(exc))
    from kubernetes.config import ConfigException

    try:
        api = _load_kube_config()
    except ConfigException as exc:
        print(
            f"secretstage run: no Kubernetes configuration: not running in a cluster, and the kubeconfig "
            f"(KUBECONFIG={os.environ.get('KUBECONFIG', '~/.kube/config')}) is not usable: {exc}",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(_operate(settings, api))
    except KeyboardInterrupt:
        return 0


def _load_kube_config() -> Any:
    """In-cluster ServiceAccount first, else KUBECONFIG: one configuration for both Kubernetes clients."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


async def _reserve_unlanded_moves(runtime: Runtime) -> None:
    """Before kopf starts: the secrets of promotions with a request that may still land stay theirs."""
    from secretstage import reconcile

    for delay in (1.0, 2.0, 4.0, None):
        try:
            reserved = await reconcile.reserve_unlanded_moves(runtime)
        except Exception as exc:  # the API server not reachable yet: try again, then go on and say so
            if delay is None:
                log.warning(
                    "could not list promotions at start-up (%s): a promotion whose move got no answer before the "
                    "restart is not protected from a rival of the same secret until it runs again",
                    type(exc).__name__,
                )
                return
            await asyncio.sleep(delay)
            continue
        if reserved:
            log.info("%d secret(s) reserved at start-up: a move sent before the restart may still land", reserved)
        return


def _ended(operator: asyncio.Task[None], working: asyncio.Task[None]) -> int:
    """kopf stopped (a signal: 0), or the workers died (a bug: say so, exit non-zero for a restart)."""
    if working.done() and not working.cancelled() and working.exception() is not None:
        log.error("the workers stopped", exc_info=working.exception())
        return 1
    return 0


async def _standby_health(port: int) -> Any:
    """Answer liveness probes while waiting for the Lease (kopf's endpoint starts with kopf)."""
    from aiohttp import web

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "standby"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port, reuse_address=True).start()  # noqa: S104 - pod probe
    return runner


async def _operate(settings: Settings, api: Any) -> int:
    import ssl

    import certifi
    import httpx
    import kopf
    from kubernetes import client as k8s

    from secretstage import handlers
    from secretstage.approvals import ApprovalPolicyCheck
    from secretstage.domain.identity import OperatorIdentity
    from secretstage.identities import ServiceAccountIdentities
    from secretstage.kms import CredentialsError, FairGate, TokenBucket, default_provider
    from secretstage.kms.credentials import ENV_ROLE_ARN, sts_endpoint_from_env
    from secretstage.kms.transport import guarded_client
    from secretstage.kube import in_cluster_service_account
    from secretstage.kubehttp import KubeHttp
    from secretstage.metrics import Metrics
    from secretstage.reconcile import Runtime, service_account_tokens
    from secretstage.workers import Workers

    metrics = Metrics()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    # Every connection is checked against the address policy after name resolution (kms.transport).
    runtime_ref: list[Runtime] = []

    def fence() -> str | None:  # asked before every write to a KMS connection (kms.transport)
        check = runtime_ref[0].fence if runtime_ref else None
        return check() if check is not None else None

    verify: ssl.SSLContext | bool = True
    if settings.kms_ca_file:
        verify = ssl.create_default_context(cafile=certifi.where())  # the public CAs httpx trusts by default
        verify.load_verify_locations(cafile=settings.kms_ca_file)
    http = guarded_client(
        verify=verify,
        fence=fence,
        proxy=settings.kms_proxy,
        timeout=httpx.Timeout(connect=5.0, read=settings.kms_timeout, write=settings.kms_timeout, pool=60.0),
        # one connection per KMS request in flight: the pool never grows past the concurrency cap
        limits=httpx.Limits(
            max_connections=settings.kms_max_concurrency + 2,  # + STS (operator identity)
            max_keepalive_connections=settings.kms_max_concurrency + 2,
        ),
    )
    operator_credentials = None
    if settings.operator_identity_namespaces:
        try:
            operator_credentials = default_provider(http=http, on_refresh=metrics.credential_refreshes.inc)
        except CredentialsError as exc:
            log.warning("operator identity allowed but not configured: %s", exc)
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    user_agent = f"secretstage-operator/{__version__} ({identity})"
    kube = KubeHttp.from_configuration(api.configuration, user_agent=user_agent)
    service_accounts = None
    if settings.oidc_provider_arn:
        service_accounts = ServiceAccountIdentities(
            oidc_provider_arn=settings.oidc_provider_arn,
            sts_endpoint=sts_endpoint_from_env(os.environ),
            token_source=service_account_tokens(kube),
            http=http,
            on_refresh=metrics.credential_refreshes.inc,
            accept_ack_annotation=settings.accept_ack_role_annotation,
            operator=OperatorIdentity(
                service_account=settings.operator_service_account or in_cluster_service_account(),
                role_arn=os.environ.get(ENV_ROLE_ARN) or None,
            ),
        )
    runtime = Runtime(
        user_agent=user_agent,
        settings=settings,
        http=http,
        rate_limiter=TokenBucket(settings.kms_rate_limit, settings.kms_burst),
        gate=FairGate(settings.kms_max_concurrency, settings.kms_max_concurrency_per_namespace),
        kube=kube,
        metrics=metrics,
        operator_credentials=operator_credentials,
        identities=service_accounts,
        rng=random.Random(),
        approval_policy=ApprovalPolicyCheck(kube, settings.approval_policy),
    )
    runtime_ref.append(runtime)
    workers = Workers(runtime, instance=identity)
    metrics.watch_queue(workers.lengths, lambda: workers.busy)
    log.info(
        "starting: namespaces=%s endpoints=%s region-endpoints=%s rate=%.1f/s leader-election=%s "
        "operator-identity=%s serviceAccountRef=%s",
        list(settings.namespaces) or "all",
        list(settings.endpoint_allow),
        settings.kms_endpoint_template,
        settings.kms_rate_limit,
        settings.leader_election,
        list(settings.operator_identity_namespaces) or "off",
        f"on (STS {service_accounts.sts_endpoint})" if service_accounts is not None else "off (no --oidc-provider-arn)",
    )
    try:
        elector = None
        if settings.leader_election:
            from secretstage.leader import LeaderElector, LeaseConfig

            assert settings.lease_namespace is not None
            lease = LeaseConfig(
                settings.lease_name,
                settings.lease_namespace,
                identity,
                settings.lease_duration,
                settings.renew_deadline,
                settings.retry_period,
            )
            elector = LeaderElector(k8s.CoordinationV1Api(api), lease)
            runtime.fence = elector.fence_problem
            standby = await _standby_health(settings.health_port) if settings.health_port else None
            await elector.acquire()
            if standby is not None:
                await standby.cleanup()
        await _reserve_unlanded_moves(runtime)
        stop = asyncio.Event()
        working = asyncio.create_task(workers.run(settings.workers))
        operator = asyncio.create_task(
            kopf.operator(
                registry=handlers.registry,
                standalone=True,
                clusterwide=not settings.namespaces,
                namespaces=list(settings.namespaces),
                liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
                memo=kopf.Memo(runtime=runtime, workers=workers, stop=stop),
                stop_flag=stop,
                # Our own identity: kopf's default asks the password database for the user name, and the
                # image runs as a bare numeric UID (65532) with no entry there (KeyError at start-up).
                identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str it does not export
            )
        )
        try:
            if elector is None:
                await asyncio.wait({operator, working}, return_when=asyncio.FIRST_COMPLETED)
                return _ended(operator, working)
            holding = asyncio.create_task(elector.hold())
            await asyncio.wait({operator, holding, working}, return_when=asyncio.FIRST_COMPLETED)
            if holding.done():
                # Lost the Lease: stop handling at once and exit non-zero, so the pod restarts as a standby.
                working.cancel()
                stop.set()
                await asyncio.wait({operator}, timeout=settings.renew_deadline)
                return 1
            holding.cancel()
            code = _ended(operator, working)
            await elector.release()
            return code
        finally:
            working.cancel()
            await asyncio.wait({working})
    finally:
        await runtime.aclose()
        api.close()
