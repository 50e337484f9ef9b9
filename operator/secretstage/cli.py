"""The ``secretstage`` command (also installed as the kubectl plugin ``kubectl-secretstage``).

KMS: promote, versions. Promotions in the cluster: status, check, rollback, retry. Servers: run
(the operator), emulator. Results go to stdout; progress, logs and errors to stderr. Nothing secret
is ever printed. Exit codes: 0 success, 1 KMS or the cluster said no (or could not be reached),
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import ssl
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from secretstage import __version__, logs
from secretstage.domain.status import succeeded_condition

log = logging.getLogger("secretstage")

EXIT_KMS_ERROR = 1
EXIT_USAGE = 2


def _usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.error(message)  # prints usage + message to stderr, exits 2


def _add_kms_target(p: argparse.ArgumentParser) -> None:
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--region",
        metavar="REGION",
        default=os.environ.get("ALIBABA_CLOUD_REGION_ID"),
        help="region ID, e.g. cn-hangzhou -> https://kms.cn-hangzhou.aliyuncs.com (env ALIBABA_CLOUD_REGION_ID)",
    )
    target.add_argument("--endpoint", metavar="URL", help="explicit KMS endpoint URL, e.g. http://127.0.0.1:8079")
    p.add_argument("--vpc", action="store_true", help="use the VPC gateway kms-vpc.<region>.aliyuncs.com")
    p.add_argument(
        "--signature", default="ACS3-HMAC-SHA256", metavar="ALGORITHM", help="ACS3-HMAC-SHA256 (default) or HMAC-SHA1"
    )
    p.add_argument(
        "--max-attempts", type=int, default=5, metavar="N", help="attempts per call for retryable errors (default 5)"
    )
    p.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS", help="read timeout per attempt")
    p.add_argument(
        "--ca-file",
        metavar="FILE",
        default=os.environ.get("SECRETSTAGE_KMS_CA_FILE"),
        help="extra CA certificates (PEM) to trust besides the public ones: a private endpoint's or the "
        "emulator's (env SECRETSTAGE_KMS_CA_FILE)",
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
ENV_LOG_LEVEL = "SECRETSTAGE_LOG_LEVEL"
ENV_LOG_FORMAT = "SECRETSTAGE_LOG_FORMAT"


def _logging_flags(p: argparse.ArgumentParser, *, top: bool) -> None:
    """Accepted before the command and after it (``secretstage run --log-level DEBUG``, as a chart's
    extraArgs put it). Not given anywhere, the value stays None and the variable or default applies;
    the subcommand's copies have no default at all, so they only override when given."""
    unset = None if top else argparse.SUPPRESS
    p.add_argument("--log-level", choices=LOG_LEVELS, default=unset, help=f"default INFO (env {ENV_LOG_LEVEL})")
    p.add_argument(
        "--log-format", choices=LOG_FORMATS, default=unset, help=f"text (default) or json (env {ENV_LOG_FORMAT})"
    )


class _SubcommandsWithLoggingFlags(argparse._SubParsersAction):  # type: ignore[type-arg]
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = super().add_parser(name, **kwargs)
        _logging_flags(parser, top=False)
        return parser


