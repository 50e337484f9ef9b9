"""Alibaba Cloud region IDs: the one pattern the spec, the endpoints and the allow-list share. Pure.

A region ID starts with its geography: cn-hangzhou, ap-southeast-1, eu-central-1, us-west-1,
me-east-1, na-south-1, cn-shanghai-finance-1, cn-north-2-gov-1, cn-wuhan-lr. The prefix is the
point: ``kms.<label>.aliyuncs.com`` is also the host of the OSS bucket ``kms`` when the label is
``oss-<region>`` (``<bucket>.oss-cn-hangzhou.aliyuncs.com``), a bucket anyone may own, so "any
lowercase label" would send requests signed with a tenant's keys to a stranger. A region in a new
geography is reached with an explicit ``spec.endpoint`` that ``--endpoint-allow`` admits.
"""

from __future__ import annotations

import re

GEOGRAPHIES = ("cn", "ap", "eu", "us", "me", "na", "sa", "af")
#: Unanchored; ``REGION_ID`` is its anchored form, the CRD's ``spec.regionId`` pattern.
REGION = rf"(?:{'|'.join(GEOGRAPHIES)})(?:-[a-z0-9]{{1,16}}){{1,4}}"
REGION_ID = rf"^{REGION}$"


def is_region(text: str) -> bool:
    """``fullmatch``: a trailing newline, which ``$`` lets through, is not part of a region."""
    return re.fullmatch(REGION, text) is not None
