"""The ``byova`` command line (``pip install 'webex-byova-sdk[cli]'``; ``demo``/``serve``/
``simulate`` also need the ``media`` extra).

Importing this package without the ``cli`` extra raises
:class:`~webex_byova._optional.MissingExtraError` naming it.
"""

from __future__ import annotations

from .._optional import require

require("typer", "cli")
require("rich", "cli")

from ._app import app, main  # noqa: E402

__all__ = ["app", "main"]
