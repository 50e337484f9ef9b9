"""``KmsClient``: the async Secrets Manager client the operator and the CLI use."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Protocol

import httpx

from secretstage.kms import signing
from secretstage.kms.auth import FORM, Clock, Nonce, _uuid_nonce, auth_for, check_algorithm
from secretstage.kms.credentials import CredentialsProvider
from secretstage.kms.errors import KmsApiError, KmsError, KmsTransportError
from secretstage.kms.models import (
    CreateResult,
    PutResult,
    SecretInfo,
    SecretValue,
    SecretVersion,
    StageUpdate,
    VersionList,
    parse_version,
    stage_list,
)
from secretstage.kms.ratelimit import FairGate, TokenBucket
from secretstage.kms.retry import RetryPolicy
from secretstage.kms.transport import FENCED, REFUSED, PolledBackend, transport

log = logging.getLogger(__name__)

API_VERSION = "2016-01-20"
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=15.0, write=15.0, pool=30.0)
# KMS's shared gateway allows ~40 QPS for this bucket of calls per account and region (kms-api.md §5);
# stay well under it so a burst of promotions never meets a throttling storm.
DEFAULT_RATE_LIMIT = 10.0
LIST_PAGE_SIZE = 50
# Calls whose repetition is not harmless: a second "move the label from v1 to v2" sent after another
# change moved it on can undo that change on a KMS that does not check RemoveFromVersion. They are
# retried here only after an error that proves the first request was not applied; any other error
# goes back to the caller (the promotion protocol re-reads and re-plans with its precondition).
NOT_BLINDLY_REPEATABLE = frozenset({"UpdateSecretVersionStage"})


BeforeSend = Callable[[], Awaitable[None]]


class CallObserver(Protocol):
    """Hook for metrics: called once per HTTP attempt."""

    def __call__(self, *, action: str, code: str, seconds: float) -> None: ...


class KmsClient:
    """Signed calls to one KMS endpoint with one credentials provider.

    One ``httpx.AsyncClient`` is shared by all calls (pass ``http`` to share it across clients);
    retryable errors are retried with full-jitter backoff (mutating calls only when the error proves
    the request was not applied, see ``NOT_BLINDLY_REPEATABLE``); every attempt waits for the rate limiter.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        credentials: CredentialsProvider,
        signature: str = signing.ACS3_HMAC_SHA256,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        rate_limiter: TokenBucket | None = None,
        gate: FairGate | None = None,
        tenant: str = "",
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        clock: Clock = time.time,
        nonce: Nonce = _uuid_nonce,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        observer: CallObserver | None = None,
        page_size: int = LIST_PAGE_SIZE,
        fence: Callable[[], str | None] | None = None,
        user_agent: str = "secretstage-operator",
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.credentials = credentials
        self.signature = check_algorithm(signature)
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        self.gate = gate  # concurrent calls, shared fairly by tenant with other clients
        self.tenant = tenant
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            transport=transport(PolledBackend(), True, httpx.Limits()), timeout=timeout, follow_redirects=False
        )
        self._clock = clock
        self._nonce = nonce
        self._sleep = sleep
        self._rng = rng
        self._observer = observer
        self.page_size = page_size
        # Asked right before every request: a reason why no request may start now (a leader whose
        # Lease may have passed to another replica), or None.
        self.fence = fence
        self.user_agent = user_agent  # ActionTrail records it: which replica made the call
        self.attempts = 0  # HTTP attempts made by this client (for tests and status)

    async def __aenter__(self) -> KmsClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # --- operations ---------------------------------------------------------------------------

    async def update_secret_version_stage(
        self,
        secret_name: str,
        version_stage: str,
        *,
        move_to_version: str | None = None,
        remove_from_version: str | None = None,
        before_send: BeforeSend | None = None,
    ) -> StageUpdate:
        """``before_send`` runs right before each HTTP attempt leaves, after the waits for a
        concurrency slot, a rate-limit token and credentials: the promotion protocol journals its
        intent there, so that an edit or delete that lands during those waits stops the move."""
        params = {"SecretName": secret_name, "VersionStage": version_stage}
        if move_to_version:
            params["MoveToVersion"] = move_to_version
        if remove_from_version:
            params["RemoveFromVersion"] = remove_from_version
        body = await self.call("UpdateSecretVersionStage", params, before_send=before_send)
        return StageUpdate(secret_name=str(body.get("SecretName", secret_name)), request_id=_rid(body))

    async def describe_secret(self, secret_name: str) -> SecretInfo:
        body = await self.call("DescribeSecret", {"SecretName": secret_name})
        return SecretInfo(
            secret_name=str(body.get("SecretName", secret_name)),
            arn=str(body.get("Arn", "")),
            secret_type=str(body.get("SecretType", "")),
            description=str(body.get("Description", "")),
            create_time=str(body.get("CreateTime", "")),
            update_time=str(body.get("UpdateTime", "")),
            request_id=_rid(body),
        )

    async def list_secret_version_ids(self, secret_name: str, *, include_deprecated: bool = False) -> VersionList:
        """Every page; stops when the total is reached or a page comes back empty."""
        versions: list[SecretVersion] = []
        request_ids: list[str] = []
        page = 1
        while True:
            body = await self.call(
                "ListSecretVersionIds",
                {
                    "SecretName": secret_name,
                    "IncludeDeprecated": "true" if include_deprecated else "false",
                    "PageNumber": str(page),
                    "PageSize": str(self.page_size),
                },
            )
            request_ids.append(_rid(body))
            items = (body.get("VersionIds") or {}).get("VersionId") or []
            versions.extend(parse_version(i) for i in items)
            total = int(body.get("TotalCount", 0) or 0)
            if not items or len(versions) >= total or page >= 1000:
                break
            page += 1
        return VersionList(
            secret_name=str(body.get("SecretName", secret_name)),
            versions=tuple(versions),
            request_ids=tuple(request_ids),
        )

    async def get_secret_value(
        self, secret_name: str, *, version_id: str | None = None, version_stage: str | None = None
    ) -> SecretValue:
        params = {"SecretName": secret_name}
        if version_id:
            params["VersionId"] = version_id
        if version_stage:
            params["VersionStage"] = version_stage
        body = await self.call("GetSecretValue", params)
        return SecretValue(
            secret_name=str(body.get("SecretName", secret_name)),
            version_id=str(body.get("VersionId", "")),
            stages=stage_list(body.get("VersionStages")),
            secret_data=str(body.get("SecretData", "")),
            secret_data_type=str(body.get("SecretDataType", "text")),
            request_id=_rid(body),
        )

    async def put_secret_value(
        self,
        secret_name: str,
        version_id: str,
        secret_data: str,
        *,
        version_stages: list[str] | None = None,
        secret_data_type: str = "text",
    ) -> PutResult:
        params = {
            "SecretName": secret_name,
            "VersionId": version_id,
            "SecretData": secret_data,
            "SecretDataType": secret_data_type,
        }
        if version_stages is not None:
            params["VersionStages"] = json.dumps(version_stages)
        body = await self.call("PutSecretValue", params)
        return PutResult(
            secret_name=str(body.get("SecretName", secret_name)),
            version_id=str(body.get("VersionId", version_id)),
            stages=stage_list(body.get("VersionStages")),
            request_id=_rid(body),
        )

    async def create_secret(
        self,
        secret_name: str,
        version_id: str,
        secret_data: str,
        *,
        secret_data_type: str = "text",
        description: str | None = None,
    ) -> CreateResult:
        params = {
            "SecretName": secret_name,
            "VersionId": version_id,
            "SecretData": secret_data,
            "SecretDataType": secret_data_type,
        }
        if description:
            params["Description"] = description
        body = await self.call("CreateSecret", params)
        return CreateResult(
            secret_name=str(body.get("SecretName", secret_name)),
            arn=str(body.get("Arn", "")),
            version_id=str(body.get("VersionId", version_id)),
            request_id=_rid(body),
        )

    # --- transport ----------------------------------------------------------------------------

    async def call(
        self, action: str, params: Mapping[str, str], *, before_send: BeforeSend | None = None
    ) -> dict[str, Any]:
        """One logical call: attempts until success, a permanent error, or the retry budget is spent."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(action, params, before_send)
            except KmsError as exc:
                if not exc.retryable or attempt >= self.retry.max_attempts:
                    raise
                if action in NOT_BLINDLY_REPEATABLE and exc.maybe_applied:
                    raise
                delay = self.retry.delay(attempt, self._rng)
                log.warning(
                    "KMS %s attempt %d/%d failed (%s, RequestId %s); retrying in %.2fs",
                    action,
                    attempt,
                    self.retry.max_attempts,
                    exc.code,
                    exc.request_id or "-",
                    delay,
                )
                await self._sleep(delay)

    async def _attempt(
        self, action: str, params: Mapping[str, str], before_send: BeforeSend | None = None
    ) -> dict[str, Any]:
        if self.gate is None:
            return await self._send(action, params, before_send)
        async with self.gate.slot(self.tenant):
            return await self._send(action, params, before_send)

    async def _send(
        self, action: str, params: Mapping[str, str], before_send: BeforeSend | None = None
    ) -> dict[str, Any]:
        if self.rate_limiter is not None:
            await self.rate_limiter.acquire(self.tenant)
        credentials = await self.credentials.get()
        if before_send is not None:
            await before_send()  # may raise: then nothing is sent
        body = signing.canonical_query(params.items()).encode()
        request = self._http.build_request(
            "POST",
            self.endpoint + "/",
            content=body,
            headers={
                "content-type": FORM,
                "accept": "application/json",
                "x-acs-action": action,
                "x-acs-version": API_VERSION,
                "user-agent": self.user_agent,
            },
        )
        auth = auth_for(self.signature, credentials, clock=self._clock, nonce=self._nonce)
        fenced = self.fence() if self.fence is not None else None
        if fenced is not None:
            raise KmsError(code="NotLeader", message=fenced, action=action, retryable=True, maybe_applied=False)
        self.attempts += 1
        started = time.perf_counter()
        code = "Success"
        try:
            try:
                response = await self._http.send(request, auth=auth)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # No connection, so no request: certainly not applied.
                if REFUSED in str(exc):  # the resolved address is forbidden (kms.transport): permanent
                    code = "EndpointNotAllowed"
                    raise KmsError(
                        code=code, message=str(exc), action=action, retryable=False, maybe_applied=False
                    ) from None
                code = "SDK.ServerUnreachable" if isinstance(exc, httpx.ConnectError) else "SDK.Timeout"
                raise KmsTransportError(
                    code=code, message=f"{type(exc).__name__} calling {self.endpoint}", action=action, sent=False
                ) from None
            except httpx.WriteError as exc:
                if FENCED in str(exc):  # the fence closed between our check and the socket (kms.transport)
                    code = "NotLeader"
                    raise KmsError(
                        code=code, message=str(exc), action=action, retryable=True, maybe_applied=False
                    ) from None
                code = "SDK.ConnectionLost"
                raise KmsTransportError(
                    code=code, message=f"{type(exc).__name__} calling {self.endpoint}", action=action
                ) from None
            except httpx.TimeoutException as exc:
                code = "SDK.ReadTimeout" if isinstance(exc, httpx.ReadTimeout) else "SDK.Timeout"
                raise KmsTransportError(
                    code=code, message=f"{type(exc).__name__} calling {self.endpoint}", action=action
                ) from None
            except httpx.TransportError as exc:
                code = "SDK.ConnectionLost"
                raise KmsTransportError(
                    code=code, message=f"{type(exc).__name__} calling {self.endpoint}", action=action
                ) from None
            return self._parse(action, response)
        except KmsError as exc:
            code = exc.code
            raise
        finally:
            if self._observer is not None:
                self._observer(action=action, code=code, seconds=time.perf_counter() - started)

    def _parse(self, action: str, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            raise KmsTransportError(
                code="SDK.InvalidResponse" if response.status_code < 500 else "ServiceUnavailable",
                message=f"HTTP {response.status_code} with a body that is not a JSON object",
                action=action,
            ) from None
        if response.status_code == 200 and "Code" not in body:
            log.debug("KMS %s ok RequestId %s", action, _rid(body))
            return body
        raise KmsApiError(
            code=str(body.get("Code") or body.get("code") or f"HTTP{response.status_code}"),
            message=str(body.get("Message") or body.get("message") or ""),
            request_id=_rid(body),
            host_id=str(body.get("HostId", "")),
            http_status=response.status_code,
            action=action,
        )


def _rid(body: Mapping[str, Any]) -> str:
    return str(body.get("RequestId") or body.get("requestId") or "")
