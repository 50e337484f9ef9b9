"""The explorer checked against itself: each mutation removes one guard of the protocol, and the
explorer (or the unit test named) must then fail. Run by hand (each mutation runs until the first
failing schedule; the full list takes a few minutes):

    .venv/bin/python -m tests.protocol.mutations [NAME ...]

It copies ``operator/`` to a temporary folder, applies the mutation there, and runs pytest with that
copy first on the import path; the working tree is never changed. docs/development/reliability.md lists them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPLORER = ["tests/protocol/test_fault_explorer.py"]
SCHEDULES = ["tests/protocol/test_edges.py", "tests/protocol/test_protocol.py"]


@dataclass(frozen=True)
class Mutation:
    name: str
    guard: str  # what it removes
    file: str  # under operator/secretstage
    old: str
    new: str
    more: tuple[tuple[str, str, str], ...] = ()  # (file, old, new): where one guard stands in two places


MUTATIONS = [
    Mutation(
        "edit-not-checked",
        "a status write for an older generation is written again after a conflict (issue 20, case 1)",
        "protocol.py",
        "            edited = store.generation != generation",
        "            edited = False",
    ),
    Mutation(
        "uid-not-checked",
        "the re-read after a conflict ignores the uid: an attempt writes into a re-created object (case 2)",
        "protocol.py",
        "            if store.uid != uid:",
        "            if False:",
    ),
    Mutation(
        "journal-not-checked-against-spec",
        "a journal that is not the spec's is resumed (case 3)",
        "protocol.py",
        "        if foreign is not None:",
        "        if False:",
    ),
    Mutation(
        "lock-keyed-by-spelling",
        "the per-secret lock keyed by the endpoint's spelling (case 4)",
        "protocol.py",
        '    store = f"region/{region}" if region else f"endpoint/{endpoint.rstrip(\'/\').lower()}"',
        "    store = f\"endpoint/{endpoint.rstrip('/').lower()}\"",
    ),
    Mutation(
        "no-reservation",
        "the secret is released while a request of the promotion may still land (case 5)",
        "protocol.py",
        "self.locks.reserve(self.key, self.owner, self.who, max(filter(None, self.may_land), default=None))",
        "self.locks.reserve(self.key, self.owner, self.who, None)",
    ),
    Mutation(
        "journal-comparison-removed",
        "write_status no longer compares the journal after a conflict (case 6)",
        "protocol.py",
        "            if Journal.of(fresh, generation) != known or is_done(fresh, generation):",
        "            if is_done(fresh, generation):",
    ),
    Mutation(
        "landed-write-not-recognised",
        "a write that landed but whose answer was lost aborts the attempt (case 7)",
        "protocol.py",
        "            if _holds(fresh, status):\n                return",
        "            if False:\n                return",
    ),
    Mutation(
        "intent-before-the-waits",
        "the intent is written before the client's waits, not right before the request leaves",
        "protocol.py",
        "            request_id = await self._update(call, before_send=journal_intent)",
        "            await journal_intent()\n"
        "            request_id = await self._update(call, before_send=None)  # type: ignore[arg-type]",
    ),
    Mutation(
        "fixup-not-tracked",
        "an ACSPrevious fix-up that got no answer is not held as a request that may still land (in memory, "
        "nor in the journal)",
        "domain/journal.py",
        "        times = [t for t in (self.earlier_unanswered, self.previous_sent) if t]",
        "        times = [t for t in (self.earlier_unanswered,) if t]",
        (("protocol.py", "                self.may_land.add(self.result.move.previous_sent)", "                pass"),),
    ),
    Mutation(
        "no-start-up-reservation",
        "a restarted operator forgets which promotions may still have a request on its way",
        "protocol.py",
        '    generation = status.get("observedGeneration")\n    if not isinstance(generation, int):',
        '    generation = status.get("observedGeneration")\n    if True:',
    ),
    Mutation(
        "internal-failure-not-maybe-applied",
        "an InternalFailure under HTTP 4xx or 200 counts as certainly not applied (and is re-sent)",
        "kms/errors.py",
        "    if code in UNKNOWN_OUTCOME_CODES:\n        return True\n",
        "",
    ),
]


def run(mutation: Mutation) -> bool:
    """True when the tests fail with the mutation applied (as they must): the exhaustive explorer
    first; the readable schedules of test_edges.py / test_protocol.py only if the explorer misses it."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "operator"
        shutil.copytree(ROOT / "operator", copy)
        for file, old, new in ((mutation.file, mutation.old, mutation.new), *mutation.more):
            target = copy / "secretstage" / file
            source = target.read_text()
            if source.count(old) != 1:
                raise SystemExit(f"{mutation.name}: the code to mutate is not found once in {file}; update it")
            target.write_text(source.replace(old, new))
        env = {**os.environ, "PYTHONPATH": f"{copy}{os.pathsep}{ROOT}"}
        for suite in (EXPLORER, SCHEDULES):
            done = subprocess.run(
                # pyproject's pythonpath would put the real operator/ first: point it at the copy instead
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-x",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "-o",
                    f"pythonpath={copy}",
                    *suite,
                ],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode:
                failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
                print(f"{mutation.name}: caught by {' '.join(suite)}", flush=True)
                for line in failed[:1]:
                    print(f"    {line[:300]}", flush=True)
                return True
        print(f"{mutation.name}: NOT CAUGHT", flush=True)
        return False


def main(names: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    missed = [m.name for m in chosen if not run(m)]
    print(f"{len(chosen) - len(missed)} of {len(chosen)} mutations caught" + (f"; missed: {missed}" if missed else ""))
    sys.stdout.flush()
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
