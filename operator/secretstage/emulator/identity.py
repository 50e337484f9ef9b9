"""The emulator's RAM side: OIDC providers, roles, and the checks STS AssumeRoleWithOIDC makes.

With an identity configuration (``secretstage emulator --identity-config FILE`` or
``PUT /_emulator/identity``) an OIDC token is checked as RAM checks it: the provider must be
registered; the token's signature must verify against the provider's published keys (its JWKS,
e.g. a kube-apiserver's ``/openid/v1/jwks``); ``iss`` must be the provider's issuer URL, ``aud`` one
of its client IDs, ``exp`` in the future; and the role's trust policy must allow this provider and
these claims. The credentials issued then reach only what the role's permission policy names.

Error codes and messages are those of Alibaba's STS error page and ACK's RRSA troubleshooting table
(docs/emulator.md lists them with their sources).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import yaml

from secretstage.emulator.ram import PolicyDocument, PolicyError

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
JWKS_REFETCH_INTERVAL = 5.0  # an unknown kid refetches the keys at most this often (key rotation)


class StsDenied(Exception):
    """An STS refusal, in the gateway's error shape."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def _invalid(message: str) -> StsDenied:
    return StsDenied("AuthenticationFail.OIDCToken.Invalid", 401, message)


@dataclass(frozen=True)
class OidcProvider:
    arn: str
    issuer: str
    client_ids: tuple[str, ...]
    jwks_url: str | None = None
    jwks: Mapping[str, Any] | None = None  # static keys (jwksFile), instead of jwksUrl
    ca_file: str | None = None


@dataclass(frozen=True)
class Role:
    arn: str
    trust: PolicyDocument
    permissions: PolicyDocument | None  # None: no permission policy attached, so every KMS call is denied


@dataclass(frozen=True)
class IdentityConfig:
    providers: Mapping[str, OidcProvider]
    roles: Mapping[str, Role]

    @classmethod
    def from_dict(cls, data: Any, base_dir: Path | None = None) -> IdentityConfig:
        if not isinstance(data, Mapping):
            raise PolicyError("the identity configuration must be an object with oidcProviders and roles")
        unknown = set(data) - {"oidcProviders", "roles"}
        if unknown:
            raise PolicyError(f"unknown identity settings {sorted(unknown)}; known: oidcProviders, roles")
        providers: dict[str, OidcProvider] = {}
        for i, raw in enumerate(data.get("oidcProviders") or []):
            provider = _provider(raw, f"oidcProviders[{i}]", base_dir)
            providers[provider.arn] = provider
        roles: dict[str, Role] = {}
        for i, raw in enumerate(data.get("roles") or []):
            where = f"roles[{i}]"
            if not isinstance(raw, Mapping) or not str(raw.get("arn", "")).startswith("acs:ram::"):
                raise PolicyError(f"{where}.arn must be a role ARN, acs:ram::<account>:role/<name>")
            arn = str(raw["arn"])
            trust = PolicyDocument.parse(raw.get("trustPolicy"), f"{where}.trustPolicy", trust=True)
            policy = raw.get("policy")
            permissions = PolicyDocument.parse(policy, f"{where}.policy", trust=False) if policy else None
            roles[arn] = Role(arn, trust, permissions)
        return cls(providers, roles)

    @classmethod
    def load(cls, path: str) -> IdentityConfig:
        return cls.from_dict(_read_yaml(path), Path(path).resolve().parent)


def _provider(raw: Any, where: str, base_dir: Path | None) -> OidcProvider:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be an object")
    arn = str(raw.get("arn", ""))
    if not arn.startswith("acs:ram::") or ":oidc-provider/" not in arn:
        raise PolicyError(f"{where}.arn must be an OIDC provider ARN, acs:ram::<account>:oidc-provider/<name>")
    issuer = raw.get("issuerUrl")
    if not isinstance(issuer, str) or not issuer.startswith("https://"):
        raise PolicyError(f"{where}.issuerUrl must be the issuer's https URL (the tokens' iss claim)")
    client_ids = raw.get("clientIds") or ["sts.aliyuncs.com"]
    if not isinstance(client_ids, list) or not all(isinstance(c, str) and c for c in client_ids):
        raise PolicyError(f"{where}.clientIds must be a list of audiences, e.g. [sts.aliyuncs.com]")

    def path(key: str) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        resolved = Path(str(value))
        return str(resolved if resolved.is_absolute() or base_dir is None else base_dir / resolved)

    jwks_url, jwks_file = raw.get("jwksUrl"), path("jwksFile")
    if bool(jwks_url) == bool(jwks_file):
        raise PolicyError(f"{where}: set exactly one of jwksUrl (fetched, e.g. <issuer>/openid/v1/jwks) or jwksFile")
    jwks = None
    if jwks_file:
        jwks = _read_yaml(jwks_file)
    return OidcProvider(arn, issuer, tuple(client_ids), jwks_url, jwks, path("caFile"))


