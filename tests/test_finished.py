"""The handler's filter: a generation this process just finished is not started again from the stale
body kopf may still hold (its intent-write event), and the record goes once kopf shows it final. Only
bodies this process wrote are skipped: a status someone else changed runs, as after a restart."""

from __future__ import annotations

from types import SimpleNamespace

import kopf

from secretstage.handlers import _not_done
from secretstage.reconcile import RecentlyFinished


def offered(finished: RecentlyFinished, generation: int, status: dict[str, object], rv: str = "11") -> bool:
    memo = SimpleNamespace(runtime=SimpleNamespace(finished=finished))
    body = {"metadata": {"uid": "u1", "generation": generation, "resourceVersion": rv}}
    meta = kopf.Meta(kopf.Body(body))
    return _not_done(status=kopf.Status(kopf.Body({"status": status})), meta=meta, uid="u1", memo=memo)


def test_a_stale_body_of_a_generation_just_finished_is_not_offered_again() -> None:
    finished = RecentlyFinished()
    intent = {"phase": "InProgress", "observedGeneration": 1}
    assert offered(finished, 1, intent)
    finished.add("u1", 1, ["11", "12"])  # our intent write (11) and final write (12)
    assert not offered(finished, 1, intent, rv="11")  # the intent write's event, seen after the final write
    assert offered(finished, 2, {"phase": "Succeeded", "observedGeneration": 1})  # a new generation is
    assert not offered(finished, 1, {"phase": "Succeeded", "observedGeneration": 1}, rv="12")
    assert len(finished) == 0  # kopf caught up: forgotten


def test_a_status_changed_by_someone_else_runs_before_and_after_a_restart_alike() -> None:
    finished = RecentlyFinished()
    finished.add("u1", 1, ["11", "12"])
    hand_edited = {"phase": "InProgress", "observedGeneration": 1}
    assert offered(finished, 1, hand_edited, rv="13")  # not a body this process wrote
    assert offered(RecentlyFinished(), 1, hand_edited, rv="13")  # a restarted process: the same answer


def test_the_record_is_bounded() -> None:
    finished = RecentlyFinished(capacity=3)
    for i in range(10):
        finished.add(f"u{i}", 1, ["5"])
    assert len(finished) == 3
    assert finished.covers("u9", 1, "5")
    assert not finished.covers("u0", 1, "5")
