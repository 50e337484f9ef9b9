"""ServiceAccountIdentities: one STS session per (namespace, ServiceAccount, role), against the emulator's STS."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from secretstage.identities import ServiceAccountIdentities
from secretstage.kms import KmsError, TokenSource
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
    assert identities.provider("a", "promoter", ROLE) is a  # shared while its first exchange is tried
    creds = await asyncio.gather(*(a.get() for _ in range(5)))
    assert len({c.access_key_id for c in creds}) == 1
    assert asked == [("a", "promoter")]
    assert identities.provider("a", "promoter", ROLE) is a  # and cached after it
    b = identities.provider("b", "promoter", ROLE)  # same ServiceAccount name, another tenant
    assert b is not a
    assert (await b.get()).access_key_id != creds[0].access_key_id
    a2 = identities.provider("a", "promoter", ROLE + "2")  # the annotation changed: a new session
    assert a2 is not a
    await a2.get()
    assert len(identities) == 2  # over max_sessions: namespace a, which held the most, gave up its oldest
    assert identities.sessions_of("b") == 1
    assert identities.provider("a", "promoter", ROLE + "2") is a2
    assert [h["role"] for h in kms.emulator.history if h["action"] == "AssumeRoleWithOIDC"] == [ROLE, ROLE, ROLE + "2"]
    assert b.session_name == "secretstage.b.promoter"


def _tokens(bad_namespace: str) -> Callable[[str, str], TokenSource]:
    """Well-formed JWTs, except in ``bad_namespace``: there STS refuses every exchange."""

    def source(namespace: str, name: str) -> TokenSource:
        async def token() -> str:
            return "not-a-jwt" if namespace == bad_namespace else JWT

        return token

    return source


def _cache(
    kms: RunningEmulator, tokens: Callable[[str, str], TokenSource], *, total: int, per_namespace: int
) -> ServiceAccountIdentities:
    return ServiceAccountIdentities(
        oidc_provider_arn=PROVIDER,
        sts_endpoint=kms.url,
        token_source=tokens,
        max_sessions=total,
        max_per_namespace=per_namespace,
    )


async def test_one_tenant_cannot_push_out_anothers_sessions(kms: RunningEmulator) -> None:
    asked: list[str] = []
    good = _tokens(bad_namespace="none")

    def counting(namespace: str, name: str) -> TokenSource:
        inner = good(namespace, name)

        async def token() -> str:
            asked.append(namespace)
            return await inner()

        return token

    identities = _cache(kms, counting, total=64, per_namespace=8)
    victim = identities.provider("payments", "promoter", ROLE)
    await victim.get()
    # a tenant with a ServiceAccount and a promotion for every slot of the whole cache, and more
    for i in range(100):
        await identities.provider("noisy", f"sa-{i}", ROLE).get()
    assert identities.sessions_of("noisy") == 8  # its own cap: only its own sessions went
    assert identities.provider("payments", "promoter", ROLE) is victim
    await victim.get()
    assert asked.count("payments") == 1  # no second TokenRequest or STS exchange for the victim


async def test_many_noisy_namespaces_push_out_each_other_first(kms: RunningEmulator) -> None:
    identities = _cache(kms, _tokens(bad_namespace="none"), total=16, per_namespace=8)
    victim = identities.provider("payments", "promoter", ROLE)
    await victim.get()
    for tenant in range(4):  # four namespaces of one tenant, eight ServiceAccounts each
        for i in range(8):
            await identities.provider(f"noisy-{tenant}", f"sa-{i}", ROLE).get()
    assert len(identities) == 16
    assert identities.provider("payments", "promoter", ROLE) is victim


async def test_only_successful_exchanges_are_cached(kms: RunningEmulator) -> None:
    identities = _cache(kms, _tokens(bad_namespace="noisy"), total=4, per_namespace=4)
    for i in range(3):
        await identities.provider("payments", f"promoter-{i}", ROLE).get()
    for i in range(100):  # roles that STS refuses (here: a token it cannot parse)
        with pytest.raises(KmsError):
            await identities.provider("noisy", f"sa-{i}", ROLE).get()
    assert len(identities) == 3
    assert identities.sessions_of("noisy") == 0
    assert identities.sessions_of("payments") == 3
