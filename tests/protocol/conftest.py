from __future__ import annotations

from typing import Any

from tests.protocol.test_fault_explorer import EXPLORED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if EXPLORED:
        terminalreporter.write_sep("-", "fault explorer")
        for key, count in sorted(EXPLORED.items()):
            terminalreporter.write_line(f"{key}: {count} schedules")
        terminalreporter.write_line(f"total: {sum(EXPLORED.values())} schedules explored and checked")
