"""``PromotionRequest``: a SecretStagePromotion's spec, parsed and validated.

The CRD schema and its CEL rules reject most bad input at admission; these checks repeat the
ones that matter for safety, because the operator may run against an older CRD (or none).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from secretstage.domain.approval import ApprovalRule, InvalidApproval, parse_approval
from secretstage.domain.gate import Gate, parse_gate
from secretstage.domain.schedule import InvalidSchedule, Schedule, parse_schedule
from secretstage.regions import REGION_ID

ACS_CURRENT = "ACSCurrent"
ACS_PREVIOUS = "ACSPrevious"
SYSTEM_STAGES = (ACS_CURRENT, ACS_PREVIOUS)
SIGNATURES = ("ACS3-HMAC-SHA256", "HMAC-SHA1")

# Kept identical to the patterns in crds/secretstagepromotions.secretstage.io.yaml (a test checks).
SECRET_NAME = r"^[A-Za-z0-9_/+=.@-]{1,192}$"
SECRET_ARN = r"^acs:kms:[a-z0-9-]{1,32}:[0-9]{1,32}:secret/[A-Za-z0-9_/+=.@-]{1,192}$"
STAGE = r"^[A-Za-z0-9_.-]{1,64}$"
VERSION_ID = r"^[A-Za-z0-9_.-]{1,64}$"
ENDPOINT = r"^https?://[A-Za-z0-9.:\[\]-]{1,253}/?$"
K8S_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidPromotion(ValueError):
    """The spec cannot be acted on; ``problems`` name each field and the fix."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class PromotionRequest:
    secret_name: str
    version_stage: str
    move_to_version: str | None = None
    remove_from_version: str | None = None
    region_id: str | None = None
    endpoint: str | None = None
    signature: str = "ACS3-HMAC-SHA256"
    credentials_secret: str | None = None
    credentials_service_account: str | None = None  # its namespace is the promotion's, always
    operator_identity: bool = False
    precondition_current_version: str | None = None
    verify: bool = True
    dry_run: bool = False
    restart: tuple[tuple[str, str], ...] = ()  # (kind, name) of workloads to restart after success
    refresh_external_secrets: tuple[str, ...] = ()
    after_success_when: str = "Moved"  # Moved: only when this generation moved the stage; Always: also when in place
    gate: Gate | None = None  # prove the consumers work on the new version, or undo the move (domain.gate)
    canary: Canary | None = None  # first the canary stage, its own gate, then this stage
    schedule: Schedule | None = None  # when it may move: notBefore, maintenance windows (domain.schedule)
    approval: ApprovalRule | None = None  # who must approve it first (domain.approval)

    @property
    def secret_region(self) -> str | None:
        """The region inside an ARN secretName, if any."""
        if self.secret_name.startswith("acs:kms:"):
            return self.secret_name.split(":")[2]
        return None


