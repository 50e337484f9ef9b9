"""TLS verification is always on: a KMS endpoint with a certificate we do not trust is never talked to."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from secretstage.emulator.server import build
from secretstage.kms import Credentials, KmsClient, KmsTransportError, RetryPolicy, StaticProvider
from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


async def test_untrusted_certificate_is_refused(self_signed: tuple[Path, Path]) -> None:
    key, cert = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    emulator = build(access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET)
    runner = web.AppRunner(emulator.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = KmsClient(
        endpoint=f"https://127.0.0.1:{port}",
        credentials=StaticProvider(Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)),
        retry=RetryPolicy(max_attempts=1),
    )
    try:
        with pytest.raises(KmsTransportError) as err:
            await client.describe_secret("x")
    finally:
        await client.aclose()
        await runner.cleanup()
    assert err.value.code == "SDK.ServerUnreachable"
    assert emulator.calls == {}  # not one request got through


async def test_an_extra_ca_is_trusted_besides_the_public_ones(self_signed: tuple[Path, Path]) -> None:
    """--kms-ca-file: the emulator served over https (as a pod reaches it on the test node) is trusted
    when its certificate is in the extra bundle, and only then."""
    import certifi

    from secretstage.emulator.server import serve, tls_context
    from secretstage.kms.transport import guarded_client

    key, cert = self_signed
    emulator = build(access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET)
    trusting = ssl.create_default_context(cafile=certifi.where())
    trusting.load_verify_locations(cafile=str(cert))
    credentials = StaticProvider(Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
    timeout = httpx.Timeout(5.0)

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async with serve(emulator, "127.0.0.1", 0, tls_context(str(cert), str(key))) as url:
        assert url.startswith("https://")
        for verify, works in ((True, False), (trusting, True)):
            http = guarded_client(timeout=timeout, verify=verify, resolver=loopback)
            client = KmsClient(endpoint=url, credentials=credentials, http=http, retry=RetryPolicy(max_attempts=1))
            try:
                if works:
                    await client.create_secret("tls/x", "v1", "value")
                else:
                    with pytest.raises(KmsTransportError):
                        await client.describe_secret("tls/x")
            finally:
                await client.aclose()
                await http.aclose()
    assert emulator.calls == {"CreateSecret": 1}
