"""Where KMS lives: region -> shared-gateway URL, VPC variant, or an explicit URL."""

from __future__ import annotations

import re
import string
from urllib.parse import urlsplit

from secretstage.kms.errors import ConfigurationError
from secretstage.regions import GEOGRAPHIES, REGION, is_region


def validate_region(region: str, *, field: str = "regionId") -> str:
    if not is_region(region):
        raise ConfigurationError(
            f"{field} {region!r} is not an Alibaba Cloud region ID; use the form cn-hangzhou or ap-southeast-1 "
            f"(it starts with one of {', '.join(GEOGRAPHIES)}); for anything else give the endpoint URL"
        )
    return region


PUBLIC_TEMPLATE = "https://kms.{regionId}.aliyuncs.com"
VPC_TEMPLATE = "https://kms-vpc.{regionId}.aliyuncs.com"
#: Names for the two shared gateways; anything else is a URL template (``{regionId}`` optional).
ENDPOINT_TEMPLATES = {"public": PUBLIC_TEMPLATE, "vpc": VPC_TEMPLATE}


#: A KMS instance's dedicated gateway (``kst-....cryptoservice.kms.aliyuncs.com``). It serves the
#: cryptographic operations and GetSecretValue only; the management operations the operator calls
#: (UpdateSecretVersionStage, ListSecretVersionIds) are served by the shared gateways alone.
_DEDICATED_GATEWAY = re.compile(r"(?:[a-z0-9-]+\.)*cryptoservice\.kms\.aliyuncs\.com\.?")


def management_endpoint_problem(url: str) -> str | None:
    """Why ``url`` cannot serve UpdateSecretVersionStage and ListSecretVersionIds, or None."""
    host = (urlsplit(url.strip().replace("{regionId}", "cn-hangzhou")).hostname or "").lower()
    if _DEDICATED_GATEWAY.fullmatch(host):
        return (
            f"{host} is a KMS instance's dedicated gateway, which serves cryptographic operations and "
            "GetSecretValue only; UpdateSecretVersionStage and ListSecretVersionIds go to the shared gateway: "
            "public (https://kms.<region>.aliyuncs.com) or, without internet egress, vpc "
            "(https://kms-vpc.<region>.aliyuncs.com)"
        )
    return None


def endpoint_template(value: str, *, field: str = "endpoint template") -> str:
    """``public``, ``vpc``, or a URL with an optional ``{regionId}`` placeholder (a private endpoint
    or proxy for every region has none); returned as a URL template."""
    template = ENDPOINT_TEMPLATES.get(value.strip().lower(), value.strip())
    problem = management_endpoint_problem(template)
    if problem is not None:
        raise ConfigurationError(f"{field} {value!r}: {problem}")
    unknown = {name for _, name, _, _ in string.Formatter().parse(template) if name} - {"regionId"}
    if unknown:
        raise ConfigurationError(
            f"{field} {value!r} has the placeholder(s) {sorted(unknown)}; the only one is {{regionId}}, "
            "e.g. https://kms-vpc.{regionId}.aliyuncs.com (or give public or vpc)"
        )
    normalize_endpoint(template.format(regionId="cn-hangzhou"), field=field)
    return template


def kms_endpoint(region: str, *, template: str = PUBLIC_TEMPLATE) -> str:
    """The endpoint for ``region``: by default the public gateway ``https://kms.<region>.aliyuncs.com``."""
    validate_region(region)
    return template.format(regionId=region)


_GATEWAY_HOST = re.compile(rf"kms(?:-vpc)?\.({REGION})\.aliyuncs\.com")


def region_of(endpoint: str) -> str | None:
    """The region a KMS gateway URL serves (public ``kms.<region>`` or VPC ``kms-vpc.<region>``),
    else None: for any other host (a dedicated instance, a proxy, the emulator) it is not known."""
    host = (urlsplit(endpoint.strip()).hostname or "").lower().rstrip(".")
    match = _GATEWAY_HOST.fullmatch(host)
    return match.group(1) if match else None


def normalize_endpoint(url: str, *, field: str = "endpoint") -> str:
    """Check an explicit endpoint URL and return it as ``scheme://host[:port]`` with no path or query.
    Every caller calls management operations there, so a KMS instance's gateway is refused."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{field} {url!r} is not a URL; give it as https://kms.<region>.aliyuncs.com "
            "(or http://127.0.0.1:PORT for the local emulator)"
        )
    if parts.username or parts.password:
        raise ConfigurationError(f"{field} must not contain user info; credentials come from a Secret")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(f"{field} {url!r} must have no path, query or fragment; RPC calls go to /")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"{field} {url!r} has an invalid port") from None
    problem = management_endpoint_problem(url)
    if problem is not None:
        raise ConfigurationError(f"{field} {url!r}: {problem}")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def resolve_endpoint(*, region: str | None = None, endpoint: str | None = None, template: str = PUBLIC_TEMPLATE) -> str:
    """An explicit endpoint wins; otherwise the region's endpoint from the template."""
    if endpoint:
        return normalize_endpoint(endpoint)
    if region:
        return kms_endpoint(region, template=template)
    raise ConfigurationError("either an endpoint URL or a regionId is needed to reach KMS; set one of them")
