"""``httpx.Auth`` classes that sign KMS RPC requests.

The client builds each request as ``POST /`` with ``x-acs-action``/``x-acs-version`` headers and
the operation's parameters in a form body; the auth class turns that into what the chosen
algorithm needs. Clock and nonce are injected so tests pin exact signatures; a new request
(every retry) gets a new nonce and timestamp.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import httpx

from secretstage.kms import signing
from secretstage.kms.credentials import Credentials
from secretstage.kms.errors import ConfigurationError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Nonce = Callable[[], str]
FORM = "application/x-www-form-urlencoded"


def _iso8601(clock: Clock) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uuid_nonce() -> str:
    return uuid.uuid4().hex


class _Signer(httpx.Auth):
    requires_request_body = True

    def __init__(self, credentials: Credentials, *, clock: Clock = time.time, nonce: Nonce = _uuid_nonce):
        self.credentials = credentials
        self.clock = clock
        self.nonce = nonce

    def sign(self, request: httpx.Request) -> httpx.Request:
        raise NotImplementedError

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield self.sign(request)


class Acs3HmacSha256Auth(_Signer):
    """ACS3-HMAC-SHA256 ("V3"): signs host, content-type and every x-acs-* header plus the body hash."""

    def sign(self, request: httpx.Request) -> httpx.Request:
        creds = self.credentials
        body = request.content
        request.headers.pop("Authorization", None)
        request.headers["x-acs-date"] = _iso8601(self.clock)
        request.headers["x-acs-signature-nonce"] = self.nonce()
        request.headers["x-acs-content-sha256"] = signing.sha256_hex(body)
        if creds.security_token:
            request.headers["x-acs-security-token"] = creds.security_token
        else:
            request.headers.pop("x-acs-security-token", None)
        names = signing.acs3_signed_header_names(request.headers.multi_items())
        canonical = signing.acs3_canonical_request(
            request.method,
            parse_qsl(request.url.query.decode(), keep_blank_values=True),
            request.headers.multi_items(),
            names,
            request.headers["x-acs-content-sha256"],
            request.url.path,
        )
        # The canonical request holds the security token header; log only its hash.
        log.debug("ACS3 string to sign: %r", signing.acs3_string_to_sign(canonical))
        signature = signing.acs3_signature(canonical, creds.access_key_secret)
        request.headers["Authorization"] = signing.acs3_authorization(creds.access_key_id, names, signature)
        return request


class HmacSha1RpcAuth(_Signer):
    """HMAC-SHA1 RPC signature (SignatureVersion 1.0).

    For a form POST the common parameters, ``SecurityToken`` and ``Signature`` go into the body,
    not the URL: URLs end up in access logs and client debug logs, bodies do not.
    """

    def sign(self, request: httpx.Request) -> httpx.Request:
        creds = self.credentials
        action = request.headers.get("x-acs-action")
        version = request.headers.get("x-acs-version")
        if not action or not version:
            raise ConfigurationError("HMAC-SHA1 signing needs the x-acs-action and x-acs-version headers")
        query = dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
        in_body = request.method == "POST" and request.headers.get("content-type", "").startswith(FORM)
        body = dict(parse_qsl(request.content.decode(), keep_blank_values=True)) if in_body else {}
        common = {
            "Action": action,
            "Version": version,
            "Format": "JSON",
            "AccessKeyId": creds.access_key_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": self.nonce(),
            "Timestamp": _iso8601(self.clock),
        }
        if creds.security_token:
            common["SecurityToken"] = creds.security_token
        target = body if in_body else query
        target.pop("Signature", None)
        target.update(common)
        target["Signature"] = signing.rpc_signature(request.method, {**query, **body}, creds.access_key_secret)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_COPIED}
        return httpx.Request(
            request.method,
            request.url.copy_with(query=signing.canonical_query(query.items()).encode() or None),
            headers=headers,
            content=signing.canonical_query(body.items()).encode() if in_body else request.content,
            extensions=request.extensions,
        )


_NOT_COPIED = {"x-acs-action", "x-acs-version", "content-length"}


def auth_for(
    algorithm: str, credentials: Credentials, *, clock: Clock = time.time, nonce: Nonce = _uuid_nonce
) -> _Signer:
    if algorithm == signing.ACS3_HMAC_SHA256:
        return Acs3HmacSha256Auth(credentials, clock=clock, nonce=nonce)
    if algorithm == signing.HMAC_SHA1:
        return HmacSha1RpcAuth(credentials, clock=clock, nonce=nonce)
    raise ConfigurationError(
        f"signature {algorithm!r} is not supported; use one of {', '.join(signing.SIGNATURE_ALGORITHMS)}"
    )


def check_algorithm(algorithm: str, *, field: str = "signature") -> str:
    if algorithm not in signing.SIGNATURE_ALGORITHMS:
        raise ConfigurationError(
            f"{field} {algorithm!r} is not supported; use one of {', '.join(signing.SIGNATURE_ALGORITHMS)}"
        )
    return algorithm
