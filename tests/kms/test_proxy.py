"""--kms-proxy: KMS and STS requests through an explicit HTTP proxy, never one from the environment.

The proxy is proxy.py (a real forward and CONNECT proxy), on loopback, in front of the emulator on
loopback: nothing leaves the machine. Its access log shows what went through it.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from secretstage.domain.policy import proxy_problem
from secretstage.kms import Credentials, KmsClient, KmsError, KmsTransportError, RetryPolicy, StaticProvider
from secretstage.kms.transport import guarded_client
from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, RunningEmulator
from tests.kms.test_tls import self_signed  # noqa: F401 - a fixture
from tests.kms.test_transport import resolving_to


class Proxy:
    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log

    def seen(self, needle: str, timeout: float = 10.0) -> str:
        """The access log line with ``needle``, polled (proxy.py writes it after the answer)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.log.read_text()
            lines = [line for line in text.splitlines() if "access_log" in line and needle in line]
            if lines:
                return lines[-1]
            time.sleep(0.05)
        raise AssertionError(f"the proxy logged no request with {needle!r}; its log ends: {text[-800:]}")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    work = tmp_path_factory.mktemp("proxy")
    port_file, log = work / "port", work / "log"
    log_file = log.open("w")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file)),
            *("--num-workers", "1", "--num-acceptors", "1", "--log-level", "INFO"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_file,  # the access log of every worker (--log-file gets only the main process's)
    )
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        assert process.poll() is None, f"proxy.py exited {process.returncode}"
        assert time.monotonic() < deadline, "proxy.py wrote no port file within 30 s"
        time.sleep(0.05)
    try:
        yield Proxy(f"http://127.0.0.1:{port_file.read_text().strip()}", log)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log_file.close()


def _client(endpoint: str, http: httpx.AsyncClient) -> KmsClient:
    return KmsClient(
        endpoint=endpoint,
        credentials=StaticProvider(Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)),
        http=http,
        retry=RetryPolicy(max_attempts=1),
    )


async def test_requests_go_through_the_proxy(proxy: Proxy, kms: RunningEmulator, seeded: str) -> None:
    async with guarded_client(timeout=httpx.Timeout(10.0), proxy=proxy.url) as http, _client(kms.url, http) as client:
        result = await client.update_secret_version_stage(seeded, "ACSCurrent", move_to_version="v2")
    assert result.request_id
    assert set(kms.placement(seeded)["v2"]) == {"ACSCurrent", "ACSPending"}
    host_port = kms.url.removeprefix("http://")
    proxy.seen(f"POST {host_port}/")  # forwarded as an absolute-URI request
    assert ACCESS_KEY_SECRET not in proxy.log.read_text()


async def test_https_endpoints_are_tunnelled_and_verified_end_to_end(
    proxy: Proxy,
    self_signed: tuple[Path, Path],  # noqa: F811
) -> None:
    import certifi

    from secretstage.emulator.server import build, serve, tls_context

    key, cert = self_signed
    trusting = ssl.create_default_context(cafile=certifi.where())
    trusting.load_verify_locations(cafile=str(cert))
    emulator = build(access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET)
    async with serve(emulator, "127.0.0.1", 0, tls_context(str(cert), str(key))) as url:
        verifies: list[ssl.SSLContext | bool] = [True, trusting]
        for verify in verifies:
            http = guarded_client(timeout=httpx.Timeout(10.0), proxy=proxy.url, verify=verify)
            async with http, _client(url, http) as client:
                if verify is True:  # public CAs only: the emulator's certificate is not trusted through the tunnel
                    with pytest.raises(KmsTransportError):
                        await client.create_secret("proxy/untrusted", "v1", "value")
                else:
                    await client.create_secret("proxy/tls", "v1", "value")
    assert set(emulator.placement()) == {"proxy/tls"}
    proxy.seen(f"CONNECT {url.removeprefix('https://')}")


async def test_the_proxy_addresses_are_checked_as_an_endpoint_s() -> None:
    """A proxy name whose DNS answer is the metadata address is refused before any connect (the
    resolver is injected: no name is looked up, no packet leaves)."""
    http = guarded_client(
        timeout=httpx.Timeout(5.0), proxy="http://proxy.corp.example:3128", resolver=resolving_to("100.100.100.200")
    )
    async with http, _client("https://kms.cn-hangzhou.aliyuncs.com", http) as client:
        with pytest.raises(KmsError) as err:
            await client.describe_secret("x")
    assert err.value.code == "EndpointNotAllowed"
    assert "proxy.corp.example resolves to 100.100.100.200" in err.value.message


async def test_environment_proxies_are_never_used(kms: RunningEmulator, seeded: str) -> None:
    """HTTP(S)_PROXY are the pod's: pointed at a port nothing listens on, requests still go direct."""
    dead = "http://127.0.0.1:9"
    saved = {k: os.environ.get(k) for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    os.environ.update({"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "ALL_PROXY": dead})
    try:
        async with guarded_client(timeout=httpx.Timeout(5.0)) as http, _client(kms.url, http) as client:
            assert (await client.describe_secret(seeded)).secret_name == seeded
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://169.254.169.254:80", "link-local or metadata address"),
        ("http://100.100.100.200:3128", "link-local or metadata address"),
        ("http://metadata.aliyun.internal:80", "metadata service name"),
        ("http://[fe80::1]:3128", "link-local"),
        ("http://user:pass@proxy.corp:3128", "a user or password in the proxy URL"),
        ("proxy.corp:3128", "is not a proxy URL"),
        ("socks5://proxy.corp:1080", "is not a proxy URL"),
        ("http://proxy.corp:3128/path", "no path"),
        ("http://proxy.corp:99999", "invalid port"),
    ],
)
def test_bad_proxy_urls_are_refused_naming_the_fix(url: str, needle: str) -> None:
    assert needle in str(proxy_problem(url))


@pytest.mark.parametrize("url", ["http://10.0.0.8:3128", "http://proxy.corp.example:3128", "http://127.0.0.1:3128"])
def test_good_proxy_urls(url: str) -> None:
    assert proxy_problem(url) is None
