"""Regenerate the speech WAVs shipped in ``webex_byova/media/assets`` (needs ``espeak-ng``).

espeak-ng synthesises 22.05 kHz PCM16; our own audio module resamples it to 8 kHz, encodes
µ-law and writes the canonical 44-byte-header WAV Webex plays. Run from the repository root:
``.venv/bin/python scripts/make_speech_assets.py``.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from webex_byova.media.audio import make_wav, read_wav, to_webex_ulaw

ASSETS = Path(__file__).resolve().parent.parent / "src" / "webex_byova" / "media" / "assets"
PHRASES = {
    "speech_hello.wav": "Hello, I would like to check the status of my order please.",
    "speech_yes.wav": "Yes.",
}


def synthesise(text: str) -> bytes:
    """Return 8 kHz µ-law WAV bytes of ``text`` spoken by espeak-ng (US English voice)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tts.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(out), text], check=True)
        wav = read_wav(out.read_bytes())
    ulaw = to_webex_ulaw(
        wav.payload,
        encoding=wav.encoding,
        sample_rate=wav.sample_rate,
        channels=wav.channels,
        use_numpy=False,
    )
    return make_wav(ulaw)


def main() -> None:
    """Write every asset."""
    for name, text in PHRASES.items():
        data = synthesise(text)
        (ASSETS / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes, {(len(data) - 44) / 8000:.2f} s")


if __name__ == "__main__":
    main()
