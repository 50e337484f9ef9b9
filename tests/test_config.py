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
        "SECRETSTAGE_OPERATOR_IDENTITY_NAMESPACES": "ops,platform",
        "SECRETSTAGE_OIDC_PROVIDER_ARN": "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1",
    }
    s = from_sources({"kms_rate_limit": 7.0}, env)
    assert s.namespaces == ("a", "b")
    assert s.endpoint_allow == (r"http://127\.0\.0\.1:1", "https://x")
    assert s.kms_rate_limit == 7.0
    assert s.operator_identity_namespaces == ("ops", "platform")
    assert s.oidc_provider_arn == "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1"
    assert from_sources({"operator_identity_namespaces": ["a,b", "c"]}, {}).operator_identity_namespaces == (
        "a",
        "b",
        "c",
    )


@pytest.mark.parametrize(
    ("cli", "env", "needle"),
    [
        ({"endpoint_allow": ["("]}, {}, "--endpoint-allow '(' is not a valid regex"),
        (
            {},
            {"SECRETSTAGE_ENDPOINT_ALLOW": "https://kms.cn-hangzhou.aliyuncs.com"},
            "--endpoint-allow / SECRETSTAGE_ENDPOINT_ALLOW: 'https://kms.cn-hangzhou.aliyuncs.com' has an unescaped",
        ),
        ({}, {"SECRETSTAGE_KMS_RATE_LIMIT": "fast"}, "SECRETSTAGE_KMS_RATE_LIMIT: 'fast' is not a number"),
        ({"kms_burst": 0}, {}, "--kms-burst / SECRETSTAGE_KMS_BURST must be >= 1"),
        ({}, {"SECRETSTAGE_ALLOW_OPERATOR_IDENTITY": "true"}, "--operator-identity-namespaces"),
        ({"oidc_provider_arn": "acs:ram::1:role/x"}, {}, "--oidc-provider-arn / SECRETSTAGE_OIDC_PROVIDER_ARN"),
        ({"kms_endpoint_template": "https://{region}.example"}, {}, "the only one is {regionId}"),
        ({"kms_endpoint_template": "kms-vpc.{regionId}.aliyuncs.com"}, {}, "is not a URL"),
        (
            {"kms_endpoint_template": "https://kms.private.example.com"},
            {},
            "do not pass the endpoint allow-list; add a pattern",
        ),
        (
            {"kms_endpoint_template": "https://kst-hzz6.cryptoservice.kms.aliyuncs.com"},
            {},
            "is a KMS instance's dedicated gateway, which serves cryptographic operations and GetSecretValue only",
        ),
        (
            {},
            {"SECRETSTAGE_KMS_ENDPOINT_TEMPLATE": "https://kst-hzz6.CryptoService.kms.aliyuncs.com."},
            "vpc (https://kms-vpc.<region>.aliyuncs.com)",
        ),
        ({}, {"SECRETSTAGE_DEFAULT_REGION": "oss-cn-hangzhou"}, "--default-region / SECRETSTAGE_DEFAULT_REGION"),
        ({"operator_service_account": "secretstage-operator"}, {}, "is not NAMESPACE/NAME"),
        ({}, {"SECRETSTAGE_KMS_PROXY": "http://169.254.169.254:80"}, "--kms-proxy / SECRETSTAGE_KMS_PROXY: proxy host"),
        ({"kms_proxy": "http://u:secret@proxy:3128"}, {}, "use a proxy that authorizes the operator"),
        ({}, {"SECRETSTAGE_ACCEPT_ACK_ROLE_ANNOTATION": "maybe"}, "SECRETSTAGE_ACCEPT_ACK_ROLE_ANNOTATION='maybe'"),
    ],
)
def test_bad_settings_name_the_flag(cli: dict[str, object], env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_sources(cli, env)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("given", "allow", "cn_hangzhou"),
    [
        (None, [], "https://kms.cn-hangzhou.aliyuncs.com"),
        ("vpc", [], "https://kms-vpc.cn-hangzhou.aliyuncs.com"),
        ("VPC", [], "https://kms-vpc.cn-hangzhou.aliyuncs.com"),
        ("https://kms-vpc.{regionId}.aliyuncs.com", [], "https://kms-vpc.cn-hangzhou.aliyuncs.com"),
        (
            "https://kms.private.example.com",
            [r"https://kms\.private\.example\.com"],
            "https://kms.private.example.com",
        ),
    ],
)
def test_region_endpoint_template(given: str | None, allow: list[str], cn_hangzhou: str) -> None:
    settings = from_sources({"kms_endpoint_template": given, "endpoint_allow": allow}, {})
    assert settings.kms_endpoint_template.format(regionId="cn-hangzhou") == cn_hangzhou


@pytest.mark.parametrize("env", [{}, {"SECRETSTAGE_KMS_ENDPOINT_TEMPLATE": "public"}])  # the chart sets it
def test_an_allow_list_of_explicit_endpoints_only_keeps_the_default_template(env: dict[str, str]) -> None:
    settings = from_sources({"endpoint_allow": [r"http://127\.0\.0\.1:8079"]}, env)
    assert settings.kms_endpoint_template == "https://kms.{regionId}.aliyuncs.com"


def test_tenant_isolation_settings() -> None:
    settings = from_sources(
        {"operator_service_account": "secretstage-system/secretstage-operator"},
        {"SECRETSTAGE_ACCEPT_ACK_ROLE_ANNOTATION": "true", "SECRETSTAGE_DEFAULT_REGION": "cn-shanghai-finance-1"},
    )
    assert settings.operator_service_account == ("secretstage-system", "secretstage-operator")
    assert settings.accept_ack_role_annotation is True
    assert settings.default_region == "cn-shanghai-finance-1"
    assert from_sources({}, {}).accept_ack_role_annotation is False
