"""The connect-time address check: what a host name resolves to is checked, then connected to.

The resolver is injected, so no name is ever looked up and no packet leaves: a forbidden answer
must be refused before the inner backend (the real socket layer) is asked to connect.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpcore
import httpx
import pytest

from secretstage.kms import Credentials, KmsClient, KmsError, RetryPolicy, StaticProvider
from secretstage.kms.transport import EndpointRefused, GuardedBackend, guarded_client
from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, RunningEmulator


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the socket layer: records where it was asked to connect, connects nowhere."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        raise httpcore.ConnectError("recorded, not connected")


def resolving_to(*addresses: str):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    ("host", "answer"),
    [
        ("kms.cn-hangzhou.aliyuncs.com", "169.254.169.254"),  # DNS answer pointing at metadata
        ("kms.cn-hangzhou.aliyuncs.com", "100.100.100.200"),
        ("kms.example.com", "127.0.0.1"),  # a name that resolves to this machine
        ("kms.example.com", "::1"),
        ("kms.example.com", "::ffff:169.254.169.254"),
        ("kms.example.com", "fe80::1%eth0"),
    ],
)
async def test_forbidden_answer_is_refused_before_connecting(host: str, answer: str) -> None:
    inner = RecordingBackend()
    backend = GuardedBackend(inner, resolver=resolving_to("203.0.113.7", answer))
    with pytest.raises(EndpointRefused, match="refused by the endpoint policy"):
        await backend.connect_tcp(host, 443)
    assert inner.connects == []  # not even the good address: one bad answer taints the name


async def test_allowed_answer_connects_to_the_checked_address() -> None:
    inner = RecordingBackend()
    backend = GuardedBackend(inner, resolver=resolving_to("203.0.113.7", "203.0.113.8"))
    with pytest.raises(httpcore.ConnectError, match="recorded"):
        await backend.connect_tcp("kms.cn-hangzhou.aliyuncs.com", 443)
    # the address that was checked, not the name (which a second lookup could answer differently)
    assert inner.connects == [("203.0.113.7", 443), ("203.0.113.8", 443)]


async def test_loopback_only_when_the_endpoint_names_it() -> None:
    inner = RecordingBackend()
    backend = GuardedBackend(inner, resolver=resolving_to("127.0.0.1"))
    with pytest.raises(httpcore.ConnectError, match="recorded"):
        await backend.connect_tcp("localhost", 8079)
    with pytest.raises(httpcore.ConnectError, match="recorded"):
        await backend.connect_tcp("127.0.0.1", 8079)
    assert inner.connects == [("127.0.0.1", 8079), ("127.0.0.1", 8079)]


async def test_client_reports_a_refusal_as_permanent(kms: RunningEmulator) -> None:
    """Through the whole client: a name resolving to metadata is a permanent error, nothing sent."""
    http = guarded_client(timeout=httpx.Timeout(5.0), resolver=resolving_to("169.254.169.254"))
    client = KmsClient(
        endpoint="https://kms.cn-hangzhou.aliyuncs.com",
        credentials=StaticProvider(Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)),
        http=http,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02),
    )
    try:
        with pytest.raises(KmsError) as err:
            await client.update_secret_version_stage("s", "ACSCurrent", move_to_version="v2")
    finally:
        await http.aclose()
    assert (err.value.code, err.value.retryable, err.value.maybe_applied) == ("EndpointNotAllowed", False, False)
    assert client.attempts == 1


async def test_guarded_client_talks_to_the_emulator(kms: RunningEmulator, seeded: str) -> None:
    """The real resolver and sockets, on loopback: the guard lets an endpoint that names loopback through."""
    http = guarded_client(timeout=httpx.Timeout(5.0))
    client = KmsClient(
        endpoint=kms.url, credentials=StaticProvider(Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)), http=http
    )
    try:
        listing = await client.list_secret_version_ids(seeded)
    finally:
        await http.aclose()
    assert listing.holder("ACSCurrent") == "v1"


async def test_a_polled_stream_sees_the_server_close_an_idle_connection_as_httpcore_does() -> None:
    """PolledStream answers httpcore's idle-connection check with one poll() of the socket; the answer
    must be anyio's: not readable while the server keeps the connection open, readable once it closes."""
    import asyncio

    import httpcore

    from secretstage.kms.transport import PolledBackend

    closing = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await closing.wait()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        polled = await PolledBackend().connect_tcp("127.0.0.1", port)
        plain = await httpcore.AnyIOBackend().connect_tcp("127.0.0.1", port)
        assert polled.get_extra_info("is_readable") is False
        assert plain.get_extra_info("is_readable") is False
        closing.set()
        for _ in range(200):  # the FIN arrives asynchronously: poll (no sleep decides the outcome)
            if polled.get_extra_info("is_readable") and plain.get_extra_info("is_readable"):
                break
            await asyncio.sleep(0.01)
        assert polled.get_extra_info("is_readable") is True
        assert plain.get_extra_info("is_readable") is True
        assert polled.get_extra_info("server_addr") == ("127.0.0.1", port)
        await polled.aclose()
        await plain.aclose()
    finally:
        server.close()
        await server.wait_closed()
