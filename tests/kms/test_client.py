"""KmsClient against the emulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import httpx
import pytest

from secretstage.emulator.app import Faults
from secretstage.kms import (
    ACS3_HMAC_SHA256,
    HMAC_SHA1,
    Credentials,
    KmsApiError,
    KmsClient,
    KmsError,
    KmsTransportError,
    RetryPolicy,
    StaticProvider,
    TokenBucket,
)
from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, RunningEmulator

ALGORITHMS = pytest.mark.parametrize("signature", [ACS3_HMAC_SHA256, HMAC_SHA1])


@ALGORITHMS
async def test_move_acscurrent_moves_acsprevious(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator, signature: str
) -> None:
    client = client_factory(signature=signature)
    result = await client.update_secret_version_stage(
        seeded, "ACSCurrent", move_to_version="v2", remove_from_version="v1"
    )
    assert result.secret_name == seeded
    assert len(result.request_id) == 36
    listing = await client.list_secret_version_ids(seeded)
    assert listing.placement() == {"ACSCurrent": "v2", "ACSPending": "v2", "ACSPrevious": "v1"}


async def test_move_without_auto_previous(client: KmsClient, seeded: str, kms: RunningEmulator) -> None:
    kms.emulator.store.auto_previous = False
    await client.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v2", remove_from_version="v1")
    assert kms.placement(seeded) == {"v1": [], "v2": ["ACSPending", "ACSCurrent"]}


@ALGORITHMS
async def test_add_and_remove_custom_stage(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator, signature: str
) -> None:
    client = client_factory(signature=signature)
    await client.update_secret_version_stage(seeded, "Canary", move_to_version="v1")
    assert "Canary" in kms.placement(seeded)["v1"]
    await client.update_secret_version_stage(seeded, "Canary", remove_from_version="v1")
    assert "Canary" not in kms.placement(seeded)["v1"]


async def test_secret_by_arn(client: KmsClient, seeded: str) -> None:
    info = await client.describe_secret(seeded)
    assert info.arn == f"acs:kms:cn-hangzhou:1234567890123456:secret/{seeded}"
    await client.update_secret_version_stage(info.arn, "ACSCurrent", move_to_version="v2", remove_from_version="v1")
    assert (await client.list_secret_version_ids(info.arn)).holder("ACSCurrent") == "v2"


@pytest.mark.parametrize(
    ("secret_name", "stage", "move_to", "remove_from", "code"),
    [
        pytest.param("missing", "ACSCurrent", "v2", "v1", "Forbidden.ResourceNotFound", id="unknown-secret"),
        pytest.param(
            "acs:kms:cn-hangzhou:999:secret/x",
            "ACSCurrent",
            "v2",
            "v1",
            "Forbidden.ResourceNotFound",
            id="other-account-arn",
        ),
        pytest.param(None, "ACSCurrent", "v9", "v1", "Forbidden.ResourceNotFound", id="unknown-version"),
        pytest.param(None, "ACSCurrent", None, "v1", "InvalidParameter", id="remove-acscurrent"),
        pytest.param(None, "ACSPrevious", None, "v1", "InvalidParameter", id="remove-acsprevious"),
        pytest.param(None, "ACSCurrent", "v1", "v2", "InvalidParameter", id="remove-from-wrong-version"),
    ],
)
async def test_permanent_errors(
    client: KmsClient,
    seeded: str,
    secret_name: str | None,
    stage: str,
    move_to: str | None,
    remove_from: str | None,
    code: str,
) -> None:
    before = client.attempts
    with pytest.raises(KmsApiError) as err:
        await client.update_secret_version_stage(
            secret_name or seeded, stage, move_to_version=move_to, remove_from_version=remove_from
        )
    assert err.value.code == code
    assert not err.value.retryable
    assert err.value.request_id
    assert client.attempts == before + 1  # permanent: never retried


async def test_stage_limit(client: KmsClient, seeded: str) -> None:
    for i in range(5):  # ACSCurrent, ACSPending + 5 custom = 7; 8th fits, 9th does not
        await client.update_secret_version_stage(seeded, f"Custom{i}", move_to_version="v1")
    await client.update_secret_version_stage(seeded, "Custom5", move_to_version="v1")
    with pytest.raises(KmsApiError) as err:
        await client.update_secret_version_stage(seeded, "Custom6", move_to_version="v1")
    assert err.value.code == "Rejected.LimitExceeded"


async def test_paging(client_factory: Callable[..., KmsClient], client: KmsClient) -> None:
    await client.create_secret("paged", "v0", "x")
    for i in range(1, 9):
        await client.put_secret_value("paged", f"v{i}", f"x{i}", version_stages=[f"S{i}"] if i < 7 else None)
    small = client_factory(page_size=3)
    listing = await small.list_secret_version_ids("paged")
    assert len(listing.request_ids) == 3
    assert {v.version_id for v in listing.versions} == {f"v{i}" for i in range(1, 9)}


async def test_get_and_put_values(client: KmsClient, seeded: str) -> None:
    value = await client.get_secret_value(seeded)
    assert (value.version_id, value.stages) == ("v1", ("ACSCurrent",))
    value = await client.get_secret_value(seeded, version_stage="ACSPending")
    assert value.version_id == "v2"
    with pytest.raises(KmsApiError, match="InvalidParameter"):
        await client.get_secret_value(seeded, version_id="v1", version_stage="ACSPending")
    put = await client.put_secret_value(seeded, "v3", "new")
    assert put.stages == ("ACSCurrent",)
    assert (await client.list_secret_version_ids(seeded)).placement()["ACSPrevious"] == "v1"


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        pytest.param(Credentials(ACCESS_KEY_ID, "wrong-secret"), "SignatureDoesNotMatch", id="wrong-secret"),
        pytest.param(Credentials("LTAIunknown", ACCESS_KEY_SECRET), "InvalidAccessKeyId.NotFound", id="unknown-key"),
    ],
)
@ALGORITHMS
async def test_auth_errors(
    client_factory: Callable[..., KmsClient], credentials: Credentials, code: str, signature: str
) -> None:
    client = client_factory(credentials=StaticProvider(credentials), signature=signature)
    with pytest.raises(KmsApiError) as err:
        await client.describe_secret("anything")
    assert err.value.code == code
    assert not err.value.retryable
    assert "string to sign" not in err.value.message


@ALGORITHMS
async def test_expired_and_future_timestamps(client_factory: Callable[..., KmsClient], signature: str) -> None:
    for offset in (-3600, 3600):
        client = client_factory(signature=signature, clock=lambda o=offset: time.time() + o)
        with pytest.raises(KmsApiError) as err:
            await client.describe_secret("x")
        assert err.value.code == "InvalidTimeStamp.Expired"


@ALGORITHMS
async def test_reused_nonce_rejected(client_factory: Callable[..., KmsClient], seeded: str, signature: str) -> None:
    client = client_factory(signature=signature, nonce=lambda: "fixed-nonce-" + signature)
    await client.describe_secret(seeded)
    with pytest.raises(KmsApiError) as err:
        await client.describe_secret(seeded)
    assert err.value.code == "SignatureNonceUsed"


async def test_unsigned_and_incomplete_requests(kms: RunningEmulator) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(kms.url + "/", params={"Action": "DescribeSecret", "Version": "2016-01-20"})
        assert (r.status_code, r.json()["Code"]) == (400, "IncompleteSignature")
        r = await http.post(
            kms.url + "/",
            params={
                "Action": "DescribeSecret",
                "Version": "2016-01-20",
                "Signature": "x",
                "AccessKeyId": ACCESS_KEY_ID,
            },
        )
        assert r.json()["Code"] == "MissingParameter"
        assert "SignatureMethod" in r.json()["Message"]
        r = await http.post(kms.url + "/", params={"Action": "NoSuchAction", "Version": "2016-01-20"})
        assert (r.status_code, r.json()["Code"]) == (404, "InvalidAction.NotFound")


async def test_throttling_is_retried_with_fresh_nonce(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator
) -> None:
    client = client_factory(retry=RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.02))
    kms.emulator.faults = {"UpdateSecretVersionStage": Faults(throttle_first=3)}
    attempts_before = client.attempts
    await client.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v2", remove_from_version="v1")
    assert client.attempts - attempts_before == 4
    assert kms.emulator.applied["UpdateSecretVersionStage"] == 1


async def test_retry_budget_exhausted(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator
) -> None:
    client = client_factory(retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02))
    kms.emulator.faults = {"*": Faults(unavailable=1.0)}
    with pytest.raises(KmsApiError) as err:
        await client.describe_secret(seeded)
    assert (err.value.code, err.value.http_status, err.value.retryable) == ("ServiceUnavailableTemporary", 503, True)
    assert client.attempts == 3


async def test_dropped_connection_is_transport_error(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator
) -> None:
    client = client_factory(retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02))
    kms.emulator.faults = {"DescribeSecret": Faults(drop=1.0)}
    with pytest.raises(KmsTransportError) as err:
        await client.describe_secret(seeded)
    assert err.value.retryable
    assert err.value.code == "SDK.ConnectionLost"
    assert err.value.maybe_applied  # the request was sent: the client cannot know what KMS did


async def test_connection_refused_is_known_not_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        client = KmsClient(
            endpoint=f"http://127.0.0.1:{port}",
            credentials=StaticProvider(Credentials("LTAIx", "s")),
            retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
        )
        async with client:
            with pytest.raises(KmsTransportError) as err:
                await client.update_secret_version_stage("s", "ACSCurrent", move_to_version="v2")
    assert (err.value.code, err.value.maybe_applied) == ("SDK.ServerUnreachable", False)
    assert client.attempts == 2  # provably not sent, so even the move is retried


async def test_documented_sample_moves_the_label(client: KmsClient, seeded: str, kms: RunningEmulator) -> None:
    """The API page's sample, VersionStage=ACSCurrent&MoveToVersion=... alone, moves ACSCurrent."""
    await client.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v2")
    assert kms.placement(seeded) == {"v1": ["ACSPrevious"], "v2": ["ACSPending", "ACSCurrent"]}
    kms.emulator.store.configure(label_held_elsewhere="reject")
    with pytest.raises(KmsApiError) as err:
        await client.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v1")
    assert err.value.code == "InvalidParameter"


