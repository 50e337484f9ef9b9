"""The docs against the code: every command, flag, environment variable, chart value, CRD field,
repository path and link a document names must exist, so a rename cannot leave a doc behind.

Documents: README.md, CHANGELOG.md, CONTRIBUTING.md, docs/ (users' and docs/development/), the
examples' and integrations' READMEs, the chart's README and NOTES.txt. A name of another tool
(helm, kubectl, docker ...) is accepted only from the list below, each with the tool it belongs to.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT

DOCS = sorted(
    [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "CONTRIBUTING.md",
        *(ROOT / "docs").rglob("*.md"),
        *(ROOT / "examples").glob("*/README.md"),
        *(ROOT / "integrations").glob("*/README.md"),
        ROOT / "helm" / "secretstage-operator" / "README.md",
    ]
)
NOTES = ROOT / "helm" / "secretstage-operator" / "templates" / "NOTES.txt"
CHART = ROOT / "helm" / "secretstage-operator"
CRD = ROOT / "crds" / "secretstagepromotions.secretstage.io.yaml"

# Flags of other tools that the docs use, by tool. Anything else that looks like a flag must be ours.
OTHER_TOOLS_FLAGS = {
    "helm": {
        "--install",
        "--version",
        "--create-namespace",
        "--set",
        "--set-json",
        "--reuse-values",
        "--wait",
        "--logs",
        "--show-only",
        "--namespace",
        "--timeout",
    },
    "kubectl": {
        "--for",
        "--from-file",
        "--from-literal",
        "--clusterrole",
        "--serviceaccount",
        "--server-side",
        "--type",
        "--patch-file",
        "--kubeconfig",
        "--validate",
        "--force",
        "--namespace",
        "--timeout",
        "--overwrite",
        "--duration",
        "--all",
    },
    "docker buildx / skopeo / buildah": {
        "--platform",
        "--build-arg",
        "--push",
        "--all",
        "--preserve-digests",
        "--isolation",
    },
    "debootstrap": {"--variant"},
    "hack/control-plane.sh": {"--with-node"},
    "Argo Rollouts controller": {"--controllers", "--leader-elect"},
    "kube-controller-manager": {"--use-service-account-credentials"},
    "pipx / pip": {"--volume"},
    "kubectl krew": {"--manifest-url"},
    "hack/version.py": {"--check"},
    "argo (Workflows CLI) / argocd": {"--watch", "--timeout"},
}
# Flags that no longer exist, named only where a document says so (CHANGELOG upgrade notes).
REMOVED_FLAGS = {"--allow-operator-identity", "--kopf-batch-window"}
REMOVED_ENV = {"SECRETSTAGE_ALLOW_OPERATOR_IDENTITY"}
REMOVED_VALUES = {"operator.maxWorkers", "serviceAccountIdentity.stsEndpoint"}
# Wrong on purpose: install.md shows the schema refusing this misspelling.
MISSPELT_ON_PURPOSE = {"operator.logformat"}
# Fields of other kinds that the docs name with a spec./status. path (a Deployment's, a Job's ...).
OTHER_KINDS_FIELDS = {"spec.progressDeadlineSeconds", "spec.template", "spec.replicas", "status.conditions"}
REPO_DIRS = (
    "docs/",
    "hack/",
    "tests/",
    "examples/",
    "integrations/",
    "helm/",
    "crds/",
    "bench/",
    "operator/",
    ".github/",
)


def text(path: Path) -> str:
    return path.read_text()


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---- what the code has ----


@cache
def parsers() -> dict[str, argparse.ArgumentParser]:
    from secretstage.cli import build_parser

    top = build_parser()
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return {"": top, **commands.choices}


def flags_of(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--")}


@cache
def our_flags() -> set[str]:
    found = set().union(*(flags_of(p) for p in parsers().values()))
    bench = text(ROOT / "bench" / "run.py")
    return found | set(re.findall(r'add_argument\(\s*"(--[a-z-]+)"', bench))


@cache
def known_env() -> set[str]:
    """Every variable the code reads: literals anywhere in the code, and config.py's SECRETSTAGE_ names."""
    sources = [*(ROOT / "operator").rglob("*.py"), *(ROOT / "hack").glob("*"), *(ROOT / "tests").rglob("*.py")]
    sources += [*(CHART / "templates").glob("*")]
    found: set[str] = set()
    for source in sources:
        if source.is_file() and source != Path(__file__):
            found |= set(re.findall(r"\b((?:SECRETSTAGE|ALIBABA_CLOUD)_[A-Z0-9_]+)", source.read_text(errors="ignore")))
    config = text(ROOT / "operator" / "secretstage" / "config.py")
    found |= {f"SECRETSTAGE_{name}" for name in re.findall(r'(?:pick|listed|number)\(\s*"\w+",\s*"([A-Z_]+)"', config)}
    return found


