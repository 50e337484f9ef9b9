from __future__ import annotations

import pytest

from secretstage.config import ConfigError, Settings, from_sources


def test_defaults() -> None:
    assert from_sources({}, {}) == Settings()


def test_env_and_flags() -> None:
    env = {
        "SECRETSTAGE_NAMESPACES": "a, b",
        "SECRETSTAGE_ENDPOINT_ALLOW": r"http://127\.0\.0\.1:1 https://x",
        "SECRETSTAGE_KMS_RATE_LIMIT": "5",
        "SECRETSTAGE_ALLOW_OPERATOR_IDENTITY": "true",
    }
    s = from_sources({"kms_rate_limit": 7.0}, env)
    assert s.namespaces == ("a", "b")
    assert s.endpoint_allow == (r"http://127\.0\.0\.1:1", "https://x")
    assert s.kms_rate_limit == 7.0
    assert s.allow_operator_identity is True


@pytest.mark.parametrize(
    ("cli", "env", "needle"),
    [
        ({"endpoint_allow": ["("]}, {}, "--endpoint-allow '(' is not a valid regex"),
        ({}, {"SECRETSTAGE_KMS_RATE_LIMIT": "fast"}, "SECRETSTAGE_KMS_RATE_LIMIT: 'fast' is not a number"),
        ({"kms_burst": 0}, {}, "--kms-burst / SECRETSTAGE_KMS_BURST must be >= 1"),
        ({}, {"SECRETSTAGE_ALLOW_OPERATOR_IDENTITY": "maybe"}, "is not a boolean"),
    ],
)
def test_bad_settings_name_the_flag(cli: dict[str, object], env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_sources(cli, env)
    assert needle in str(err.value)
