from __future__ import annotations

import re

import pytest

from secretstage.domain.policy import DEFAULT_ENDPOINT_ALLOW, allow_pattern_problem, endpoint_problem

EMULATOR = (r"http://127\.0\.0\.1:8079",)


@pytest.mark.parametrize("url", ["https://kms.cn-hangzhou.aliyuncs.com", "https://kms-vpc.ap-southeast-1.aliyuncs.com"])
def test_default_allows_kms(url: str) -> None:
    assert endpoint_problem(url, DEFAULT_ENDPOINT_ALLOW) is None


@pytest.mark.parametrize(
    ("url", "allow", "needle"),
    [
        ("http://169.254.169.254", (".*",), "link-local"),
        ("http://100.100.100.200", (".*",), "metadata"),
        ("http://[fe80::1]", (".*",), "link-local"),
        ("http://kms.cn-hangzhou.aliyuncs.com", (".*",), "plain http"),
        ("https://kms.cn-hangzhou.aliyuncs.com.evil.example", DEFAULT_ENDPOINT_ALLOW, "matches no"),
        ("https://evil.example/kms.cn-hangzhou.aliyuncs.com", DEFAULT_ENDPOINT_ALLOW, "matches no"),
        ("http://127.0.0.1:8080", EMULATOR, "matches no"),
        ("http://0.0.0.0:8079", (".*",), "link-local or metadata"),
    ],
)
def test_blocked(url: str, allow: tuple[str, ...], needle: str) -> None:
    assert needle in str(endpoint_problem(url, allow))


# Hosts under aliyuncs.com that are not KMS: kms.<label>.aliyuncs.com is the OSS bucket "kms" when
# the label is oss-<region>, and anyone may own that bucket.
@pytest.mark.parametrize(
    "url",
    [
        "https://kms.oss-cn-hangzhou.aliyuncs.com",
        "https://kms-vpc.oss-cn-hangzhou-internal.aliyuncs.com",
        "https://kms.oss-accelerate.aliyuncs.com",
        "https://kms.mybucket-cn-hangzhou.aliyuncs.com",
        "https://kms.cn-hangzhou.aliyuncs.com\n",
        "https://kms.cn-hangzhou.aliyuncs.com.",
    ],
)
def test_default_allow_list_admits_only_kms_gateways(url: str) -> None:
    assert "matches no --endpoint-allow pattern" in str(endpoint_problem(url, DEFAULT_ENDPOINT_ALLOW))


@pytest.mark.parametrize(
    "url",
    [
        "https://kms.cn-shanghai-finance-1.aliyuncs.com",
        "https://kms.cn-north-2-gov-1.aliyuncs.com",
        "https://kms-vpc.eu-central-1.aliyuncs.com",
        "https://kms.me-east-1.aliyuncs.com",
        "https://kms.na-south-1.aliyuncs.com",
        "https://kms.cn-wuhan-lr.aliyuncs.com",
    ],
)
def test_default_allow_list_admits_every_region_form(url: str) -> None:
    assert endpoint_problem(url, DEFAULT_ENDPOINT_ALLOW) is None


def test_emulator_allowed_explicitly() -> None:
    assert endpoint_problem("http://127.0.0.1:8079", EMULATOR) is None
    assert endpoint_problem("http://127.0.0.1:8079", DEFAULT_ENDPOINT_ALLOW) is not None


# Every spelling of a forbidden address that the C resolver (inet_aton / inet_pton) would accept.
# Checked as a pure function: nothing here is ever connected to.
@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "2852039166",  # decimal
        "0xa9fea9fe",  # hex
        "0xA9FEA9FE",
        "0251.0376.0251.0376",  # octal
        "0xa9.0xfe.0xa9.0xfe",
        "169.254.43518",  # three-part form
        "169.16689662",  # two-part form
        "0251.0xfe.43518",  # mixed
        "[::ffff:a9fe:a9fe]",  # IPv4-mapped IPv6
        "[::ffff:169.254.169.254]",
        "[64:ff9b::a9fe:a9fe]",  # NAT64
        "[::a9fe:a9fe]",  # IPv4-compatible IPv6 (deprecated, still routed by some stacks)
        "[::169.254.169.254]",
        "[::6464:64c8]",  # ::100.100.100.200
        "[2002:a9fe:a9fe::1]",  # 6to4
        "[fe80::1]",
        "[fe80::1%25eth0]",  # with a zone
        "100.100.100.200",  # Alibaba Cloud ECS metadata
        "1684301000",  # the same, decimal
        "[::ffff:100.100.100.200]",
        "[fd00:ec2::254]",
        "metadata.google.internal.",  # trailing dot
        "METADATA",
        "0",  # 0.0.0.0
        "[::]",
        "224.0.0.1",
        "255.255.255.255",
    ],
)
def test_every_spelling_of_a_forbidden_address_is_refused(host: str) -> None:
    problem = endpoint_problem(f"https://{host}", (".*",))
    assert problem is not None
    assert "never allowed" in problem


def test_decimal_spelling_is_the_address_it_means() -> None:
    from secretstage.netpolicy import literal_address

    assert str(literal_address("1684301000")) == "100.100.100.200"
    assert str(literal_address("2852039166")) == "169.254.169.254"
    assert literal_address("kms.cn-hangzhou.aliyuncs.com") is None
    assert literal_address("deadbeef") is None  # hex digits without 0x are a name, as for the resolver


@pytest.mark.parametrize("host", ["127.1", "2130706433", "[::1]", "[::ffff:127.0.0.1]", "localhost."])
def test_loopback_in_any_spelling_is_loopback(host: str) -> None:
    from secretstage.netpolicy import names_loopback

    assert names_loopback(host)
    assert "plain http is only allowed to loopback" not in str(endpoint_problem(f"http://{host}:8079", (".*",)))


@pytest.mark.parametrize(
    "pattern",
    [
        *DEFAULT_ENDPOINT_ALLOW,
        r"http://127\.0\.0\.1:8079",
        r"https://kms-vpc\.[a-z0-9-]+\.aliyuncs\.com",
        r"https://[a-z0-9.-]+\.example\.com",  # a dot in a class is a dot
        r"https://.*\.example\.com",  # a wildcard on purpose
        r"https://kst-hzz6\w+\.cryptoservice\.kms\.aliyuncs\.com",
    ],
)
def test_allow_patterns_with_meant_dots(pattern: str) -> None:
    assert allow_pattern_problem(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "lookalike"),
    [
        # what --set 'operator.endpointAllow={https://kms\.cn-...}' renders: helm drops the backslashes
        ("https://kms.cn-hangzhou.aliyuncs.com", "https://kms.cn-hangzhouxaliyuncs.com"),
        (r"https://kms\.cn-hangzhou.aliyuncs\.com", "https://kms.cn-hangzhouxaliyuncs.com"),
        (r"https://kms\.cn-hangzhou\.aliyuncs.com", "https://kms.cn-hangzhou.aliyuncsxcom"),
    ],
)
def test_allow_patterns_with_a_bare_dot_are_refused(pattern: str, lookalike: str) -> None:
    assert re.fullmatch(pattern, lookalike)  # what the refusal prevents: a domain anyone can register
    problem = allow_pattern_problem(pattern)
    assert problem is not None
    assert "unescaped '.'" in problem
    assert "--set-json" in problem
