"""Serve the emulator over real HTTP (``secretstage emulator``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import AsyncIterator

from aiohttp import web

from secretstage.emulator.app import Emulator, EmulatorConfig, Faults
from secretstage.emulator.identity import IdentityConfig
from secretstage.emulator.state import Store

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def serve(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Run the emulator until the block exits; yields its base URL (with the real port when port=0)."""
    runner = web.AppRunner(emulator.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=tls)
    await site.start()
    server = site._server
    assert server is not None
    sockname = server.sockets[0].getsockname()  # type: ignore[attr-defined]
    shown = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
    try:
        yield f"{'https' if tls else 'http'}://{shown}:{sockname[1]}"
    finally:
        await runner.cleanup()


def build(
    *,
    access_key_id: str,
    access_key_secret: str,
    security_token: str | None = None,
    state_file: str | None = None,
    region: str = "cn-hangzhou",
    account: str = "1234567890123456",
    switches: dict[str, object] | None = None,
    faults: dict[str, Faults] | None = None,
    identity: IdentityConfig | None = None,
) -> Emulator:
    store = Store(region=region, account=account)
    store.configure(**(switches or {}))
    if state_file and store.load(state_file):
        log.info("loaded %d secret(s) from %s", len(store.secrets), state_file)
    emulator = Emulator(store, config=EmulatorConfig(state_file=state_file))
    emulator.add_key(access_key_id, access_key_secret, security_token)
    emulator.faults = dict(faults or {})
    emulator.set_identity(identity)
    return emulator


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """Serve https with this certificate (e.g. for a client in a pod, where plain http is refused)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def run_forever(emulator: Emulator, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(emulator, host, port, tls) as url:
        print(f"listening on {url}", flush=True)
        log.info("KMS emulator ready at %s (region %s, %s)", url, emulator.store.region, emulator.store.switches())
        if emulator.identity is None:
            log.warning(
                "STS without identity checks (no --identity-config): AssumeRoleWithOIDC takes any well-formed "
                "JWT, and the credentials it issues reach every secret"
            )
        await stop.wait()
    print("emulator stopped", file=sys.stderr, flush=True)
