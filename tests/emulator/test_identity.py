"""The emulator's STS with an identity configuration: real token checks, trust policies, role permissions.

Tokens here are signed with keys made for the test (the e2e tests use the API server's own); every
refusal is asserted by its STS code, and every credential issued is then used against KMS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from secretstage.emulator.identity import IdentityConfig, OidcVerifier, StsDenied
from secretstage.emulator.ram import PolicyDocument, PolicyError
from secretstage.kms import KmsApiError, KmsClient, RrsaProvider
from tests.conftest import RunningEmulator

ISSUER = "https://oidc.test.example/cluster-1"
PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1"
ROLE_A = "acs:ram::1234567890123456:role/payments-promoter"
ROLE_B = "acs:ram::1234567890123456:role/orders-promoter"
SUB_A = "system:serviceaccount:payments:promoter"


def trust(sub: str, provider: str = PROVIDER) -> dict[str, Any]:
    return {
        "Version": "1",
        "Statement": [
            {
                "Action": "sts:AssumeRole",
                "Effect": "Allow",
                "Principal": {"Federated": [provider]},
                "Condition": {"StringEquals": {"oidc:aud": "sts.aliyuncs.com", "oidc:iss": ISSUER, "oidc:sub": sub}},
            }
        ],
    }


def secrets_policy(prefix: str) -> dict[str, Any]:
    return {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["kms:UpdateSecretVersionStage", "kms:ListSecretVersionIds", "kms:DescribeSecret"],
                "Resource": [f"acs:kms:*:*:secret/{prefix}*"],
            }
        ],
    }


class Issuer:
    """An OIDC issuer for the test: a key, its JWKS, and tokens with any claims."""

    def __init__(self, kid: str = "k1") -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": ["sts.aliyuncs.com"], "sub": SUB_A, "iat": now, "exp": now + 600, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def config(issuer: Issuer, tmp_path: Path) -> IdentityConfig:
    (tmp_path / "jwks.json").write_text(json.dumps(issuer.jwks()))
    data = {
        "oidcProviders": [{"arn": PROVIDER, "issuerUrl": ISSUER, "jwksFile": "jwks.json"}],
        "roles": [
            {"arn": ROLE_A, "trustPolicy": trust(SUB_A), "policy": secrets_policy("payments/")},
            {"arn": ROLE_B, "trustPolicy": trust("system:serviceaccount:orders:promoter"), "policy": None},
        ],
    }
    (tmp_path / "identity.yaml").write_text(json.dumps(data))
    return IdentityConfig.load(str(tmp_path / "identity.yaml"))


async def code_of(verifier: OidcVerifier, token: str, role: str = ROLE_A, provider: str = PROVIDER) -> str:
    try:
        await verifier.verify(role, provider, token)
    except StsDenied as denied:
        return denied.code
    return "Success"


async def test_every_check_has_its_sts_code(issuer: Issuer, config: IdentityConfig) -> None:
    verifier = OidcVerifier(config)
    stranger = Issuer(kid=issuer.kid)  # same kid, another key: a forged token
    hs256 = jwt.encode({"iss": ISSUER, "aud": "sts.aliyuncs.com", "sub": SUB_A, "exp": 2**31}, "k" * 32)
    cases = {
        "good": (issuer.token(), "Success"),
        "audience is a plain string": (issuer.token(aud="sts.aliyuncs.com"), "Success"),
        "forged signature": (stranger.token(), "AuthenticationFail.OIDCToken.InvalidSignature"),
        "unknown kid": (Issuer(kid="other").token(), "AuthenticationFail.OIDCToken.InvalidSignature"),
        "expired": (issuer.token(exp=int(time.time()) - 1), "AuthenticationFail.OIDCToken.Expired"),
        "no exp": (issuer.token(exp=None), "AuthenticationFail.OIDCToken.Invalid"),
        "wrong audience": (
            issuer.token(aud=["https://kubernetes.default.svc"]),
            "AuthenticationFail.OIDCToken.AudienceNotMatch",
        ),
        "wrong issuer": (issuer.token(iss="https://evil.example"), "AuthenticationFail.OIDCToken.IssuerNotMatch"),
        "other subject": (
            issuer.token(sub="system:serviceaccount:orders:promoter"),
            "AuthenticationFail.NoPermission",
        ),
        "HS256": (hs256, "AuthenticationFail.OIDCToken.Invalid"),
        "not a JWT": ("a.b", "AuthenticationFail.OIDCToken.Invalid"),
        "garbage": ("a.b.c", "AuthenticationFail.OIDCToken.Invalid"),
    }
    got = {name: await code_of(verifier, token) for name, (token, _) in cases.items()}
    assert got == {name: code for name, (_, code) in cases.items()}
    assert await code_of(verifier, issuer.token(), role=ROLE_A + "x") == "EntityNotExist.Role"
    assert await code_of(verifier, issuer.token(), provider=PROVIDER + "x") == "AuthenticationFail.NoPermission"


async def test_jwks_url_that_fails_is_issuer_configuration_broken(issuer: Issuer) -> None:
    config = IdentityConfig.from_dict(
        {
            "oidcProviders": [{"arn": PROVIDER, "issuerUrl": ISSUER, "jwksUrl": "http://127.0.0.1:9/openid/v1/jwks"}],
            "roles": [{"arn": ROLE_A, "trustPolicy": trust(SUB_A)}],
        }
    )
    assert (
        await code_of(OidcVerifier(config), issuer.token()) == "AuthenticationFail.OIDCToken.IssuerConfigurationBroken"
    )


@pytest.mark.parametrize(
    ("document", "trust", "message"),
    [
        ({"Statement": []}, False, "Statement must be a non-empty list"),
        ({"Statement": [{"Effect": "Maybe", "Action": "x"}]}, False, r"Statement\[0\].Effect must be Allow or Deny"),
        ({"Statement": [{"Effect": "Allow", "Action": "kms:*"}]}, False, "needs Resource"),
        ({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}, True, "Principal must name"),
        (
            {
                "Statement": [
                    {"Effect": "Allow", "Action": "a", "Resource": "*", "Condition": {"IpAddress": {"x": "y"}}}
                ]
            },
            False,
            r"Condition.IpAddress is not supported",
        ),
        ({"Statement": [{"Effect": "Allow", "Action": "a", "Resource": "*", "Foo": 1}]}, False, "unsupported elements"),
    ],
)
def test_policies_this_emulator_cannot_evaluate_are_refused_by_path(
    document: dict[str, Any], trust: bool, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        PolicyDocument.parse({"Version": "1", **document}, "roles[0].policy", trust=trust)


def test_policy_evaluation_deny_wins_wildcards_and_not_operators() -> None:
    policy = PolicyDocument.parse(
        {
            "Version": "1",
            "Statement": [
                {"Effect": "Allow", "Action": "kms:*", "Resource": "acs:kms:*:*:secret/payments/*"},
                {
                    "Effect": "Deny",
                    "Action": "kms:updatesecretversionstage",
                    "Resource": "acs:kms:*:*:secret/payments/root",
                },
            ],
        },
        "p",
        trust=False,
    )
    arn = "acs:kms:cn-hangzhou:1:secret/"
    assert policy.allows("kms:UpdateSecretVersionStage", resource=arn + "payments/db")
    assert not policy.allows("kms:UpdateSecretVersionStage", resource=arn + "payments/root")  # explicit deny
    assert policy.allows("kms:ListSecretVersionIds", resource=arn + "payments/root")
    assert not policy.allows("kms:UpdateSecretVersionStage", resource=arn + "orders/db")  # implicit deny
    assert not policy.allows("kms:UpdateSecretVersionStage", resource=arn + "payments[x]")
    trust_doc = PolicyDocument.parse(
        {
            "Version": "1",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sts:AssumeRole",
                    "Principal": {"Federated": PROVIDER},
                    "Condition": {
                        "StringLike": {"oidc:sub": "system:serviceaccount:payments:*"},
                        "StringNotEquals": {"oidc:sub": "system:serviceaccount:payments:default"},
                    },
                }
            ],
        },
        "t",
        trust=True,
    )

    def may(sub: str, provider: str = PROVIDER) -> bool:
        return trust_doc.allows("sts:AssumeRole", principal=("Federated", provider), context={"oidc:sub": sub})

    assert may("system:serviceaccount:payments:promoter")
    assert not may("system:serviceaccount:payments:default")
    assert not may("system:serviceaccount:orders:promoter")
    assert not may("system:serviceaccount:payments:promoter", provider=PROVIDER + "-other")
    assert not trust_doc.allows("sts:AssumeRole", principal=("Federated", PROVIDER), context={})


@pytest.fixture
def exchange(kms: RunningEmulator, tmp_path: Path) -> Callable[[str, str], RrsaProvider]:
    def make(token: str, role: str) -> RrsaProvider:
        path = tmp_path / f"token-{len(list(tmp_path.iterdir()))}"
        path.write_text(token)
        return RrsaProvider(role_arn=role, oidc_provider_arn=PROVIDER, oidc_token_file=str(path), sts_endpoint=kms.url)

    return make


async def test_role_credentials_reach_only_the_secrets_of_its_policy(
    kms: RunningEmulator,
    issuer: Issuer,
    config: IdentityConfig,
    client: KmsClient,
    client_factory: Callable[..., KmsClient],
    exchange: Callable[[str, str], RrsaProvider],
) -> None:
    kms.emulator.set_identity(config)
    for name in ("payments/db", "orders/db"):
        await client.create_secret(name, "v1", "x")
        await client.put_secret_value(name, "v2", "y", version_stages=[])
    role_a = client_factory(credentials=exchange(issuer.token(), ROLE_A))
    await role_a.update_secret_version_stage(
        "payments/db", "ACSCurrent", move_to_version="v2", remove_from_version="v1"
    )
    with pytest.raises(KmsApiError) as denied:
        await role_a.update_secret_version_stage(
            "orders/db", "ACSCurrent", move_to_version="v2", remove_from_version="v1"
        )
    assert (denied.value.code, denied.value.http_status, denied.value.retryable) == (
        "Forbidden.NoPermission",
        403,
        False,
    )
    assert kms.placement("orders/db") == {"v1": ["ACSCurrent"], "v2": []}
    with pytest.raises(KmsApiError, match=r"Forbidden\.NoPermission"):  # not in the policy's actions
        await role_a.get_secret_value("payments/db")
    sts = [h for h in kms.emulator.history if h["action"] == "AssumeRoleWithOIDC"]
    assert [(h["role"], h.get("subject"), h["code"]) for h in sts] == [(ROLE_A, SUB_A, "Success")]

    # role B trusts another ServiceAccount; A's token cannot assume it
    with pytest.raises(KmsApiError) as refused:
        await exchange(issuer.token(), ROLE_B).get()
    assert (refused.value.code, refused.value.http_status) == ("AuthenticationFail.NoPermission", 401)

    # a role without a permission policy gets credentials that reach nothing
    role_b = client_factory(credentials=exchange(issuer.token(sub="system:serviceaccount:orders:promoter"), ROLE_B))
    with pytest.raises(KmsApiError, match=r"Forbidden\.NoPermission"):
        await role_b.list_secret_version_ids("orders/db")


async def test_without_identity_checks_any_jwt_passes(
    kms: RunningEmulator, exchange: Callable[[str, str], RrsaProvider]
) -> None:
    """The documented lenient mode: no configuration, no checks (and the credentials are unrestricted)."""
    creds = await exchange("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln", ROLE_A).get()
    assert creds.access_key_id.startswith("STS.")