async def test_read_timeout_is_retried(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator
) -> None:
    client = client_factory(
        retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
        timeout=httpx.Timeout(0.2, connect=1.0),
    )
    kms.emulator.faults = {"DescribeSecret": Faults(latency_ms=1000)}
    before = client.attempts
    with pytest.raises(KmsTransportError) as err:
        await client.describe_secret(seeded)
    assert err.value.code == "SDK.ReadTimeout"
    assert client.attempts - before == 2


async def test_move_is_not_resent_after_an_answer_that_may_hide_it(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator
) -> None:
    """Applied, answer lost: the client hands the doubt back instead of sending the move again."""
    client = client_factory(retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02))
    kms.emulator.faults = {"UpdateSecretVersionStage": Faults(drop_after=1.0)}
    with pytest.raises(KmsTransportError) as err:
        await client.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v2", remove_from_version="v1")
    kms.emulator.faults = {}
    assert err.value.maybe_applied
    assert kms.emulator.calls["UpdateSecretVersionStage"] == 1  # sent once, never repeated
    assert kms.emulator.applied["UpdateSecretVersionStage"] == 1
    assert (await client.list_secret_version_ids(seeded)).holder("ACSCurrent") == "v2"


async def test_move_is_not_resent_after_a_5xx(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator
) -> None:
    client = client_factory(retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02))
    kms.emulator.faults = {"UpdateSecretVersionStage": Faults(unavailable=1.0)}
    with pytest.raises(KmsApiError) as err:
        await client.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v2", remove_from_version="v1")
    assert (err.value.code, err.value.retryable, err.value.maybe_applied) == ("ServiceUnavailableTemporary", True, True)
    assert client.attempts == 1
    kms.emulator.faults = {"DescribeSecret": Faults(unavailable=1.0)}
    with pytest.raises(KmsApiError):
        await client.describe_secret(seeded)
    assert client.attempts == 1 + 4  # a read is retried as before


