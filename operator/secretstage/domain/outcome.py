"""The result of one reconcile attempt, in the three shapes kopf knows, plus "waiting"."""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass, field

from secretstage.domain.approval import ApprovalRecord
from secretstage.domain.journal import GateState, Inherited, MoveRecord, RollbackState


class Kind(enum.Enum):
    SUCCEEDED = "Succeeded"  # done for this generation
    FAILED = "Failed"  # permanent for this generation: kopf.PermanentError
    RETRY = "Retry"  # transient: kopf.TemporaryError(delay)
    PENDING = "Pending"  # waiting for something outside KMS (e.g. the credentials Secret); retried
    VERIFYING = "Verifying"  # the stage moved; the gate is watching its consumers (domain.gate)


PHASES = {
    Kind.SUCCEEDED: "Succeeded",
    Kind.FAILED: "Failed",
    Kind.RETRY: "InProgress",
    Kind.PENDING: "Pending",
    Kind.VERIFYING: "Verifying",
}


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    message: str
    request_id: str = ""
    retryable: bool = False

    def to_status(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "requestId": self.request_id, "retryable": self.retryable}


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    reason: str
    message: str
    error: ErrorInfo | None = None
    delay: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.kind in (Kind.SUCCEEDED, Kind.FAILED)


@dataclass(frozen=True)
class HistoryEntry:
    time: str
    action: str
    request_id: str
    outcome: str

    def to_status(self) -> dict[str, str]:
        return {"time": self.time, "action": self.action, "requestId": self.request_id, "outcome": self.outcome}


@dataclass
class AttemptResult:
    """Everything one reconcile attempt learned, for the status builder."""

    outcome: Outcome
    stages_before: dict[str, str] | None = None
    stages_after: dict[str, str] | None = None
    request_id: str | None = None  # the RequestId of this generation's UpdateSecretVersionStage, if known
    request_ids: list[str] = field(default_factory=list)
    move: MoveRecord | None = None  # the journal's move record
    history: list[HistoryEntry] = field(default_factory=list)
    plan: str | None = None
    after_success: list[dict[str, str]] = field(default_factory=list)
    after_success_changed: bool = False  # this attempt ran afterSuccess (or found it interrupted): post Events
    gate: GateState | None = None  # the journal's gate: started, deadline, the checks' verdicts
    rollback: RollbackState | None = None  # the journal's rollback: why, the move back, its restarts
    rollback_restarts_changed: bool = False  # this attempt restarted the consumers after a rollback: post Events
    inherited: Inherited | None = None  # what an earlier generation moved, carried until this one decides
    schedule_opens: str | None = None  # spec.schedule: when this generation may start (while it waits)
    approval: ApprovalRecord | None = None  # spec.approval: who asked, who approved or rejected, when


_REASON_BAD = re.compile(r"[^A-Za-z0-9_,:]")


def condition_reason(code: str) -> str:
    """A KMS code as a Kubernetes condition reason (``^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$``): dots become _."""
    reason = _REASON_BAD.sub("_", code).strip("_,:") or "Unknown"
    if not reason[0].isalpha():
        reason = "E" + reason
    return reason[:1024]


def backoff_delay(attempt: int, *, base: float = 2.0, cap: float = 300.0, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff for handler retries; never below 1 s so retries stay visible."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return max(1.0, (rng or random).uniform(0, ceiling))


def from_kms_error(
    code: str, message: str, request_id: str, retryable: bool, attempt: int, *, rng: random.Random | None = None
) -> Outcome:
    error = ErrorInfo(code=code, message=message, request_id=request_id, retryable=retryable)
    if retryable:
        delay = backoff_delay(attempt, rng=rng)
        return Outcome(
            Kind.RETRY,
            condition_reason(code),
            f"KMS {code}: {message} (attempt {attempt}; retrying in {delay:.1f}s)",
            error,
            delay,
        )
    return Outcome(Kind.FAILED, condition_reason(code), f"KMS {code}: {message}", error)


def failed(reason: str, message: str, *, code: str | None = None) -> Outcome:
    return Outcome(Kind.FAILED, reason, message, ErrorInfo(code=code or reason, message=message))


def pending(reason: str, message: str, attempt: int, *, rng: random.Random | None = None) -> Outcome:
    delay = backoff_delay(attempt, base=5.0, cap=300.0, rng=rng)
    return Outcome(
        Kind.PENDING,
        reason,
        f"{message} (retrying in {delay:.0f}s)",
        ErrorInfo(code=reason, message=message, retryable=True),
        delay,
    )
