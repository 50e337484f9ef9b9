"""Which KMS endpoints a promotion may reach: an allow-list, plus hard blocks against SSRF.

The blocks on addresses (every spelling of metadata, link-local and loopback addresses) are in
``secretstage.netpolicy``; the same rules are applied again at connect time to whatever a host
name resolves to (``kms.transport``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from secretstage.netpolicy import host_problem, names_loopback
from secretstage.regions import REGION

# The shared gateways of a region (secretstage.regions: why the region's form matters here too).
DEFAULT_ENDPOINT_ALLOW = (rf"https://kms(-vpc)?\.{REGION}\.aliyuncs\.com",)


# A pattern in which every "." is escaped (\.), inside a [class], or a wildcard with a quantifier (.*, .+).
_DOTS_MEANT = re.compile(r"(?:[^\\.\[]|\\.|\.[*+?{]|\[[^\]]*\])*")


def allow_pattern_problem(pattern: str) -> str | None:
    """Why an --endpoint-allow pattern is dangerous, or None.

    A bare "." matches any character: kms.cn-hangzhou.aliyuncs.com also admits kms.cn-hangzhouxaliyuncs.com,
    a domain anyone can register. It is nearly always a lost backslash (``helm --set`` drops them).
    """
    if _DOTS_MEANT.fullmatch(pattern):
        return None
    return (
        f"{pattern!r} has an unescaped '.', which matches any character (so kms.cn-hangzhou.aliyuncs.com "
        "would also admit kms.cn-hangzhouxaliyuncs.com); write it as \\. — helm --set drops single "
        "backslashes, so give the list in a values file in single quotes, or with --set-json"
    )


def endpoint_problem(url: str, allow: Sequence[str]) -> str | None:
    """Why ``url`` may not be called, or None. ``allow`` holds regexes matched against the whole URL."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return f"endpoint {url!r} has no host"
    problem = host_problem(host)
    if problem is not None:
        return f"endpoint host {problem}"
    if parts.scheme == "http" and not names_loopback(host):
        return f"plain http is only allowed to loopback (the local emulator), not to {host}; use https"
    if not any(re.fullmatch(pattern, url) for pattern in allow):
        return (
            f"endpoint {url} matches no --endpoint-allow pattern ({', '.join(allow)}); "
            "ask the operator's administrator to allow it"
        )
    return None


def proxy_problem(url: str) -> str | None:
    """Why ``url`` cannot be the operator's egress proxy for KMS and STS, or None.

    The proxy's own addresses are checked again at connect time (``kms.transport``), as an endpoint's
    are; the endpoint is still checked against the allow-list, and is resolved by the proxy.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not a proxy URL; give it as http://HOST:PORT (e.g. http://10.0.0.8:3128)"
    if parts.username or parts.password:
        return (
            "a user or password in the proxy URL would show in the pod spec and in ps; use a proxy that "
            "authorizes the operator by its source address"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{url!r} must have no path, query or fragment"
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port == -1 or port == 0:
        return f"{url!r} has an invalid port"
    problem = host_problem(parts.hostname)
    return f"proxy host {problem}" if problem is not None else None
