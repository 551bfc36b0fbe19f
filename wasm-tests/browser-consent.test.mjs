// A real browser (headless Chromium through playwright-core) on the built-in authorization
// server's pages: sign in, read the consent page, Approve → the client's loopback redirect URI gets
// code, state and iss (and the code buys a token that works on /mcp); a second authorization in the
// same browser skips the sign-in, and Deny → error=access_denied. Saves
// wasm-tests/artifacts/consent.png (and signin.png).
//
// Needs Chromium at /usr/bin/chromium (Debian package `chromium`) or CHROMIUM_PATH.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { openBrowser, newContext } from "./lib/idp-browser.mjs";
import { startEverything } from "./lib/backends.mjs";
import { TESTS_DIR } from "./lib/paths.mjs";
import {
  APPROVE,
  DENY,
  assertTokenResponse,
  authServerMaterial,
  authorizeUrl,
  keysSection,
  mcpSession,
  pkce,
  randomSecret,
  tokenRequest,
} from "./lib/authz.mjs";

const ARTIFACTS = join(TESTS_DIR, "artifacts");
const CLIENT_NAME = "Browser Test App";
const SCOPE_WORDS = "Use the tools of the everything server";

let envoy, everything, m, origin, browser, context, callback;
const consoleErrors = [];

/** The client's loopback redirect URI: records each hit, answers a small page. */
async function startCallback() {
  const hits = [];
  const waiters = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, "http://127.0.0.1");
    hits.push(u);
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end("<!doctype html><title>Done</title><p>You can close this window.</p>");
    for (const w of waiters.splice(0)) w(u);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;
  return {
    port,
    uri: `http://127.0.0.1:${port}/callback`,
    hits,
    next: () => new Promise((r) => waiters.push(r)),
    stop: () => new Promise((r) => (server.closeAllConnections?.(), server.close(r))),
  };
}

before(async () => {
  m = await authServerMaterial();
  [everything, callback] = await Promise.all([startEverything("streamableHttp"), startCallback()]);
  [envoy, browser] = await Promise.all([
    startEnvoy({
      backendPort: everything.port,
      envKeyValues: m.envKeyValues,
      pluginConfig: ({ origin }) => ({
        resource: `${origin}/mcp`,
        routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
        authorization_server: {
          ...keysSection(m),
          display_name: "Browser e2e gateway",
          scopes: [{ name: "mcp:tools", description: SCOPE_WORDS }],
          users: [m.userEntry()],
          clients: [{ client_id: "browser-app", client_name: CLIENT_NAME, redirect_uris: [callback.uri] }],
        },
      }),
    }),
    openBrowser(), // Debian's Chromium (CHROMIUM_PATH), throws if it is missing
  ]);
  origin = envoy.origin;
  context = await newContext(browser, { viewport: { width: 900, height: 900 } }); // accepts the test CA
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  await context?.close().catch(() => {});
  await browser?.close().catch(() => {});
  await envoy?.stop();
  await Promise.all([everything?.stop(), callback?.stop()]);
});

const T = (name, fn) => test(name, () => withLog(envoy, fn, () => `browser console errors:\n${consoleErrors.join("\n")}\ncallback hits: ${callback.hits.map(String).join(", ")}`));