async def test_throttled_move_is_retried(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator
) -> None:
    """Throttling is the gateway refusing the request: certainly not applied, so it is sent again."""
    client = client_factory(retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02))
    kms.emulator.faults = {"UpdateSecretVersionStage": Faults(throttle_first=2)}
    await client.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v2", remove_from_version="v1")
    assert kms.emulator.applied["UpdateSecretVersionStage"] == 1
    assert client.attempts == 3


async def test_rate_limiter_bounds_request_rate(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator
) -> None:
    rate, burst, calls = 20.0, 2, 20
    client = client_factory(rate_limiter=TokenBucket(rate, burst))
    kms.emulator.last_request_ts.clear()
    await asyncio.gather(*(client.describe_secret(seeded) for _ in range(calls)))
    arrivals = sorted(kms.emulator.last_request_ts)
    assert len(arrivals) == calls
    # No one-second window may hold more than burst + rate requests (small slack for scheduling).
    for i, start in enumerate(arrivals):
        in_window = sum(1 for t in arrivals[i:] if t - start < 1.0)
        assert in_window <= burst + rate + 1, (i, in_window)
    assert arrivals[-1] - arrivals[0] >= (calls - burst) / rate * 0.9


def test_token_bucket_rejects_bad_rate() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(0)


async def test_fenced_client_sends_nothing(
    client_factory: Callable[..., KmsClient], seeded: str, kms: RunningEmulator
) -> None:
    """A leader whose Lease may have passed on starts no KMS call (leader.LeaderElector.fence_problem)."""
    reasons: list[str | None] = ["the Lease was not renewed within 10s"]
    client = client_factory(fence=lambda: reasons[0])
    arrivals = len(kms.emulator.last_request_ts)
    with pytest.raises(KmsError) as err:
        await client.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v2", remove_from_version="v1")
    assert (err.value.code, err.value.retryable, err.value.maybe_applied) == ("NotLeader", True, False)
    assert len(kms.emulator.last_request_ts) == arrivals  # not one request reached KMS
    reasons[0] = None
    await client.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v2", remove_from_version="v1")


@pytest.mark.parametrize(
    ("code", "http_status"), [("InternalFailure", 400), ("InternalFailure", 200), ("UnknownError", 404)]
)
def test_an_internal_failure_under_any_status_may_hide_an_applied_move(code: str, http_status: int) -> None:
    """A gateway can wrap a backend failure in a 4xx, and an RPC answer can carry Code with HTTP 200:
    the code says the service failed along the way, so the move may have landed and is never re-sent."""
    err = KmsApiError(code=code, message="x", http_status=http_status)
    assert (err.retryable, err.maybe_applied) == (True, True)
    throttled = KmsApiError(code="Throttling", message="x", http_status=400)
    assert (throttled.retryable, throttled.maybe_applied) == (True, False)  # refused at the gate: not applied
