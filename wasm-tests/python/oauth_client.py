"""The MCP Python SDK's OAuth client against the built-in authorization server, through Envoy.

Run by wasm-tests/python-oauth-client.test.mjs with .venv/bin/python. Uses only the `mcp`
package (and its httpx2) from requirements.txt plus the standard library.

  oauth_client.py --url https://localhost:PORT/mcp --ca envoy/certs/ca.pem \
      --username alice --password ... --redirect http://127.0.0.1:PORT/callback --expiry-wait 3.5

What it does: connect with `OAuthClientProvider` (discovery, Dynamic Client Registration,
authorization code + PKCE). The redirect handler plays the person at the browser: it GETs the
authorization URL, signs in and approves the consent page with real form posts and cookies,
and captures the code from the 302 Location; the callback handler hands it back. Then
tools/list and an echo call; then it waits for the short-lived access token to expire and calls
again (the provider refreshes before the request). It prints one JSON object on stdout:
everything the node test asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
import traceback
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

APPROVE = ("approve", "allow", "accept", "authorize", "authorise", "grant", "yes", "continue", "consent")


class Forms(HTMLParser):
    """Forms of a page: action, method, fields (name, value, type) and submit buttons (name, value, label)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._form: dict | None = None
        self._button: dict | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = {"action": a.get("action"), "method": a.get("method", "get").lower(), "fields": [], "submits": []}
            self.forms.append(self._form)
        elif self._form is not None and tag == "input":
            t = a.get("type", "text").lower()
            if t in ("submit", "image"):
                self._form["submits"].append({"name": a.get("name"), "value": a.get("value", ""), "label": a.get("value", "")})
            elif t in ("checkbox", "radio"):
                if "checked" in a:
                    self._form["fields"].append({"name": a.get("name"), "value": a.get("value", "on"), "type": t})
            else:
                self._form["fields"].append({"name": a.get("name"), "value": a.get("value", ""), "type": t})
        elif self._form is not None and tag == "button":
            if a.get("type", "submit").lower() == "submit":
                self._button = {"name": a.get("name"), "value": a.get("value", ""), "label": ""}
                self._form["submits"].append(self._button)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "button":
            self._button = None

    def handle_data(self, data):
        if self._button is not None:
            self._button["label"] += data.strip()
        if data.strip():
            self.text.append(data.strip())


def parse(html: str) -> Forms:
    p = Forms()
    p.feed(html)
    return p


class Person:
    """A person at a browser: a cookie-keeping httpx2 client that signs in and approves."""

    def __init__(self, ssl_ctx: ssl.SSLContext, username: str, password: str) -> None:
        self.http = httpx2.AsyncClient(verify=ssl_ctx, follow_redirects=False, timeout=15)
        self.username = username
        self.password = password
        self.pages: list[dict] = []
        self.callback: dict | None = None
        self.authorization_urls: list[str] = []

    async def submit(self, page_url: str, form: dict, fill: dict, submitter: dict | None) -> httpx2.Response:
        data = []
        for f in form["fields"]:
            if f["name"]:
                data.append((f["name"], fill.get(f["name"], f["value"])))
        if submitter and submitter.get("name"):
            data.append((submitter["name"], submitter.get("value", "")))
        action = urljoin(page_url, form["action"] or page_url)
        origin = "{0.scheme}://{0.netloc}".format(urlparse(page_url))
        headers = {"Origin": origin, "Content-Type": "application/x-www-form-urlencoded"}
        return await self.http.post(action, content=urlencode(data).encode(), headers=headers)

    async def authorize(self, url: str) -> None:
        self.authorization_urls.append(url)
        origin = urlparse(url).netloc
        res = await self.http.get(url)
        page_url = url
        signed_in = False
        for _ in range(8):
            if res.status_code in (301, 302, 303, 307, 308):
                loc = urljoin(page_url, res.headers["location"])
                if urlparse(loc).netloc == origin:
                    page_url = loc
                    res = await self.http.get(loc)
                    continue
                q = {k: v[0] for k, v in parse_qs(urlparse(loc).query).items()}
                self.callback = {"location": loc, "status": res.status_code, **q}
                return
            page = parse(res.text)
            signin = next((f for f in page.forms if any(x["type"] == "password" for x in f["fields"])), None)
            if signin is not None:
                self.pages.append({"kind": "signin", "status": res.status_code, "text": " ".join(page.text)})
                if signed_in:
                    raise RuntimeError("sign-in page shown again: " + " ".join(page.text))
                signed_in = True
                fill = {}
                for f in signin["fields"]:
                    if f["type"] == "password":
                        fill[f["name"]] = self.password
                    elif f["type"] in ("text", "email") and f["name"]:
                        fill.setdefault(f["name"], self.username)
                res = await self.submit(page_url, signin, fill, signin["submits"][0] if signin["submits"] else None)
                continue
            approve = None
            for f in page.forms:
                for s in f["submits"]:
                    label = (s["label"] or s["value"] or "").lower()
                    if label.startswith(APPROVE) or (s["value"] or "").lower().startswith(APPROVE):
                        approve = (f, s)
                        break
                if approve:
                    break
            if approve is not None:
                self.pages.append({"kind": "consent", "status": res.status_code, "text": " ".join(page.text)})
                res = await self.submit(page_url, approve[0], {}, approve[1])
                continue
            raise RuntimeError(f"no sign-in or consent form ({res.status_code}): {res.text[:500]}")
        raise RuntimeError("too many steps")


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: list[OAuthToken] = []
        self.client_infos: list[OAuthClientInformationFull] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens[-1] if self.tokens else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_infos[-1] if self.client_infos else None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_infos.append(client_info)


