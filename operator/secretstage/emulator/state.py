"""Secrets, versions and stage labels, with KMS's rules. Pure: no HTTP, no clock reads of its own.

Where kms-api.md marks a behaviour as unconfirmed ([U]/[I]), the choice made here is named
"inferred" in a comment; where the operator's correctness depends on it, it is a switch
(``Store.SWITCHES``) and the operator is tested in every setting.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

ACS_CURRENT = "ACSCurrent"
ACS_PREVIOUS = "ACSPrevious"
SYSTEM_STAGES = (ACS_CURRENT, ACS_PREVIOUS)
MAX_STAGES = 8  # distinct stage labels on one generic secret (documented)
MAX_VERSIONS = 10  # versions per generic secret (documented)
SECRET_NAME = re.compile(r"^[A-Za-z0-9_/+=.@-]{1,192}$")
VERSION_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_SECRET_DATA = 30720


class KmsFault(Exception):
    """A KMS business error: Code, HTTP status, Message (the KMS body shape)."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def not_found(what: str) -> KmsFault:
    return KmsFault("Forbidden.ResourceNotFound", 404, f"The resource not exists: {what}")


def invalid(message: str) -> KmsFault:
    return KmsFault("InvalidParameter", 400, message)


@dataclass
class Version:
    version_id: str
    data: str
    data_type: str
    create_time: str
    stages: list[str] = field(default_factory=list)


@dataclass
class Secret:
    name: str
    arn: str
    create_time: str
    update_time: str
    description: str = ""
    versions: list[Version] = field(default_factory=list)

    def version(self, version_id: str) -> Version:
        for v in self.versions:
            if v.version_id == version_id:
                return v
        raise not_found(f"version {version_id!r} of secret {self.name!r}")

    def holder(self, stage: str) -> Version | None:
        return next((v for v in self.versions if stage in v.stages), None)

    def stage_names(self) -> set[str]:
        return {s for v in self.versions for s in v.stages}


