"""The API reference (pdoc, from the docstrings) builds without warnings and documents every
public name of the seed's API reference and of ``webex_byova.__all__``.

`python3 dev.py test` builds it into build/api-reference/ as a gate just before pytest and
names that folder in ``WEBEX_BYOVA_API_REFERENCE``; run alone, this test runs the same command
(``dev.docs_command``) into a temporary folder, so it always checks the current source.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import webex_byova

from .conftest import ROOT


def _seed_path() -> Path:
    """The public API contract: the shared seed beside the checkout when it is there (CI lays
    ``shared/`` next to the clone), else the copy kept with these tests."""
    name = "webex_byova-api-reference.txt"
    for candidate in (ROOT.parent / "shared" / "seed" / name, Path("/work/shared/seed") / name):
        if candidate.is_file():
            return candidate
    return Path(__file__).with_name("data") / "seed-api-reference.txt"


SEED = _seed_path()
MARKERS = {"property", "classmethod", "async", "dataclass", "instance-attribute", "class-attribute"}
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
QUALIFIED = re.compile(r"webex_byova(\.[A-Za-z_][A-Za-z0-9_]*)+")
ATTRIBUTE_ROW = re.compile(r"([a-z_][a-z0-9_]*) \|")


def _dev_module():
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_names(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """``[(module, class)]`` and ``[(module, class, member)]`` the seed reference documents.

    A class heading is a public name of ``webex_byova`` (or a dotted ``webex_byova.x.Y``) on
    its own line, not a table cell (cells are followed by a ``|`` line); a member is a name
    followed by its signature or a kind marker, or an ``Attributes:`` table row.
    """
    lines = [line.strip() for line in text.splitlines()]
    classes: list[tuple[str, str]] = []
    members: list[tuple[str, str, str]] = []
    current: tuple[str, str] | None = None
    section = None
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        heading = QUALIFIED.fullmatch(line) or (
            IDENT.fullmatch(line) and line in webex_byova.__all__ and nxt != "|"
        )
        if heading:
            module, _, name = line.rpartition(".")
            current = (module or "webex_byova", name)
            classes.append(current)
            section = None
        elif current is None:
            continue
        elif line.endswith(":") and " " not in line:
            section = line
        elif section == "Attributes:" and (row := ATTRIBUTE_ROW.fullmatch(line)):
            members.append((*current, row.group(1)))
        elif (
            IDENT.fullmatch(line)
            and line not in MARKERS
            and (nxt.startswith(line + "(") or nxt in MARKERS)
            and (not line.startswith("_") or line == "__init__")  # the seed lists privates too
        ):
            members.append((*current, line))
    return classes, members


def test_seed_parser_reads_the_seed() -> None:
    classes, members = seed_names(SEED.read_text())
    assert ("webex_byova", "BYOVA") in classes
    assert ("webex_byova.config", "BYOVAConfig") in classes
    assert ("webex_byova", "BYOVA", "verify_jws_token") in members
    assert ("webex_byova", "RateLimitError", "retry_after") in members
    assert ("webex_byova.config", "BYOVAConfig", "timeout") in members
    assert not [m for m in members if m[2].startswith("_") and m[2] != "__init__"]
    assert len(classes) >= 11
    assert len(members) >= 50


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = os.environ.get("WEBEX_BYOVA_API_REFERENCE")
    if built:  # dev.py test built it from this source moments ago
        return Path(built)
    out = tmp_path_factory.mktemp("api-reference")
    command = _dev_module().docs_command(sys.executable, out)
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr  # -W error: any pdoc warning fails the build
    assert "Warning" not in proc.stderr, proc.stderr
    return out


def _page(reference: Path, module: str) -> str:
    return (reference / (module.replace(".", "/") + ".html")).read_text()


def test_every_public_name_of_the_seed_is_documented(reference: Path) -> None:
    classes, members = seed_names(SEED.read_text())
    missing = [c for c in classes if f'id="{c[1]}"' not in _page(reference, c[0])]
    missing += [m for m in members if f'id="{m[1]}.{m[2]}"' not in _page(reference, m[0])]
    assert missing == []


def test_every_name_of_the_package_is_on_its_page(reference: Path) -> None:
    page = _page(reference, "webex_byova")
    names = [n for n in webex_byova.__all__ if n != "__version__"]
    assert [n for n in names if f'id="{n}"' not in page] == []
    # documented from the docstrings, not only listed
    assert "Verify an inbound BYODS JWS token (sync)." in page
    assert "expected_url" in page


def test_the_reference_covers_the_public_modules(reference: Path) -> None:
    modules = _dev_module().public_modules()
    assert modules[0] == "webex_byova"
    assert not [m for m in modules if any(p.startswith("_") for p in m.split("."))]
    for module in ("webex_byova.client", "webex_byova.jws", "webex_byova.testing"):
        assert module in modules
        assert (reference / (module.replace(".", "/") + ".html")).is_file()
    assert (reference / "index.html").is_file()
