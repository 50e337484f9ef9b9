"""Which KMS endpoints a promotion may reach: an allow-list, plus hard blocks against SSRF."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

DEFAULT_ENDPOINT_ALLOW = (r"https://kms(-vpc)?\.[a-z0-9-]+\.aliyuncs\.com",)
# Instance metadata services: never a KMS endpoint, whatever the allow-list says.
_METADATA_HOSTS = {"100.100.100.200", "metadata.google.internal", "metadata"}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_problem(url: str, allow: Sequence[str]) -> str | None:
    """Why ``url`` may not be called, or None. ``allow`` holds regexes matched against the whole URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return f"endpoint {url!r} has no host"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if host in _METADATA_HOSTS or (
        address is not None and (address.is_link_local or address.is_multicast or address.is_unspecified)
    ):
        return f"endpoint host {host} is a link-local or metadata address; it is never allowed"
    if parts.scheme == "http" and not _is_loopback(host):
        return f"plain http is only allowed to loopback (the local emulator), not to {host}; use https"
    if not any(re.fullmatch(pattern, url) for pattern in allow):
        return (
            f"endpoint {url} matches no --endpoint-allow pattern ({', '.join(allow)}); "
            "ask the operator's administrator to allow it"
        )
    return None
