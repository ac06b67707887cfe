"""Tables never cut ids or URLs, at 80 columns too, so they can be copied from the output."""

from __future__ import annotations

import io
import json

from webex_byova.cli import app
from webex_byova.cli._render import Renderer

LONG_ID = "Y2lzY29zcGFyazovL3VzL0RBVEFfU09VUkNFLzVjOGYyYmQ2LWFmNWMtNDZiMy1iZWU3LTg5OTg5ZGE0YjQ0Mw"
URL = "https://byova.example.com/a/rather/long/path/to/the/media/server"


def rendered(call: str, *args: object, **kwargs: object) -> list[str]:
    buf = io.StringIO()
    renderer = Renderer(file=buf)
    assert renderer.console.width == 80  # not a terminal: rich's default width
    getattr(renderer, call)(*args, **kwargs)
    return buf.getvalue().splitlines()


def test_table_keeps_ids_and_urls_whole_on_one_line() -> None:
    rows = [
        {
            "id": LONG_ID,
            "url": URL,
            "status": "active",
            "token_lifetime_minutes": 1440,
            "note": "free text may wrap over several lines rather than be cut short",
        }
    ]
    lines = rendered("table", rows, title="Data sources")
    assert any(LONG_ID in line for line in lines)
    assert any(URL in line for line in lines)
    text = "\n".join(lines)
    assert "…" not in text
    words = " ".join(line.strip("│ ") for line in lines)
    for word in ("free", "text", "wrap", "several", "short"):
        assert word in words


def test_record_keeps_ids_whole() -> None:
    lines = rendered("record", {"id": LONG_ID, "org_id": LONG_ID[:40], "url": URL}, title="x")
    assert any(LONG_ID in line for line in lines)
    assert "…" not in "\n".join(lines)


def test_short_tables_stay_within_the_terminal() -> None:
    lines = rendered("table", [{"id": "abc", "name": "x" * 200}], title="t")
    assert max(len(line) for line in lines) <= 80
    assert "…" not in "\n".join(lines)


def test_datasources_list_prints_copyable_ids(runner, emu_env) -> None:
    env = {**emu_env, "COLUMNS": "80"}
    login = runner.invoke(app, ["auth", "login", "--auto-consent", "--timeout", "20"], env=env)
    assert login.exit_code == 0, login.output
    url = "https://va.example.com/a/long/path/for/the/byova/media/server/of/this/test"
    created = runner.invoke(app, ["datasources", "create", "--url", url, "--json"], env=env)
    ds_id = json.loads(created.stdout)["id"]
    table = runner.invoke(app, ["datasources", "list"], env=env)
    assert table.exit_code == 0, table.output
    assert any(ds_id in line for line in table.output.splitlines())
    assert any(url in line for line in table.output.splitlines())
    shown = runner.invoke(app, ["datasources", "get", ds_id], env=env)
    assert any(ds_id in line for line in shown.output.splitlines())
