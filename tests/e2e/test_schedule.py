"""spec.schedule on the real API server with the operator: the CRD's checks, waiting with nothing
sent, waking exactly at notBefore, an edit that opens a window, a bad time zone named in status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from secretstage.domain.schedule import parse_schedule
from tests.harness import EmulatorProcess, OperatorProcess, Promotions, condition, spec_for
from tests.support import wait_for

SEEDED = {"CreateSecret": 1, "PutSecretValue": 1}  # the test's own set-up: v1, then v2


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def waiting_for_schedule(promotions: Promotions, ns: str, name: str) -> dict[str, Any]:
    """The promotion once it waits for its schedule (it may show Queued for a moment first)."""

    def reason(obj: dict[str, Any]) -> str | None:
        conditions = (obj.get("status") or {}).get("conditions") or []
        return next((c["reason"] for c in conditions if c["type"] == "Succeeded"), None)

    return wait_for(
        lambda: promotions.get(ns, name),
        lambda obj: reason(obj) in ("NotBefore", "OutsideWindow", "Promoted"),
        timeout=60,
        what=f"{ns}/{name} waiting for its schedule",
    )


def test_not_before_waits_with_nothing_sent_and_wakes_then(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(f"sched/{uuid.uuid4().hex[:6]}", "v1", "v2")
    not_before = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    promotions.create(
        ns, "later", spec_for(emulator, secret, moveToVersion="v2", schedule={"notBefore": _iso(not_before)})
    )
    waiting = waiting_for_schedule(promotions, ns, "later")
    assert waiting["status"]["phase"] == "Pending", waiting["status"]
    assert condition(waiting, "Succeeded")["reason"] == "NotBefore"
    assert waiting["status"]["schedule"] == {"opensTime": _iso(not_before)}
    assert emulator.calls_for(secret) == SEEDED  # nothing sent while it waits, not even a read
    done = promotions.wait_phase(ns, "later", "Succeeded", timeout=60)
    moved_at = datetime.fromisoformat(done["status"]["completionTime"].replace("Z", "+00:00"))
    assert moved_at >= not_before
    assert "schedule" not in done["status"]
    assert emulator.holder(secret, "ACSCurrent") == "v2"


def test_outside_a_window_it_waits_and_an_edit_that_opens_one_proceeds(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(f"sched/{uuid.uuid4().hex[:6]}", "v1", "v2")
    closed = {"windows": [{"cron": "0 3 1 1 *", "duration": "1h", "timeZone": "Asia/Shanghai"}]}  # New Year only
    promotions.create(ns, "window", spec_for(emulator, secret, moveToVersion="v2", schedule=closed))
    waiting = waiting_for_schedule(promotions, ns, "window")
    assert condition(waiting, "Succeeded")["reason"] == "OutsideWindow"
    plan = parse_schedule(closed)
    assert plan is not None
    expected = plan.wait(datetime.now(UTC))
    assert expected is not None
    assert expected.until is not None
    assert waiting["status"]["schedule"]["opensTime"] == _iso(expected.until)  # 03:00 Jan 1 in Shanghai
    assert emulator.calls_for(secret) == SEEDED
    scheduled = promotions.wait_events(ns, "window", lambda evs: any(e.reason == "PromotionScheduled" for e in evs))
    assert all(e.type == "Normal" for e in scheduled if e.reason == "PromotionScheduled")
    assert not [e for e in scheduled if e.reason == "PromotionPending"]  # waiting for a window is no warning
    promotions.patch_spec(ns, "window", {"schedule": {"windows": [{"cron": "* * * * *", "duration": "1h"}]}})
    promotions.wait_phase(ns, "window", "Succeeded", generation=2)
    assert emulator.holder(secret, "ACSCurrent") == "v2"


def test_a_bad_schedule_is_refused_at_admission_or_named_in_status(
    operator: OperatorProcess, emulator: EmulatorProcess, promotions: Promotions, ns: str
) -> None:
    secret = emulator.seed(f"sched/{uuid.uuid4().hex[:6]}", "v1", "v2")
    refused = []
    for schedule in (
        {"windows": [{"cron": "0 2 * *", "duration": "1h"}]},  # four fields
        {"windows": [{"cron": "0 2 * * *", "duration": "two hours"}]},
        {"notBefore": "Christmas"},
    ):
        try:
            promotions.create(
                ns, f"bad-{len(refused)}", spec_for(emulator, secret, moveToVersion="v2", schedule=schedule)
            )
        except ApiException as exc:
            refused.append(str(exc.body))
    assert len(refused) == 3
    assert "cron must have five fields" in refused[0]
    assert "spec.schedule.windows[0].duration" in refused[1]
    assert "spec.schedule.notBefore" in refused[2]
    zone = {"windows": [{"cron": "0 2 * * *", "duration": "1h", "timeZone": "Mars/Olympus"}]}
    promotions.create(ns, "zone", spec_for(emulator, secret, moveToVersion="v2", schedule=zone))
    failed = promotions.wait_phase(ns, "zone", "Failed")
    assert condition(failed, "Succeeded")["reason"] == "InvalidSpec"
    assert (
        "spec.schedule.windows[0].timeZone: 'Mars/Olympus' is not a time zone"
        in condition(failed, "Succeeded")["message"]
    )
    assert emulator.calls_for(secret) == SEEDED
