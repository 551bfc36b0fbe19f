// Federated sign-in against a real OpenID provider (`oidc-provider`, lib/oidc-idp.mjs) through
// real Envoy: Debian's Chromium (Playwright) goes through the gateway's consent page, the
// provider's sign-in and consent, and back to the MCP client's redirect URI; the test (and, in
// one test, the MCP TypeScript SDK client) finishes the token exchange and calls tools/list on
// server-everything. A second Envoy puts the person's upstream token on backend requests and
// refreshes it. Failure paths: denied at either consent, an account outside the allow-list, a
// forged or replayed state, an id_token with a wrong nonce or audience, the provider failing or
// hanging at the token endpoint, and the provider unreachable.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEcho, startEverything } from "./lib/backends.mjs";
import { request, tlsFetch } from "./lib/http.mjs";
import { freePort, sleep } from "./lib/procs.mjs";
import { metadataCluster } from "./lib/metadata-server.mjs";
import { startIdp } from "./lib/oidc-idp.mjs";
import { startRecorder } from "./lib/recorder.mjs";
import { openBrowser, newContext, throughIdp } from "./lib/idp-browser.mjs";
import { authServerMaterial, authorizeUrl, jwtParts, keysSection, mcpSession, pkce, register, tokenRequest, assertTokenResponse } from "./lib/authz.mjs";
import { assertChallenge } from "./lib/assertions.mjs";
import { FormPostingProvider } from "./lib/sdk-provider.mjs";

/** The MCP client's redirect URI: a loopback server that records where the browser lands. */
let REDIRECT;
const IDP_NAME = "Test IdP";
/** The provider's access tokens live this long, so the refresh can be watched. */
const IDP_ACCESS_TTL = 6;

let m, idp, everything, echo, clientCallback, mcpGateway, apiGateway, browser;

/** The redirect the client received for `state`, as a URL. */
function landedFor(state) {
  const hit = clientCallback.requests.findLast((r) => new URL(r.url, REDIRECT).searchParams.get("state") === state);
  return hit && new URL(hit.url, REDIRECT);
}

const upstreamSection = (extra = {}) => ({
  name: IDP_NAME,
  issuer: idp.issuer,
  cluster: "idp",
  client_id: idp.client.client_id,
  client_secret: idp.client.client_secret,
  scopes: ["openid", "email", "profile", "groups"],
  allowed_email_domains: ["example.com"],
  scope_rules: [{ claim: "groups", values: ["mcp-admins"], scopes: ["mcp:admin"] }],
  base_scopes: ["mcp:tools"],
  timeout_ms: 2000,
  ...extra,
});

const gatewayConfig = (routes) => ({ origin }) => ({
  resource: `${origin}/mcp`,
  routes,
  authorization_server: {
    ...keysSection(m),
    display_name: "Federation e2e gateway",
    scopes: [
      { name: "mcp:tools", description: "Use the tools" },
      { name: "mcp:admin", description: "Administer" },
    ],
    upstream: upstreamSection(),
  },
});

before(async () => {
  m = await authServerMaterial();
  clientCallback = await startRecorder();
  REDIRECT = `http://127.0.0.1:${clientCallback.port}/federation/callback`;
  const [mcpPort, apiPort] = [await freePort(), await freePort()];
  idp = await startIdp({
    redirectUris: [`https://localhost:${mcpPort}/oauth/callback`, `https://localhost:${apiPort}/oauth/callback`],
    accessTokenTtl: IDP_ACCESS_TTL,
    rotateRefreshToken: true,
    refreshWithoutOfflineAccess: true,
  });
  everything = await startEverything("streamableHttp");
  echo = await startEcho();
  const common = { envKeyValues: m.envKeyValues, extraClusters: [idp.clusterFor("idp")] };
  mcpGateway = await startEnvoy({
    ...common,
    listenerPort: mcpPort,
    backendPort: everything.port,
    pluginConfig: gatewayConfig([{ prefix: "/mcp", scopes: ["mcp:tools"] }]),
  });
  apiGateway = await startEnvoy({
    ...common,
    listenerPort: apiPort,
    backendPort: echo.port,
    pluginConfig: gatewayConfig([{ prefix: "/api", upstream_token: true }]),
  });
  browser = await openBrowser();
});