def _text(
    spec: Mapping[str, Any],
    key: str,
    path: str,
    pattern: str,
    problems: list[Problem],
    hint: str,
    required: bool = False,
) -> str | None:
    value = spec.get(key)
    if value is None or value == "":
        if required:
            problems.append(Problem(path, f"is required; {hint}"))
        return None
    if not isinstance(value, str):
        problems.append(Problem(path, f"must be a string; {hint}"))
        return None
    if not re.fullmatch(pattern, value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        problems.append(Problem(path, f"{shown!r} is not valid; {hint}"))
        return None
    return value


def _reference(creds: Mapping[str, Any], key: str, what: str, problems: list[Problem]) -> str | None:
    """``spec.credentials.<key>.name``: a name only, so it always means an object of the promotion's own namespace."""
    ref = creds.get(key)
    if ref is None:
        return None
    if not isinstance(ref, Mapping) or set(ref) - {"name"}:
        problems.append(
            Problem(f"spec.credentials.{key}", f"takes only name: {what} in this namespace (no namespace field)")
        )
        return None
    name = ref.get("name")
    if not (isinstance(name, str) and re.fullmatch(K8S_NAME, name)):
        problems.append(Problem(f"spec.credentials.{key}.name", f"must be the name of {what} in this namespace"))
        return None
    return name


def parse_spec(spec: Mapping[str, Any]) -> PromotionRequest:
    """Validate and convert; raises ``InvalidPromotion`` listing every problem at once."""
    problems: list[Problem] = []
    name = spec.get("secretName")
    secret_name = None
    if isinstance(name, str) and (re.fullmatch(SECRET_NAME, name) or re.fullmatch(SECRET_ARN, name)):
        secret_name = name
    else:
        problems.append(
            Problem(
                "spec.secretName",
                "must be a secret name (letters, digits, _/+=.@-, at most 192) "
                "or an ARN acs:kms:REGION:ACCOUNT:secret/NAME",
            )
        )
    stage = _text(
        spec,
        "versionStage",
        "spec.versionStage",
        STAGE,
        problems,
        "use ACSCurrent, ACSPrevious or a custom label of letters, digits, _ . - (at most 64)",
        True,
    )
    version_hint = "a KMS version ID: letters, digits, _ . - (at most 64)"
    move_to = _text(spec, "moveToVersion", "spec.moveToVersion", VERSION_ID, problems, version_hint)
    remove_from = _text(spec, "removeFromVersion", "spec.removeFromVersion", VERSION_ID, problems, version_hint)
    region = _text(spec, "regionId", "spec.regionId", REGION_ID, problems, "use a region ID such as cn-hangzhou")
    endpoint = _text(
        spec,
        "endpoint",
        "spec.endpoint",
        ENDPOINT,
        problems,
        "use https://kms.<region>.aliyuncs.com (no path, query or user info)",
    )
    signature = spec.get("signature") or "ACS3-HMAC-SHA256"
    if signature not in SIGNATURES:
        problems.append(Problem("spec.signature", f"must be one of {', '.join(SIGNATURES)}"))

    creds = spec.get("credentials") or {}
    if not isinstance(creds, Mapping):
        creds = {}
    ref_name = _reference(creds, "secretRef", "a Secret", problems)
    service_account = _reference(creds, "serviceAccountRef", "a ServiceAccount", problems)
    operator_identity = creds.get("operatorIdentity") is True
    if [bool(ref_name), bool(service_account), operator_identity].count(True) != 1:
        problems.append(
            Problem(
                "spec.credentials",
                "set exactly one of secretRef.name (a Secret in this namespace with AccessKeyId and "
                "AccessKeySecret), serviceAccountRef.name (a ServiceAccount in this namespace annotated with "
                "its RAM role) or operatorIdentity: true",
            )
        )

    precondition = spec.get("precondition") or {}
    current = None
    if isinstance(precondition, Mapping):
        current = _text(
            precondition, "currentVersion", "spec.precondition.currentVersion", VERSION_ID, problems, version_hint
        )

    if stage and not move_to and not remove_from:
        problems.append(Problem("spec", "set spec.moveToVersion and/or spec.removeFromVersion"))
    if stage in SYSTEM_STAGES and not move_to and remove_from:
        problems.append(
            Problem(
                "spec.removeFromVersion",
                f"{stage} cannot be removed, only moved: set spec.moveToVersion to the version that should hold it",
            )
        )
    if move_to and move_to == remove_from:
        problems.append(Problem("spec.removeFromVersion", "must differ from spec.moveToVersion"))
    restart, refresh = _after_success(spec.get("afterSuccess"), problems)
    after_success = spec.get("afterSuccess")
    when = after_success.get("when", "Moved") if isinstance(after_success, Mapping) else "Moved"
    if when not in AFTER_SUCCESS_WHEN:
        problems.append(Problem("spec.afterSuccess.when", f"must be one of {', '.join(AFTER_SUCCESS_WHEN)}"))
    for key in ("verify", "dryRun"):
        if key in spec and not isinstance(spec[key], bool):
            problems.append(Problem(f"spec.{key}", "must be true or false"))
    gate_problems: list[tuple[str, str]] = []
    gate = parse_gate(spec.get("gate"), restart=restart, problems=gate_problems)
    problems.extend(Problem(field, message) for field, message in gate_problems)
    if gate is not None and not move_to:
        problems.append(
            Problem(
                "spec.gate", "needs spec.moveToVersion: a gate proves a version and can move the stage back from it"
            )
        )
    canary = _canary(spec.get("canary"), stage, move_to, problems)
    try:
        schedule = parse_schedule(spec.get("schedule"))
    except InvalidSchedule as exc:
        problems.append(Problem(exc.field, exc.detail))
        schedule = None
    try:
        approval = parse_approval(spec.get("approval"))
    except InvalidApproval as exc:
        problems.append(Problem(exc.field, exc.detail))
        approval = None
    if problems:
        raise InvalidPromotion(problems)
    assert secret_name is not None
    assert stage is not None
    return PromotionRequest(
        secret_name=secret_name,
        version_stage=stage,
        move_to_version=move_to,
        remove_from_version=remove_from,
        region_id=region,
        endpoint=endpoint,
        signature=str(signature),
        credentials_secret=ref_name,
        credentials_service_account=service_account,
        operator_identity=operator_identity,
        precondition_current_version=current,
        verify=spec.get("verify", True) is not False,
        dry_run=spec.get("dryRun", False) is True,
        restart=restart,
        refresh_external_secrets=refresh,
        after_success_when=str(when),
        gate=gate,
        canary=canary,
        schedule=schedule,
        approval=approval,
    )


@dataclass(frozen=True)
class Canary:
    """``spec.canary``: the canary stage is moved to the same version and gated first (a promotion of
    its own, created by the operator); this promotion's stage moves only when the canary passed."""

    version_stage: str
    restart: tuple[tuple[str, str], ...]
    gate: Gate


def _canary(raw: Any, stage: str | None, move_to: str | None, problems: list[Problem]) -> Canary | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) - {"versionStage", "restart", "gate"}:
        problems.append(Problem("spec.canary", "takes versionStage, restart and gate"))
        return None
    canary_stage = raw.get("versionStage")
    if not (isinstance(canary_stage, str) and re.fullmatch(STAGE, canary_stage)):
        problems.append(Problem("spec.canary.versionStage", "must be a stage label, e.g. ACSCanary"))
        return None
    if canary_stage in (ACS_CURRENT, ACS_PREVIOUS) or canary_stage == stage:
        problems.append(
            Problem("spec.canary.versionStage", f"must be a label of its own (not {canary_stage}), e.g. ACSCanary")
        )
    if not move_to:
        problems.append(Problem("spec.canary", "needs spec.moveToVersion: the canary moves its label to that version"))
    restart_problems: list[Problem] = []
    restart, _ = _after_success({"restart": raw.get("restart") or []}, restart_problems)
    problems.extend(Problem(p.field.replace("spec.afterSuccess", "spec.canary"), p.message) for p in restart_problems)
    gate_problems: list[tuple[str, str]] = []
    gate = parse_gate(raw.get("gate"), restart=restart, problems=gate_problems)
    problems.extend(
        Problem(field.replace("spec.gate", "spec.canary.gate"), message) for field, message in gate_problems
    )
    if gate is None and "gate" not in raw:
        problems.append(Problem("spec.canary.gate", "is needed: the canary is there to be checked"))
    if gate is None:
        return None
    return Canary(canary_stage, restart, gate)


