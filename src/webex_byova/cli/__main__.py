"""``python -m webex_byova.cli``: the ``byova`` command (used by ``byova serve --reload``)."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main()
