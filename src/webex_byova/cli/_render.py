"""Thin output layer: every command returns plain data; this renders it as rich or JSON.

Secrets are scrubbed here, in one place: unless the user asked for ``--show-tokens`` every
value under a secret-looking key (``access_token``, ``jwsToken``, ``secret`` …) is masked and
JWTs in free text are redacted, for tables and JSON alike.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._logging import SECRET_KEYS, mask, redact

__all__ = ["Renderer", "jsonable", "scrub"]

_EXTRA_SECRET_KEYS = frozenset({"clientsecret", "client_secret", "token", "jws_token"})


def _is_secret_key(key: str) -> bool:
    low = key.lower().replace("-", "_")
    return (
        low in SECRET_KEYS
        or low in _EXTRA_SECRET_KEYS
        or (
            low.endswith(("_token", "token", "secret"))
            and not low.endswith(("expiry_time", "lifetime_minutes"))
        )
    )


def jsonable(value: Any) -> Any:
    """Convert pydantic models, dataclasses, datetimes and tuples to JSON-ready values."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump(mode="json", by_alias=True))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def scrub(value: Any, *, show_tokens: bool = False) -> Any:
    """Mask every secret in ``value`` (recursively) unless ``show_tokens``."""
    value = jsonable(value)
    if show_tokens:
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if _is_secret_key(key) and isinstance(item, str):
                out[key] = mask(item)
            else:
                out[key] = scrub(item)
        return out
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def _keeps_whole(key: str) -> bool:
    """Columns whose values are copied (ids, URLs, timestamps): never cut or wrapped."""
    low = key.lower()
    return low == "id" or low.endswith(("_id", "id", "url", "uri", "_at"))


_FREE_MIN_WIDTH = 16


def _column_width(key: str, cells: Iterable[str]) -> tuple[int, bool]:
    """``(min_width, whole)``: an id/URL column is as wide as its longest cell and never
    wraps; another column may shrink to ``_FREE_MIN_WIDTH`` (or its own width) and fold."""
    longest = max((len(c) for c in cells), default=0)
    if _keeps_whole(key):
        return max(longest, 1), True
    return min(max(longest, len(key)), _FREE_MIN_WIDTH), False


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class Renderer:
    """Writes command results to the terminal (rich) or as one JSON document (``--json``)."""

    def __init__(
        self,
        *,
        as_json: bool = False,
        show_tokens: bool = False,
        file: TextIO | None = None,
        console: Console | None = None,
    ) -> None:
        self.as_json = as_json
        self.show_tokens = show_tokens
        self._file = file
        self.console = console or Console(file=file, highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False)

    def _out(self) -> TextIO:
        return self._file or sys.stdout

    def json(self, data: Any) -> None:
        """Write ``data`` as JSON (always scrubbed unless ``show_tokens``)."""
        text = json.dumps(scrub(data, show_tokens=self.show_tokens), indent=2, sort_keys=False)
        self._out().write(text + "\n")
        self._out().flush()

    def table(
        self,
        rows: Iterable[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        *,
        title: str | None = None,
    ) -> None:
        """Render rows as a table (or a JSON list with ``--json``)."""
        rows = list(rows)
        if self.as_json:
            self.json(rows)
            return
        data = [scrub(r, show_tokens=self.show_tokens) for r in rows]
        cols = list(columns) if columns else list(data[0]) if data else []
        if not data:
            self.console.print(f"[dim]{title or 'result'}: nothing found[/dim]")
            return
        cells = [[_cell(row.get(c)) for c in cols] for row in data]
        table = Table(title=title, show_lines=False)
        for i, col in enumerate(cols):
            width, whole = _column_width(col, (r[i] for r in cells))
            table.add_column(col, overflow="fold", no_wrap=whole, min_width=width)
        for line in cells:
            table.add_row(*line)
        self._print_whole(table)

    def _print_whole(self, table: Table) -> None:
        """Print ``table`` without cutting any cell: wider than the terminal if it must be.

        Free-text columns wrap (``fold``) rather than end in "…"; id and URL columns stay
        on one line so they can be copied. When even that does not fit, the table is
        rendered at the width it needs and the terminal wraps it.
        """
        console = self.console
        need = 1 + sum((c.min_width or 1) + 3 for c in table.columns)  # borders and padding
        if need <= console.width:
            console.print(table)
            return
        width = console.width
        console.width = need  # Console.print(width=) cannot exceed the console's width
        try:
            console.print(table, crop=False)
        finally:
            console.width = width

    def record(self, data: Mapping[str, Any], *, title: str | None = None) -> None:
        """Render one object as a two-column key/value table (or JSON)."""
        if self.as_json:
            self.json(data)
            return
        clean = scrub(data, show_tokens=self.show_tokens)
        items = [(str(key), _cell(value)) for key, value in clean.items()]
        whole = [v for k, v in items if _keeps_whole(k)]
        table = Table(title=title, show_header=False)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold", min_width=max(map(len, whole), default=None))
        for key, value in items:
            table.add_row(key, value)
        self._print_whole(table)

    def message(self, text: str) -> None:
        """A human note (stderr with ``--json`` so stdout stays machine-readable)."""
        if self.as_json:
            self.err.print(text)
        else:
            self.console.print(text)

    def error(self, text: str) -> None:
        """An error message on stderr, on one line however long (secrets redacted; brackets
        in ``text`` are not markup)."""
        self.err.print(f"[bold red]error:[/bold red] {escape(redact(text))}", soft_wrap=True)
