"""The ``secretstage`` command as a user runs it: real processes, real emulator."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SECRET_VALUE

CLI = [sys.executable, "-m", "secretstage.cli"]


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    env = {**os.environ, "SECRETSTAGE_EMULATOR_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET}
    proc = subprocess.Popen(
        [*CLI, "emulator", "--port", "0", "--access-key-id", ACCESS_KEY_ID],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    try:
        assert first.startswith("listening on http://127.0.0.1:"), first
        yield first.removeprefix("listening on ")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def run(*args: str, creds: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    if creds:
        env |= {"ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET}
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert ACCESS_KEY_SECRET not in result.stdout + result.stderr
    assert SECRET_VALUE not in result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def secret(emulator_url: str) -> str:
    import asyncio

    from secretstage.kms import Credentials, KmsClient, StaticProvider

    async def seed() -> None:
        async with KmsClient(
            endpoint=emulator_url, credentials=StaticProvider(Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
        ) as c:
            await c.create_secret("cli-secret", "v1", SECRET_VALUE)
            await c.put_secret_value("cli-secret", "v2", SECRET_VALUE + "2", version_stages=["ACSPending"])

    asyncio.run(seed())
    return "cli-secret"


def test_promote_and_versions(emulator_url: str, secret: str) -> None:
    result = run(
        "promote",
        "--secret-name",
        secret,
        "--version-stage",
        "ACSCurrent",
        "--move-to-version",
        "v2",
        "--remove-from-version",
        "v1",
        "--endpoint",
        emulator_url,
        "--signature",
        "HMAC-SHA1",
    )
    assert result.returncode == 0, result.stderr
    assert '"SecretName": "cli-secret"' in result.stdout
    assert '"RequestId"' in result.stdout
    table = run("versions", secret, "--endpoint", emulator_url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[1].split() == ["VERSION", "ID", "CREATED", "STAGES"]
    rows = {line.split()[0]: line.split()[-1] for line in lines[2:]}
    assert rows == {"v2": "ACSPending,ACSCurrent", "v1": "ACSPrevious"}


def test_kms_error_exit_1(emulator_url: str, secret: str) -> None:
    result = run(
        "promote",
        "--secret-name",
        "nope",
        "--version-stage",
        "ACSCurrent",
        "--move-to-version",
        "v2",
        "--endpoint",
        emulator_url,
    )
    assert result.returncode == 1
    assert "Forbidden.ResourceNotFound" in result.stderr
    assert "RequestId: " in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "creds", "needle"),
    [
        (
            ["promote", "--version-stage", "ACSCurrent", "--move-to-version", "v2", "--region", "cn-hangzhou"],
            True,
            "--secret-name",
        ),
        (
            [
                "promote",
                "--secret-name",
                " ",
                "--version-stage",
                "S",
                "--move-to-version",
                "v",
                "--region",
                "cn-hangzhou",
            ],
            True,
            "--secret-name is empty",
        ),
        (
            ["promote", "--secret-name", "s", "--version-stage", "S", "--region", "cn-hangzhou"],
            True,
            "--move-to-version",
        ),
        (["versions", "s", "--endpoint", "ftp://x"], True, "--endpoint"),
        (["versions", "s", "--endpoint", "https://kst-a1.cryptoservice.kms.aliyuncs.com"], True, "dedicated gateway"),
        (["versions", "s", "--region", "cn-hangzhou", "--signature", "HMAC-MD5"], True, "--signature"),
        (["versions", "s", "--region", "Not A Region"], True, "regionId"),
        (["versions", "s", "--region", "cn-hangzhou"], False, "ALIBABA_CLOUD_ACCESS_KEY_ID"),
        (["emulator", "--access-key-id", "x"], True, "--access-key-secret"),
        (["emulator", "--access-key-id", "x", "--access-key-secret", "y", "--fault", "bogus"], True, "--fault"),
    ],
)
def test_bad_usage_exit_2(args: list[str], creds: bool, needle: str) -> None:
    result = run(*args, creds=creds)
    assert result.returncode == 2, result
    assert needle in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "DEBUG", "--log-format", "json", "versions", "x"],
        ["versions", "x", "--log-level", "DEBUG", "--log-format", "json"],  # after the command: extraArgs
        ["versions", "x"],  # from SECRETSTAGE_LOG_LEVEL / _FORMAT
    ],
    ids=["before", "after", "environment"],
)
def test_logging_flags_anywhere_and_from_the_environment(argv: list[str], emulator_url: str) -> None:
    env = {**os.environ, "SECRETSTAGE_LOG_LEVEL": "DEBUG", "SECRETSTAGE_LOG_FORMAT": "json"}
    if argv != ["versions", "x"]:
        env = {k: v for k, v in env.items() if not k.startswith("SECRETSTAGE_LOG_")}
    env |= {"ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET}
    result = subprocess.run(
        [*CLI, *argv, "--endpoint", emulator_url], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    # a DEBUG record in JSON (httpx logs each request at DEBUG) shows both settings took effect
    debug = [line for line in result.stderr.splitlines() if line.startswith("{") and '"level": "debug"' in line]
    assert debug, result.stderr
    assert ACCESS_KEY_SECRET not in result.stderr


def test_the_flag_wins_over_the_environment_and_a_bad_variable_is_named() -> None:
    env = {**os.environ, "SECRETSTAGE_LOG_LEVEL": "LOUD"}
    bad = subprocess.run([*CLI, "versions", "x"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert bad.returncode == 2
    assert "SECRETSTAGE_LOG_LEVEL='LOUD' is not one of DEBUG, INFO, WARNING, ERROR" in bad.stderr
    ok = subprocess.run(
        [*CLI, "versions", "x", "--log-level", "ERROR", "--region", "cn-hangzhou"],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if not k.startswith("ALIBABA_CLOUD_")},
        timeout=60,
        check=False,
    )
    assert "SECRETSTAGE_LOG_LEVEL" not in ok.stderr  # the flag was given; the bad variable is not read
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in ok.stderr


def test_kubectl_plugin_names_itself_as_kubectl_does() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from secretstage.cli import kubectl_main; sys.argv[0] = 'x'; kubectl_main()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: kubectl secretstage")
