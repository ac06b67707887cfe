"""REST tour: authorize, fetch an org token, register/extend/list/delete a BYOVA data source.

Against the local emulator (no Webex account needed)::

    byova emulator            # prints export lines; paste them into another shell
    python examples/rest_quickstart.py --url https://va.example.com/byova

Against real Webex set the same ``WEBEX_*`` variables with your Integration and Service App
(and ``WEBEX_ORG_ID``, the customer org the Service App is authorized in); the browser opens
for the Integration's consent.
"""

from __future__ import annotations

import argparse
import os
import threading
import urllib.request

from webex_byova import BYOVA
from webex_byova.data_sources import BYOVA_SCHEMA_ID

REAL_WEBEX = "https://webexapis.com/v1"


def follow_in_background(url: str) -> None:
    """Emulator only: play the browser (the emulator consents without a login page)."""

    def go() -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=30) as resp:
            resp.read()

    threading.Thread(target=go, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="https://va.example.com/byova", help="data source URL")
    parser.add_argument("--keep", action="store_true", help="do not delete the data source")
    args = parser.parse_args()

    org_id = os.environ["WEBEX_ORG_ID"]
    emulated = os.environ.get("WEBEX_BASE_URL", REAL_WEBEX).rstrip("/") != REAL_WEBEX
    with BYOVA.from_env() as sdk:
        # 1. Integration OAuth (authorization code + PKCE); tokens go to the token store.
        if not sdk.integration.has_token():
            sdk.integration.authorize(
                open_browser=not emulated,
                on_url=follow_in_background if emulated else print,
            )
        print("integration authorized")

        # 2. The Service App's token for the customer org (the org admin authorized the app).
        sdk.service_app.fetch_org_token(org_id)
        client = sdk.get_client_for_org(org_id)
        print("schemas:", [s.id for s in client.schemas.list()])

        # 3. Register the data source for our media server's URL (or refresh the existing one).
        ds = client.data_sources.register_or_update(
            args.url, BYOVA_SCHEMA_ID, audience="BYOVAGateway", subject="callAudioData"
        )
        print(f"data source {ds.id} for {ds.url}: token expires {ds.expires_at}")
        print("token claims (unverified):", sorted(ds.jws_claims))

        # 4. Mint a fresh token before the current one expires (new nonce, same fields).
        ds = client.data_sources.extend(ds.id, token_lifetime_minutes=60)
        print(f"extended: token now expires {ds.expires_at}")

        print("all data sources:", [d.id for d in client.data_sources.list()])
        if not args.keep:
            client.data_sources.delete(ds.id)
            print(f"deleted {ds.id}")


if __name__ == "__main__":
    main()
