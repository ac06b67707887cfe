"""Audio assets shipped with the package (8 kHz µ-law speech WAVs for demos and tests).

* ``speech_hello.wav``: "Hello, I would like to check the status of my order please." (~4 s)
* ``speech_yes.wav``: "Yes." (~0.8 s)

Both were synthesised with espeak-ng (``scripts/make_speech_assets.py``).
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

__all__ = ["load", "names", "path"]


def names() -> list[str]:
    """Names of the shipped assets."""
    return sorted(p.name for p in resources.files(__name__).iterdir() if p.name.endswith(".wav"))


def path(name: str) -> Traversable:
    """Return the resource for asset ``name`` (use ``importlib.resources.as_file`` for a path).

    Raises :class:`FileNotFoundError` for an unknown name.
    """
    if "/" in name or "\\" in name or name.startswith("."):
        raise FileNotFoundError(f"invalid asset name {name!r}")
    res = resources.files(__name__).joinpath(name)
    if not res.is_file():
        raise FileNotFoundError(f"no asset {name!r}; available: {', '.join(names())}")
    return res


def load(name: str) -> bytes:
    """Return the bytes of asset ``name`` (e.g. ``load("speech_hello.wav")``)."""
    return path(name).read_bytes()
