"""Per-namespace workload identity on the real control plane, against an STS that checks for real.

Two tenants, each with a ServiceAccount annotated with its own RAM role. The operator runs as the
chart's ServiceAccount (so with the chart's RBAC: serviceaccounts/token only where it watches); the
emulator's STS verifies every token against the API server's published keys (/openid/v1/jwks), its
issuer, audience and expiry, and each role's trust policy; each role's credentials reach only the
secrets its policy names. Every refusal is asserted by the code Alibaba documents for it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client as k8s

from tests.cluster import Cluster
from tests.harness import EmulatorProcess, OperatorProcess, Promotions, condition, install_chart, spec_for

ACCOUNT = "1234567890123456"
PROVIDER = f"acs:ram::{ACCOUNT}:oidc-provider/ack-rrsa-test"
ROLE_ANNOTATION = "secretstage.io/role-arn"
ACK_ROLE_ANNOTATION = "pod-identity.alibabacloud.com/role-name"  # honoured only with --accept-ack-role-annotation
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")


@dataclass
class Tenant:
    namespace: str
    role: str  # role name
    secret: str
    account: str = "promoter"  # the ServiceAccount its role trusts

    @property
    def role_arn(self) -> str:
        return f"acs:ram::{ACCOUNT}:role/{self.role}"

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.account}"


@dataclass
class World:
    cluster: Cluster
    emulator: EmulatorProcess
    operator: OperatorProcess
    promotions: Promotions
    a: Tenant
    b: Tenant
    issuer: str
    operator_role: Tenant  # the operator's own: its ServiceAccount in the release namespace, its secret

    def sts(self, token: str, role_arn: str) -> dict[str, Any]:
        """AssumeRoleWithOIDC exactly as a client sends it (anonymous, form body)."""
        form = {
            "Action": "AssumeRoleWithOIDC",
            "Version": "2015-04-01",
            "Format": "JSON",
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "RoleArn": role_arn,
            "OIDCProviderArn": PROVIDER,
            "OIDCToken": token,
            "RoleSessionName": "test",
        }
        return dict(httpx.post(self.emulator.url + "/", data=form, timeout=10).json())

    def sts_history(self) -> list[dict[str, Any]]:
        return [h for h in self.emulator.calls()["history"] if h["action"] == "AssumeRoleWithOIDC"]


def identity_config(issuer: str, ca_file: str, tenants: list[Tenant]) -> dict[str, Any]:
    roles = []
    for t in tenants:
        trust = {
            "Version": "1",
            "Statement": [
                {
                    "Action": "sts:AssumeRole",
                    "Effect": "Allow",
                    "Principal": {"Federated": [PROVIDER]},
                    "Condition": {
                        "StringEquals": {"oidc:aud": "sts.aliyuncs.com", "oidc:iss": issuer, "oidc:sub": t.subject}
                    },
                }
            ],
        }
        policy = {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["kms:UpdateSecretVersionStage", "kms:ListSecretVersionIds", "kms:DescribeSecret"],
                    "Resource": [f"acs:kms:*:*:secret/{t.secret}"],
                }
            ],
        }
        roles.append({"arn": t.role_arn, "trustPolicy": trust, "policy": policy})
    provider = {
        "arn": PROVIDER,
        "issuerUrl": issuer,
        "clientIds": ["sts.aliyuncs.com"],
        "jwksUrl": issuer + "/openid/v1/jwks",
        "caFile": ca_file,
    }
    return {"oidcProviders": [provider], "roles": roles}


def make_namespace(core: k8s.CoreV1Api) -> str:
    name = "t-" + uuid.uuid4().hex[:10]
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels={"secretstage-test": "1"})))
    return name


def service_account(
    core: k8s.CoreV1Api, namespace: str, name: str, role_arn: str | None, annotation: str = ROLE_ANNOTATION
) -> None:
    annotations = {annotation: role_arn} if role_arn else None
    core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name, annotations=annotations))
    )


@pytest.fixture(scope="module")
def world(cluster: Cluster, crd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not cluster.server:
        pytest.skip("needs the test control plane (its issuer and signing key)")
    tmp = tmp_path_factory.mktemp("identity")
    # Service account issuer discovery, public as a cloud OIDC provider's is (the Kubernetes docs' recipe).
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "secretstage-test-oidc-discovery"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:service-account-issuer-discovery",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}],
        }
    )
    discovery = json.loads(cluster.kubectl("get", "--raw", "/.well-known/openid-configuration").stdout)
    issuer = discovery["issuer"]
    core = k8s.CoreV1Api(cluster.api)
    release_ns = make_namespace(core)
    ns_a, ns_b = make_namespace(core), make_namespace(core)
    run = uuid.uuid4().hex[:6]
    a = Tenant(ns_a, f"payments-{run}", f"tenant-a-{run}/db")
    b = Tenant(ns_b, f"orders-{run}", f"tenant-b-{run}/db")
    for t in (a, b):
        service_account(core, t.namespace, "promoter", t.role_arn)
    # The release namespace is watched too: there a promotion could name the operator's own ServiceAccount.
    release = install_chart(
        cluster,
        "wi",
        release_ns,
        f"watch.namespaces={{{ns_a},{ns_b},{release_ns}}}",
        f"serviceAccountIdentity.oidcProviderArn={PROVIDER}",
        "rbac.aggregateToDefaultRoles=false",
    )
    own = Tenant(release_ns, f"operator-{run}", f"operator-{run}/db", account=f"{release}-secretstage-operator")
    # As an RRSA install would have it: the operator's ServiceAccount names the operator's role, which trusts it.
    cluster.kubectl("-n", release_ns, "annotate", "serviceaccount", own.account, f"{ROLE_ANNOTATION}={own.role_arn}")
    config = tmp / "identity.json"
    config.write_text(json.dumps(identity_config(issuer, cluster.env["K8S_CA"], [a, b, own])))
    emulator = EmulatorProcess(tmp, "--identity-config", str(config))
    kubeconfig = cluster.token_kubeconfig(release_ns, own.account, tmp / "sa.kubeconfig")
    operator = OperatorProcess(
        tmp,
        kubeconfig,
        emulator.url,
        "--namespace",
        ns_a,
        "--namespace",
        ns_b,
        "--namespace",
        release_ns,
        "--oidc-provider-arn",
        PROVIDER,
        "--operator-service-account",
        f"{release_ns}/{own.account}",
        name="identity-op",
        # ack-pod-identity-webhook's variable: the operator's own role
        env={"ALIBABA_CLOUD_STS_ENDPOINT": emulator.url, "ALIBABA_CLOUD_ROLE_ARN": own.role_arn},
    )
    world = World(cluster, emulator, operator, Promotions(cluster), a, b, issuer, own)
    try:
        yield world
    finally:
        operator.stop()
        emulator.stop()
        cluster.helm("uninstall", release, "-n", release_ns, check=False)
        for ns in (release_ns, ns_a, ns_b):
            core.delete_namespace(ns)
    # No token, no STS secret, in any log, status or event (JWT_SHAPE: any JWT at all; CAIS: STS tokens).
    text = operator.log_text() + emulator.process.log_text()
    for ns in (ns_a, ns_b, release_ns):
        text += world.promotions.all_text(ns)
    assert "serviceAccountRef=on" in text  # the scan below read the real operator's output
    assert not JWT_SHAPE.search(text), JWT_SHAPE.search(text)
    assert "CAIS" not in text


def promote(world: World, tenant: Tenant, name: str, secret: str, account: str = "promoter") -> dict[str, Any]:
    """Seed ``secret`` (v1 current, v2 waiting) and promote v2 from ``tenant`` with ServiceAccount ``account``."""
    world.emulator.seed(secret, "v1", "v2")
    spec = spec_for(world.emulator, secret, moveToVersion="v2", credentials={"serviceAccountRef": {"name": account}})
    world.promotions.create(tenant.namespace, name, spec)
    return world.promotions.wait_phase(tenant.namespace, name, "Succeeded", "Failed", timeout=60)


def test_a_tenant_promotes_with_its_own_service_account(world: World) -> None:
    a = world.a
    before = len(world.sts_history())
    obj = promote(world, a, "first", a.secret)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert world.emulator.holder(a.secret, "ACSCurrent") == "v2"
    move = next(
        h
        for h in reversed(world.emulator.calls()["history"])
        if h["action"] == "UpdateSecretVersionStage" and h.get("SecretName") == a.secret
    )
    assert move["access_key_id"].startswith("STS.")
    assert obj["status"]["requestId"] == move["request_id"]
    exchanges = world.sts_history()[before:]
    assert [(h["role"], h.get("subject"), h["code"]) for h in exchanges] == [(a.role_arn, a.subject, "Success")]
    # the same tenant's next promotion reuses the cached session: no new token, no new exchange
    # (the role's policy names a.secret only: widen it to the second secret first)
    config = identity_config(world.issuer, world.cluster.env["K8S_CA"], [a, world.b])
    config["roles"][0]["policy"]["Statement"][0]["Resource"].append(f"acs:kms:*:*:secret/{a.secret}-2")
    world.emulator.set_identity(config)
    second = promote(world, a, "second", a.secret + "-2")
    assert second["status"]["phase"] == "Succeeded", second["status"]
    assert len(world.sts_history()) == before + 1


def test_a_tenant_cannot_name_another_tenants_service_account(world: World) -> None:
    """B's ServiceAccount is "promoter" in B; from A the name can only mean A's own (absent) one."""
    a, b = world.a, world.b
    before = len(world.sts_history())
    spec = spec_for(world.emulator, b.secret, moveToVersion="v2", credentials={"serviceAccountRef": {"name": "b-only"}})
    service_account(k8s.CoreV1Api(world.cluster.api), b.namespace, "b-only", b.role_arn)
    world.emulator.seed(b.secret, "v1", "v2")
    world.promotions.create(a.namespace, "borrow", spec)
    obj = world.promotions.wait_phase(a.namespace, "borrow", "Pending", timeout=60)
    assert condition(obj, "Succeeded")["reason"] == "ServiceAccountNotFound", obj["status"]
    assert f"ServiceAccount {a.namespace}/b-only not found" in condition(obj, "Succeeded")["message"]
    assert world.sts_history()[before:] == []
    assert world.emulator.holder(b.secret, "ACSCurrent") == "v1"


def test_a_tenant_cannot_assume_another_tenants_role(world: World) -> None:
    """A annotates its own ServiceAccount with B's role: STS refuses, B's trust policy names B's subject."""
    a, b = world.a, world.b
    service_account(k8s.CoreV1Api(world.cluster.api), a.namespace, "impostor", b.role_arn)
    secret = b.secret + "-impostor"
    obj = promote(world, a, "impostor", secret, account="impostor")
    assert obj["status"]["phase"] == "Failed", obj["status"]
    assert obj["status"]["lastError"]["code"] == "AuthenticationFail.NoPermission", obj["status"]
    refused = world.sts_history()[-1]
    assert (refused["role"], refused["code"]) == (b.role_arn, "AuthenticationFail.NoPermission")
    assert world.emulator.holder(secret, "ACSCurrent") == "v1"


