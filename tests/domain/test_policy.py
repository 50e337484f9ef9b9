from __future__ import annotations

import pytest

from secretstage.domain.policy import DEFAULT_ENDPOINT_ALLOW, endpoint_problem

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


def test_emulator_allowed_explicitly() -> None:
    assert endpoint_problem("http://127.0.0.1:8079", EMULATOR) is None
    assert endpoint_problem("http://127.0.0.1:8079", DEFAULT_ENDPOINT_ALLOW) is not None
