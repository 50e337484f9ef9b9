"""Shared fixtures: a real emulator on loopback and KMS clients that talk to it."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from secretstage.emulator.app import Emulator
from secretstage.emulator.server import build, serve
from secretstage.kms import Credentials, KmsClient, RetryPolicy, StaticProvider
from tests.support import LOG_FILES, SECRET_CANARIES

pytest_plugins = ["tests.cluster", "tests.fixtures_k8s"]

ACCESS_KEY_ID = "LTAItestkey0001"
# Unique per run, so a leak scan can never match an unrelated string.
ACCESS_KEY_SECRET = "sk-" + uuid.uuid4().hex
SECRET_VALUE = "db-password-" + uuid.uuid4().hex
SECRET_CANARIES.update({ACCESS_KEY_SECRET, SECRET_VALUE})
_LEAKS: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Scan what every test printed, logged and raised for the test secrets."""
    texts = [report.longreprtext, *(content for _, content in report.sections)]
    for text in texts:
        for secret in SECRET_CANARIES:
            if secret in text:
                _LEAKS.append(f"{report.nodeid} ({report.when}): a test secret appears in its output")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for path in LOG_FILES:
        if path.exists():
            text = path.read_text(errors="replace")
            _LEAKS.extend(
                f"{path.name}: a test secret appears in this process log" for s in SECRET_CANARIES if s in text
            )
    if _LEAKS:
        print("\nLEAK SCAN FAILED:\n  " + "\n  ".join(sorted(set(_LEAKS))))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        print(
            f"\nleak scan: {len(SECRET_CANARIES)} test secrets, {len(LOG_FILES)} process logs and every test "
            "report checked: clean"
        )


@dataclass
class RunningEmulator:
    emulator: Emulator
    url: str

    def placement(self, secret: str) -> dict[str, list[str]]:
        return self.emulator.placement()[secret]


@pytest.fixture
def credentials() -> Credentials:
    return Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)


@pytest.fixture
async def kms() -> AsyncIterator[RunningEmulator]:
    emulator = build(access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET)
    emulator.rng = random.Random(7)
    async with serve(emulator) as url:
        yield RunningEmulator(emulator, url)


@pytest.fixture
async def client_factory(kms: RunningEmulator, credentials: Credentials) -> AsyncIterator[Callable[..., KmsClient]]:
    clients: list[KmsClient] = []

    def make(**kwargs: object) -> KmsClient:
        kwargs.setdefault("credentials", StaticProvider(credentials))
        kwargs.setdefault("retry", RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05))
        client = KmsClient(endpoint=kms.url, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def client(client_factory: Callable[..., KmsClient]) -> KmsClient:
    return client_factory()


@pytest.fixture
async def seeded(client: KmsClient) -> str:
    """A secret with v1 (ACSCurrent) and v2 (ACSPending), as after a rotation that is not live yet."""
    name = "app/db-" + uuid.uuid4().hex[:8]
    await client.create_secret(name, "v1", SECRET_VALUE + "-1")
    await client.put_secret_value(name, "v2", SECRET_VALUE + "-2", version_stages=["ACSPending"])
    return name