after(async () => {
  await browser?.close();
  await mcpGateway?.stop();
  await apiGateway?.stop();
  await everything?.stop();
  await echo?.stop();
  await idp?.stop();
  await clientCallback?.stop();
});

const T = (name, fn) =>
  test(name, () =>
    withLog([mcpGateway, apiGateway], fn, () => `provider requests:\n  ${idp.requests.map((r) => `${r.method} ${r.path} -> ${r.status} (${r.mode})`).join("\n  ")}`),
  );

/** A dynamically registered public client of `origin`. */
async function registerClient(origin, name = "Federation e2e client") {
  const res = await register(origin, {
    client_name: name,
    redirect_uris: [REDIRECT],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  });
  assert.equal(res.status, 201, res.body);
  return res.json.client_id;
}

/**
 * A person in the browser: opens the authorization URL, answers the gateway's consent page,
 * gets through the provider (sign-in, consent), and ends back at the client (captured, not
 * loaded) or on a gateway page. Returns {landed: URL|undefined, page, status, text, pages}.
 */
async function personSignsIn(origin, clientId, { username = "alice", ours = "approve", theirs = "approve", scope = "mcp:tools", context, state = "st-" + Date.now() } = {}) {
  const ctx = context ?? (await newContext(browser));
  const page = await ctx.newPage();
  if (process.env.E2E_DEBUG) {
    page.on("request", (r) => console.log("request", r.method(), r.url().slice(0, 160)));
    page.on("requestfailed", (r) => console.log("failed", r.url().slice(0, 160), r.failure()?.errorText));
  }
  const documents = [];
  page.on("response", (r) => {
    if (r.request().isNavigationRequest() && r.request().frame() === page.mainFrame()) documents.push({ url: r.url(), status: r.status() });
  });
  const { verifier, challenge } = pkce();
  const url = authorizeUrl(origin, {
    response_type: "code",
    client_id: clientId,
    redirect_uri: REDIRECT,
    code_challenge: challenge,
    code_challenge_method: "S256",
    scope,
    state,
  });
  const first = await page.goto(url);
  assert.equal(first.status(), 200, `the gateway's consent page comes first: ${await page.content()}`);
  const consentText = await page.locator("main").innerText();
  assert.match(consentText, new RegExp(`sign in with ${IDP_NAME} next`));
  if (ours === "deny") {
    await Promise.all([page.waitForURL((u) => u.href.startsWith(REDIRECT)), page.getByRole("button", { name: "Deny" }).click()]);
    return { landed: landedFor(state), page, verifier, state, documents, ctx };
  }
  await Promise.all([
    page.waitForURL((u) => u.origin === idp.origin || u.href.startsWith(REDIRECT), { waitUntil: "commit" }),
    page.getByRole("button", { name: "Approve and sign in" }).click(),
  ]);
  const through = await throughIdp(page, idp.origin, { username, consent: theirs });
  const last = documents.at(-1);
  return { landed: landedFor(state), page, verifier, state, documents, through, last, ctx, text: await page.locator("body").innerText().catch(() => "") };
}

/** The gateway's code for a landed redirect, exchanged for tokens. */
async function exchange(origin, clientId, flow) {
  assert.ok(flow.landed, `back at the client: ${JSON.stringify(flow.documents)} ${flow.text ?? ""}`);
  const p = flow.landed.searchParams;
  assert.equal(p.get("error"), null, `no error: ${flow.landed}`);
  assert.equal(p.get("state"), flow.state);
  assert.equal(p.get("iss"), origin);
  const res = await tokenRequest(origin, {
    grant_type: "authorization_code",
    code: p.get("code"),
    redirect_uri: REDIRECT,
    code_verifier: flow.verifier,
    client_id: clientId,
  });
  return assertTokenResponse(res, { refresh: true });
}

