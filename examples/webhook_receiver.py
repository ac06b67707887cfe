"""A Starlette receiver for Webex ``serviceApp`` ``authorized``/``deauthorized`` webhooks.

It reads the **raw** request bytes (the signature covers them exactly), lets
``BYOVA.ahandle_service_app_webhook`` verify and process the delivery, and answers:

* ``200`` with the result when the org's tokens were stored or removed (also for a
  redelivery, with ``"duplicate": true``);
* ``401`` when the signature is missing or wrong;
* ``202`` with ``"ignored"`` for a delivery that is not a serviceApp event for this Service App
  (answering 4xx would count towards Webex disabling the webhook);
* ``500`` when Webex could not be reached to fetch the org's tokens.

Run it (needs the ``WEBEX_*`` variables of ``BYOVA.from_env`` and ``WEBEX_WEBHOOK_SECRET``)::

    python examples/webhook_receiver.py --port 8080 --public-url https://me.example/webhooks

``--public-url`` also registers the webhooks (idempotently) at startup, once the
Integration is authorized (``byova auth login``).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from webex_byova.client import BYOVA
from webex_byova.errors import ValidationError, WebexBYOVAError
from webex_byova.webhooks import WebhookSignatureError

log = logging.getLogger("webhook_receiver")

WEBHOOK_PATH = "/webhooks/service-app"


def create_app(
    sdk: BYOVA,
    *,
    path: str = WEBHOOK_PATH,
    public_url: str | None = None,
    close_sdk: bool = False,
) -> Starlette:
    """Build the receiver app around ``sdk`` (which must carry the webhook secret)."""

    async def receive(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            result = await sdk.ahandle_service_app_webhook(
                None, raw_body=raw, headers=request.headers
            )
        except WebhookSignatureError:
            log.warning("rejected a webhook with a missing or invalid signature")
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        except ValidationError as exc:
            log.info("ignored webhook: %s", exc.message)
            return JSONResponse({"ignored": exc.message}, status_code=202)
        except WebexBYOVAError as exc:
            log.error("webhook processing failed: %s", exc)
            return JSONResponse({"error": "processing failed"}, status_code=500)
        return JSONResponse(result.model_dump(mode="json"))

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if public_url:
            hooks = await sdk.webhooks.aensure_service_app_webhooks(
                public_url, secret=os.environ.get("WEBEX_WEBHOOK_SECRET")
            )
            log.info("serviceApp webhooks ready: %s", ", ".join(h.id for h in hooks))
        try:
            yield
        finally:
            if close_sdk:
                await sdk.aclose()

    return Starlette(
        routes=[Route(path, receive, methods=["POST"]), Route("/health", health)],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    """Serve the receiver with uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--public-url", default=None, help="register webhooks to this URL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sdk = BYOVA.from_env()
    app: Any = create_app(sdk, public_url=args.public_url, close_sdk=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
