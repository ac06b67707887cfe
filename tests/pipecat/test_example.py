"""examples/pipecat_bot.py offline: `byova serve`, then `byova simulate`, as a new user would."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pipecat_bot.py"
BYOVA = Path(sys.executable).with_name("byova")


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return {**env, "WEBEX_MEDIA_VERIFY_TOKENS": "false", "WEBEX_MEDIA_HOST": "127.0.0.1"}


def test_offline_pipecat_bot_passes_byova_simulate() -> None:
    serve = subprocess.Popen(
        [str(BYOVA), "serve", str(EXAMPLE), "--port", "0"],
        env=_offline_env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert serve.stderr is not None
        match = None
        for _ in range(50):  # pipecat's own start-up log lines come first
            line = serve.stderr.readline()
            match = re.search(r" on (127\.0\.0\.1:\d+) \(plaintext, tokens NOT verified\)", line)
            if match or not line:
                break
        assert match, "the server did not say where it listens"
        simulate = subprocess.run(
            [str(BYOVA), "simulate", "--target", match.group(1), "--dtmf", "5", "--dtmf", "0"]
            + ["--fast", "--json"],
            env=_offline_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert simulate.returncode == 0, simulate.stderr
        call = json.loads(simulate.stdout)
        assert call["outcome"] == "transferred"
        welcome, spoken, *_, keyed, _, moved = call["turns"]
        assert welcome["texts"] == ["Welcome! Say something, or press 0 for an agent."]
        assert spoken["events"] == ["START_OF_INPUT", "END_OF_INPUT"]
        assert spoken["audio_ms"] > 300  # Silero heard the words; the bot echoed them
        assert keyed["texts"] == ["You pressed 5."]
        assert moved["events"] == ["TRANSFER_TO_AGENT"]
    finally:
        serve.send_signal(2)
        assert serve.wait(timeout=20) == 0
        if serve.stderr is not None:
            serve.stderr.close()


def test_service_mode_picks_pipecat_services_from_the_keys(monkeypatch) -> None:
    """With OPENAI_API_KEY the example builds OpenAI's STT, LLM and TTS (nothing is called)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    monkeypatch.delenv("CARTESIA_API_KEY", raising=False)
    spec = importlib.util.spec_from_file_location("pipecat_bot_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OFFLINE is False
    with warnings.catch_warnings():
        # pipecat's service modules define deprecated aliases at import: not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        stt, llm, tts = module.services()
    names = [type(s).__name__ for s in (stt, llm, tts)]
    assert names == ["OpenAISTTService", "OpenAILLMService", "OpenAITTSService"]
    assert all(service.is_usable for service in (stt, llm, tts))  # constructed, not connected
