"""Reads from the Kubernetes API that the operator needs besides kopf's own: credentials Secrets.

The official ``kubernetes`` client is synchronous; there is one read per promotion attempt, so it
runs in a worker thread rather than adding a second async Kubernetes client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from secretstage.kms import Credentials

KEY_ID, KEY_SECRET, KEY_TOKEN = "AccessKeyId", "AccessKeySecret", "SecurityToken"
LIMITS = {KEY_ID: 128, KEY_SECRET: 256, KEY_TOKEN: 16384}
ACCESS_KEY_ID = re.compile(r"^[A-Za-z0-9.]{1,128}$")
PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
ALLOWED_TYPES = ("", "Opaque")


class CredentialsNotFound(Exception):
    """The Secret does not exist (yet): wait for it."""


class CredentialsUnavailable(Exception):
    """The Secret could not be read right now (API error, RBAC): retry."""


class CredentialsInvalid(Exception):
    """The Secret exists but cannot be used; the message names the key and the fix, never a value."""


def _decode(secret_name: str, data: Mapping[str, Any], key: str, required: bool) -> str | None:
    raw = data.get(key)
    if raw is None or raw == "":
        if required:
            raise CredentialsInvalid(f"Secret {secret_name} has no {key} key (or it is empty); add {key}")
        return None
    try:
        value = base64.b64decode(raw, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        raise CredentialsInvalid(
            f"Secret {secret_name} key {key} is not UTF-8 text; store the value as plain text"
        ) from None
    if not value:
        if required:
            raise CredentialsInvalid(f"Secret {secret_name} key {key} is empty; set it")
        return None
    if len(value) > LIMITS[key]:
        raise CredentialsInvalid(
            f"Secret {secret_name} key {key} is longer than {LIMITS[key]} characters; "
            "check that it holds the right value"
        )
    if not PRINTABLE.match(value) or (key == KEY_ID and not ACCESS_KEY_ID.match(value)):
        raise CredentialsInvalid(
            f"Secret {secret_name} key {key} contains characters an Alibaba Cloud "
            "credential never has; check the value (no spaces or control characters)"
        )
    return value


def credentials_from_secret(secret: k8s.V1Secret) -> Credentials:
    name = str(secret.metadata.name) if secret.metadata else "?"
    if (secret.type or "") not in ALLOWED_TYPES:
        raise CredentialsInvalid(f"Secret {name} has type {secret.type}; credentials must be in an Opaque Secret")
    data = secret.data or {}
    key_id = _decode(name, data, KEY_ID, True)
    key_secret = _decode(name, data, KEY_SECRET, True)
    token = _decode(name, data, KEY_TOKEN, False)
    assert key_id is not None
    assert key_secret is not None
    return Credentials(key_id, key_secret, token, source=f"secret/{name}")


async def read_credentials(core: k8s.CoreV1Api, namespace: str, name: str) -> Credentials:
    try:
        secret = await asyncio.to_thread(core.read_namespaced_secret, name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise CredentialsNotFound(
                f"Secret {namespace}/{name} not found; create it with keys AccessKeyId "
                "and AccessKeySecret (and SecurityToken for STS credentials)"
            ) from None
        raise CredentialsUnavailable(f"cannot read Secret {namespace}/{name}: HTTP {exc.status} {exc.reason}") from None
    except Exception as exc:  # connection errors and the like: transient
        raise CredentialsUnavailable(f"cannot read Secret {namespace}/{name}: {type(exc).__name__}") from None
    return credentials_from_secret(secret)
