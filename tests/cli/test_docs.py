"""Every ```python block of the user guides runs, in order, one namespace per guide.

Only blocks explicitly fenced as ```python no-run are skipped (at most two per guide); the rest
run offline against the Webex emulator and a media server on 127.0.0.1.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webex_byova.testing import WebexEmulator

from .conftest import ROOT

GUIDES = ("docs/media-server.md", "docs/websocket.md", "docs/administration.md", "docs/pipecat.md")
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
MAX_NO_RUN = 2


def python_blocks(text: str) -> list[tuple[bool, str]]:
    """``(runs, code)`` for every ```python block; a block runs unless marked ``no-run``."""
    blocks = []
    for match in FENCE.finditer(text):
        info = match.group(1).split()
        if info not in ([], ["no-run"]):
            raise ValueError(f"unknown python fence info {match.group(1)!r}")
        blocks.append((info != ["no-run"], match.group(2)))
    return blocks


def test_fence_parser_skips_only_marked_blocks() -> None:
    text = "```python\na = 1\n```\n\n```python no-run\nb = 2\n```\n```bash\nc\n```\n"
    assert python_blocks(text) == [(True, "a = 1\n"), (False, "b = 2\n")]
    with pytest.raises(ValueError, match="unknown python fence"):
        python_blocks("```python norun\nx\n```\n")


def test_readme_links_both_guides() -> None:
    readme = (ROOT / "README.md").read_text()
    development = readme.split("## Development", 1)[1]
    for guide in GUIDES:
        assert f"]({guide})" in development


@pytest.mark.parametrize("guide", GUIDES)
def test_guide_python_blocks_run(
    guide: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ROOT / guide
    text = path.read_text()
    # A guide, not a reference: past ~500 lines a topic gets its own page (the API reference
    # carries the details).
    assert len(text.splitlines()) <= 500, f"{guide} should stay short"
    blocks = python_blocks(text)
    runnable = [code for runs, code in blocks if runs]
    assert len(blocks) - len(runnable) <= MAX_NO_RUN
    assert len(runnable) >= 5
    monkeypatch.chdir(tmp_path)  # snippets may create files (e.g. a SQLite token store)
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    try:
        for index, code in enumerate(runnable, 1):
            compiled = compile(code, f"{guide} python block {index}", "exec")
            exec(compiled, namespace)  # noqa: S102 - running our own documentation
    finally:
        for value in namespace.values():  # a failed block must not leak a running emulator
            if isinstance(value, WebexEmulator):
                value.stop()
