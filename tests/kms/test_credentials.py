"""Credential providers: environment, RRSA against the emulator's STS, and the default chain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from secretstage.emulator.app import Faults
from secretstage.kms import (
    Credentials,
    CredentialsError,
    KmsApiError,
    KmsClient,
    KmsTransportError,
    RrsaProvider,
    default_provider,
)
from secretstage.kms.credentials import EnvironmentProvider, sts_endpoint_from_env
from tests.conftest import RunningEmulator

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6b3A6c2EifQ.c2lnbmF0dXJl"
ROLE = "acs:ram::1234567890123456:role/secretstage"
PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1"


def rrsa_env(token_file: Path, url: str) -> dict[str, str]:
    return {
        "ALIBABA_CLOUD_ROLE_ARN": ROLE,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
        "ALIBABA_CLOUD_STS_ENDPOINT": url,
    }


def test_repr_hides_secret_parts() -> None:
    creds = Credentials("AKID", "very-secret-value", "token-value-123")
    assert "very-secret-value" not in repr(creds)
    assert "token-value-123" not in repr(creds)


@pytest.mark.parametrize(("ak", "secret", "message"), [("", "x", "AccessKeyId is empty"), ("a", "", "AccessKeySecret")])
def test_empty_credentials_named(ak: str, secret: str, message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        Credentials(ak, secret)


async def test_environment_provider() -> None:
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "AK",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "SK123456",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "TOKEN123",
    }
    creds = await EnvironmentProvider(env).get()
    assert (creds.access_key_id, creds.security_token, creds.source) == ("AK", "TOKEN123", "environment")


def test_default_chain_lists_what_it_looked_for() -> None:
    with pytest.raises(CredentialsError) as err:
        default_provider({})
    for name in (
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_ROLE_ARN",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
    ):
        assert name in str(err.value)


def test_sts_endpoint_resolution() -> None:
    assert sts_endpoint_from_env({}) == "https://sts.aliyuncs.com"
    assert sts_endpoint_from_env({"ALIBABA_CLOUD_STS_REGION": "cn-beijing"}) == "https://sts.cn-beijing.aliyuncs.com"
    assert (
        sts_endpoint_from_env({"ALIBABA_CLOUD_STS_REGION": "cn-beijing", "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true"})
        == "https://sts-vpc.cn-beijing.aliyuncs.com"
    )
    assert sts_endpoint_from_env({"ALIBABA_CLOUD_STS_ENDPOINT": "sts.example"}) == "https://sts.example"


async def test_rrsa_end_to_end(
    kms: RunningEmulator,
    tmp_path: Path,
    client_factory: Callable[..., KmsClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = tmp_path / "token"
    token.write_text(JWT)
    now = [1_000_000.0]
    refreshes: list[int] = []
    provider = default_provider(rrsa_env(token, kms.url), duration_seconds=3600, on_refresh=lambda: refreshes.append(1))
    assert isinstance(provider, RrsaProvider)
    client = client_factory(credentials=provider)
    await client.create_secret("rrsa", "v1", "value")
    assert kms.emulator.history[-1]["access_key_id"].startswith("STS.")

    # 20 concurrent callers share one exchange
    results = await asyncio.gather(*(provider.get() for _ in range(20)))
    assert len({c.access_key_id for c in results}) == 1
    assert kms.emulator.sts_exchanges == 1
    assert refreshes == [1]

    # near expiry -> one refresh, with the token file re-read
    provider._clock = lambda: now[0]
    first = await provider.get()
    assert first.expiration is not None
    now[0] = first.expiration - 60
    token.write_text(JWT + "x")
    second = await provider.get()
    assert second.access_key_id != first.access_key_id
    assert kms.emulator.sts_exchanges == 2
    leaked = [s for s in (*first.secrets(), *second.secrets()) if s in caplog.text]
    assert not leaked


async def test_rrsa_errors_are_clear(kms: RunningEmulator, tmp_path: Path) -> None:
    provider = RrsaProvider.from_env(rrsa_env(tmp_path / "absent", kms.url))
    with pytest.raises(CredentialsError, match="ALIBABA_CLOUD_OIDC_TOKEN_FILE"):
        await provider.get()
    (tmp_path / "bad").write_text("not-a-jwt")
    provider = RrsaProvider.from_env(rrsa_env(tmp_path / "bad", kms.url))
    with pytest.raises(Exception, match=r"InvalidParameter\.OIDCToken"):
        await provider.get()


async def test_rrsa_failure_is_shared_by_concurrent_callers(kms: RunningEmulator, tmp_path: Path) -> None:
    """STS down: ten callers get one error from one exchange, not ten exchanges in a row."""
    token = tmp_path / "token"
    token.write_text(JWT)
    provider = RrsaProvider.from_env(rrsa_env(token, kms.url), failure_hold=60)
    kms.emulator.faults = {"AssumeRoleWithOIDC": Faults(unavailable=1.0)}
    results = await asyncio.gather(*(provider.get() for _ in range(10)), return_exceptions=True)
    assert all(isinstance(r, KmsApiError) and r.code == "ServiceUnavailableTemporary" for r in results), results
    # a 5xx from STS says nothing about KMS: no KMS request was built, so a move cannot have been applied
    assert not any(isinstance(r, KmsApiError) and r.maybe_applied for r in results)
    assert provider.attempts == 1
    with pytest.raises(KmsApiError):  # within the hold: the same answer, no new request
        await provider.get()
    assert provider.attempts == 1
    kms.emulator.faults = {}
    provider.failure_hold = 0  # after the hold: tried again, and works
    provider._failure_until = 0
    assert (await provider.get()).access_key_id.startswith("STS.")
    assert provider.attempts == 2


async def test_rrsa_malformed_answer_is_a_clear_retryable_error(tmp_path: Path) -> None:
    async def sts(request: web.Request) -> web.Response:
        return web.json_response({"RequestId": "R1", "Credentials": {"AccessKeyId": "STS.x", "AccessKeySecret": "s"}})

    app = web.Application()
    app.router.add_post("/", sts)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    token = tmp_path / "token"
    token.write_text(JWT)
    try:
        provider = RrsaProvider.from_env(rrsa_env(token, f"http://127.0.0.1:{port}"))
        with pytest.raises(KmsTransportError) as err:
            await provider.get()
    finally:
        await runner.cleanup()
    assert (err.value.code, err.value.retryable, err.value.maybe_applied) == ("SDK.InvalidResponse", True, False)
    assert "AccessKeyId, AccessKeySecret and SecurityToken" in err.value.message