T("browser: gateway consent → provider sign-in and consent → our code → tokens → tools/list through Envoy", async () => {
  const origin = mcpGateway.origin;
  const clientId = await registerClient(origin);
  idp.clearRequests();
  const flow = await personSignsIn(origin, clientId, { scope: "mcp:tools mcp:admin" });
  assert.equal(flow.through.signedIn, true);
  const tokens = await exchange(origin, clientId, flow);
  const { claims } = jwtParts(tokens.access_token);
  assert.equal(claims.sub, "alice", "the provider's subject");
  assert.equal(claims.iss, origin, "the gateway's own token");
  assert.equal(tokens.scope, "mcp:tools", "alice is not in mcp-admins: no admin scope");

  // What the gateway sent the provider: PKCE, state and nonce, and a Basic-authenticated exchange.
  const auth = idp.requests.find((r) => r.path === "/authorize");
  assert.ok(auth, "the browser went to the provider");
  const q = new URLSearchParams(auth.query);
  assert.equal(q.get("code_challenge_method"), "S256");
  assert.ok(q.get("state") && q.get("nonce") && q.get("code_challenge"));
  assert.equal(q.get("redirect_uri"), `${origin}/oauth/callback`);
  const exchangeReq = idp.requests.find((r) => r.path === "/token");
  assert.equal(exchangeReq.clientAuth, "client_secret_basic");
  assert.equal(exchangeReq.form.grant_type, "authorization_code");
  assert.ok(exchangeReq.form.code_verifier?.length >= 43);

  const session = await mcpSession(origin, tokens.access_token);
  const list = await session.call("tools/list", {});
  assert.equal(list.res.status, 200);
  assert.ok(list.result.tools.some((t) => t.name === "echo"), JSON.stringify(list.result).slice(0, 300));
  await session.close();

  // The same browser again: the provider remembers the sign-in and its consent, the gateway
  // still asks this (dynamically registered) client's consent first.
  const again = await personSignsIn(origin, clientId, { context: flow.ctx });
  assert.equal(again.through.signedIn, false, "no second sign-in at the provider");
  assert.equal(again.through.consentShown, false, "the provider does not ask again");
  await exchange(origin, clientId, again);
  await flow.ctx.close();
});

T("SDK client: the @modelcontextprotocol/sdk OAuth flow with a person in Chromium", async () => {
  const origin = mcpGateway.origin;
  class BrowserProvider extends FormPostingProvider {
    async redirectToAuthorization(url) {
      const ctx = await newContext(browser);
      const page = await ctx.newPage();
      await page.goto(url.href);
      await Promise.all([page.waitForURL((u) => u.origin === idp.origin, { waitUntil: "commit" }), page.getByRole("button", { name: "Approve and sign in" }).click()]);
      await throughIdp(page, idp.origin, { username: "alice" });
      this.landed = landedFor(url.searchParams.get("state"));
      await ctx.close();
    }
  }
  const provider = new BrowserProvider({ origin, redirect: REDIRECT, clientName: "SDK federation client" });
  const transport = () => new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), { fetch: tlsFetch, authProvider: provider });
  const client = new Client({ name: "sdk-federation-e2e", version: "1.0.0" }, { capabilities: {} });
  const first = transport();
  await assert.rejects(client.connect(first), (e) => e instanceof UnauthorizedError);
  assert.ok(provider.landed, "the SDK's authorization ended at its redirect URI");
  const code = provider.landed.searchParams.get("code");
  assert.ok(code, `a code: ${provider.landed}`);
  await first.finishAuth(code);
  const connected = new Client({ name: "sdk-federation-e2e", version: "1.0.0" }, { capabilities: {} });
  await connected.connect(transport());
  const tools = await connected.listTools();
  assert.ok(tools.tools.some((t) => t.name === "echo"));
  assert.equal(jwtParts(provider.tokens().access_token).claims.sub, "alice");
  await connected.close();
});

T("denied at the provider → access_denied to the client; denied on our consent → the provider is never asked", async () => {
  const origin = mcpGateway.origin;
  const clientId = await registerClient(origin);
  const atProvider = await personSignsIn(origin, clientId, { theirs: "deny" });
  assert.equal(atProvider.landed?.searchParams.get("error"), "access_denied", `${atProvider.landed}`);
  assert.equal(atProvider.landed.searchParams.get("state"), atProvider.state);
  assert.equal(atProvider.landed.searchParams.get("code"), null);
  await atProvider.ctx.close();

  idp.clearRequests();
  const ours = await personSignsIn(origin, clientId, { ours: "deny" });
  assert.equal(ours.landed?.searchParams.get("error"), "access_denied");
  assert.equal(idp.count("/authorize"), 0);
  await ours.ctx.close();
});