def test_a_tenants_role_cannot_reach_another_tenants_secret(world: World) -> None:
    a, b = world.a, world.b
    secret = b.secret + "-reach"
    obj = promote(world, a, "reach", secret)
    assert obj["status"]["phase"] == "Failed", obj["status"]
    assert obj["status"]["lastError"]["code"] == "Forbidden.NoPermission", obj["status"]
    assert world.emulator.holder(secret, "ACSCurrent") == "v1"
    assert world.emulator.moves(secret) == 0


def test_a_service_account_without_a_role_fails_with_the_fix(world: World) -> None:
    service_account(k8s.CoreV1Api(world.cluster.api), world.a.namespace, "plain", None)
    obj = promote(world, world.a, "plain", world.a.secret + "-plain", account="plain")
    assert condition(obj, "Succeeded")["reason"] == "ServiceAccountHasNoRole", obj["status"]
    assert ROLE_ANNOTATION in condition(obj, "Succeeded")["message"]


def test_the_operators_own_service_account_cannot_be_borrowed(world: World) -> None:
    """Issue 22, finding 1: in the release namespace (watched, not allowed the operator's identity), a
    promotion names the operator's ServiceAccount. Its role trusts exactly that subject, so STS would
    hand it over; the operator refuses before asking for a token."""
    own = world.operator_role
    before = len(world.sts_history())
    obj = promote(world, own, "borrow-operator", own.secret, account=own.account)
    assert obj["status"]["phase"] == "Failed", obj["status"]
    assert condition(obj, "Succeeded")["reason"] == "OperatorIdentityNotAllowed", obj["status"]
    assert "operator's own ServiceAccount" in condition(obj, "Succeeded")["message"]
    assert world.sts_history()[before:] == []
    assert world.emulator.holder(own.secret, "ACSCurrent") == "v1"


