from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIGURES: dict[str, Any] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def figures() -> dict[str, Any]:
    """Measured numbers; printed at the end of the run and written to .reliability-figures.json."""
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_sep("-", "reliability figures")
        for key, value in sorted(FIGURES.items()):
            terminalreporter.write_line(f"{key}: {value}")
        Path(".reliability-figures.json").write_text(json.dumps(FIGURES, indent=1, sort_keys=True))
