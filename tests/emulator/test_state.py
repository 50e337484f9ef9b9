"""The emulator's stage rules and persistence, without HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from secretstage.emulator.state import KmsFault, Store

NOW = "2026-01-01T00:00:00Z"


def store_with(*versions: str) -> Store:
    store = Store()
    store.create_secret("s", versions[0], "d0", "text", "", "2026-01-01T00:00:00Z")
    for i, v in enumerate(versions[1:], 1):
        store.put_secret_value("s", v, f"d{i}", "text", [], f"2026-01-01T00:00:0{i}Z")
    return store


def stages(store: Store) -> dict[str, list[str]]:
    return {v.version_id: v.stages for v in store.secrets["s"].versions}


def test_put_secret_value_default_moves_current_and_previous() -> None:
    store = store_with("v1")
    store.put_secret_value("s", "v2", "x", "text", None, NOW)
    store.put_secret_value("s", "v3", "y", "text", None, NOW)
    assert stages(store) == {"v1": [], "v2": ["ACSPrevious"], "v3": ["ACSCurrent"]}


def test_put_same_version_same_data_is_noop_different_data_rejected() -> None:
    store = store_with("v1")
    store.put_secret_value("s", "v1", "d0", "text", None, NOW)
    with pytest.raises(KmsFault) as err:
        store.put_secret_value("s", "v1", "other", "text", None, NOW)
    assert err.value.code == "Rejected.ResourceExist"


@pytest.mark.parametrize("auto_previous", [True, False])
def test_move_current(auto_previous: bool) -> None:
    store = store_with("v1", "v2")
    store.auto_previous = auto_previous
    store.update_secret_version_stage("s", "ACSCurrent", "v2", "v1", NOW)
    assert stages(store)["v2"] == ["ACSCurrent"]
    assert stages(store)["v1"] == (["ACSPrevious"] if auto_previous else [])


def test_move_is_idempotent_only_when_asked_the_same_way() -> None:
    store = store_with("v1", "v2")
    store.update_secret_version_stage("s", "Canary", "v2", None, NOW)
    store.update_secret_version_stage("s", "Canary", "v2", None, NOW)  # already there: no-op
    assert stages(store)["v2"] == ["Canary"]


def test_version_limit_evicts_oldest_unlabelled() -> None:
    store = store_with(*[f"v{i}" for i in range(10)])
    store.put_secret_value("s", "v10", "x", "text", ["Extra"], "2026-01-02T00:00:00Z")
    ids = [v.version_id for v in store.secrets["s"].versions]
    assert "v1" not in ids
    assert "v0" in ids
    assert len(ids) == 10


def test_state_file_round_trip(tmp_path: Path) -> None:
    store = store_with("v1", "v2")
    path = tmp_path / "state.json"
    store.save(str(path))
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    copy = Store()
    assert copy.load(str(path))
    assert stages(copy) == stages(store)
    assert not list(tmp_path.glob(".emulator-state-*"))


@pytest.mark.parametrize(
    ("held_elsewhere", "auto_previous", "expected"),
    [
        ("move", True, {"v1": ["ACSPrevious"], "v2": ["ACSCurrent"]}),
        ("move", False, {"v1": [], "v2": ["ACSCurrent"]}),
    ],
)
def test_documented_sample_moves_current(held_elsewhere: str, auto_previous: bool, expected: object) -> None:
    """UpdateSecretVersionStage's own sample: VersionStage=ACSCurrent&MoveToVersion=... on its own."""
    store = store_with("v1", "v2")
    store.configure(label_held_elsewhere=held_elsewhere, auto_previous=auto_previous)
    store.update_secret_version_stage("s", "ACSCurrent", "v2", None, NOW)
    assert stages(store) == expected


def test_label_held_elsewhere_reject_switch() -> None:
    store = store_with("v1", "v2")
    store.configure(label_held_elsewhere="reject")
    with pytest.raises(KmsFault, match="specify it as RemoveFromVersion") as err:
        store.update_secret_version_stage("s", "ACSCurrent", "v2", None, NOW)
    assert err.value.code == "InvalidParameter"
    assert stages(store) == {"v1": ["ACSCurrent"], "v2": []}  # a refusal changes nothing


@pytest.mark.parametrize(
    ("held_elsewhere", "mismatch", "applied"),
    [("move", "reject", False), ("reject", "reject", False), ("reject", "ignore", False), ("move", "ignore", True)],
)
def test_stale_remove_from_version(held_elsewhere: str, mismatch: str, applied: bool) -> None:
    """ACSCurrent is on v3, the caller still thinks v1: only remove_mismatch=ignore + move lets it through."""
    store = store_with("v1", "v2", "v3")
    store.update_secret_version_stage("s", "ACSCurrent", "v3", "v1", NOW)
    store.configure(label_held_elsewhere=held_elsewhere, remove_mismatch=mismatch)
    if not applied:
        with pytest.raises(KmsFault) as err:
            store.update_secret_version_stage("s", "ACSCurrent", "v2", "v1", NOW)
        assert err.value.code == "InvalidParameter"
        assert stages(store)["v3"] == ["ACSCurrent"]
        return
    store.update_secret_version_stage("s", "ACSCurrent", "v2", "v1", NOW)
    # the label left its real holder, and ACSPrevious follows the version that actually lost it
    assert stages(store) == {"v1": [], "v2": ["ACSCurrent"], "v3": ["ACSPrevious"]}


def test_remove_mismatch_ignore_on_a_pure_removal_is_a_no_op() -> None:
    store = store_with("v1", "v2")
    store.update_secret_version_stage("s", "Canary", "v2", None, NOW)
    store.configure(remove_mismatch="ignore")
    store.update_secret_version_stage("s", "Canary", None, "v1", NOW)
    assert stages(store)["v2"] == ["Canary"]


def test_switches_reject_unknown_names_and_values() -> None:
    store = Store()
    with pytest.raises(ValueError, match="label_held_elsewhere must be one of"):
        store.configure(label_held_elsewhere="maybe")
    with pytest.raises(ValueError, match="unknown setting"):
        store.configure(strict=True)
    assert store.switches() == {"auto_previous": True, "label_held_elsewhere": "move", "remove_mismatch": "reject"}
