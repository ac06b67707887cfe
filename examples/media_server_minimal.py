"""A ten-line BYOVA media server. Run: python examples/media_server_minimal.py (WEBEX_MEDIA_*)."""

from webex_byova import BYOVAMediaServer

server = BYOVAMediaServer.from_env()  # e.g. WEBEX_MEDIA_PORT=50051, WEBEX_MEDIA_EXPECTED_URL=...


@server.on("session_start")
def welcome(event):
    event.turn.say("Hello! Say something, or press 0 for an agent.")


@server.on("utterance")
def answer(event):
    event.turn.say(f"You spoke for {event.duration_ms / 1000:.1f} seconds.")


@server.on("dtmf_input")
def keys(event):
    if event.digits == "0":
        event.turn.transfer_to_agent("Connecting you to an agent.")


if __name__ == "__main__":
    import asyncio

    asyncio.run(server.serve())
