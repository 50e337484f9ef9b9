"""Typed results of KMS calls (only the fields the operator and CLI use)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageUpdate:
    secret_name: str
    request_id: str


@dataclass(frozen=True)
class SecretVersion:
    version_id: str
    create_time: str
    stages: tuple[str, ...]


@dataclass(frozen=True)
class VersionList:
    secret_name: str
    versions: tuple[SecretVersion, ...]
    request_ids: tuple[str, ...]

    def placement(self) -> dict[str, str]:
        """stage -> version that holds it."""
        return {stage: v.version_id for v in self.versions for stage in v.stages}

    def holder(self, stage: str) -> str | None:
        return self.placement().get(stage)


@dataclass(frozen=True)
class SecretInfo:
    secret_name: str
    arn: str
    secret_type: str
    request_id: str
    description: str = ""
    create_time: str = ""
    update_time: str = ""


@dataclass(frozen=True)
class SecretValue:
    secret_name: str
    version_id: str
    stages: tuple[str, ...]
    request_id: str
    secret_data: str = field(repr=False)
    secret_data_type: str = "text"


@dataclass(frozen=True)
class PutResult:
    secret_name: str
    version_id: str
    stages: tuple[str, ...]
    request_id: str


@dataclass(frozen=True)
class CreateResult:
    secret_name: str
    arn: str
    version_id: str
    request_id: str


def stage_list(node: Any) -> tuple[str, ...]:
    """``{"VersionStage": [...]}`` (JSON form of the XML list) -> tuple."""
    if isinstance(node, Mapping):
        node = node.get("VersionStage", [])
    if isinstance(node, str):
        return (node,)
    return tuple(str(s) for s in (node or []))


def parse_version(item: Mapping[str, Any]) -> SecretVersion:
    return SecretVersion(
        version_id=str(item.get("VersionId", "")),
        create_time=str(item.get("CreateTime", "")),
        stages=stage_list(item.get("VersionStages")),
    )
