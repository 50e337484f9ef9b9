from __future__ import annotations

import pytest

from secretstage.domain import planning
from secretstage.domain.promotion import PromotionRequest

VERSIONS = {"v1", "v2", "v3"}


def req(**kw: object) -> PromotionRequest:
    base: dict[str, object] = {
        "secret_name": "s",
        "version_stage": "ACSCurrent",
        "move_to_version": "v2",
        "credentials_secret": "k",
    }
    base.update(kw)
    return PromotionRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "placement", "expected"),
    [
        pytest.param(req(), {"ACSCurrent": "v1"}, planning.StageCall("ACSCurrent", "v2", "v1"), id="move-fills-remove"),
        pytest.param(req(), {"ACSCurrent": "v2"}, None, id="already-there"),
        pytest.param(req(version_stage="Canary"), {}, planning.StageCall("Canary", "v2", None), id="add"),
        pytest.param(
            req(version_stage="Canary", move_to_version=None, remove_from_version="v1"),
            {"Canary": "v1"},
            planning.StageCall("Canary", None, "v1"),
            id="remove",
        ),
        pytest.param(
            req(version_stage="Canary", move_to_version=None, remove_from_version="v1"),
            {},
            None,
            id="remove-already-gone",
        ),
        pytest.param(
            req(precondition_current_version="v1"),
            {"ACSCurrent": "v1"},
            planning.StageCall("ACSCurrent", "v2", "v1"),
            id="precondition-holds",
        ),
    ],
)
def test_plan(request_: PromotionRequest, placement: dict[str, str], expected: planning.StageCall | None) -> None:
    assert planning.plan(request_, placement, VERSIONS).call == expected


@pytest.mark.parametrize(
    ("request_", "placement", "reason"),
    [
        pytest.param(
            req(precondition_current_version="v3"), {"ACSCurrent": "v1"}, "PreconditionFailed", id="precondition"
        ),
        pytest.param(req(move_to_version="v9"), {"ACSCurrent": "v1"}, "VersionNotFound", id="unknown-target"),
        pytest.param(req(remove_from_version="v3"), {"ACSCurrent": "v1"}, "StageNotOnVersion", id="wrong-source"),
    ],
)
def test_plan_rejections(request_: PromotionRequest, placement: dict[str, str], reason: str) -> None:
    with pytest.raises(planning.PlanRejected) as err:
        planning.plan(request_, placement, VERSIONS)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param({"ACSCurrent": "v2", "ACSPrevious": "v1"}, None, id="kms-moved-it"),
        pytest.param({"ACSCurrent": "v2"}, None, id="kms-removed-it"),
        pytest.param(
            {"ACSCurrent": "v2", "ACSPrevious": "v3"}, planning.StageCall("ACSPrevious", "v1", "v3"), id="left-alone"
        ),
        pytest.param({"ACSCurrent": "v1"}, None, id="current-did-not-move"),
    ],
)
def test_previous_fixup(after: dict[str, str], expected: planning.StageCall | None) -> None:
    assert planning.previous_fixup(req(), "v1", {"ACSCurrent": "v1", "ACSPrevious": "v3"}, after) == expected


def test_previous_fixup_trusts_kms_when_it_moved_previous_itself() -> None:
    """A race: ACSCurrent was on v3 (not v1 as read) when the move landed, and KMS put ACSPrevious
    on v3. That is the truth; the operator neither overrides it nor pretends nothing happened."""
    before = {"ACSCurrent": "v1", "ACSPrevious": "v0"}
    after = {"ACSCurrent": "v2", "ACSPrevious": "v3"}
    assert planning.previous_fixup(req(), "v1", before, after) is None
    assert planning.displaced_elsewhere(req(), "v1", before, after) == "v3"
    assert planning.displaced_elsewhere(req(), "v1", before, {"ACSCurrent": "v2", "ACSPrevious": "v1"}) is None


def test_verify() -> None:
    assert planning.verify(req(), {"ACSCurrent": "v2"}) is None
    assert "not on v2" in str(planning.verify(req(), {"ACSCurrent": "v1"}))
    removal = req(version_stage="Canary", move_to_version=None, remove_from_version="v1")
    assert planning.verify(removal, {"Canary": "v1"}) is not None