T("an account outside the email-domain allow-list → access_denied with the reason, no code", async () => {
  const origin = mcpGateway.origin;
  const clientId = await registerClient(origin);
  const flow = await personSignsIn(origin, clientId, { username: "bob" });
  const p = flow.landed?.searchParams;
  assert.equal(p?.get("error"), "access_denied", `${flow.landed}`);
  assert.match(p.get("error_description"), /email domain is not allowed/);
  assert.equal(p.get("code"), null);
  await flow.ctx.close();
});

T("state: forged → 400 page; a callback used twice → 400 page", async () => {
  const origin = mcpGateway.origin;
  const clientId = await registerClient(origin);
  const flow = await personSignsIn(origin, clientId);
  assert.ok(flow.landed?.searchParams.get("code"));
  // The callback URL the provider sent the browser to, replayed in the same browser.
  const callback = flow.documents.find((d) => d.url.startsWith(`${origin}/oauth/callback`));
  assert.ok(callback, JSON.stringify(flow.documents));
  const replay = await flow.page.goto(callback.url);
  assert.equal(replay.status(), 400);
  assert.match(await flow.page.locator("main").innerText(), /cannot be completed/);
  // A state this browser never started.
  const forged = new URL(callback.url);
  forged.searchParams.set("state", "forged-state-0123456789");
  const r = await flow.page.goto(forged.href);
  assert.equal(r.status(), 400);
  assert.match(await flow.page.locator("main").innerText(), /does not belong to a sign-in started in this browser/);
  await flow.ctx.close();
});

for (const [what, tamper] of [
  ["a wrong nonce", (c) => ({ ...c, nonce: "not-the-nonce" })],
  ["a wrong audience", (c) => ({ ...c, aud: "someone-else" })],
]) {
  T(`an id_token with ${what} (correctly signed) → 502 page, no code`, async () => {
    const origin = mcpGateway.origin;
    const clientId = await registerClient(origin);
    idp.setMode("token", { tamper }, { times: 1 });
    const flow = await personSignsIn(origin, clientId);
    assert.equal(flow.landed, undefined, "not sent back to the client");
    assert.equal(flow.last.status, 502, JSON.stringify(flow.documents));
    assert.match(flow.text, new RegExp(`${IDP_NAME} sent a sign-in that could not be verified`));
    assert.match(mcpGateway.log(), /upstream id_token refused/);
    await flow.ctx.close();
  });
}

T("the provider fails (500) or hangs at the token endpoint → 502 page within the timeout", async () => {
  const origin = mcpGateway.origin;
  const clientId = await registerClient(origin);
  for (const mode of ["error500", "hang"]) {
    idp.setMode("token", mode, { times: 1 });
    const t0 = Date.now();
    const flow = await personSignsIn(origin, clientId);
    assert.equal(flow.landed, undefined, mode);
    assert.equal(flow.last.status, 502, `${mode}: ${JSON.stringify(flow.documents)}`);
    assert.match(flow.text, new RegExp(`${IDP_NAME} could not be reached`));
    assert.ok(Date.now() - t0 < 15000, `${mode}: bounded by timeout_ms`);
    await flow.ctx.close();
  }
  idp.setMode("token", "normal");
});

T("the provider unreachable before any sign-in (no discovery) → 502 page, no redirect", async () => {
  const closedPort = await freePort();
  const gw = await startEnvoy({
    envKeyValues: m.envKeyValues,
    backendPort: echo.port,
    extraClusters: [metadataCluster("idp", closedPort)],
    pluginConfig: gatewayConfig([{ prefix: "/mcp" }]),
  });
  try {
    const clientId = await registerClient(gw.origin);
    const { challenge } = pkce();
    const url = authorizeUrl(gw.origin, { response_type: "code", client_id: clientId, redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: "S256", state: "s" });
    const ctx = await newContext(browser);
    const page = await ctx.newPage();
    await page.goto(url);
    const [res] = await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Approve and sign in" }).click()]);
    assert.equal(res.status(), 502);
    assert.match(await page.locator("main").innerText(), new RegExp(`${IDP_NAME} could not be reached`));
    await ctx.close();
  } finally {
    await gw.stop();
  }
});

