"""docs/deploy.md: its python blocks run (against the suite's redis-server) and its
`byova serve` command line uses only flags the command has."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ..cli.conftest import ROOT
from ..cli.test_docs import python_blocks

GUIDE = ROOT / "docs" / "deploy.md"


def test_deploy_guide_python_blocks_run(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(GUIDE.read_text())
    assert len(blocks) >= 4
    assert all(runs for runs, _ in blocks)
    namespace: dict[str, object] = {"__name__": "docs_deploy"}
    # the logging block configures loggers the way a server process would: undo that after
    names = ("", "webex_byova", "httpx", "httpcore")
    levels = {name: logging.getLogger(name).level for name in names}
    try:
        for index, (_, code) in enumerate(blocks, 1):
            exec(compile(code, f"docs/deploy.md python block {index}", "exec"), namespace)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_deploy_guide_serve_flags_exist() -> None:
    from webex_byova.cli import app

    text = GUIDE.read_text()
    commands = re.findall(r"^byova serve .*?(?<!\\)$", text, re.MULTILINE | re.DOTALL)
    assert commands
    flags = set(re.findall(r"(--[a-z][a-z-]+)", " ".join(commands)))
    assert {"--workers", "--metrics-port", "--log-format"} <= flags
    result = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in flags:
        assert flag in result.output, flag