# What a canary promotion keeps of its parent's spec: where the secret is and who may act on it.
CANARY_INHERITS = ("secretName", "regionId", "endpoint", "signature", "credentials", "moveToVersion", "verify")


def canary_name(parent: str, generation: int) -> str:
    """The canary promotion of one generation of a parent (a new generation runs its own canary)."""
    suffix = f"-canary-g{generation}"
    return parent[: 63 - len(suffix)].rstrip("-.") + suffix


def canary_spec(parent_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of the canary promotion: the canary label to the parent's version, its consumers
    restarted and gated (a failed canary gate moves the label back, or holds, as its gate says)."""
    canary = parent_spec["canary"]
    spec = {k: parent_spec[k] for k in CANARY_INHERITS if k in parent_spec}
    spec["versionStage"] = canary["versionStage"]
    if canary.get("restart"):
        spec["afterSuccess"] = {"restart": list(canary["restart"])}
    spec["gate"] = dict(canary["gate"])
    return spec


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
AFTER_SUCCESS_WHEN = ("Moved", "Always")


def _after_success(value: Any, problems: list[Problem]) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    if value is None:
        return (), ()
    if not isinstance(value, Mapping):
        problems.append(Problem("spec.afterSuccess", "must be an object with restart and/or refreshExternalSecrets"))
        return (), ()
    restart: list[tuple[str, str]] = []
    for i, item in enumerate(value.get("restart") or []):
        kind = item.get("kind") if isinstance(item, Mapping) else None
        name = item.get("name") if isinstance(item, Mapping) else None
        if kind not in WORKLOAD_KINDS or not (isinstance(name, str) and re.fullmatch(K8S_NAME, name)):
            problems.append(
                Problem(
                    f"spec.afterSuccess.restart[{i}]",
                    "needs kind (Deployment, StatefulSet or DaemonSet) and the name of a workload in this namespace",
                )
            )
            continue
        restart.append((str(kind), name))
    refresh: list[str] = []
    for i, item in enumerate(value.get("refreshExternalSecrets") or []):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not (isinstance(name, str) and re.fullmatch(K8S_NAME, name)):
            problems.append(
                Problem(
                    f"spec.afterSuccess.refreshExternalSecrets[{i}].name",
                    "must be the name of an ExternalSecret in this namespace",
                )
            )
            continue
        refresh.append(name)
    return tuple(restart), tuple(refresh)
