"""An HTTP client that checks the address it actually connects to, not only the URL's text.

An endpoint host name passes the URL checks (``domain.policy``) and could still resolve to
instance metadata, a link-local service or this machine (a DNS answer an attacker controls, or one
that changes between check and use). Here every address the name resolves to is checked with the
same rules (``secretstage.netpolicy``) right before connecting, and the connection goes to the
address that was checked, so no later lookup can change it. TLS still verifies the certificate
against the host name (httpcore takes the server name from the URL, not from the socket).
"""

from __future__ import annotations

import asyncio
import ipaddress
import select
import socket
import ssl
import typing
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

from secretstage.netpolicy import address_problem, names_loopback

Resolver = Callable[[str, int], Awaitable[list[str]]]
Fence = Callable[[], str | None]
REFUSED = "refused by the endpoint policy"
FENCED = "fenced: nothing was written"


class EndpointRefused(httpcore.ConnectError):
    """The host resolves to an address no request may go to; nothing was sent."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _readable(sock: socket.socket) -> bool:
    """Data or EOF waiting on an idle connection: the server closed it (httpcore's own test)."""
    fd = sock.fileno()
    if fd == -1:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class PolledStream(httpcore.AsyncNetworkStream):
    """A stream whose "is the idle connection still open" check is one poll() of its socket.

    httpcore checks every idle connection of the pool on every request it starts or finishes
    (``get_extra_info("is_readable")``), and anyio answers by building its whole table of extra
    attributes each time: under load that was half the operator's CPU (bench/, issue 15). The socket
    is looked up once; every other question goes to the stream as before.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        return PolledStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable" and self._socket is not None:
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


class PolledBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, its streams ``PolledStream``s."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return PolledStream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return PolledStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def transport(
    network_backend: httpcore.AsyncNetworkBackend,
    verify: ssl.SSLContext | bool,
    limits: httpx.Limits,
    proxy: str | None = None,
) -> httpx.AsyncHTTPTransport:
    """An httpx transport on ``network_backend`` (httpx has no switch for it: the pool is rebuilt with
    the settings httpx derived, TLS context included). With ``proxy``, every request goes through that
    HTTP proxy: https endpoints through a CONNECT tunnel (TLS is still end to end, verified against
    the endpoint's name), http ones (the emulator) forwarded; the backend connects to the proxy."""
    built = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    ssl_context = typing.cast(ssl.SSLContext, built._pool._ssl_context)
    built._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=network_backend,
        proxy=httpcore.Proxy(proxy) if proxy else None,
    )
    return built


class FencedStream(httpcore.AsyncNetworkStream):
    """Asks the fence before every write, so a replica that lost its Lease (or was frozen while it
    expired) writes nothing more: the check is as close to the socket as Python gets."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, fence: Fence) -> None:
        self._inner, self._fence = inner, fence

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        problem = self._fence()
        if problem is not None:
            raise httpcore.WriteError(f"{problem}; {FENCED}")
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        return FencedStream(await self._inner.start_tls(ssl_context, server_hostname, timeout), self._fence)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(
        self,
        inner: httpcore.AsyncNetworkBackend | None = None,
        resolver: Resolver = system_resolver,
        fence: Fence | None = None,
    ):
        self._inner = inner or PolledBackend()
        self._resolve = resolver
        self._fence = fence

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        allow_loopback = names_loopback(host)
        try:
            addresses = await asyncio.wait_for(self._resolve(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {type(exc).__name__}") from None
        for address in addresses:
            problem = address_problem(ipaddress.ip_address(address.split("%", 1)[0]), allow_loopback=allow_loopback)
            if problem is not None:
                raise EndpointRefused(f"{host} resolves to {address}: {problem}; {REFUSED}")
        last: Exception = httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
                continue
            return stream if self._fence is None else FencedStream(stream, self._fence)
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(f"unix sockets are not KMS endpoints; {REFUSED}")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_client(
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits | None = None,
    resolver: Resolver = system_resolver,
    verify: ssl.SSLContext | bool = True,
    fence: Fence | None = None,
    proxy: str | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose connections go through ``GuardedBackend``; no redirects; never a
    proxy from the environment (``HTTPS_PROXY`` is the whole pod's, not a decision about KMS), only
    ``proxy`` when given, whose addresses the backend checks as it would an endpoint's."""
    backend = GuardedBackend(resolver=resolver, fence=fence)
    return httpx.AsyncClient(
        transport=transport(backend, verify, limits or httpx.Limits(), proxy),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