/** Signs alice in on the API gateway; returns its tokens. */
async function apiSignIn() {
  const origin = apiGateway.origin;
  const clientId = await registerClient(origin, "Upstream token e2e");
  const flow = await personSignsIn(origin, clientId);
  const tokens = await exchange(origin, clientId, flow);
  await flow.ctx.close();
  return { origin, clientId, tokens };
}

async function apiCall(origin, token) {
  const marker = `t-${Math.random()}`;
  const res = await request(`${origin}/api/data`, { headers: { authorization: `Bearer ${token}`, "x-test-id": marker } });
  return { res, seen: echo.find((r) => r.headers["x-test-id"] === marker) };
}

/** The provider's userinfo for `token`: proves a bearer is a live provider token. */
async function userinfo(token) {
  return request(idp.url("/userinfo"), { headers: { authorization: `Bearer ${token}` } });
}

T("upstream token: the backend gets the provider's access token (never ours), refreshed by the gateway after it expires", async () => {
  const { origin, tokens } = await apiSignIn();
  const first = await apiCall(origin, tokens.access_token);
  assert.equal(first.res.status, 200, first.res.body);
  const bearer = first.seen.headers.authorization;
  assert.match(bearer, /^Bearer /);
  assert.ok(!bearer.includes(tokens.access_token), "our token never reaches the backend");
  const upstreamToken = bearer.slice(7);
  const info = await userinfo(upstreamToken);
  assert.equal(info.status, 200, "it is alice's live token at the provider");
  assert.equal(info.json.sub, "alice");

  // Let it expire (the provider's tokens live IDP_ACCESS_TTL seconds): the next request refreshes.
  idp.clearRequests();
  await sleep(IDP_ACCESS_TTL * 1000 + 200);
  const later = await apiCall(origin, tokens.access_token);
  assert.equal(later.res.status, 200, later.res.body);
  const refreshed = later.seen.headers.authorization.slice(7);
  assert.notEqual(refreshed, upstreamToken, "a new upstream token");
  const refreshReq = idp.requests.find((r) => r.path === "/token" && r.form?.grant_type === "refresh_token");
  assert.ok(refreshReq, "the gateway refreshed with the provider");
  assert.equal((await userinfo(refreshed)).status, 200);
  // Our refresh carries the grant on.
  const ours = assertTokenResponse(await tokenRequest(origin, { grant_type: "refresh_token", refresh_token: tokens.refresh_token, client_id: jwtParts(tokens.access_token).claims.client_id }), { refresh: true });
  const withNew = await apiCall(origin, ours.access_token);
  assert.equal(withNew.seen.headers.authorization.slice(7), refreshed);
});

T("upstream token: the provider refuses the refresh → 401 invalid_token, then our refresh → invalid_grant", async () => {
  const { origin, tokens } = await apiSignIn();
  assert.equal((await apiCall(origin, tokens.access_token)).res.status, 200);
  idp.setMode("token", "invalid_grant", { grantType: "refresh_token", times: 1 });
  await sleep(IDP_ACCESS_TTL * 1000 + 200);
  const { res, seen } = await apiCall(origin, tokens.access_token);
  assert.equal(seen, undefined, "the backend is not called");
  assert.equal(res.status, 401, res.body);
  assertChallenge(res.headers["www-authenticate"], {
    error: "invalid_token",
    error_description: `The sign-in at ${IDP_NAME} expired; sign in again`,
    resource_metadata: `${origin}/.well-known/oauth-protected-resource/api`,
  });
  const again = await tokenRequest(origin, { grant_type: "refresh_token", refresh_token: tokens.refresh_token, client_id: jwtParts(tokens.access_token).claims.client_id });
  assert.equal(again.status, 400, again.body);
  assert.equal(again.json.error, "invalid_grant");
});
