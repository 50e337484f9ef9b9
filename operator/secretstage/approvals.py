"""Whether approvals written on promotions can be trusted: the admission policy that authenticates
approvers (the chart's ``<release>-approvals``) and its binding, read from the API server.

Read afresh for every decision, after the promotion itself was read: found in force then (and older
than the promotion), it was in force when every approval that read shows was written. A cached answer
would not say that: a policy deleted a moment ago, and an approval written since by anyone, would be
trusted. It costs two requests per decision, and a promotion waiting for approval decides only when
it changes. What counts as "in force" is ``domain.approval``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from secretstage.domain.approval import approval_policy_problem
from secretstage.kubehttp import KubeCallFailed, KubeHttp, path

ADMISSION = ("apis", "admissionregistration.k8s.io", "v1")


class ApprovalPolicyCheck:
    def __init__(self, kube: KubeHttp, policy_name: str) -> None:
        self.kube, self.policy_name = kube, policy_name

    async def problem(self, promotion_created: str) -> str | None:
        """Why approvals of a promotion created at ``promotion_created`` cannot be trusted, or None."""
        try:
            policy, bindings = await self._read()
        except (KubeCallFailed, httpx.HTTPError) as exc:
            return (
                f"the operator could not read the ValidatingAdmissionPolicy {self.policy_name} or its bindings "
                f"({exc}): it needs get on validatingadmissionpolicies and list on "
                "validatingadmissionpolicybindings (admissionregistration.k8s.io; the chart grants both); nothing "
                "is sent until it can"
            )
        return approval_policy_problem(self.policy_name, policy, bindings, promotion_created)

    async def _read(self) -> tuple[Mapping[str, Any] | None, Sequence[Mapping[str, Any]]]:
        try:
            policy: Mapping[str, Any] | None = await self.kube.request(
                "-", "GET", path(*ADMISSION, "validatingadmissionpolicies", self.policy_name)
            )
        except KubeCallFailed as exc:
            if exc.status != 404:
                raise
            policy = None
        listing = await self.kube.request("-", "GET", path(*ADMISSION, "validatingadmissionpolicybindings"))
        items = listing.get("items") or []
        bindings = [b for b in items if (b.get("spec") or {}).get("policyName") == self.policy_name]
        return policy, bindings
