"""Fixtures for tests against the real control plane: CRD, emulator and operator processes, leak scans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests.harness import EMULATOR_MODES, SECRETS, EmulatorProcess, OperatorProcess, Promotions, install_crd


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> None:
    install_crd(cluster)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module", params=sorted(EMULATOR_MODES))
def emulator(workdir: Path, request: pytest.FixtureRequest) -> Iterator[EmulatorProcess]:
    """The emulator, once in its documented-default mode and once in the strictest (EMULATOR_MODES)."""
    emu = EmulatorProcess(workdir, switches=EMULATOR_MODES[request.param])
    yield emu
    emu.stop()
    leaked = [s for s in SECRETS if s in emu.process.log_text()]
    assert not leaked, "a test secret appeared in the emulator's log"


@pytest.fixture(scope="module")
def operator(cluster: Cluster, crd: None, emulator: EmulatorProcess, workdir: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(workdir, cluster.kubeconfig, emulator.url)
    yield op
    op.stop()
    text = op.log_text()
    assert "starting:" in text  # the scan below read real operator output
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, "a test secret appeared in the operator's log"


@pytest.fixture
def promotions(cluster: Cluster) -> Promotions:
    return Promotions(cluster)


@pytest.fixture
def ns(namespace: str, promotions: Promotions) -> Iterator[str]:
    """A namespace with the credentials Secret; scanned for leaked secrets in status and events afterwards."""
    promotions.credentials_secret(namespace)
    yield namespace
    text = promotions.all_text(namespace)
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, "a test secret appeared in a status or event"
