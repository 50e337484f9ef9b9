"""ServiceAccountIdentities: one STS session per (namespace, ServiceAccount, role), against the emulator's STS."""

from __future__ import annotations

import asyncio

from secretstage.identities import ServiceAccountIdentities
from secretstage.kms import TokenSource
from tests.conftest import RunningEmulator

PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1"
ROLE = "acs:ram::1234567890123456:role/r"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"


async def test_sessions_are_per_namespace_service_account_and_role(kms: RunningEmulator) -> None:
    asked: list[tuple[str, str]] = []

    def tokens(namespace: str, name: str) -> TokenSource:
        async def token() -> str:
            asked.append((namespace, name))
            return JWT

        return token

    identities = ServiceAccountIdentities(
        oidc_provider_arn=PROVIDER, sts_endpoint=kms.url, token_source=tokens, max_sessions=2
    )
    a = identities.provider("a", "promoter", ROLE)
    assert identities.provider("a", "promoter", ROLE) is a
    creds = await asyncio.gather(*(a.get() for _ in range(5)))
    assert len({c.access_key_id for c in creds}) == 1
    assert asked == [("a", "promoter")]
    b = identities.provider("b", "promoter", ROLE)  # same ServiceAccount name, another tenant
    assert b is not a
    assert (await b.get()).access_key_id != creds[0].access_key_id
    assert identities.provider("a", "promoter", ROLE + "2") is not a  # the annotation changed: a new session
    assert len(identities) == 2  # least recently used evicted
    assert [h["role"] for h in kms.emulator.history if h["action"] == "AssumeRoleWithOIDC"] == [ROLE, ROLE]
    assert b.session_name == "secretstage.b.promoter"