/** `promise`, or an error after `ms` (the timer is cleared either way, so it never holds the process). */
async function within(promise, ms, what) {
  let timer;
  try {
    return await Promise.race([promise, new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(what())), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function newAuthorization() {
  const pk = pkce();
  const state = randomSecret(12);
  const url = authorizeUrl(origin, {
    response_type: "code",
    client_id: "browser-app",
    redirect_uri: callback.uri,
    scope: "mcp:tools",
    state,
    code_challenge: pk.challenge,
    code_challenge_method: "S256",
    resource: `${origin}/mcp`,
  });
  return { pk, state, url };
}

async function newPage() {
  const page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(`${page.url()}: ${msg.text()}`);
  });
  page.on("pageerror", (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  return page;
}

const signInLocators = (page) => {
  const form = page.locator("form:has(input[type=password])");
  return {
    form,
    username: form.locator("input:not([type=hidden]):not([type=password]):not([type=submit]):not([type=checkbox]):not([type=radio])").first(),
    password: form.locator("input[type=password]"),
    submit: form.locator("button:not([type=button]):not([type=reset]), input[type=submit]").first(),
  };
};

T("sign in, see the consent page, Approve → the loopback callback gets code, state and iss", async () => {
  const { pk, state, url } = newAuthorization();
  const page = await newPage();
  const resp = await page.goto(url);
  assert.equal(resp.status(), 200);
  const s = signInLocators(page);
  await s.password.waitFor({ state: "visible", timeout: 5000 });
  assert.match(await page.locator("body").innerText(), /Browser e2e gateway/);
  await page.screenshot({ path: join(ARTIFACTS, "signin.png"), fullPage: true });

  const cookies = await context.cookies(origin);
  const host = cookies.filter((c) => c.name.startsWith("__Host-"));
  assert.ok(host.length >= 1, `a __Host- cookie: ${JSON.stringify(cookies)}`);
  for (const c of host) {
    assert.equal(c.secure, true, c.name);
    assert.equal(c.httpOnly, true, c.name);
    assert.equal(c.sameSite, "Lax", c.name);
    assert.equal(c.path, "/", c.name);
  }

  await s.username.fill(m.user.username);
  await s.password.fill(m.user.password);
  await s.submit.click();

  const approve = page.getByRole("button", { name: APPROVE });
  await approve.waitFor({ state: "visible", timeout: 5000 });
  await assert.doesNotReject(page.getByRole("button", { name: DENY }).waitFor({ state: "visible", timeout: 1000 }), "a Deny button");
  assert.equal(await page.locator("input[type=password]").count(), 0, "no password field on the consent page");
  const text = await page.locator("body").innerText();
  assert.ok(text.includes(CLIENT_NAME), `client name on the consent page: ${text}`);
  assert.ok(text.includes(`127.0.0.1:${callback.port}`), `redirect host on the consent page: ${text}`);
  assert.ok(text.includes(SCOPE_WORDS), `scope in words on the consent page: ${text}`);
  await page.screenshot({ path: join(ARTIFACTS, "consent.png"), fullPage: true });
  assert.ok(existsSync(join(ARTIFACTS, "consent.png")));

  const hit = callback.next();
  await approve.click();
  const cb = await within(hit, 8000, () => `no callback; page at ${page.url()}`);
  await page.waitForURL((u) => u.href.startsWith(callback.uri), { timeout: 5000 });
  assert.equal(cb.pathname, "/callback");
  assert.equal(cb.searchParams.get("state"), state);
  assert.equal(cb.searchParams.get("iss"), origin);
  assert.equal(cb.searchParams.get("error"), null);
  const code = cb.searchParams.get("code");
  assert.ok(code);
  assert.match(await page.locator("body").innerText(), /You can close this window/);

  // The code is real: it buys a token that works on /mcp.
  const tok = assertTokenResponse(
    await tokenRequest(origin, { grant_type: "authorization_code", code, redirect_uri: callback.uri, client_id: "browser-app", code_verifier: pk.verifier, resource: `${origin}/mcp` }),
    { refresh: true, scope: "mcp:tools" },
  );
  const session = await mcpSession(origin, tok.access_token);
  assert.equal(session.result.serverInfo?.name, "mcp-servers/everything");
  await session.close();
  await page.close();
});

T("same browser, second authorization: straight to consent (still signed in); Deny → error=access_denied with state and iss", async () => {
  const { state, url } = newAuthorization();
  const page = await newPage();
  await page.goto(url);
  const deny = page.getByRole("button", { name: DENY });
  await deny.waitFor({ state: "visible", timeout: 5000 });
  assert.equal(await page.locator("input[type=password]").count(), 0, "signed in already: no sign-in page");
  const hit = callback.next();
  await deny.click();
  const cb = await within(hit, 8000, () => `no callback; page at ${page.url()}`);
  assert.equal(cb.searchParams.get("error"), "access_denied");
  assert.equal(cb.searchParams.get("state"), state);
  assert.equal(cb.searchParams.get("iss"), origin);
  assert.equal(cb.searchParams.get("code"), null);
  await page.close();
});

T("a wrong password in the browser: the sign-in page again with an error message, no callback", async () => {
  const fresh = await newContext(browser);
  try {
    const page = await fresh.newPage();
    const before = callback.hits.length;
    await page.goto(newAuthorization().url);
    const s = signInLocators(page);
    await s.username.fill(m.user.username);
    await s.password.fill(`${m.user.password}-wrong`);
    await s.submit.click();
    await page.waitForLoadState("load");
    await signInLocators(page).password.waitFor({ state: "visible", timeout: 5000 });
    assert.ok(page.url().startsWith(origin), page.url());
    assert.match(await page.locator("body").innerText(), /not right|invalid|incorrect|wrong|failed|try again/i);
    assert.equal(callback.hits.length, before, "no callback");
  } finally {
    await fresh.close();
  }
});
