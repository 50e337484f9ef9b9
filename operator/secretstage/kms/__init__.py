"""Alibaba Cloud KMS Secrets Manager client: signing, credentials, errors, retries. No Kubernetes here."""

from secretstage.kms.client import KmsClient
from secretstage.kms.credentials import (
    Credentials,
    CredentialsProvider,
    EnvironmentProvider,
    OidcRoleProvider,
    RrsaProvider,
    StaticProvider,
    TokenSource,
    default_provider,
)
from secretstage.kms.endpoints import kms_endpoint, normalize_endpoint, resolve_endpoint
from secretstage.kms.errors import (
    ConfigurationError,
    CredentialsError,
    KmsApiError,
    KmsError,
    KmsTransportError,
)
from secretstage.kms.models import SecretVersion, StageUpdate, VersionList
from secretstage.kms.ratelimit import FairGate, TokenBucket
from secretstage.kms.retry import RetryPolicy
from secretstage.kms.signing import ACS3_HMAC_SHA256, HMAC_SHA1, SIGNATURE_ALGORITHMS

__all__ = [
    "ACS3_HMAC_SHA256",
    "HMAC_SHA1",
    "SIGNATURE_ALGORITHMS",
    "ConfigurationError",
    "Credentials",
    "CredentialsError",
    "CredentialsProvider",
    "EnvironmentProvider",
    "FairGate",
    "KmsApiError",
    "KmsClient",
    "KmsError",
    "KmsTransportError",
    "OidcRoleProvider",
    "RetryPolicy",
    "RrsaProvider",
    "SecretVersion",
    "StageUpdate",
    "StaticProvider",
    "TokenBucket",
    "TokenSource",
    "VersionList",
    "default_provider",
    "kms_endpoint",
    "normalize_endpoint",
    "resolve_endpoint",
]
