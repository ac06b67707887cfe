#!/usr/bin/env python3
"""Mutation testing of the security- and wire-critical modules, one module at a time (mutmut).

    python scripts/mutation.py                      # every module, in the order below
    python scripts/mutation.py jws webhooks         # only these
    python scripts/mutation.py media_auth --survivors   # also print each surviving mutant's diff
    python scripts/mutation.py --list               # the modules and their test subsets
    python scripts/mutation.py --report             # scores of the last runs, without running
    python scripts/mutation.py jws --retest-survivors   # after adding tests: rerun survivors only

Not run by CI: a module takes minutes (each mutant re-runs the tests that reach the mutated
function). Each module is run in its own scratch copy of the project under ``.mutmut/<module>/``
(gitignored) with only that module mutated and only its relevant tests selected, so the source
tree is never touched and a second run of an unchanged module reuses mutmut's cached verdicts.
Shared mutmut settings (timeouts per mutant, process isolation, pytest flags) are read from
``[tool.mutmut]`` in pyproject.toml; this script adds ``only_mutate`` and the test selection.

``--retest-survivors`` reruns only the mutants that were not detected (or not reached, when a
run was interrupted) last time, plus every mutant of a function whose source changed since;
the others keep their verdict. That is sound while tests are only added (a mutant killed by
the old tests is still killed by them), and it turns a rerun of the slow modules from most of
an hour into minutes. When functions were added or renamed it also has mutmut map tests to
functions again (mutmut extends its map only for new tests, so a new function's mutants would
come out as "no tests"). It is also how to confirm survivors: one full
mutmut 3.8 run here (two workers, a loaded machine) reported mutants as survived that a rerun
of just those mutants kills; the cause was not found, so take the score after a retest. The
last verdicts are written to ``.mutmut/<module>/results.json`` before mutmut starts, so an
interrupted run (even one that had mutmut reset its cache) keeps them.

The score printed per module is ``(killed + timeout + crashed) / total``: a mutant that makes a
test fail, hang past the per-mutant timeout, or crash the worker was detected. ``survived`` and
``no tests`` mutants were not. Exit status 1 when a module listed in ``REQUIRED`` is below 90%.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutmut"
PKG = "src/webex_byova"


@dataclass(frozen=True)
class Module:
    """One mutation run: the files mutated and the tests that exercise them."""

    files: tuple[str, ...]
    tests: tuple[str, ...]


#: Run order matters on a shared machine: the modules that must reach 90% go first.
MODULES: dict[str, Module] = {
    "jws": Module(
        (f"{PKG}/jws.py",),
        ("tests/jws", "tests/security/test_jws.py", "tests/security/test_jws_contract.py"),
    ),
    "webhooks": Module(
        (f"{PKG}/webhooks.py",),
        (
            "tests/byods/test_inbound.py",
            "tests/byods/test_webhook_manager.py",
            "tests/byods/test_secrets.py",
            "tests/security/test_webhooks.py",
            "tests/security/test_webhook_contract.py",
        ),
    ),
    "media_auth": Module(
        (f"{PKG}/media/_auth.py",),
        ("tests/media/test_auth.py", "tests/security/test_grpc_auth.py"),
    ),
    "http": Module(
        (f"{PKG}/_http.py",),
        (
            "tests/foundation/test_http_core.py",
            "tests/foundation/test_review_fixes.py",
            "tests/foundation/test_http_mutation.py",
        ),
    ),
    "tokens": Module(
        (f"{PKG}/tokens.py",),
        (
            "tests/auth/test_tokens_mutation.py",
            "tests/auth/test_sansio.py",
            "tests/auth/test_corrupt_store.py",
        ),
    ),
    # The browser-authorization tests wait for a redirect: a mutant that breaks the local
    # listener makes them wait until mutmut's per-mutant wall timeout ((tests' time + 10 s)
    # x 5, about a minute each; detected as a timeout), and the listener mutants sort after
    # the cheap ones, so a run cut short leaves them "not checked". A full run takes about an
    # hour with --max-children 2 (the hangs are idle waits, not CPU).
    "token_managers": Module(
        (f"{PKG}/integration.py", f"{PKG}/service_app.py"),
        (
            "tests/auth/test_token_managers_mutation.py",
            "tests/auth/test_token_managers_authorize.py",
            "tests/auth/test_token_managers_refresh.py",
            "tests/auth/test_integration.py",
            "tests/auth/test_service_app.py",
            "tests/auth/test_sansio.py",
            "tests/auth/test_review.py",
            "tests/auth/test_webhook_order.py",
            "tests/security/test_oauth.py",
        ),
    ),
    # The sans-IO call core: the plain data, the response builders, the turn/session state
    # machine and the front ends' TurnHandle, driven in-process through open_turn() with an
    # injected clock and a scripted end-pointer (no socket, no real-time wait).
    "media_core": Module(
        (
            f"{PKG}/media/_model.py",
            f"{PKG}/media/_messages.py",
            f"{PKG}/media/_responses.py",
            f"{PKG}/media/_frontend.py",
            f"{PKG}/media/session.py",
        ),
        (
            "tests/media/test_core_model_mutation.py",
            "tests/media/test_core_mutation.py",
            "tests/media/test_core_pacing.py",
            "tests/media/test_core_logs.py",
            "tests/media/test_core_tracing.py",
            "tests/media/test_core_guards.py",
            "tests/media/test_frontend.py",
            "tests/media/test_units.py",
            "tests/media/test_frame_path.py",
            "tests/media/test_handler_timeout.py",
        ),
    ),
    "keeper": Module(
        (f"{PKG}/keeper.py",),
        (
            "tests/byods/test_keeper.py",
            "tests/byods/test_keeper_review.py",
            "tests/byods/test_keeper_schedule.py",
            "tests/byods/test_keeper_mutation.py",
        ),
    ),
    "storage": Module(
        (f"{PKG}/storage/*",),
        (
            "tests/auth/test_storage_contract.py",
            "tests/auth/test_storage_backends.py",
            "tests/auth/test_corrupt_store.py",
            "tests/auth/test_storage_mutation.py",
            "tests/security/test_storage.py",
        ),
    ),
}
REQUIRED = ("jws", "webhooks", "media_auth")
DETECTED = ("killed", "timeout", "segfault", "suspicious")
UNDETECTED = ("survived", "no tests")
#: What the scratch copy needs besides the files mutmut copies itself (src/, tests/).
COPIED = ("src", "tests", "pyproject.toml", "README.md")


def _mutmut_section(text: str, settings: dict[str, object]) -> str:
    """``text`` (pyproject.toml) with its ``[tool.mutmut]`` table replaced by ``settings``."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines():
        header = re.match(r"\s*\[+([^\]]+)\]+\s*$", line)
        if header:
            skipping = header.group(1).strip() == "tool.mutmut"
        if not skipping:
            kept.append(line)
    table = ["", "[tool.mutmut]"]
    table += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(kept + table) + "\n"