def _read_yaml(path: str) -> Any:
    """YAML or JSON; a file that is neither is a PolicyError naming it."""
    with open(path, encoding="utf-8") as f:
        try:
            return yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{path} is not YAML or JSON: {exc}") from None


@dataclass
class _Keys:
    keys: jwt.PyJWKSet | None = None
    fetched_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Verified:
    role: Role
    subject: str
    issuer: str
    audience: str


class OidcVerifier:
    """AssumeRoleWithOIDC's checks against one identity configuration."""

    def __init__(self, config: IdentityConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._keys: dict[str, _Keys] = {}

    async def verify(self, role_arn: str, provider_arn: str, token: str) -> Verified:
        provider = self.config.providers.get(provider_arn)
        if provider is None:
            raise StsDenied("AuthenticationFail.NoPermission", 401, "No such OIDC Provider registered.")
        role = self.config.roles.get(role_arn)
        if role is None:
            raise StsDenied("EntityNotExist.Role", 404, f"The role not exists: {role_arn}.")
        if token.count(".") != 2:
            raise _invalid("The number of Jwt field should be divided into 3 parts with '.' .")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise _invalid("Cannot decode base64 encoded response(format invalided).") from None
        algorithm = str(header.get("alg", ""))
        if algorithm not in ALGORITHMS:
            raise _invalid(f"The algorithm {algorithm} that be specified in Jwt header is unknown.")
        claims = await self._verified_claims(provider, token, algorithm, header.get("kid"))
        if claims.get("iss") != provider.issuer:
            raise StsDenied(
                "AuthenticationFail.OIDCToken.IssuerNotMatch",
                401,
                "The issuer in the OIDC Token doesn't match the OIDC Provider registered.",
            )
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
        audience = next((a for a in audiences if a in provider.client_ids), None)
        if audience is None:
            raise StsDenied("AuthenticationFail.OIDCToken.AudienceNotMatch", 401, "Invalid audience.")
        subject = str(claims.get("sub", ""))
        context = {"oidc:iss": provider.issuer, "oidc:aud": audience, "oidc:sub": subject}
        if not role.trust.allows("sts:AssumeRole", principal=("Federated", provider.arn), context=context):
            raise StsDenied("AuthenticationFail.NoPermission", 401, "There is no permission")
        return Verified(role, subject, provider.issuer, audience)

    async def _verified_claims(self, provider: OidcProvider, token: str, algorithm: str, kid: object) -> dict[str, Any]:
        keys = await self._candidate_keys(provider, kid)
        if not keys:
            raise StsDenied(
                "AuthenticationFail.OIDCToken.InvalidSignature", 401, "OIDC token validate failed: invalid signature."
            )
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[algorithm],
                    # exp, iss and aud are checked below against this emulator's clock and config
                    options={"verify_exp": False, "verify_aud": False, "verify_iss": False, "verify_nbf": False},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                raise _invalid("The Jwt content is invalid that cannot be recognized.") from None
            break
        else:
            raise StsDenied(
                "AuthenticationFail.OIDCToken.InvalidSignature", 401, "OIDC token validate failed: invalid signature."
            )
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise _invalid("The Jwt content is invalid that cannot be recognized.")
        if exp <= self.clock():
            raise StsDenied("AuthenticationFail.OIDCToken.Expired", 401, "This JsonWebToken is expired.")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf > self.clock() + 60:
            raise _invalid("The Jwt content is invalid that cannot be recognized.")
        return claims

    async def _candidate_keys(self, provider: OidcProvider, kid: object) -> list[jwt.PyJWK]:
        state = self._keys.setdefault(provider.arn, _Keys())
        async with state.lock:
            if state.keys is None or (
                self._pick(state.keys, kid) == [] and self.clock() - state.fetched_at >= JWKS_REFETCH_INTERVAL
            ):
                state.keys = await self._fetch(provider)
                state.fetched_at = self.clock()
        return self._pick(state.keys, kid)

    @staticmethod
    def _pick(keys: jwt.PyJWKSet, kid: object) -> list[jwt.PyJWK]:
        if kid is None:
            return list(keys.keys)
        return [k for k in keys.keys if k.key_id == kid]

    async def _fetch(self, provider: OidcProvider) -> jwt.PyJWKSet:
        broken = StsDenied(
            "AuthenticationFail.OIDCToken.IssuerConfigurationBroken",
            401,
            f"Get public keys from OIDC Provider failed, the issuer is {provider.issuer}.",
        )
        data: Any = provider.jwks
        if provider.jwks_url:
            verify: ssl.SSLContext | bool = (
                ssl.create_default_context(cafile=provider.ca_file) if provider.ca_file else True
            )
            try:
                async with httpx.AsyncClient(verify=verify, timeout=5.0, trust_env=False) as http:
                    response = await http.get(provider.jwks_url)
                response.raise_for_status()
                data = response.json()
            except (httpx.HTTPError, ValueError):
                raise broken from None
        try:
            return jwt.PyJWKSet.from_dict(dict(data))
        except (jwt.PyJWTError, TypeError, ValueError):
            raise broken from None