def build_parser(prog: str = "secretstage") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Promote Alibaba Cloud KMS secret version stages; run the operator or a local KMS emulator.",
    )
    parser.add_argument("--version", action="version", version=f"secretstage {__version__}")
    _logging_flags(parser, top=True)
    parser.register("action", "parsers", _SubcommandsWithLoggingFlags)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    promote = sub.add_parser(
        "promote",
        help="move a stage label with UpdateSecretVersionStage",
        description="Call UpdateSecretVersionStage once (with retries for transient errors). "
        "Credentials come from ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET[/SECURITY_TOKEN] or RRSA.",
    )
    promote.add_argument("--secret-name", required=True, metavar="NAME", help="secret name or ARN")
    promote.add_argument("--version-stage", required=True, metavar="STAGE", help="ACSCurrent, ACSPrevious or custom")
    promote.add_argument("--move-to-version", metavar="VERSION_ID")
    promote.add_argument("--remove-from-version", metavar="VERSION_ID")
    _add_kms_target(promote)

    versions = sub.add_parser("versions", help="show a secret's versions and their stages")
    versions.add_argument("secret_name", metavar="NAME", help="secret name or ARN")
    versions.add_argument("--include-deprecated", action="store_true", help="also show versions without stages")
    versions.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_kms_target(versions)

    emulator = sub.add_parser(
        "emulator",
        help="run the local KMS emulator",
        description="A local Alibaba Cloud KMS (Secrets Manager + STS AssumeRoleWithOIDC) "
        "that checks signatures and reproduces KMS semantics and errors.",
    )
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8079, help="0 picks a free port")
    emulator.add_argument(
        "--access-key-id",
        default=os.environ.get("SECRETSTAGE_EMULATOR_ACCESS_KEY_ID"),
        help="the AccessKeyId the emulator accepts (env SECRETSTAGE_EMULATOR_ACCESS_KEY_ID)",
    )
    emulator.add_argument(
        "--access-key-secret",
        default=os.environ.get("SECRETSTAGE_EMULATOR_ACCESS_KEY_SECRET"),
        help="its secret (env SECRETSTAGE_EMULATOR_ACCESS_KEY_SECRET, preferred: flags show in ps)",
    )
    emulator.add_argument(
        "--security-token",
        default=os.environ.get("SECRETSTAGE_EMULATOR_SECURITY_TOKEN"),
        help="make the key an STS key that is only accepted with this SecurityToken "
        "(env SECRETSTAGE_EMULATOR_SECURITY_TOKEN)",
    )
    emulator.add_argument("--state", metavar="FILE", help="persist secrets to FILE (written atomically)")
    emulator.add_argument("--region", default="cn-hangzhou", help="region in ARNs (default cn-hangzhou)")
    emulator.add_argument("--account", default="1234567890123456", help="account ID in ARNs")
    emulator.add_argument(
        "--auto-previous",
        choices=["true", "false"],
        default="true",
        help="move ACSPrevious to the old version when ACSCurrent moves (default true)",
    )
    emulator.add_argument(
        "--label-held-elsewhere",
        choices=["move", "reject"],
        default="move",
        help="MoveToVersion without RemoveFromVersion while another version holds the label: move it "
        "(default, the API page's sample) or reject it (as AWS)",
    )
    emulator.add_argument(
        "--remove-mismatch",
        choices=["reject", "ignore"],
        default="reject",
        help="RemoveFromVersion that does not carry the label: reject (default, as AWS) or ignore it",
    )
    emulator.add_argument("--tls-cert", metavar="FILE", help="serve https with this certificate (PEM; with --tls-key)")
    emulator.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    emulator.add_argument(
        "--identity-config",
        metavar="FILE",
        help="OIDC providers and RAM roles (YAML or JSON, docs/emulator.md): AssumeRoleWithOIDC then checks "
        "the token's signature, issuer, audience, expiry and the role's trust policy, and the credentials "
        "it issues reach only what the role's policy allows. Without it, STS takes any well-formed JWT",
    )
    emulator.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="ACTION:KEY=VALUE[,KEY=VALUE]",
        help="inject faults, e.g. UpdateSecretVersionStage:throttle=0.3,latency_ms=50 "
        "(ACTION * = all; keys: throttle, unavailable, drop, drop_after, latency_ms, "
        "spike_probability, spike_ms)",
    )

    rollback = sub.add_parser(
        "rollback",
        help="create a promotion that moves a stage back to where a succeeded promotion found it",
        description="Reads the SecretStagePromotion NAME, and creates a new one that moves its stage back to the "
        "version status.stagesBefore recorded, guarded by a precondition on where the stage is now. "
        "In a pod it uses the pod's ServiceAccount, elsewhere the kube config (KUBECONFIG).",
    )
    rollback.add_argument("name", metavar="NAME", help="the SecretStagePromotion to undo")
    rollback.add_argument("-n", "--namespace", help="its namespace (default: the pod's, or the kube config's)")
    rollback.add_argument("--new-name", metavar="NAME", help="name of the new promotion (default NAME-rollback-TIME)")
    rollback.add_argument("--print", action="store_true", help="print the new promotion as YAML instead of creating it")

    retry = sub.add_parser("retry", help="run a Failed promotion again (bumps spec.retry: a new generation)")
    retry.add_argument("name", metavar="NAME", help="the SecretStagePromotion to retry")
    retry.add_argument("-n", "--namespace", help="its namespace (default: the pod's, or the kube config's)")

    for verb, does in (("approve", "approve"), ("reject", "reject")):
        decide = sub.add_parser(
            verb,
            help=f"{does} a promotion that waits for approval (spec.approval), as the user you are logged in as",
            description=f"Appends '{verb} GENERATION USER' to the annotation secretstage.io/approvals of NAME, USER "
            "being who the API server says you are (SelfSubjectReview) and GENERATION the spec's generation now. The "
            "chart's admission policy admits it only from an approver who did not ask for the change. "
            + (
                "Once spec.approval.minApprovals approvers have approved, the operator moves the stage."
                if verb == "approve"
                else "The promotion then fails with reason Rejected and moves nothing; a change to the spec asks again."
            ),
        )
        decide.add_argument("name", metavar="NAME", help="the SecretStagePromotion")
        decide.add_argument("-n", "--namespace", help="its namespace (default: the pod's, or the kube config's)")
        decide.add_argument(
            "--generation",
            type=int,
            metavar="N",
            help=f"{verb} only if the spec is still at generation N (the one you reviewed); default: the current one",
        )

    status = sub.add_parser(
        "status",
        help="show a promotion's outcome (or list the namespace's promotions)",
        description="Prints what the operator wrote: phase, reason and message, the plan, the RequestId, where "
        "the stage was before and after, the gate's verdict. Without NAME, one line per promotion in the "
        "namespace. Exits 1 when the promotion does not exist.",
    )
    status.add_argument("name", metavar="NAME", nargs="?", help="the SecretStagePromotion (default: list them all)")
    status.add_argument("-n", "--namespace", help="its namespace (default: the pod's, or the kube config's)")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text", help="text (default) or json")

    check = sub.add_parser(
        "check",
        help="ask the running operator for a dry run: plan a promotion against KMS, change nothing",
        description="Creates a dryRun SecretStagePromotion, waits until the operator has planned it (its credentials, "
        "endpoint and secret checked against KMS; nothing is changed), prints the plan and deletes the object. "
        "Exits 0 when it Succeeded, 1 when it failed or timed out (with the reason). In a pod it uses the pod's "
        "ServiceAccount, elsewhere the kube config. The chart's `helm test` runs it.",
    )
    check.add_argument("--secret-name", required=True, metavar="NAME", help="secret name or ARN")
    check.add_argument("--version-stage", default="ACSCurrent", metavar="STAGE", help="default ACSCurrent")
    check.add_argument("--move-to-version", required=True, metavar="VERSION_ID")
    where = check.add_mutually_exclusive_group()
    where.add_argument("--region-id", metavar="REGION", help="e.g. cn-hangzhou")
    where.add_argument("--endpoint", metavar="URL", help="KMS endpoint URL (must pass the operator's allow-list)")
    creds = check.add_mutually_exclusive_group(required=True)
    creds.add_argument("--credentials-secret", metavar="NAME", help="spec.credentials.secretRef.name")
    creds.add_argument("--service-account", metavar="NAME", help="spec.credentials.serviceAccountRef.name")
    creds.add_argument(
        "--operator-identity",
        action="store_true",
        help="spec.credentials.operatorIdentity: the operator's own RRSA identity (its namespace list must allow it)",
    )
    check.add_argument("-n", "--namespace", help="where to create it (default: the pod's, or the kube config's)")
    check.add_argument("--name", help="the promotion's name (default secretstage-check-<random>)")
    check.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS", help="default 120")

    from secretstage.runner import (
        add_run_parser,  # the operator pulls in kopf; keep it out of the other commands
    )

    add_run_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "secretstage") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    for flag, variable, choices, default in (
        ("log_level", ENV_LOG_LEVEL, LOG_LEVELS, "INFO"),
        ("log_format", ENV_LOG_FORMAT, LOG_FORMATS, "text"),
    ):
        if getattr(args, flag) is None:  # the flag wins over the variable, which wins over the default
            value = os.environ.get(variable) or default
            if value not in choices:
                _usage_error(parser, f"{variable}={value!r} is not one of {', '.join(choices)}")
            setattr(args, flag, value)
    logs.setup(args.log_level, args.log_format)
    if args.command == "emulator":
        return _emulator(parser, args)
    if args.command == "run":
        from secretstage.runner import run

        return run(parser, args)
    if args.command == "check":
        return _check(args)
    if args.command in ("rollback", "retry", "status", "approve", "reject"):
        return _promotion_command(args)
    return asyncio.run(_kms_command(parser, args))


