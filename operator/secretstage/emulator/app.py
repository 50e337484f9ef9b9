"""The emulator's HTTP face: KMS's gateway (signature checks, error bodies) in front of ``Store``.

Served by aiohttp on real sockets so Alibaba's official SDK, the CLI and the operator all talk to
it exactly as they would to ``kms.<region>.aliyuncs.com``. Signature checks recompute both
algorithms from the raw request with ``secretstage.kms.signing``; the official-SDK test keeps
that honest (a bug shared by our signer and our verifier would still fail against the SDK).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from secretstage.emulator.identity import IdentityConfig, OidcVerifier, StsDenied
from secretstage.emulator.state import KmsFault, Store
from secretstage.kms import signing

log = logging.getLogger(__name__)

KMS_VERSION = "2016-01-20"
STS_VERSION = "2015-04-01"
KMS_ACTIONS = (
    "CreateSecret",
    "PutSecretValue",
    "GetSecretValue",
    "DescribeSecret",
    "ListSecretVersionIds",
    "UpdateSecretVersionStage",
    "DeleteSecret",
)
MUTATING = {"CreateSecret", "PutSecretValue", "UpdateSecretVersionStage", "DeleteSecret"}
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class GatewayError(Exception):
    """An error of the API gateway (auth, signature, throttling): the POP body shape."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


@dataclass
class Faults:
    """Fault injection for one action (or ``*`` for all). Probabilities are 0..1."""

    throttle: float = 0.0
    unavailable: float = 0.0
    drop: float = 0.0  # close the connection before doing anything
    drop_after: float = 0.0  # do the work, then close the connection without answering
    latency_ms: float = 0.0
    spike_probability: float = 0.0
    spike_ms: float = 0.0
    throttle_first: float = 0.0  # throttle exactly the next N calls (deterministic tests)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Faults:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault settings {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**{k: float(v) for k, v in data.items()})


@dataclass
class AccessKey:
    secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    expiration: float | None = None
    role: str | None = None  # STS credentials of a checked role: limited to the role's current permission policy


@dataclass
class EmulatorConfig:
    timestamp_window: float = 900.0  # ±15 min, as KMS
    nonce_window: float = 31 * 60.0  # the gateway remembers nonces ~31 min
    state_file: str | None = None


