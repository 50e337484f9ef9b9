"""Every fault at every await point of the promotion protocol, in every KMS mode; then recovery.

See explorer.py for the model. Single faults are explored exhaustively; pairs of faults (the
second one hitting the recovery) for the faults that lose state: crashes and lost answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pytest

from tests.protocol.explorer import (
    FAULTS_BY_KIND,
    GATED_ONLY_FAULTS,
    GATED_SCENARIOS,
    MODES,
    SCENARIOS,
    Scenario,
    check,
    mode_id,
    run_schedule,
)

EXPLORED: Counter[str] = Counter()
ALL_FAULTS = sorted({f for faults in FAULTS_BY_KIND.values() for f in faults})
PAIR_FAULTS = (
    "crash",
    "crash-after",
    "lost-after",
    "throttle",
    "foreign",
    "late",
    "later",
    "rival",
    "edit",
    "recreate",
    "gate-fail",
    "canary-fail",
    "retry",
)
PAIR_MODES = MODES


async def explore(scenario: Scenario, mode: Mapping[str, object], depth: int, faults: tuple[str, ...]) -> int:
    """Every schedule of up to ``depth`` faults. A run is deterministic up to its first fault, so a
    fault is only placed on a point of a kind it applies to, as seen in the run without it."""
    count = 0

    async def extend(schedule: dict[int, str], start: int) -> None:
        nonlocal count
        world = await run_schedule(scenario, mode, schedule)
        try:
            check(world, scenario)
        except AssertionError as exc:
            raise AssertionError(f"{scenario.name} / {mode_id(mode)} / faults {schedule}: {exc}") from None
        count += 1
        if len(schedule) == depth:
            return
        for index, kind, _ in world.points[start:]:
            for fault in FAULTS_BY_KIND[kind]:
                if fault in GATED_ONLY_FAULTS and scenario.request.gate is None:
                    continue
                if fault in faults:
                    await extend({**schedule, index: fault}, index + 1)

    await extend({}, 0)
    return count


@pytest.mark.parametrize("mode", MODES, ids=mode_id)
@pytest.mark.parametrize("scenario", [*SCENARIOS, *GATED_SCENARIOS], ids=lambda s: s.name)
async def test_single_faults(scenario: Scenario, mode: Mapping[str, object]) -> None:
    EXPLORED[f"single/{mode_id(mode)}"] += await explore(scenario, mode, 1, ALL_FAULTS)


@pytest.mark.parametrize("mode", PAIR_MODES, ids=[mode_id(m) for m in PAIR_MODES])
@pytest.mark.parametrize("scenario", [*SCENARIOS, *GATED_SCENARIOS], ids=lambda s: s.name)
async def test_fault_pairs(scenario: Scenario, mode: Mapping[str, object]) -> None:
    EXPLORED[f"pairs/{mode_id(mode)}"] += await explore(scenario, mode, 2, PAIR_FAULTS)
