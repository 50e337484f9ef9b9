"""RAM policy documents, evaluated the way RAM does for the cases the emulator needs.

Two kinds of document use the same grammar (Alibaba Cloud RAM "policy elements"):

* a role's **trust policy** (``AssumeRolePolicyDocument``): who may assume the role. For RRSA the
  principal is ``{"Federated": ["acs:ram::<account>:oidc-provider/<name>"]}`` and the conditions
  test ``oidc:iss``, ``oidc:aud`` and ``oidc:sub``;
* a role's **permission policy**: which actions (``kms:UpdateSecretVersionStage``) on which
  resources (``acs:kms:<region>:<account>:secret/<name>``) its sessions may call.

Supported: ``Version`` "1"; ``Effect`` Allow/Deny (an explicit Deny wins; nothing allowed means
denied); ``Action``/``NotAction``, ``Resource``/``NotResource`` as a string or a list with ``*``
and ``?`` wildcards (actions match case-insensitively, as RAM's do); ``Principal`` with
``Federated``, ``RAM`` or ``Service``; ``Condition`` operators StringEquals, StringNotEquals,
StringLike, StringNotLike (their ``IgnoreCase`` forms too). Anything else is refused when the
document is loaded, with the path of the element and what is supported, so a document that would
mean something else in RAM never silently means less here.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CONDITION_OPERATORS = (
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
)
PRINCIPAL_KINDS = ("Federated", "RAM", "Service")


class PolicyError(ValueError):
    """A policy document this emulator cannot evaluate faithfully; names the element."""


def _wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    # fnmatch's [] classes are not RAM syntax: escape them, keep only * and ?
    translated = fnmatch.translate(pattern.replace("[", "\x00").replace("]", "\x01"))
    translated = translated.replace("\x00", r"\[").replace("\x01", r"\]")
    return re.compile(translated, re.IGNORECASE if ignore_case else 0)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PolicyError(f"{where} must be a string or a non-empty list of strings")


@dataclass(frozen=True)
class Condition:
    operator: str
    key: str
    values: tuple[str, ...]

    def holds(self, context: Mapping[str, str]) -> bool:
        actual = context.get(self.key)
        ignore_case = self.operator.endswith("IgnoreCase")
        base = self.operator.removesuffix("IgnoreCase")
        if actual is None:
            # A key the request does not carry matches no value: positive tests fail, negated ones
            # hold (RAM and IAM agree). An OIDC exchange always carries oidc:iss, oidc:aud, oidc:sub.
            return "Not" in base
        if base in ("StringLike", "StringNotLike"):
            matched = any(_wildcard(v).fullmatch(actual) for v in self.values)
        elif ignore_case:
            matched = actual.lower() in {v.lower() for v in self.values}
        else:
            matched = actual in self.values
        return not matched if "Not" in base else matched


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    principals: Mapping[str, tuple[str, ...]]
    conditions: tuple[Condition, ...]

    def applies(
        self, action: str, resource: str | None, principal: tuple[str, str] | None, context: Mapping[str, str]
    ) -> bool:
        if self.actions and not any(_wildcard(a, ignore_case=True).fullmatch(action) for a in self.actions):
            return False
        if self.not_actions and any(_wildcard(a, ignore_case=True).fullmatch(action) for a in self.not_actions):
            return False
        if resource is not None:
            if self.resources and not any(_wildcard(r).fullmatch(resource) for r in self.resources):
                return False
            if self.not_resources and any(_wildcard(r).fullmatch(resource) for r in self.not_resources):
                return False
        if principal is not None:
            kind, name = principal
            if not any(_wildcard(p).fullmatch(name) for p in self.principals.get(kind, ())):
                return False
        return all(c.holds(context) for c in self.conditions)


@dataclass(frozen=True)
class PolicyDocument:
    statements: tuple[Statement, ...]

    def allows(
        self,
        action: str,
        *,
        resource: str | None = None,
        principal: tuple[str, str] | None = None,
        context: Mapping[str, str] | None = None,
    ) -> bool:
        """Explicit Deny wins, then any Allow; nothing matching means denied (RAM's implicit deny)."""
        applicable = [s for s in self.statements if s.applies(action, resource, principal, context or {})]
        if any(s.effect == "Deny" for s in applicable):
            return False
        return any(s.effect == "Allow" for s in applicable)

    @classmethod
    def parse(cls, document: Any, where: str, *, trust: bool) -> PolicyDocument:
        if not isinstance(document, Mapping):
            raise PolicyError(f"{where} must be a RAM policy document (a JSON object with Version and Statement)")
        if str(document.get("Version", "1")) != "1":
            raise PolicyError(f'{where}.Version must be "1"')
        raw_statements = document.get("Statement")
        if not isinstance(raw_statements, list) or not raw_statements:
            raise PolicyError(f"{where}.Statement must be a non-empty list")
        return cls(tuple(_statement(s, f"{where}.Statement[{i}]", trust) for i, s in enumerate(raw_statements)))


def _statement(raw: Any, where: str, trust: bool) -> Statement:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be an object")
    known = {"Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "Condition", "Sid"}
    unknown = set(raw) - known
    if unknown:
        raise PolicyError(f"{where} has unsupported elements {sorted(unknown)}; supported: {sorted(known)}")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}.Effect must be Allow or Deny")
    actions = _strings(raw["Action"], f"{where}.Action") if "Action" in raw else ()
    not_actions = _strings(raw["NotAction"], f"{where}.NotAction") if "NotAction" in raw else ()
    if not actions and not not_actions:
        raise PolicyError(f"{where} needs Action (e.g. kms:UpdateSecretVersionStage or sts:AssumeRole)")
    resources = _strings(raw["Resource"], f"{where}.Resource") if "Resource" in raw else ()
    not_resources = _strings(raw["NotResource"], f"{where}.NotResource") if "NotResource" in raw else ()
    principals: dict[str, tuple[str, ...]] = {}
    if trust:
        raw_principal = raw.get("Principal")
        if not isinstance(raw_principal, Mapping) or not raw_principal:
            raise PolicyError(f'{where}.Principal must name who may assume the role, e.g. {{"Federated": [ARN]}}')
        for kind, value in raw_principal.items():
            if kind not in PRINCIPAL_KINDS:
                raise PolicyError(f"{where}.Principal.{kind} is not supported; use one of {PRINCIPAL_KINDS}")
            principals[kind] = _strings(value, f"{where}.Principal.{kind}")
    elif "Principal" in raw:
        raise PolicyError(f"{where}.Principal belongs in a trust policy, not in a permission policy")
    elif not resources and not not_resources:
        raise PolicyError(f"{where} needs Resource (e.g. acs:kms:*:*:secret/payments/*)")
    conditions: list[Condition] = []
    raw_conditions = raw.get("Condition") or {}
    if not isinstance(raw_conditions, Mapping):
        raise PolicyError(f"{where}.Condition must be an object of operator -> {{key: value(s)}}")
    for operator, tests in raw_conditions.items():
        if operator not in CONDITION_OPERATORS:
            raise PolicyError(f"{where}.Condition.{operator} is not supported; supported: {CONDITION_OPERATORS}")
        if not isinstance(tests, Mapping) or not tests:
            raise PolicyError(f"{where}.Condition.{operator} must be an object of key -> value(s)")
        for key, values in tests.items():
            conditions.append(Condition(operator, str(key), _strings(values, f"{where}.Condition.{operator}.{key}")))
    return Statement(
        effect=str(effect),
        actions=actions,
        not_actions=not_actions,
        resources=resources,
        not_resources=not_resources,
        principals=principals,
        conditions=tuple(conditions),
    )