class Emulator:
    def __init__(
        self,
        store: Store,
        *,
        config: EmulatorConfig | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.config = config or EmulatorConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self.keys: dict[str, AccessKey] = {}
        self.faults: dict[str, Faults] = {}
        self.nonces: dict[str, float] = {}
        self.calls: Counter[str] = Counter()  # authenticated calls per action, whatever the outcome
        self.applied: Counter[str] = Counter()  # successful mutating calls per action
        self.history: list[dict[str, Any]] = []  # one entry per authenticated call (no secret values)
        # Per secret (as the request named it): calls and successful mutating calls per action. Tests
        # that share one emulator count only what their own secrets saw, never the global counters.
        self.calls_by_secret: dict[str, Counter[str]] = {}
        self.applied_by_secret: dict[str, Counter[str]] = {}
        self.moves_by_secret: dict[str, Counter[str]] = {}  # applied UpdateSecretVersionStage, by stage
        self.in_flight = 0  # requests received and not yet answered (some wait out a latency fault)
        self.sts_exchanges = 0
        self.last_request_ts: list[float] = []  # monotonic arrival times, for rate-limit tests
        # None: no identity configuration, AssumeRoleWithOIDC takes any well-formed JWT and its
        # credentials reach every secret (docs/emulator.md, "STS without identity checks").
        self.identity: OidcVerifier | None = None

    def add_key(
        self,
        access_key_id: str,
        secret: str,
        security_token: str | None = None,
        expiration: float | None = None,
        *,
        role: str | None = None,
    ) -> None:
        self.keys[access_key_id] = AccessKey(secret, security_token, expiration, role)

    def set_identity(self, config: IdentityConfig | None) -> None:
        self.identity = None if config is None else OidcVerifier(config, clock=self.clock)

    # --- aiohttp wiring ---

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/_emulator/state", self.admin_state)
        app.router.add_get("/_emulator/faults", self.admin_get_faults)
        app.router.add_put("/_emulator/faults", self.admin_put_faults)
        app.router.add_get("/_emulator/calls", self.admin_calls)
        app.router.add_post("/_emulator/reset", self.admin_reset_counters)
        app.router.add_put("/_emulator/config", self.admin_put_config)
        app.router.add_put("/_emulator/identity", self.admin_put_identity)
        app.router.add_route("*", "/", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4()).upper()
        raw_body = await request.read()
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        if request.content_type == "application/x-www-form-urlencoded" and raw_body:
            params.update(parse_qsl(raw_body.decode("utf-8", "replace"), keep_blank_values=True))
        action = request.headers.get("x-acs-action") or params.get("Action", "")
        version = request.headers.get("x-acs-version") or params.get("Version", "")
        self.last_request_ts.append(time.monotonic())
        del self.last_request_ts[:-10000]
        self.in_flight += 1
        try:
            return await self._handle(request, request_id, raw_body, params, action, version)
        finally:
            self.in_flight -= 1

    async def _handle(
        self,
        request: web.Request,
        request_id: str,
        raw_body: bytes,
        params: dict[str, str],
        action: str,
        version: str,
    ) -> web.StreamResponse:
        try:
            faults = self.faults.get(action) or self.faults.get("*") or Faults()
            await self._delay(faults)
            if self.rng.random() < faults.drop:
                return await self._drop(request)
            if faults.throttle_first >= 1:
                faults.throttle_first -= 1
                raise GatewayError("Rejected.Throttling", 429, "QPS Limit Exceeded")
            if self.rng.random() < faults.throttle:
                raise GatewayError("Rejected.Throttling", 429, "QPS Limit Exceeded")
            if self.rng.random() < faults.unavailable:
                raise GatewayError(
                    "ServiceUnavailableTemporary", 503, "Service is temporary unavailable, please try again later."
                )
            if action == "AssumeRoleWithOIDC" and version == STS_VERSION:
                return self._ok(await self.assume_role_with_oidc(params, request_id), request_id)
            if action not in KMS_ACTIONS or version != KMS_VERSION:
                raise GatewayError(
                    "InvalidAction.NotFound",
                    404,
                    f"Specified api is not found, please check your url and method. ({action} {version})",
                )
            access_key_id = self.authenticate(request, params, raw_body)
            self.calls[action] += 1
            secret = params.get("SecretName")
            if secret:
                self.calls_by_secret.setdefault(secret, Counter())[action] += 1
            entry: dict[str, Any] = {
                "action": action,
                "request_id": request_id,
                "access_key_id": access_key_id,
                "user_agent": request.headers.get("user-agent", "")[:200],
                "at": time.monotonic(),  # arrival, on this machine's monotonic clock
                "signature": "ACS3-HMAC-SHA256" if "Signature" not in params else "HMAC-SHA1",
                **{
                    k: params[k]
                    for k in ("SecretName", "VersionStage", "MoveToVersion", "RemoveFromVersion", "VersionId")
                    if k in params
                },
            }
            self._record(entry)
            try:
                self.authorize(access_key_id, action, params)
                result = self.dispatch(action, params)
            except KmsFault as fault:
                entry["code"] = fault.code
                raise
            entry["code"] = "Success"
            if action in MUTATING:
                self.applied[action] += 1
                if secret:
                    self.applied_by_secret.setdefault(secret, Counter())[action] += 1
                    if action == "UpdateSecretVersionStage":
                        self.moves_by_secret.setdefault(secret, Counter())[params.get("VersionStage", "")] += 1
                self._persist()
            if self.rng.random() < faults.drop_after:
                return await self._drop(request)
            return self._ok(result, request_id)
        except GatewayError as err:
            body = {
                "RequestId": request_id,
                "HostId": request.host,
                "Code": err.code,
                "Message": err.message,
                "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}&product=Kms&requestId={request_id}",
            }
            return web.json_response(body, status=err.status)
        except KmsFault as fault:
            kms_body: dict[str, Any] = {
                "HttpStatus": fault.status,
                "Code": fault.code,
                "Message": fault.message,
                "RequestId": request_id,
            }
            return web.json_response(kms_body, status=fault.status)

    def _record(self, entry: dict[str, Any]) -> None:
        self.history.append(entry)
        if len(self.history) > 20000:
            del self.history[:-10000]

    async def _delay(self, faults: Faults) -> None:
        delay = faults.latency_ms
        if faults.spike_probability and self.rng.random() < faults.spike_probability:
            delay += faults.spike_ms
        if delay > 0:
            await asyncio.sleep(delay / 1000)

    async def _drop(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # aiohttp treats this as a handler cancelled by a lost client

    @staticmethod
    def _ok(body: dict[str, Any], request_id: str) -> web.Response:
        return web.json_response({**body, "RequestId": request_id})

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime(TIMESTAMP_FORMAT)

    def _persist(self) -> None:
        if self.config.state_file:
            self.store.save(self.config.state_file)

    # --- authentication ---

    def authenticate(self, request: web.Request, params: dict[str, str], raw_body: bytes) -> str:
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith(signing.ACS3_HMAC_SHA256):
            return self._verify_acs3(request, authorization, raw_body)
        if "Signature" in params:
            return self._verify_rpc(request.method, params)
        raise GatewayError("IncompleteSignature", 400, "The request signature does not conform to Aliyun standards.")

    def _key(self, access_key_id: str, security_token: str | None) -> AccessKey:
        key = self.keys.get(access_key_id)
        if key is None:
            raise GatewayError("InvalidAccessKeyId.NotFound", 404, "Specified access key is not found.")
        if key.security_token is not None:
            # inferred codes: STS keys need their own token, and expire
            if security_token != key.security_token:
                raise GatewayError(
                    "InvalidSecurityToken.MismatchWithAccessKey",
                    400,
                    "Specified SecurityToken mismatch with the AccessKey.",
                )
            if key.expiration is not None and key.expiration < self.clock():
                raise GatewayError("InvalidSecurityToken.Expired", 400, "Specified SecurityToken is expired.")
        return key

    def _check_time(self, value: str) -> None:
        try:
            ts = datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise GatewayError(
                "InvalidTimeStamp.Format", 400, "Specified time stamp or date value is not well formatted."
            ) from None
        if abs(ts - self.clock()) > self.config.timestamp_window:
            raise GatewayError("InvalidTimeStamp.Expired", 400, "Specified time stamp or date value is expired.")

    def _use_nonce(self, nonce: str) -> None:
        now = self.clock()
        if len(self.nonces) > 100_000 or (
            self.nonces and next(iter(self.nonces.values())) < now - self.config.nonce_window
        ):
            self.nonces = {n: t for n, t in self.nonces.items() if t >= now - self.config.nonce_window}
        if nonce in self.nonces:
            raise GatewayError("SignatureNonceUsed", 400, "Specified signature nonce was used already.")
        self.nonces[nonce] = now

    @staticmethod
    def _require(params: Mapping[str, str], *names: str) -> None:
        for name in names:
            if not params.get(name):
                raise GatewayError(
                    "MissingParameter",
                    400,
                    f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
                )

    def _verify_rpc(self, method: str, params: dict[str, str]) -> str:
        self._require(params, "AccessKeyId", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp")
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise GatewayError(
                "InvalidParameter.SignatureMethod", 400, "SignatureMethod must be HMAC-SHA1 with SignatureVersion 1.0."
            )
        self._check_time(params["Timestamp"])
        key = self._key(params["AccessKeyId"], params.get("SecurityToken"))
        expected = signing.rpc_signature(method, params, key.secret)
        try:
            given = base64.b64decode(params["Signature"], validate=True)
        except (binascii.Error, ValueError):
            given = b""
        if not hmac.compare_digest(given, base64.b64decode(expected)):
            # Real KMS echoes its string to sign; clients must not log it (our client strips it).
            raise GatewayError(
                "SignatureDoesNotMatch",
                400,
                "Specified signature is not matched with our calculation. server string to sign is:"
                + signing.rpc_string_to_sign(method, params),
            )
        self._use_nonce(params["SignatureNonce"])
        return params["AccessKeyId"]

    def _verify_acs3(self, request: web.Request, authorization: str, raw_body: bytes) -> str:
        try:
            fields = signing.parse_acs3_authorization(authorization)
        except ValueError as exc:
            raise GatewayError(
                "IncompleteSignature", 400, f"The request signature does not conform to Aliyun standards: {exc}"
            ) from None
        headers = {k.lower(): v for k, v in request.headers.items()}
        for name in ("x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce"):
            if not headers.get(name):
                raise GatewayError(
                    "MissingParameter", 400, f'The input header "{name}" that is mandatory is not supplied.'
                )
        signed = [h for h in fields["SignedHeaders"].split(";") if h]
        unsigned = [h for h in headers if (h == "host" or h.startswith("x-acs-")) and h not in signed]
        if unsigned or any(h not in headers for h in signed):
            raise GatewayError(
                "IncompleteSignature", 400, f"Headers must be signed and present: {sorted(unsigned) or signed}"
            )
        payload_hash = headers.get("x-acs-content-sha256") or signing.sha256_hex(raw_body)
        if payload_hash != signing.sha256_hex(raw_body):
            raise GatewayError("SignatureDoesNotMatch", 400, "x-acs-content-sha256 does not match the request body.")
        self._check_time(headers["x-acs-date"])
        key = self._key(fields["Credential"], headers.get("x-acs-security-token"))
        canonical = signing.acs3_canonical_request(
            request.method,
            parse_qsl(request.query_string, keep_blank_values=True),
            headers,
            signed,
            payload_hash,
            request.path,
        )
        expected = signing.acs3_signature(canonical, key.secret)
        if not hmac.compare_digest(expected, fields["Signature"].lower()):
            raise GatewayError(
                "SignatureDoesNotMatch",
                400,
                "Specified signature is not matched with our calculation. server string to sign is:"
                + signing.acs3_string_to_sign(canonical),
            )
        self._use_nonce(headers["x-acs-signature-nonce"])
        return fields["Credential"]

    # --- authorization ---

    def authorize(self, access_key_id: str, action: str, params: Mapping[str, str]) -> None:
        """A role's STS credentials reach only what the role's permission policy allows."""
        key = self.keys[access_key_id]
        if key.role is None:
            return  # a static key or an unchecked-STS key: the account's own, everything allowed
        # As RAM: the role's policy as it is now, not as it was when the session began.
        role = self.identity.config.roles.get(key.role) if self.identity is not None else None
        permissions = role.permissions if role is not None else None
        name = params.get("SecretName", "")
        if name.startswith("acs:kms:"):
            resource = name
        else:
            resource = f"acs:kms:{self.store.region}:{self.store.account}:secret/{name}" if name else "*"
        if permissions is None or not permissions.allows(f"kms:{action}", resource=resource):
            # Code and HTTP status as KMS's error table; the message is inferred (docs/emulator.md).
            raise KmsFault("Forbidden.NoPermission", 403, "This operation is forbidden by permission system.")

    # --- operations ---

    def dispatch(self, action: str, p: dict[str, str]) -> dict[str, Any]:
        store, now = self.store, self._now_iso()
        name = p.get("SecretName", "")
        if action != "CreateSecret" and not name:
            raise KmsFault("MissingParameter", 400, "The input parameter SecretName that is mandatory is not supplied")
        if action == "UpdateSecretVersionStage":
            secret = store.update_secret_version_stage(
                name, p.get("VersionStage", ""), p.get("MoveToVersion") or None, p.get("RemoveFromVersion") or None, now
            )
            return {"SecretName": secret.name}
        if action == "ListSecretVersionIds":
            secret, versions = store.list_versions(name, p.get("IncludeDeprecated", "false").lower() == "true")
            page = _positive_int(p.get("PageNumber"), 1, "PageNumber")
            size = min(_positive_int(p.get("PageSize"), 20, "PageSize"), 100)
            chunk = versions[(page - 1) * size : page * size]
            return {
                "SecretName": secret.name,
                "TotalCount": len(versions),
                "PageNumber": page,
                "PageSize": size,
                "VersionIds": {
                    "VersionId": [
                        {
                            "VersionId": v.version_id,
                            "CreateTime": v.create_time,
                            "VersionStages": {"VersionStage": list(v.stages)},
                        }
                        for v in chunk
                    ]
                },
            }
        if action == "DescribeSecret":
            secret = store.resolve(name)
            return {
                "SecretName": secret.name,
                "Arn": secret.arn,
                "SecretType": "Generic",
                "Description": secret.description,
                "EncryptionKeyId": "",
                "CreateTime": secret.create_time,
                "UpdateTime": secret.update_time,
                "AutomaticRotation": "Disabled",
            }
        if action == "GetSecretValue":
            secret, version = store.get_value(name, p.get("VersionId") or None, p.get("VersionStage") or None)
            return {
                "SecretName": secret.name,
                "SecretType": "Generic",
                "SecretData": version.data,
                "SecretDataType": version.data_type,
                "VersionId": version.version_id,
                "CreateTime": version.create_time,
                "VersionStages": {"VersionStage": list(version.stages)},
            }
        if action == "PutSecretValue":
            stages = _json_list(p["VersionStages"]) if p.get("VersionStages") else None
            version = store.put_secret_value(
                name, p.get("VersionId", ""), p.get("SecretData", ""), p.get("SecretDataType", "text"), stages, now
            )
            return {
                "SecretName": store.resolve(name).name,
                "VersionId": version.version_id,
                "VersionStages": {"VersionStage": list(version.stages)},
            }
        if action == "CreateSecret":
            secret = store.create_secret(
                name,
                p.get("VersionId", ""),
                p.get("SecretData", ""),
                p.get("SecretDataType", "text"),
                p.get("Description", ""),
                now,
            )
            return {
                "SecretName": secret.name,
                "Arn": secret.arn,
                "SecretType": "Generic",
                "VersionId": secret.versions[0].version_id,
                "AutomaticRotation": "Disabled",
            }
        if action == "DeleteSecret":
            secret = store.delete_secret(name)
            return {"SecretName": secret.name, "PlannedDeleteTime": now}
        raise AssertionError(action)

    async def assume_role_with_oidc(self, p: dict[str, str], request_id: str) -> dict[str, Any]:
        """Anonymous STS exchange; issues real, expiring credentials that this emulator then accepts.

        With an identity configuration the token and the role's trust policy are checked for real
        (``identity.OidcVerifier``) and the credentials carry the role's permission policy.
        """
        entry: dict[str, Any] = {
            "action": "AssumeRoleWithOIDC",
            "request_id": request_id,
            "role": p.get("RoleArn", ""),
            "at": time.monotonic(),
        }
        self._record(entry)
        try:
            self._require(p, "RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName")
            token = p["OIDCToken"]
            if token.count(".") != 2 or not 4 <= len(token) <= 20000:
                raise GatewayError("InvalidParameter.OIDCToken", 400, "The parameter OIDCToken is not a valid JWT.")
            if not p["RoleArn"].startswith("acs:ram::") or ":role/" not in p["RoleArn"]:
                raise GatewayError("InvalidParameter.RoleArn", 400, "The parameter RoleArn is wrongly formed.")
            duration = _positive_int(p.get("DurationSeconds"), 3600, "DurationSeconds")
            if not 900 <= duration <= 43200:
                raise GatewayError(
                    "InvalidParameter.DurationSeconds", 400, "DurationSeconds must be between 900 and 43200."
                )
            if self.identity is not None:
                try:
                    verified = await self.identity.verify(p["RoleArn"], p["OIDCProviderArn"], token)
                except StsDenied as denied:
                    raise GatewayError(denied.code, denied.status, denied.message) from None
                entry["subject"] = verified.subject
        except GatewayError as err:
            entry["code"] = err.code
            raise
        entry["code"] = "Success"
        expiration = self.clock() + duration
        ak = "STS." + uuid.uuid4().hex[:24]
        secret = uuid.uuid4().hex + uuid.uuid4().hex
        token_value = "CAIS" + base64.b64encode(uuid.uuid4().bytes * 4).decode()
        checked_role = p["RoleArn"] if self.identity is not None else None
        self.add_key(ak, secret, token_value, expiration, role=checked_role)
        entry["access_key_id"] = ak
        self.sts_exchanges += 1
        role = p["RoleArn"].split(":role/", 1)[1]
        return {
            "Credentials": {
                "AccessKeyId": ak,
                "AccessKeySecret": secret,
                "SecurityToken": token_value,
                "Expiration": datetime.fromtimestamp(expiration, UTC).strftime(TIMESTAMP_FORMAT),
            },
            "AssumedRoleUser": {
                "Arn": f"{p['RoleArn']}/{p['RoleSessionName']}",
                "AssumedRoleId": f"3{request_id[:17]}:{role}",
            },
            "SourceIdentity": "",
        }

    # --- admin endpoints (test tooling; bind the emulator to loopback) ---

    def placement(self) -> dict[str, dict[str, list[str]]]:
        return {s.name: {v.version_id: list(v.stages) for v in s.versions} for s in self.store.secrets.values()}

    async def admin_state(self, request: web.Request) -> web.Response:
        return web.json_response({**self.store.switches(), "secrets": self.placement()})

    async def admin_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response({k: asdict(v) for k, v in self.faults.items()})

    async def admin_put_faults(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            self.faults = {action: Faults.from_json(cfg) for action, cfg in data.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({k: asdict(v) for k, v in self.faults.items()})

    async def admin_calls(self, request: web.Request) -> web.Response:
        secret = request.query.get("secret")
        if secret is not None:  # one secret's counters (as requests named it)
            return web.json_response(
                {
                    "calls": dict(self.calls_by_secret.get(secret, {})),
                    "applied": dict(self.applied_by_secret.get(secret, {})),
                    "moves": dict(self.moves_by_secret.get(secret, {})),
                    "in_flight": self.in_flight,
                }
            )
        return web.json_response(
            {
                "calls": dict(self.calls),
                "applied": dict(self.applied),
                "sts_exchanges": self.sts_exchanges,
                "history": self.history[-1000:],
                "arrivals": self.last_request_ts[-10000:],
                "in_flight": self.in_flight,
            }
        )

    async def admin_reset_counters(self, request: web.Request) -> web.Response:
        self.calls.clear()
        self.applied.clear()
        self.history.clear()
        self.calls_by_secret.clear()
        self.applied_by_secret.clear()
        self.moves_by_secret.clear()
        self.sts_exchanges = 0
        return web.json_response({})

    async def admin_put_identity(self, request: web.Request) -> web.Response:
        """Replace the identity configuration (the --identity-config format, as JSON; null = checks off)."""
        try:
            data = await request.json()
            self.set_identity(None if data is None else IdentityConfig.from_dict(data))
        except (ValueError, OSError) as exc:  # PolicyError is a ValueError
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"identityChecks": self.identity is not None})

    async def admin_put_config(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object of settings")
            self.store.configure(**data)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.store.switches())


def _positive_int(value: str | None, default: int, name: str) -> int:
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise KmsFault("InvalidParameter", 400, f"{name} must be a positive integer")
    return number


def _json_list(value: str) -> list[str]:
    try:
        items = json.loads(value)
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise KmsFault("InvalidParameter", 400, 'VersionStages must be a JSON array of strings, e.g. ["ACSCurrent"]')
    return items