def kubectl_main() -> NoReturn:
    """``kubectl secretstage ...``: kubectl runs ``kubectl-secretstage`` from PATH (pipx or krew put it
    there). Exits itself: the krew archive's zip application calls it without ``sys.exit``."""
    sys.exit(main(prog="kubectl secretstage"))


def _emulator(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from secretstage.emulator.app import Faults
    from secretstage.emulator.server import build, run_forever

    if not args.access_key_id or not args.access_key_secret:
        _usage_error(
            parser,
            "--access-key-id and --access-key-secret (or their SECRETSTAGE_EMULATOR_* "
            "environment variables) are required: the emulator checks every signature",
        )
    faults: dict[str, Faults] = {}
    for spec in args.fault:
        action, sep, settings = spec.partition(":")
        try:
            if not sep or not action:
                raise ValueError("expected ACTION:KEY=VALUE[,KEY=VALUE]")
            pairs = dict(item.split("=", 1) for item in settings.split(",") if item)
            faults[action] = Faults.from_json(pairs)
        except ValueError as exc:
            _usage_error(parser, f"--fault {spec!r}: {exc}")
    identity = None
    if args.identity_config:
        from secretstage.emulator.identity import IdentityConfig

        try:
            identity = IdentityConfig.load(args.identity_config)
        except (OSError, ValueError) as exc:
            _usage_error(parser, f"--identity-config {args.identity_config}: {exc}")
    emulator = build(
        identity=identity,
        access_key_id=args.access_key_id,
        access_key_secret=args.access_key_secret,
        security_token=args.security_token,
        state_file=args.state,
        region=args.region,
        account=args.account,
        switches={
            "auto_previous": args.auto_previous == "true",
            "label_held_elsewhere": args.label_held_elsewhere,
            "remove_mismatch": args.remove_mismatch,
        },
        faults=faults,
    )
    tls = None
    if bool(args.tls_cert) != bool(args.tls_key):
        _usage_error(parser, "--tls-cert and --tls-key go together")
    if args.tls_cert:
        from secretstage.emulator.server import tls_context

        try:
            tls = tls_context(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            _usage_error(parser, f"--tls-cert/--tls-key: {exc}")
    try:
        asyncio.run(run_forever(emulator, args.host, args.port, tls))
    except OSError as exc:
        print(f"secretstage emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return 0


async def _kms_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import httpx

    from secretstage.kms import (
        ConfigurationError,
        CredentialsError,
        KmsClient,
        KmsError,
        RetryPolicy,
        default_provider,
    )
    from secretstage.kms.auth import check_algorithm
    from secretstage.kms.endpoints import PUBLIC_TEMPLATE, VPC_TEMPLATE, kms_endpoint, normalize_endpoint

    try:
        if args.endpoint:
            endpoint = normalize_endpoint(args.endpoint, field="--endpoint")
        elif args.region:
            endpoint = kms_endpoint(args.region, template=VPC_TEMPLATE if args.vpc else PUBLIC_TEMPLATE)
        else:
            raise ConfigurationError("give --region REGION (or ALIBABA_CLOUD_REGION_ID) or --endpoint URL")
        check_algorithm(args.signature, field="--signature")
        if args.max_attempts < 1:
            raise ConfigurationError("--max-attempts must be at least 1")
        if args.command == "promote":
            if not args.secret_name.strip():
                raise ConfigurationError("--secret-name is empty; give the secret's name or ARN")
            if not args.move_to_version and not args.remove_from_version:
                raise ConfigurationError("give --move-to-version and/or --remove-from-version")
        elif not args.secret_name.strip():
            raise ConfigurationError("NAME is empty; give the secret's name or ARN")
        credentials = default_provider()
        verify: ssl.SSLContext | bool = True
        if args.ca_file:
            import certifi

            verify = ssl.create_default_context(cafile=certifi.where())  # the public CAs, as by default
            verify.load_verify_locations(cafile=args.ca_file)
    except (ConfigurationError, CredentialsError) as exc:
        _usage_error(parser, str(exc))
    except (OSError, ssl.SSLError) as exc:
        _usage_error(parser, f"--ca-file {args.ca_file}: {exc}")

    from secretstage.kms.transport import guarded_client

    timeout = httpx.Timeout(args.timeout, connect=5.0)
    http = guarded_client(timeout=timeout, verify=verify) if args.ca_file else None
    client = KmsClient(
        endpoint=endpoint,
        credentials=credentials,
        signature=args.signature,
        retry=RetryPolicy(max_attempts=args.max_attempts),
        timeout=timeout,
        http=http,
    )
    async with contextlib.AsyncExitStack() as owned:
        if http is not None:
            await owned.enter_async_context(http)  # ours to close: the client closes only its own
        await owned.enter_async_context(client)
        try:
            if args.command == "promote":
                log.info(
                    "UpdateSecretVersionStage %s %s -> %s at %s",
                    args.secret_name,
                    args.version_stage,
                    args.move_to_version or "(remove)",
                    endpoint,
                )
                result = await client.update_secret_version_stage(
                    args.secret_name,
                    args.version_stage,
                    move_to_version=args.move_to_version,
                    remove_from_version=args.remove_from_version,
                )
                print(json.dumps({"SecretName": result.secret_name, "RequestId": result.request_id}))
            else:
                listing = await client.list_secret_version_ids(
                    args.secret_name, include_deprecated=args.include_deprecated
                )
                _print_versions(listing.secret_name, listing.versions, as_json=args.json)
        except KmsError as exc:
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
            print(f"RequestId: {exc.request_id or '-'}", file=sys.stderr)
            return EXIT_KMS_ERROR
        except CredentialsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return 0


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _kube_namespace(requested: str | None) -> str:
    """Load the Kubernetes configuration as kubectl would in a pod or on a laptop, and return the
    namespace to use: ``-n``, else the pod's own, else the kube config context's, else ``default``.
    Raises ConfigException or OSError when there is none."""
    from kubernetes import config as k8s_config

    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        # In a pod (an Argo Workflows step, a helm test): its ServiceAccount, as kubectl there would.
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        if requested:
            return requested
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as f:
            return f.read().strip()
    k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    if requested:
        return requested
    _, active = k8s_config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    return str(active["context"].get("namespace") or "default")


def _promotion_command(args: argparse.Namespace) -> int:
    import time

    import yaml
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException

    from secretstage.domain.rollback import ROLLBACK_LABEL, NotRollbackable, rollback_spec

    group, version, plural = "secretstage.io", "v1alpha1", "secretstagepromotions"
    try:
        namespace = _kube_namespace(args.namespace)
    except (k8s_config.ConfigException, OSError) as exc:
        print(f"error: no usable Kubernetes configuration (in-cluster or KUBECONFIG): {exc}", file=sys.stderr)
        return EXIT_USAGE
    api = k8s.CustomObjectsApi()
    try:
        if args.command == "status" and not args.name:
            listing: dict[str, Any] = api.list_namespaced_custom_object(  # type: ignore[assignment]
                group, version, namespace, plural
            )
            _print_promotions(listing.get("items") or [], namespace, as_json=args.output == "json")
            return 0
        obj: dict[str, Any] = api.get_namespaced_custom_object(  # type: ignore[assignment]
            group, version, namespace, plural, args.name
        )
        if args.command == "status":
            _print_status(obj, as_json=args.output == "json")
            return 0
        if args.command in ("approve", "reject"):
            return _decide(api, obj, args.command, args.generation)
        if args.command == "retry":
            if (obj.get("status") or {}).get("phase") != "Failed":
                print(
                    f"error: {namespace}/{args.name} is {obj.get('status', {}).get('phase')}, not Failed; "
                    "only a failed promotion is retried",
                    file=sys.stderr,
                )
                return EXIT_KMS_ERROR
            bumped = int(obj["spec"].get("retry") or 0) + 1
            api.patch_namespaced_custom_object(
                group, version, namespace, plural, args.name, {"spec": {"retry": bumped}}
            )
            print(f"{namespace}/{args.name}: spec.retry={bumped}; the operator runs it again")
            return 0
        spec = rollback_spec(obj)
        name = args.new_name or f"{args.name}-rollback-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
        new = {
            "apiVersion": f"{group}/{version}",
            "kind": "SecretStagePromotion",
            "metadata": {"name": name, "namespace": namespace, "labels": {ROLLBACK_LABEL: args.name}},
            "spec": spec,
        }
        if args.print:
            print(yaml.safe_dump(new, sort_keys=False), end="")
            return 0
        api.create_namespaced_custom_object(group, version, namespace, plural, new)
        target = spec.get("moveToVersion") or f"off {spec.get('removeFromVersion')}"
        print(f"created {namespace}/{name}: {spec['versionStage']} back to {target}")
        print(f"  kubectl wait -n {namespace} --for=condition=Succeeded ssp/{name}")
        return 0
    except NotRollbackable as exc:
        print(f"error: {namespace}/{args.name}: {exc}", file=sys.stderr)
        return EXIT_KMS_ERROR
    except ApiException as exc:
        if exc.status == 404 and getattr(args, "name", None):
            print(f"error: SecretStagePromotion {namespace}/{args.name} not found", file=sys.stderr)
        else:
            print(f"error: Kubernetes API: HTTP {exc.status} {exc.reason}", file=sys.stderr)
        return EXIT_KMS_ERROR


def _decide(api: Any, obj: Mapping[str, Any], verb: str, reviewed: int | None) -> int:
    """Approve or reject ``obj`` as the authenticated user: one line appended, compare-and-set on its
    resourceVersion (read again when someone else wrote first). The API server's admission policy decides."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    from secretstage.domain.approval import APPROVALS_ANNOTATION, line

    review = k8s.AuthenticationV1Api().create_self_subject_review(k8s.V1SelfSubjectReview())
    user_info = review.status.user_info if review.status else None
    user = str(user_info.username) if user_info and user_info.username else ""
    if not user:
        print("error: the API server did not say who you are (SelfSubjectReview); cannot approve", file=sys.stderr)
        return EXIT_KMS_ERROR
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    for _ in range(5):
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        generation = int(meta.get("generation") or 0)
        if not (spec.get("approval") or {}).get("required"):
            print(f"error: {namespace}/{name} does not ask for approval (spec.approval.required)", file=sys.stderr)
            return EXIT_KMS_ERROR
        if reviewed is not None and reviewed != generation:
            print(
                f"error: {namespace}/{name} is at generation {generation}, not {reviewed}: its spec changed since you "
                f"reviewed it; look again (kubectl get ssp {name} -n {namespace} -o yaml) and {verb} that",
                file=sys.stderr,
            )
            return EXIT_KMS_ERROR
        if status.get("observedGeneration") == generation and status.get("phase") in ("Succeeded", "Failed"):
            print(f"error: {namespace}/{name} generation {generation} is {status['phase']} already", file=sys.stderr)
            return EXIT_KMS_ERROR
        old = str((meta.get("annotations") or {}).get(APPROVALS_ANNOTATION) or "")
        entry = line(verb, generation, user)
        patch = {
            "metadata": {
                "resourceVersion": meta["resourceVersion"],
                "annotations": {APPROVALS_ANNOTATION: f"{old}\n{entry}" if old else entry},
            }
        }
        try:
            api.patch_namespaced_custom_object(
                "secretstage.io", "v1alpha1", namespace, "secretstagepromotions", name, patch
            )
        except ApiException as exc:
            if exc.status == 409:  # written by someone else since it was read: read it again
                obj = api.get_namespaced_custom_object(
                    "secretstage.io", "v1alpha1", namespace, "secretstagepromotions", name
                )
                continue
            print(f"error: {namespace}/{name}: {_api_message(exc)}", file=sys.stderr)
            return EXIT_KMS_ERROR
        target = spec.get("moveToVersion") or f"off {spec.get('removeFromVersion')}"
        what = f"{spec.get('versionStage')} -> {target} of {spec.get('secretName')}"
        if verb == "approve":
            print(f"approved generation {generation} of {namespace}/{name} ({what}) as {user}")
        else:
            print(f"rejected generation {generation} of {namespace}/{name} ({what}) as {user}; it moves nothing")
        return 0
    print(f"error: {namespace}/{name} kept changing; try again", file=sys.stderr)
    return EXIT_KMS_ERROR


def _api_message(exc: Any) -> str:
    """The API server's own message (an admission policy's refusal says what to fix), else the status line."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (TypeError, ValueError):
        message = None
    return str(message or f"HTTP {exc.status} {exc.reason}")


def _print_promotions(items: Sequence[Mapping[str, Any]], namespace: str, *, as_json: bool) -> None:
    rows = []
    for obj in items:
        status = obj.get("status") or {}
        spec = obj.get("spec") or {}
        rows.append(
            {
                "name": obj["metadata"]["name"],
                "phase": status.get("phase") or "-",
                "reason": succeeded_condition(status).get("reason") or "-",
                "stage": spec.get("versionStage", "-"),
                "version": spec.get("moveToVersion") or f"-{spec.get('removeFromVersion', '')}",
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"No SecretStagePromotions in namespace {namespace}.")
        return
    table = [("NAME", "PHASE", "REASON", "STAGE", "VERSION")] + [tuple(r.values()) for r in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(5)]
    for row in table:
        print("  ".join(str(col).ljust(w) for col, w in zip(row, widths, strict=True)).rstrip())


def _print_status(obj: Mapping[str, Any], *, as_json: bool) -> None:
    """What the operator wrote, as a person reads it; status holds nothing secret (only version IDs)."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    if as_json:
        print(json.dumps({"metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "status": status}))
        return
    succeeded = succeeded_condition(status)
    current = status.get("observedGeneration") == meta.get("generation")
    lines = [
        f"Promotion:  {meta['namespace']}/{meta['name']} (generation {meta.get('generation')}"
        + ("" if current else f"; the status is of generation {status.get('observedGeneration')}")
        + ")",
        f"Secret:     {spec.get('secretName')}  {spec.get('versionStage')} -> "
        + (spec.get("moveToVersion") or f"off {spec.get('removeFromVersion')}"),
        f"Phase:      {status.get('phase') or '(not processed yet)'}",
    ]
    if succeeded:
        lines.append(f"Reason:     {succeeded.get('reason')}: {succeeded.get('message')}")
    for label, key in (("Plan", "plan"), ("RequestId", "requestId")):
        if status.get(key):
            lines.append(f"{label + ':':<11} {status[key]}")
    for label, key in (("Before", "stagesBefore"), ("After", "stagesAfter")):
        if isinstance(status.get(key), Mapping):
            placed = ", ".join(f"{stage}={version}" for stage, version in sorted(status[key].items()))
            lines.append(f"{label + ':':<11} {placed or '(no stages)'}")
    gate = status.get("gate") or {}
    if gate:
        lines.append(f"Gate:       {gate.get('verdict') or 'running'} (version {gate.get('version')})")
    rollback = status.get("rollback") or {}
    if rollback:
        lines.append(
            f"Rollback:   to {rollback.get('toVersion')} ({rollback.get('reason')}); "
            f"RequestId {rollback.get('requestId') or 'not answered yet'}"
        )
    print("\n".join(lines))


def _print_versions(secret_name: str, versions: Sequence[Any], *, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "SecretName": secret_name,
                    "Versions": [
                        {"VersionId": v.version_id, "CreateTime": v.create_time, "VersionStages": list(v.stages)}
                        for v in versions
                    ],
                },
                indent=2,
            )
        )
        return
    rows = [("VERSION ID", "CREATED", "STAGES")] + [
        (v.version_id, v.create_time, ",".join(v.stages) or "-") for v in versions
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"Secret: {secret_name}")
    for row in rows:
        print("  ".join(col.ljust(w) for col, w in zip(row, widths, strict=True)).rstrip())


def _check(args: argparse.Namespace) -> int:
    import time
    import uuid

    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException

    group, version, plural = "secretstage.io", "v1alpha1", "secretstagepromotions"
    try:
        namespace = _kube_namespace(args.namespace)
    except (k8s_config.ConfigException, OSError) as exc:
        print(f"error: no usable Kubernetes configuration (in-cluster or KUBECONFIG): {exc}", file=sys.stderr)
        return EXIT_USAGE
    name = args.name or f"secretstage-check-{uuid.uuid4().hex[:8]}"
    spec: dict[str, Any] = {
        "secretName": args.secret_name,
        "versionStage": args.version_stage,
        "moveToVersion": args.move_to_version,
        "dryRun": True,
        "credentials": {"secretRef": {"name": args.credentials_secret}}
        if args.credentials_secret
        else {"serviceAccountRef": {"name": args.service_account}}
        if args.service_account
        else {"operatorIdentity": True},
    }
    if args.region_id:
        spec["regionId"] = args.region_id
    if args.endpoint:
        spec["endpoint"] = args.endpoint
    body = {
        "apiVersion": f"{group}/{version}",
        "kind": "SecretStagePromotion",
        "metadata": {"name": name},
        "spec": spec,
    }
    api = k8s.CustomObjectsApi()
    try:
        try:
            api.delete_namespaced_custom_object(group, version, namespace, plural, name)  # a leftover of a killed run
        except ApiException as exc:
            if exc.status != 404:
                raise
        created: dict[str, Any] = api.create_namespaced_custom_object(  # type: ignore[assignment]
            group, version, namespace, plural, body
        )
        generation = created["metadata"].get("generation", 1)
        print(f"created {namespace}/{name} (dryRun); waiting up to {args.timeout:.0f}s for the operator")
        deadline = time.monotonic() + args.timeout
        status: dict[str, Any] = {}
        try:
            while True:
                obj: dict[str, Any] = api.get_namespaced_custom_object(  # type: ignore[assignment]
                    group, version, namespace, plural, name
                )
                status = obj.get("status") or {}
                if status.get("observedGeneration") == generation and status.get("phase") in ("Succeeded", "Failed"):
                    break
                if time.monotonic() >= deadline:
                    print(
                        f"error: not planned within {args.timeout:.0f}s; last seen: phase {status.get('phase')!r}, "
                        f"{_succeeded_condition(status)} (is the operator running and watching {namespace}?)",
                        file=sys.stderr,
                    )
                    return EXIT_KMS_ERROR
                time.sleep(1)
        finally:
            with contextlib.suppress(ApiException):
                api.delete_namespaced_custom_object(group, version, namespace, plural, name)
    except ApiException as exc:
        print(f"error: Kubernetes API: HTTP {exc.status} {exc.reason}", file=sys.stderr)
        return EXIT_KMS_ERROR
    if status.get("phase") != "Succeeded":
        print(f"error: the dry run failed: {_succeeded_condition(status)}", file=sys.stderr)
        return EXIT_KMS_ERROR
    print(f"ok: {status.get('plan') or _succeeded_condition(status)}")
    return 0


def _succeeded_condition(status: Mapping[str, Any]) -> str:
    condition = succeeded_condition(status)
    if not condition:
        return "no Succeeded condition yet"
    return f"{condition.get('reason')}: {condition.get('message')}"


if __name__ == "__main__":
    sys.exit(main())
