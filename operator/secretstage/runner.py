"""``secretstage run``: the operator process (filled in by the operator issue)."""

from __future__ import annotations

import argparse
from typing import Any


def add_run_parser(sub: Any) -> None:
    sub.add_parser("run", help="run the operator")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.error("the operator is not implemented yet")
