"""The handler's filter: a generation this process just finished is not started again from the stale
body kopf may still hold (its intent-write event), and the record goes once kopf shows it final."""

from __future__ import annotations

from types import SimpleNamespace

import kopf

from secretstage.handlers import _not_done
from secretstage.reconcile import RecentlyFinished


def offered(finished: RecentlyFinished, generation: int, status: dict[str, object]) -> bool:
    memo = SimpleNamespace(runtime=SimpleNamespace(finished=finished))
    meta = kopf.Meta(kopf.Body({"metadata": {"uid": "u1", "generation": generation}}))
    return _not_done(status=kopf.Status(kopf.Body({"status": status})), meta=meta, uid="u1", memo=memo)


def test_a_stale_body_of_a_generation_just_finished_is_not_offered_again() -> None:
    finished = RecentlyFinished()
    intent = {"phase": "InProgress", "observedGeneration": 1}
    assert offered(finished, 1, intent)
    finished.add("u1", 1)
    assert not offered(finished, 1, intent)  # the intent write's event, seen after the final write
    assert offered(finished, 2, {"phase": "Succeeded", "observedGeneration": 1})  # a new generation is
    assert not offered(finished, 1, {"phase": "Succeeded", "observedGeneration": 1})
    assert len(finished) == 0  # kopf caught up: forgotten


def test_the_record_is_bounded() -> None:
    finished = RecentlyFinished(capacity=3)
    for i in range(10):
        finished.add(f"u{i}", 1)
    assert len(finished) == 3
    assert finished.covers("u9", 1)
    assert not finished.covers("u0", 1)