@cache
def values() -> dict[str, Any]:
    return dict(yaml.safe_load(text(CHART / "values.yaml")))


@cache
def schema() -> dict[str, Any]:
    return dict(yaml.safe_load(text(CHART / "values.schema.json")))


def value_exists(path: str) -> bool:
    node: Any = values()
    spec: Any = schema()
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
            spec = (spec.get("properties") or {}).get(part, {}) if isinstance(spec, dict) else {}
            continue
        props = spec.get("properties") if isinstance(spec, dict) else None
        if props and part in props:
            node, spec = None, props[part]
            continue
        return False
    return True


@cache
def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(text(CRD))
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def crd_field_exists(path: str) -> bool:
    node: Any = crd_schema()
    for part in re.split(r"\.", re.sub(r"\[[^\]]*\]", "", path)):
        if not part:
            continue
        if "items" in node:
            node = node["items"]
        props = node.get("properties") or {}
        if part not in props:
            return False
        node = props[part]
    return True


@cache
def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", text(ROOT / "Makefile"), re.M))


# ---- what the docs say ----


def code_lines(doc: str) -> Iterator[str]:
    """Lines of fenced code blocks (continuations joined) and inline code spans."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", doc, re.S):
        yield from re.sub(r"\\\n\s*", " ", block).splitlines()
    yield from re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", doc, flags=re.S))


def github_slug(heading: str) -> str:
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", text(path), flags=re.S), re.M):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links(doc: Path) -> Iterator[tuple[str, Path, str]]:
    """(as written, target file, anchor) for links into this repository."""
    body = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text(doc), flags=re.S))  # links are not in code
    for target in re.findall(r"\]\(([^)\s]+)\)", body):
        if re.match(r"[a-z]+:", target):
            match = re.match(
                r"https://github\.com/secretstage/secretstage-operator/(?:blob|tree)/[^/]+/([^#]+)(#.*)?", target
            )
            if match:
                yield target, ROOT / match.group(1), (match.group(2) or "#")[1:]
            continue
        path, _, anchor = target.partition("#")
        yield target, (doc.parent / path).resolve() if path else doc, anchor


# ---- the checks ----


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_links_lead_somewhere(doc: Path) -> None:
    broken = []
    for written, target, anchor in links(doc):
        if not target.exists():
            broken.append(f"{written}: no {target}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{written}: no heading #{anchor} in {rel(target)}")
    assert not broken, broken


def test_the_chart_notes_link_to_headings_that_exist() -> None:
    broken = []
    for page, anchor in re.findall(r"\{\{ \$docs \}\}/([\w./-]+\.md)(?:#([\w-]+))?", text(NOTES)):
        target = ROOT / "docs" / page
        if not target.exists():
            broken.append(page)
        elif anchor and anchor not in anchors(target):
            broken.append(f"{page}#{anchor}")
    assert not broken, broken


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_flag_is_ours_or_a_named_tool_s(doc: Path) -> None:
    allowed = our_flags().union(*OTHER_TOOLS_FLAGS.values())
    unknown = []
    for line in text(doc).splitlines():
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line):
            if flag in allowed:
                continue
            if flag in REMOVED_FLAGS and (doc.name == "CHANGELOG.md" or "gone" in line):
                continue
            unknown.append(flag)
    assert not unknown, f"flags that neither secretstage nor a listed tool has: {sorted(set(unknown))}"


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_secretstage_commands_exist_with_their_flags(doc: Path) -> None:
    problems = []
    for line in code_lines(text(doc)):
        for match in re.finditer(r"^\s*(?:\$ )?(?:kubectl[ -])?secretstage ([a-z][a-z-]*)([^|;&)]*)", line):
            command, rest = match.groups()
            if command not in parsers():
                problems.append(f"`{line.strip()}`: no command {command!r}")
                continue
            allowed = flags_of(parsers()[command]) | flags_of(parsers()[""])
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", rest):
                if flag not in allowed:
                    problems.append(f"`{line.strip()}`: {command} has no {flag}")
    assert not problems, problems


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_environment_variables_are_read_by_the_code(doc: Path) -> None:
    named = set(re.findall(r"\b((?:SECRETSTAGE|ALIBABA_CLOUD)_[A-Z0-9_]+)", text(doc)))
    unknown = named - known_env() - (REMOVED_ENV if doc.name in ("CHANGELOG.md", "operator.md") else set())
    assert not unknown, f"variables no code reads: {sorted(unknown)}"


def test_every_variable_the_operator_reads_is_documented() -> None:
    config = text(ROOT / "operator" / "secretstage" / "config.py")
    read = {f"SECRETSTAGE_{name}" for name in re.findall(r'(?:pick|listed|number)\(\s*"\w+",\s*"([A-Z_]+)"', config)}
    read |= {"SECRETSTAGE_LOG_LEVEL", "SECRETSTAGE_LOG_FORMAT"}
    documented = set(re.findall(r"\bSECRETSTAGE_[A-Z0-9_]+", text(ROOT / "docs" / "operator.md")))
    assert read - documented == set()


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_chart_values_exist(doc: Path) -> None:
    tops = set(values()) | set(schema().get("properties") or {})
    unknown = []
    body = text(doc)
    candidates = re.findall(r"--set(?:-json|-string)? '?([A-Za-z][\w.]*)=", body)
    candidates += [c for c in re.findall(r"`([a-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)+)(?:=[^`]*)?`", body)]
    for candidate in candidates:
        if re.search(r"\.(lua|ya?ml|md|py|sh|json|txt)$", candidate):
            continue  # a file name
        if candidate.split(".")[0] not in tops or value_exists(candidate) or crd_field_exists(f"spec.{candidate}"):
            continue  # (a CRD field written without spec., e.g. gate.consumers, is the CRD's)
        if candidate in MISSPELT_ON_PURPOSE or (candidate in REMOVED_VALUES and doc.name == "CHANGELOG.md"):
            continue
        unknown.append(candidate)
    assert not unknown, f"chart values that values.yaml does not have: {sorted(set(unknown))}"


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_crd_fields_exist(doc: Path) -> None:
    unknown = []
    for field in re.findall(r"`((?:spec|status)\.[A-Za-z][\w.\[\]]*)", text(doc)):
        field = field.rstrip(".")
        if field in OTHER_KINDS_FIELDS or any(field.startswith(f + ".") for f in OTHER_KINDS_FIELDS):
            continue
        if not crd_field_exists(field):
            unknown.append(field)
    assert not unknown, f"fields the CRD does not have: {sorted(set(unknown))}"


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_repository_paths_and_make_targets_exist(doc: Path) -> None:
    missing = []
    for span in code_lines(text(doc)):
        for path in re.findall(r"(?<![\w./-])((?:" + "|".join(map(re.escape, REPO_DIRS)) + r")[\w./-]*\w)", span):
            if "<" in path or "*" in path:
                continue
            if not (ROOT / path).exists():
                missing.append(path)
        for target in re.findall(r"^(?:\$ )?make ([a-z][a-z-]*)", span):
            if target not in make_targets():
                missing.append(f"make {target}")
    assert not missing, f"named in {rel(doc)} but not in the repository: {sorted(set(missing))}"


def test_documents_speak_to_users_not_to_our_tracker() -> None:
    """Users cannot open our issue tracker's numbers or the files our developers were given."""
    for doc in DOCS:
        body = text(doc)
        assert not re.search(r"\bissues? \d+\b", body), f"{rel(doc)} names an issue number"
        assert "../shared/" not in body, f"{rel(doc)} names a file users do not have"
        assert "kms-api.md" not in body, f"{rel(doc)} names a file users do not have"