def test_a_service_account_naming_the_operators_role_is_refused(world: World) -> None:
    own, a = world.operator_role, world.a
    service_account(k8s.CoreV1Api(world.cluster.api), a.namespace, "borrower", own.role_arn)
    before = len(world.sts_history())
    obj = promote(world, a, "borrow-role", own.secret + "-role", account="borrower")
    assert condition(obj, "Succeeded")["reason"] == "OperatorIdentityNotAllowed", obj["status"]
    assert world.sts_history()[before:] == []


def test_acks_workload_annotation_is_not_honoured_by_default(world: World) -> None:
    """ACK's annotation names the role of the namespace's pods; by default it gives promotions nothing."""
    a = world.a
    service_account(k8s.CoreV1Api(world.cluster.api), a.namespace, "web", a.role, annotation=ACK_ROLE_ANNOTATION)
    before = len(world.sts_history())
    obj = promote(world, a, "ack-annotation", a.secret + "-ack", account="web")
    assert condition(obj, "Succeeded")["reason"] == "ServiceAccountHasNoRole", obj["status"]
    assert "--accept-ack-role-annotation" in condition(obj, "Succeeded")["message"]
    assert world.sts_history()[before:] == []


def test_sts_refuses_wrong_audience_expired_and_forged_tokens(world: World) -> None:
    a = world.a

    def token(*args: str) -> str:
        return world.cluster.kubectl("-n", a.namespace, "create", "token", "promoter", *args).stdout.strip()

    assert "Credentials" in world.sts(token("--audience", "sts.aliyuncs.com"), a.role_arn)  # the control
    assert world.sts(token(), a.role_arn)["Code"] == "AuthenticationFail.OIDCToken.AudienceNotMatch"
    assert (
        world.sts(token("--audience", "sts.aliyuncs.com"), world.b.role_arn)["Code"]
        == "AuthenticationFail.NoPermission"
    )

    # The API server issues nothing shorter than 10 minutes; an expired token is signed here with its key.
    jwks = json.loads(world.cluster.kubectl("get", "--raw", "/openid/v1/jwks").stdout)
    kid = jwks["keys"][0]["kid"]
    assert world.cluster.state_dir is not None
    api_server_key = (world.cluster.state_dir / "pki" / "sa.key").read_bytes()
    now = int(time.time())
    claims = {"iss": world.issuer, "aud": ["sts.aliyuncs.com"], "sub": a.subject, "iat": now - 700, "exp": now - 60}
    expired = jwt.encode(claims, api_server_key, algorithm="RS256", headers={"kid": kid})
    assert world.sts(expired, a.role_arn)["Code"] == "AuthenticationFail.OIDCToken.Expired"
    fresh = jwt.encode({**claims, "exp": now + 600}, api_server_key, algorithm="RS256", headers={"kid": kid})
    assert "Credentials" in world.sts(fresh, a.role_arn)  # same key, not expired: accepted
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({**claims, "exp": now + 600}, forger, algorithm="RS256", headers={"kid": kid})
    assert world.sts(forged, a.role_arn)["Code"] == "AuthenticationFail.OIDCToken.InvalidSignature"
    other_issuer = jwt.encode(
        {**claims, "exp": now + 600, "iss": "https://kubernetes.default.svc"}, api_server_key, "RS256", {"kid": kid}
    )
    assert world.sts(other_issuer, a.role_arn)["Code"] == "AuthenticationFail.OIDCToken.IssuerNotMatch"


def test_leak_scan_reads_real_text(world: World) -> None:
    """The module's final scan is only worth something if JWT_SHAPE matches the tokens this cluster issues."""
    token = world.cluster.kubectl("-n", world.a.namespace, "create", "token", "promoter").stdout.strip()
    assert JWT_SHAPE.fullmatch(token)
