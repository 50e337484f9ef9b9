"""Errors of the KMS layer, and the one table that says which are worth retrying.

    KmsError                      everything this package raises about a call
    ├── KmsApiError               KMS (or its gateway) answered with an error body
    └── KmsTransportError         no usable answer: timeout, connection refused/reset, bad body
    CredentialsError              no usable credentials (raised before any request is sent)
    ConfigurationError            bad endpoint, region or signature name (names the field and the fix)

Classification is by the body's ``Code`` first, never by HTTP status alone: Alibaba's gateway
returns ``Throttling`` with HTTP 400 (kms-api.md §4.2).
"""

from __future__ import annotations

import re

# Codes that mean "the same request may succeed later". Everything else is permanent.
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "Throttling.Tenant",
        "Rejected.Throttling",
        "ServiceUnavailable",
        "ServiceUnavailableTemporary",
        "SerivceUnavailableTemporary",  # sic: Alibaba's own docs spell it this way too
        "InternalFailure",
        "InternalError",
        "UnknownError",
    }
)
RETRYABLE_HTTP_STATUSES = frozenset({429, 500, 502, 503, 504})
# Codes by which the gateway refuses a request before it reaches the service: such a request was
# certainly not applied, so even a mutating call may be sent again.
REFUSED_CODES = frozenset(
    {"Throttling", "Throttling.User", "Throttling.Api", "Throttling.Tenant", "Rejected.Throttling"}
)

# Gateway messages for SignatureDoesNotMatch end with the server's string to sign, which echoes
# every signed parameter (SecurityToken included). Cut it before the message goes anywhere.
_STRING_TO_SIGN = re.compile(r"\s*server string to sign is:.*", re.IGNORECASE | re.DOTALL)
MAX_MESSAGE_LENGTH = 512


def is_retryable(code: str, http_status: int) -> bool:
    if code in RETRYABLE_CODES or code.startswith("Throttling"):
        return True
    return http_status in RETRYABLE_HTTP_STATUSES and not code.startswith(("Forbidden", "Invalid"))


# Codes that say the service failed somewhere along the way, not that it refused: the change may
# have been applied before the failure, whatever HTTP status carries the code (gateways have been
# seen to wrap them in a 4xx, and an RPC answer can carry ``Code`` with HTTP 200).
UNKNOWN_OUTCOME_CODES = RETRYABLE_CODES - REFUSED_CODES


def may_have_been_applied(code: str, http_status: int) -> bool:
    """Whether a request answered with this error body may still have changed something.

    A 4xx business error or a throttling refusal is KMS saying "not done". A 5xx, or an internal
    failure code under any status (InternalFailure, ServiceUnavailable, UnknownError), may come from
    a gateway that timed out waiting for a backend that went on to apply the change: nothing in the
    docs says otherwise, so it counts as unknown.
    """
    if code in REFUSED_CODES or code.startswith("Throttling"):
        return False
    if code in UNKNOWN_OUTCOME_CODES:
        return True
    return http_status >= 500 or http_status == 0


def sanitize_message(message: str) -> str:
    cleaned = _STRING_TO_SIGN.sub("", message)
    return cleaned[:MAX_MESSAGE_LENGTH]


class KmsError(Exception):
    """Base of every error about a KMS call."""

    code: str
    message: str
    request_id: str
    host_id: str
    http_status: int
    retryable: bool
    maybe_applied: bool  # True: the request may have reached KMS and been applied (the answer is lost)
    action: str

    def __init__(
        self,
        *,
        code: str,
        message: str,
        action: str = "",
        request_id: str = "",
        host_id: str = "",
        http_status: int = 0,
        retryable: bool | None = None,
        maybe_applied: bool | None = None,
    ) -> None:
        self.code = code
        self.message = sanitize_message(message)
        self.action = action
        self.request_id = request_id
        self.host_id = host_id
        self.http_status = http_status
        self.retryable = is_retryable(code, http_status) if retryable is None else retryable
        self.maybe_applied = may_have_been_applied(code, http_status) if maybe_applied is None else maybe_applied
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"{self.code}: {self.message}"]
        if self.action:
            parts.append(f"action={self.action}")
        if self.http_status:
            parts.append(f"http={self.http_status}")
        if self.request_id:
            parts.append(f"RequestId={self.request_id}")
        return " ".join(parts)


class KmsApiError(KmsError):
    """KMS or its API gateway returned an error body."""


class KmsTransportError(KmsError):
    """The request got no usable answer (timeout, connection error, unparsable body). Always retryable.

    ``sent=False`` only when the request provably never left: the connection could not be opened
    (refused, connect timeout, pool timeout). Anything later (read timeout, reset, a body we cannot
    parse) may have been applied by KMS.
    """

    def __init__(self, *, code: str, message: str, action: str = "", sent: bool = True) -> None:
        super().__init__(code=code, message=message, action=action, retryable=True, maybe_applied=sent)


class CredentialsError(Exception):
    """No usable credentials; the message lists what was looked for."""


class ConfigurationError(ValueError):
    """A bad setting; the message names the field and how to fix it."""