# Where the operator names a reason: the reason argument of these constructors (kms codes aside).
REASON_ARGUMENTS = {
    "Outcome": 1,
    "failed": 0,
    "pending": 0,
    "_fail": 0,
    "PlanRejected": 0,
    "IdentityProblem": 0,
    "conditions_for": 1,
    "Wait": 1,
}


def reasons_in_the_code() -> set[str]:
    import ast

    found = set()
    for path in (ROOT / "operator" / "secretstage").rglob("*.py"):
        if "emulator" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            index = REASON_ARGUMENTS.get(name)
            if index is not None and len(node.args) > index:
                argument = node.args[index]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    found.add(argument.value)
    return found


def test_troubleshooting_explains_every_reason_the_operator_writes() -> None:
    page = text(ROOT / "docs" / "troubleshooting.md")
    section = page[page.index("## Reasons") : page.index("## KMS and STS codes")]
    explained = set(re.findall(r"^### (\w+)$", section, re.M))
    written = reasons_in_the_code()
    assert len(written) > 40, "the reason scan found too little: has a constructor been renamed?"
    assert written - explained == set(), "reasons docs/troubleshooting.md does not explain"
    assert explained - written == set(), "docs/troubleshooting.md explains reasons the operator never writes"


def test_generated_references_are_current() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_docs.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
