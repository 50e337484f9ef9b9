"""Pure signing functions for Alibaba Cloud RPC APIs.

Two algorithms, both accepted by KMS (../docs/development/kms.md):

* ``ACS3-HMAC-SHA256`` ("V3"): canonical request -> SHA-256 -> HMAC-SHA256, sent in the
  ``Authorization`` header. Default, as in Alibaba's current SDKs.
* ``HMAC-SHA1`` (RPC ``SignatureVersion=1.0``): canonicalized parameters -> HMAC-SHA1 with
  ``secret + "&"``, sent as the ``Signature`` parameter.

No I/O, no clock: callers pass every input, so each step can be pinned by a test vector.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import quote

ACS3_HMAC_SHA256 = "ACS3-HMAC-SHA256"
HMAC_SHA1 = "HMAC-SHA1"
SIGNATURE_ALGORITHMS = (ACS3_HMAC_SHA256, HMAC_SHA1)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Alibaba specifies it: keep ``A-Za-z0-9-_.~``, ``%XY`` the rest (space is ``%20``)."""
    return quote(value, safe="~")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Sort by raw name (code point order, as Alibaba's util), encode name and value, join with ``&``."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params))


# --- HMAC-SHA1, SignatureVersion 1.0 -----------------------------------------------------------


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``METHOD&%2F&percentEncode(canonicalized query)``; the ``Signature`` parameter is never signed."""
    query = canonical_query((k, v) for k, v in params.items() if k != "Signature")
    return f"{method.upper()}&%2F&{percent_encode(query)}"


def rpc_signature(method: str, params: Mapping[str, str], access_key_secret: str) -> str:
    """Base64(HMAC-SHA1(key=secret + "&", string to sign))."""
    key = (access_key_secret + "&").encode()
    digest = hmac.new(key, rpc_string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# --- ACS3-HMAC-SHA256 ---------------------------------------------------------------------------


Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def _header_pairs(headers: Headers) -> Iterable[tuple[str, str]]:
    return headers.items() if isinstance(headers, Mapping) else headers


def acs3_signed_header_names(headers: Headers) -> list[str]:
    """``host``, ``content-type`` and every ``x-acs-*`` header, lower-cased and sorted."""
    names = {k.lower() for k, _ in _header_pairs(headers)}
    return sorted(n for n in names if n in ("host", "content-type") or n.startswith("x-acs-"))


def acs3_canonical_request(
    method: str,
    query: Iterable[tuple[str, str]],
    headers: Headers,
    signed_header_names: list[str],
    hashed_payload: str,
    path: str = "/",
) -> str:
    """``METHOD\\nURI\\nQUERY\\nHEADERS\\nSIGNED_HEADERS\\nHASHED_PAYLOAD``.

    Header values are trimmed; a header sent more than once contributes its values sorted and
    joined with ``,`` (as Alibaba's util does).
    """
    values: dict[str, list[str]] = {}
    for name, value in _header_pairs(headers):
        values.setdefault(name.lower(), []).append(value.strip())
    canonical_headers = "".join(f"{name}:{','.join(sorted(values[name]))}\n" for name in signed_header_names)
    return "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query(query),
            canonical_headers,
            ";".join(signed_header_names),
            hashed_payload,
        ]
    )


def acs3_string_to_sign(canonical_request: str) -> str:
    return f"{ACS3_HMAC_SHA256}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"


def acs3_signature(canonical_request: str, access_key_secret: str) -> str:
    """lowerhex(HMAC-SHA256(key=secret, string to sign)); unlike V1 the key has no ``&``."""
    string_to_sign = acs3_string_to_sign(canonical_request)
    return hmac.new(access_key_secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def acs3_authorization(access_key_id: str, signed_header_names: list[str], signature: str) -> str:
    return (
        f"{ACS3_HMAC_SHA256} Credential={access_key_id},"
        f"SignedHeaders={';'.join(signed_header_names)},Signature={signature}"
    )


def parse_acs3_authorization(value: str) -> dict[str, str]:
    """Split ``ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..``; raises ValueError when malformed."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ACS3_HMAC_SHA256 or not rest:
        raise ValueError("Authorization header is not ACS3-HMAC-SHA256")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, val = part.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed Authorization field {name!r}")
        fields[name] = val
    missing = {"Credential", "SignedHeaders", "Signature"} - fields.keys()
    if missing:
        raise ValueError(f"Authorization header lacks {', '.join(sorted(missing))}")
    return fields


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