def _prepare(name: str, module: Module, exclude: tuple[str, ...] = ()) -> Path:
    """Refresh the scratch copy of the project for ``name`` (mutmut's cache is kept)."""
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    for item in COPIED:
        source, target = ROOT / item, work / item
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, target)
    text = (ROOT / "pyproject.toml").read_text()
    settings: dict[str, object] = dict(tomllib.loads(text).get("tool", {}).get("mutmut", {}))
    settings["only_mutate"] = list(module.files)
    settings["pytest_add_cli_args_test_selection"] = [
        t for t in module.tests if (ROOT / t).exists() and not t.startswith(exclude)
    ]
    (work / "pyproject.toml").write_text(_mutmut_section(text, settings))
    return work


def _function_hashes(files: tuple[str, ...], base: Path) -> dict[str, str]:
    """``module.x_func`` / ``module.xǁClassǁmethod`` (mutmut's naming) -> hash of its source,
    for the files under ``base`` (the project, or a scratch copy)."""
    found: dict[str, str] = {}
    for pattern in files:
        for path in sorted(base.glob(pattern)):
            if path.suffix != ".py":
                continue
            source = path.read_text()
            rel = path.relative_to(base / "src").with_suffix("")
            module = ".".join(rel.parts).removesuffix(".__init__")
            for node in ast.parse(source).body:
                pairs: list[tuple[str, ast.AST]] = []
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    pairs.append((f"x_{node.name}", node))
                elif isinstance(node, ast.ClassDef):
                    pairs += [
                        (f"x\u01c1{node.name}\u01c1{item.name}", item)
                        for item in node.body
                        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    ]
                for name, item in pairs:
                    text = ast.get_source_segment(source, item) or ""
                    found[f"{module}.{name}"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return found


def _function_of(mutant: str) -> str:
    return mutant.rsplit("__mutmut_", 1)[0]


def _mutmut(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [str(exe), *args], cwd=work, env=env, capture_output=True, text=True, check=False
    )


def _statuses(work: Path) -> dict[str, str]:
    """Mutant name -> status, from ``mutmut results --all true``."""
    out = _mutmut(work, "results", "--all", "true").stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            found[name] = status.strip()
    return found


def _load_results(work: Path) -> dict[str, dict[str, Any]] | None:
    """The verdicts, function hashes and timing of the last run in ``work`` (None if never
    run)."""
    path = work / "results.json"
    if path.exists():
        loaded: dict[str, dict[str, Any]] = json.loads(path.read_text())
        return loaded
    if not (work / "mutants").exists():
        return None
    name = work.name
    return {
        "statuses": _statuses(work),
        "hashes": _function_hashes(MODULES[name].files, work) if name in MODULES else {},
    }


def _save_results(
    work: Path, statuses: dict[str, str], hashes: dict[str, str], timing: dict[str, float]
) -> None:
    # Written aside and renamed: a run killed while writing keeps the last complete file.
    path = work / "results.json"
    partial = path.with_suffix(".json.tmp")
    partial.write_text(
        json.dumps(
            {"statuses": statuses, "hashes": hashes, "timing": timing}, indent=1, sort_keys=True
        )
    )
    partial.replace(path)


def _drop_stale_test_map(work: Path, previous: dict[str, str], current: dict[str, str]) -> bool:
    """Delete mutmut's test map (``mutants/mutmut-stats.json``) when functions were added,
    removed or renamed since the last run (the keys of ``previous`` vs ``current``).

    mutmut 3.8 reuses that map and only collects it again for new *tests*: a new function
    has no entry, so its mutants come out as "no tests" (false survivors) although the tests
    reach it. Without the file mutmut runs one full stats pass; its verdicts (kept in the
    ``.meta`` files) are untouched.
    """
    stats = work / "mutants" / "mutmut-stats.json"
    if set(previous) == set(current) or not stats.exists():
        return False
    stats.unlink()
    return True


def _merge(previous: dict[str, str], fresh: dict[str, str], selected: list[str]) -> dict[str, str]:
    """Last verdicts, with the mutants just rerun (``selected`` names/patterns) replaced."""
    rerun = {m for m in fresh if any(fnmatch.fnmatchcase(m, pattern) for pattern in selected)}
    rerun_functions = {p.removesuffix("__mutmut_*") for p in selected if p.endswith("*")}
    merged = {
        m: s
        for m, s in previous.items()
        if m not in rerun and _function_of(m) not in rerun_functions
    }
    merged.update({m: fresh[m] for m in rerun})
    return merged


def _score(statuses: dict[str, str]) -> tuple[Counter[str], float]:
    counts = Counter(statuses.values())
    total = sum(counts.values())
    detected = sum(counts[s] for s in DETECTED)
    return counts, (100.0 * detected / total if total else 0.0)


def _row(name: str, statuses: dict[str, str], timing: dict[str, float] | None = None) -> str:
    counts, score = _score(statuses)
    other = sum(
        v for k, v in counts.items() if k not in ("killed", "survived", "timeout", "no tests")
    )
    per_mutant = ""
    if timing and timing.get("mutants"):
        per_mutant = f"{timing['seconds'] / timing['mutants']:>9.1f}"
    return (
        f"{name:<16}{counts['killed']:>8}{counts['survived']:>10}{counts['no tests']:>10}"
        f"{counts['timeout']:>9}{other:>7}{sum(counts.values()):>7}{score:>8.1f}%{per_mutant}"
    )


def _show_survivors(work: Path, statuses: dict[str, str]) -> None:
    for mutant, status in sorted(statuses.items()):
        if status not in UNDETECTED:
            continue
        diff = _mutmut(work, "show", mutant).stdout
        changed = [
            line
            for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        print(f"--- {mutant} ({status})")
        for line in changed:
            print(f"    {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"subset of: {', '.join(MODULES)}")
    parser.add_argument("--list", action="store_true", help="print the modules and exit")
    parser.add_argument("--report", action="store_true", help="print the last scores only")
    parser.add_argument("--survivors", action="store_true", help="print surviving mutants")
    parser.add_argument("--fresh", action="store_true", help="drop cached verdicts first")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATH",
        help="leave these tests out of the selection (e.g. a baseline without tests/security)",
    )
    parser.add_argument(
        "--retest-survivors",
        action="store_true",
        help="rerun only last run's undetected mutants and those of changed functions",
    )
    parser.add_argument(
        "--max-children", type=int, default=1, help="parallel mutant workers (default 1)"
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s): {', '.join(unknown)}")
    chosen = args.modules or list(MODULES)
    if args.list:
        for name in chosen:
            module = MODULES[name]
            print(f"{name}: {' '.join(module.files)}\n    tests: {' '.join(module.tests)}")
        return 0

    rows: list[str] = []
    failing: list[str] = []
    for name in chosen:
        work = WORK / name
        if not args.report:
            if args.fresh and (work / "mutants").exists():
                shutil.rmtree(work / "mutants")
            hashes = _function_hashes(MODULES[name].files, ROOT)
            previous = _load_results(work)
            if previous is not None:
                # The verdicts so far are on disk before mutmut starts: a run interrupted
                # after mutmut reset its cache (e.g. the test list changed) keeps them.
                _save_results(
                    work, previous["statuses"], previous["hashes"], previous.get("timing", {})
                )
                # Only on a retest: without the file mutmut also forgets the test selection it
                # last ran with, so a changed selection no longer resets its verdicts. A retest
                # keeps verdicts anyway (sound while tests are only added); a full run after
                # adding functions wants --fresh.
                if args.retest_survivors and _drop_stale_test_map(work, previous["hashes"], hashes):
                    print(f"== {name}: functions added or renamed, collecting the test map again")
                # Mutants of functions that are gone (removed or renamed) no longer exist.
                previous["statuses"] = {
                    m: s for m, s in previous["statuses"].items() if _function_of(m) in hashes
                }
            selected: list[str] = []
            if args.retest_survivors and previous is not None:
                changed = {f for f, h in hashes.items() if previous["hashes"].get(f) != h}
                selected = [
                    m
                    for m, s in previous["statuses"].items()
                    if s in UNDETECTED or s == "not checked"  # an interrupted run
                ]
                selected += [f"{f}__mutmut_*" for f in sorted(changed)]
            work = _prepare(name, MODULES[name], tuple(args.exclude))
            print(f"== {name}: mutating {' '.join(MODULES[name].files)}", flush=True)
            timing: dict[str, float] = dict((previous or {}).get("timing", {}))
            if args.retest_survivors and previous is not None and not selected:
                statuses = previous["statuses"]
            else:
                started = time.monotonic()
                run = _mutmut(work, "run", "--max-children", str(args.max_children), *selected)
                seconds = time.monotonic() - started
                if run.returncode != 0:
                    print(run.stdout[-4000:], run.stderr[-4000:], sep="\n")
                    print(f"mutmut failed for {name} (exit {run.returncode})")
                    failing.append(name)
                    continue
                statuses = _statuses(work)
                run_count = len(statuses)
                if selected and previous is not None:
                    run_count = len(_merge({}, statuses, selected))
                    statuses = _merge(previous["statuses"], statuses, selected)
                # s/mutant of this run (wall time over mutants run, incl. mutmut's own stats
                # and warm-up passes); a retest keeps the figure of the last complete run.
                if not selected:
                    timing = {"seconds": round(seconds, 1), "mutants": run_count}
                timing["last_seconds"] = round(seconds, 1)
                timing["last_mutants"] = run_count
            _save_results(work, statuses, hashes, timing)
        else:
            loaded = _load_results(work)
            if loaded is None:
                print(f"== {name}: no results yet")
                continue
            statuses = loaded["statuses"]
            timing = loaded.get("timing", {})
        rows.append(_row(name, statuses, timing))
        print(rows[-1], flush=True)
        if args.survivors:
            _show_survivors(work, statuses)
        if name in REQUIRED and _score(statuses)[1] < 90.0:
            failing.append(name)

    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    if dirty.strip():  # mutmut works on copies; this guards against that ever changing
        print(f"ERROR: the source tree changed during the run:\n{dirty}")
        return 2
    print(
        f"\n{'module':<16}{'killed':>8}{'survived':>10}{'no tests':>10}{'timeout':>9}"
        f"{'other':>7}{'total':>7}{'score':>9}{'s/mutant':>9}"
    )
    print("\n".join(rows))
    if failing:
        print(f"below 90% or failed: {', '.join(failing)}")
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