def text_of(result) -> list[str]:
    return [c.text for c in result.content if getattr(c, "type", None) == "text"]


async def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--redirect", required=True)
    ap.add_argument("--expiry-wait", type=float, default=0)
    args = ap.parse_args()

    ssl_ctx = ssl.create_default_context(cafile=args.ca)
    person = Person(ssl_ctx, args.username, args.password)
    storage = MemoryStorage()
    wire: list[str] = []

    async def redirect_handler(url: str) -> None:
        await person.authorize(url)

    async def callback_handler() -> AuthorizationCodeResult:
        cb = person.callback or {}
        if "code" not in cb:
            raise RuntimeError(f"no code in the redirect: {cb}")
        return AuthorizationCodeResult(code=cb["code"], state=cb.get("state"), iss=cb.get("iss"))

    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name="Python SDK e2e client",
            redirect_uris=[args.redirect],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )

    async def record(response: httpx2.Response) -> None:
        wire.append(f"{response.request.method} {response.request.url.path} {response.status_code}")

    out: dict = {"wire": wire}
    http = httpx2.AsyncClient(
        auth=provider,
        verify=ssl_ctx,
        timeout=httpx2.Timeout(30, read=60),
        event_hooks={"response": [record]},
    )
    try:
        async with http:
            async with Client(streamable_http_client(args.url, http_client=http)) as client:
                out["server_name"] = client.server_info.name if client.server_info else None
                out["protocol_version"] = client.protocol_version
                tools = await client.list_tools()
                out["tools"] = sorted(t.name for t in tools.tools)
                out["echo1"] = text_of(await client.call_tool("echo", {"message": "hello from python"}))
                out["tokens_before_wait"] = len(storage.tokens)
                if args.expiry_wait:
                    await asyncio.sleep(args.expiry_wait)
                    mark = len(wire)
                    out["echo2"] = text_of(await client.call_tool("echo", {"message": "after expiry"}))
                    out["wire_after_wait"] = wire[mark:]
    finally:
        await person.http.aclose()

    out["registrations"] = [c.model_dump(mode="json", exclude_none=True) for c in storage.client_infos]
    out["tokens"] = [
        {
            "access_token": t.access_token,
            "refresh_token": t.refresh_token,
            "expires_in": t.expires_in,
            "scope": t.scope,
            "token_type": t.token_type,
        }
        for t in storage.tokens
    ]
    out["authorization_urls"] = person.authorization_urls
    out["pages"] = person.pages
    out["callback"] = person.callback
    return out


if __name__ == "__main__":
    started = time.time()
    try:
        result = asyncio.run(main())
        result["ok"] = True
    except BaseException as e:  # report everything as JSON for the node test
        result = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    result["seconds"] = round(time.time() - started, 2)
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)