class Store:
    """All secrets of one emulated account in one region."""

    def __init__(
        self,
        *,
        region: str = "cn-hangzhou",
        account: str = "1234567890123456",
        auto_previous: bool = True,
        label_held_elsewhere: str = "move",
        remove_mismatch: str = "reject",
    ):
        self.region = region
        self.account = account
        self.auto_previous = auto_previous
        self.label_held_elsewhere = label_held_elsewhere
        self.remove_mismatch = remove_mismatch
        self.secrets: dict[str, Secret] = {}

    # Where Alibaba's docs are silent, each plausible behaviour is a switch (docs/emulator.md):
    #   auto_previous         whether moving ACSCurrent with UpdateSecretVersionStage also moves
    #                         ACSPrevious to the version it left (documented only for PutSecretValue;
    #                         AWS does it). Default True.
    #   label_held_elsewhere  MoveToVersion alone while another version holds the label: "move" it
    #                         (the API page's own sample, VersionStage=ACSCurrent&MoveToVersion=...,
    #                         does exactly this; the default) or "reject" it as AWS does.
    #   remove_mismatch       RemoveFromVersion names a version that does not carry the label:
    #                         "reject" (as AWS and moto; the default) or "ignore" the parameter.
    SWITCHES: ClassVar[dict[str, tuple[object, ...]]] = {
        "auto_previous": (True, False),
        "label_held_elsewhere": ("move", "reject"),
        "remove_mismatch": ("reject", "ignore"),
    }

    def switches(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.SWITCHES}

    def configure(self, **values: object) -> None:
        """Set switches; a bad name or value raises ValueError naming the choices."""
        for name, value in values.items():
            if name not in self.SWITCHES:
                raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(self.SWITCHES))}")
            if value not in self.SWITCHES[name]:
                choices = ", ".join(json.dumps(c) for c in self.SWITCHES[name])
                raise ValueError(f"{name} must be one of {choices}, not {json.dumps(value)}")
        for name, value in values.items():
            setattr(self, name, value)

    # --- lookup ---

    def resolve(self, name_or_arn: str) -> Secret:
        name = name_or_arn
        if name_or_arn.startswith("acs:kms:"):
            parts = name_or_arn.split(":", 4)
            if len(parts) != 5 or not parts[4].startswith("secret/"):
                raise invalid(f"SecretName {name_or_arn!r} is not a secret ARN (acs:kms:REGION:ACCOUNT:secret/NAME)")
            _, _, region, account, resource = parts
            if region != self.region or account != self.account:
                # Another account's or region's secret: not visible from here.
                raise not_found(f"secret {name_or_arn!r}")
            name = resource.removeprefix("secret/")
        secret = self.secrets.get(name)
        if secret is None:
            raise not_found(f"secret {name_or_arn!r}")
        return secret

    # --- operations ---

    def create_secret(
        self, name: str, version_id: str, data: str, data_type: str, description: str, now: str
    ) -> Secret:
        if not SECRET_NAME.match(name) or name.startswith("acs/"):
            raise invalid("SecretName must be 1-192 characters of letters, digits and _/+=.@- and not start with acs/")
        self._check_version_id(version_id)
        self._check_data(data, data_type)
        if name in self.secrets:
            raise KmsFault("Rejected.ResourceExist", 400, f"The resource already exists: secret {name!r}")
        arn = f"acs:kms:{self.region}:{self.account}:secret/{name}"
        secret = Secret(name=name, arn=arn, create_time=now, update_time=now, description=description)
        secret.versions.append(Version(version_id, data, data_type, now, [ACS_CURRENT]))
        self.secrets[name] = secret
        return secret

    def delete_secret(self, name: str) -> Secret:
        secret = self.resolve(name)
        del self.secrets[secret.name]
        return secret

    def put_secret_value(
        self, name: str, version_id: str, data: str, data_type: str, stages: list[str] | None, now: str
    ) -> Version:
        secret = self.resolve(name)
        self._check_version_id(version_id)
        self._check_data(data, data_type)
        existing = next((v for v in secret.versions if v.version_id == version_id), None)
        if existing is not None:
            if existing.data == data and existing.data_type == data_type:
                return existing  # documented: same VersionId + same data is an idempotent no-op
            raise KmsFault(
                "Rejected.ResourceExist", 400, f"VersionId {version_id!r} already exists with different data"
            )
        new_stages = [ACS_CURRENT] if stages is None else list(dict.fromkeys(stages))
        if len(secret.stage_names() | set(new_stages)) > MAX_STAGES:
            raise KmsFault("Rejected.LimitExceeded", 400, f"A secret can have at most {MAX_STAGES} version stages")
        version = Version(version_id, data, data_type, now, [])
        for stage in new_stages:
            old = secret.holder(stage)
            if old is not None:
                old.stages.remove(stage)
            version.stages.append(stage)
            if stage == ACS_CURRENT and old is not None:
                # documented for PutSecretValue: the old current version becomes ACSPrevious
                self._attach(secret, ACS_PREVIOUS, old)
        secret.versions.append(version)
        self._prune(secret)
        secret.update_time = now
        return version

    def update_secret_version_stage(
        self, name: str, stage: str, move_to: str | None, remove_from: str | None, now: str
    ) -> Secret:
        secret = self.resolve(name)
        if not stage:
            raise KmsFault(
                "MissingParameter", 400, "The input parameter VersionStage that is mandatory is not supplied"
            )
        if not move_to and not remove_from:
            raise invalid("At least one of RemoveFromVersion and MoveToVersion must be specified")
        if stage in SYSTEM_STAGES and not move_to:
            raise invalid(f"{stage} cannot be removed from a version; move it to another version with MoveToVersion")
        target = secret.version(move_to) if move_to else None
        source = secret.version(remove_from) if remove_from else None
        holder = secret.holder(stage)
        if source is not None and stage not in source.stages:
            if self.remove_mismatch == "reject":
                raise invalid(f"VersionStage {stage!r} is not attached to version {remove_from!r}")
            source = None  # "ignore": the parameter names no version that carries the label
            if target is None:
                secret.update_time = now
                return secret
        if target is not None and holder is not None and holder is not target and holder is not source:
            if self.label_held_elsewhere == "reject":
                raise invalid(
                    f"VersionStage {stage!r} is attached to version {holder.version_id!r}; "
                    "specify it as RemoveFromVersion to move the label"
                )
            source = holder  # "move": one label, one version; it leaves its holder
        if target is not None and stage not in secret.stage_names() and len(secret.stage_names()) >= MAX_STAGES:
            raise KmsFault("Rejected.LimitExceeded", 400, f"A secret can have at most {MAX_STAGES} version stages")
        displaced = source if source is not None and source is not target else None
        if source is not None and source is not target:
            source.stages.remove(stage)
        if target is not None and stage not in target.stages:
            target.stages.append(stage)
        if stage == ACS_CURRENT and displaced is not None and target is not None and self.auto_previous:
            self._attach(secret, ACS_PREVIOUS, displaced)
        secret.update_time = now
        return secret

    def list_versions(self, name: str, include_deprecated: bool) -> tuple[Secret, list[Version]]:
        secret = self.resolve(name)
        versions = [v for v in secret.versions if include_deprecated or v.stages]
        return secret, sorted(versions, key=lambda v: v.create_time, reverse=True)

    def get_value(self, name: str, version_id: str | None, stage: str | None) -> tuple[Secret, Version]:
        secret = self.resolve(name)
        if version_id:
            version = secret.version(version_id)
            if stage and stage not in version.stages:
                raise invalid(f"VersionId {version_id!r} and VersionStage {stage!r} do not identify the same version")
            return secret, version
        wanted = stage or ACS_CURRENT
        holder = secret.holder(wanted)
        if holder is None:
            raise not_found(f"stage {wanted!r} of secret {secret.name!r}")
        return secret, holder

    # --- helpers ---

    def _attach(self, secret: Secret, stage: str, version: Version) -> None:
        for v in secret.versions:
            if stage in v.stages:
                v.stages.remove(stage)
        version.stages.append(stage)

    def _prune(self, secret: Secret) -> None:
        # Inferred: over the 10-version limit, the oldest version without any stage is deleted; a
        # version that still carries a stage is never evicted.
        while len(secret.versions) > MAX_VERSIONS:
            unlabeled = [v for v in secret.versions if not v.stages]
            if not unlabeled:
                raise KmsFault("Rejected.LimitExceeded", 400, f"A secret can have at most {MAX_VERSIONS} versions")
            secret.versions.remove(min(unlabeled, key=lambda v: v.create_time))

    @staticmethod
    def _check_version_id(version_id: str) -> None:
        if not VERSION_ID.match(version_id):
            raise invalid("VersionId must be 1-64 characters of letters, digits and _.-")

    @staticmethod
    def _check_data(data: str, data_type: str) -> None:
        if data_type not in ("text", "binary"):
            raise invalid("SecretDataType must be text or binary")
        if not data or len(data.encode()) > MAX_SECRET_DATA:
            raise invalid(f"SecretData must be 1-{MAX_SECRET_DATA} bytes")

    # --- persistence ---

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "account": self.account,
            "secrets": [asdict(s) for s in self.secrets.values()],
        }

    def load_json(self, data: dict[str, Any]) -> None:
        self.secrets = {}
        for raw in data.get("secrets", []):
            versions = [Version(**v) for v in raw.pop("versions", [])]
            secret = Secret(**raw, versions=versions)
            self.secrets[secret.name] = secret

    def save(self, path: str) -> None:
        """Atomic: write a temp file in the same folder, fsync, rename over the old one."""
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".emulator-state-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_json(), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def load(self, path: str) -> bool:
        if not os.path.exists(path):
            return False
        with open(path, encoding="utf-8") as f:
            self.load_json(json.load(f))
        return True
