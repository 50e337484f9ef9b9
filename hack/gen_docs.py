#!/usr/bin/env python3
"""Write the generated references: docs/api.md from the CRD in crds/, docs/cli.md from the
``secretstage`` command's own parser. ``--check`` writes nothing and exits 1 when either is stale
(tests/test_docs.py runs it), so neither can drift from the code.

    python3 hack/gen_docs.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD = ROOT / "crds" / "secretstagepromotions.secretstage.io.yaml"
API = ROOT / "docs" / "api.md"
CLI = ROOT / "docs" / "cli.md"
sys.path.insert(0, str(ROOT / "operator"))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "object")
    if kind == "array":
        return f"[]{_type(node.get('items') or {})}"
    if kind == "object" and "additionalProperties" in node:
        return f"map[string]{_type(node['additionalProperties'])}"
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    return str(kind)


def _limits(node: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("enum", "one of"),
        ("pattern", "pattern"),
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("format", "format"),
    ):
        if key in node:
            value = node[key]
            shown = ", ".join(f"`{v}`" for v in value) if isinstance(value, list) else f"`{value}`"
            parts.append(f"{label} {shown}")
    for rule in node.get("x-kubernetes-validations") or []:
        parts.append(f"rule: {rule['message']}")
    return "; ".join(parts)


def _rows(node: dict[str, Any], path: str, required: set[str]) -> list[str]:
    rows = []
    for name, child in (node.get("properties") or {}).items():
        field = f"{path}.{name}"
        default = f"`{child['default']}`" if "default" in child else ""
        rows.append(
            f"| `{field}` | {_type(child)} | {'yes' if name in required else ''} | {default} | "
            f"{_cell(child.get('description', ''))} | {_cell(_limits(child))} |"
        )
        is_list = child.get("type") == "array"
        nested = child.get("items") if is_list else child
        if nested and nested.get("properties"):
            rows += _rows(nested, f"{field}[]" if is_list else field, set(nested.get("required") or []))
    return rows


def api_reference() -> str:
    crd = yaml.safe_load(CRD.read_text())
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    names = crd["spec"]["names"]
    lines = [
        "# API reference: SecretStagePromotion",
        "",
        f"<!-- generated from {CRD.relative_to(ROOT)} by hack/gen_docs.py; tests/test_docs.py checks it is current -->",
        "",
        f"`{crd['spec']['group']}/{version['name']}`, kind `{names['kind']}`, namespaced; short name "
        f"`{', '.join(names.get('shortNames') or [])}`. {_cell(schema.get('description', ''))}",
        "",
        "Columns of `kubectl get ssp` (`-o wide` adds those marked wide):",
        "",
        "| column | from | |",
        "|---|---|---|",
    ]
    for column in version.get("additionalPrinterColumns") or []:
        wide = "wide" if column.get("priority") else ""
        lines.append(f"| {column['name']} | `{_cell(column['jsonPath'])}` | {wide} |")
    for part in ("spec", "status"):
        node = schema["properties"][part]
        lines += [
            "",
            f"## {part}",
            "",
            _cell(node.get("description", "")),
            "",
        ]
        rules = [rule["message"] for rule in node.get("x-kubernetes-validations") or []]
        if rules:
            lines += ["Across fields, the API server refuses an object that breaks a rule:", ""]
            lines += [f"* {_cell(rule)}" for rule in rules]
            lines.append("")
        lines += [
            "| field | type | required | default | description | limits |",
            "|---|---|---|---|---|---|",
            *_rows(node, part, set(node.get("required") or [])),
        ]
    return "\n".join(lines) + "\n"


def _usage(parser: argparse.ArgumentParser) -> str:
    return parser.format_help().replace(f"usage: {parser.prog}", f"usage: {parser.prog}", 1)


def cli_reference() -> str:
    from secretstage.cli import build_parser

    top = build_parser()
    top.formatter_class = argparse.RawDescriptionHelpFormatter
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    lines = [
        "# CLI reference: `secretstage` and `kubectl secretstage`",
        "",
        "<!-- generated from the command's parser by hack/gen_docs.py; tests/test_docs.py checks it is current -->",
        "",
        "`pipx install secretstage-operator` installs `secretstage` and `kubectl-secretstage` (kubectl runs it as",
        "`kubectl secretstage`; `kubectl krew install --manifest-url` with the release's `secretstage.yaml` installs",
        "the plugin alone). Both take the same commands. The cluster commands (`status`, `check`, `rollback`,",
        "`retry`) use the pod's ServiceAccount in a pod (an Argo Workflows step) and the kube config",
        "(`KUBECONFIG`) elsewhere. Exit codes: 0 done, 1 KMS or the cluster said no (or could not be reached;",
        "the reason on stderr), 2 bad usage or configuration. Nothing secret is ever printed.",
        "",
        "```",
        _usage(top).rstrip(),
        "```",
    ]
    for name, parser in commands.choices.items():
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        lines += ["", f"## {name}", "", "```", parser.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    import os

    os.environ["COLUMNS"] = "110"  # argparse wraps help to the terminal: the same text everywhere
    stale = []
    for path, content in ((API, api_reference()), (CLI, cli_reference())):
        if "--check" in argv:
            if not path.exists() or path.read_text() != content:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(content)
    if stale:
        print(f"stale: {', '.join(stale)}; run python3 hack/gen_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
