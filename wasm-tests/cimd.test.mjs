// Client ID Metadata Documents (docs/authorization-server.md, "Client ID Metadata Documents") in a
// real Envoy: a client whose client_id is an https URL, the document fetched by the filter through
// an Envoy cluster, checked, cached, and used for the whole authorization-code flow.
//
// A small HTTPS server on 127.0.0.1 (lib/metadata-server.mjs, the test certificate for localhost)
// serves the documents and counts the requests per path. Envoy reaches it through a STATIC
// cluster `cimd` with TLS (SNI localhost, trusting envoy/certs/ca.pem); the client_id URLs are
// https://localhost:<port>/clients/*.json, so the filter sends `:authority: localhost:<port>`.
//
// Two Envoys: `envoy` with `allow_private_hosts: true` and `timeout_ms: 1000` serves almost every
// test; `strict` has the same section without `allow_private_hosts`, so loopback document URLs are
// refused before anything is fetched.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEcho } from "./lib/backends.mjs";
import { request } from "./lib/http.mjs";
import { startMetadataServer, metadataCluster } from "./lib/metadata-server.mjs";
import {
  Agent,
  CookieJar,
  assertTokenResponse,
  authServerMaterial,
  authorizeFlow,
  authorizeUrl,
  describeFlow,
  jwtParts,
  keysSection,
  mcpPost,
  pageText,
  pkce,
  randomSecret,
  sleep,
  tokenRequest,
} from "./lib/authz.mjs";

const SCOPE = "mcp:tools";
const REDIRECT = "http://127.0.0.1:45680/callback"; // nothing listens: the tests read the 302 Location
const CLIENT_NAME = "Good CIMD App";
const TIMEOUT_MS = 1000;

let m, echo, docs, envoy, strict;

// The documents. `origin` is https://localhost:<port> of the metadata server.
const routes = (origin) => ({
  "/clients/good.json": {
    json: {
      client_id: `${origin}/clients/good.json`,
      client_name: CLIENT_NAME,
      client_uri: "https://app.example.com",
      redirect_uris: [REDIRECT],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    },
  },
  "/clients/wrong-id.json": {
    json: { client_id: `${origin}/clients/good.json`, client_name: "Impostor", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" },
  },
  "/clients/secret.json": {
    json: {
      client_id: `${origin}/clients/secret.json`,
      client_name: "Has A Secret",
      client_secret: "s3cr3t",
      redirect_uris: [REDIRECT],
      token_endpoint_auth_method: "none",
    },
  },
  "/clients/slow.json": { hang: true },
  // Valid, but cacheable for 1 s only (the Envoy's min_cache_seconds is 1).
  "/clients/short.json": {
    json: { client_id: `${origin}/clients/short.json`, client_name: "Short-lived", redirect_uris: [REDIRECT] },
    headers: { "cache-control": "max-age=1" },
  },
  // Valid, but over max_bytes (5120 by default).
  "/clients/big.json": {
    json: { client_id: `${origin}/clients/big.json`, client_name: "Big", redirect_uris: [REDIRECT], padding: "x".repeat(6000) },
  },
  // Valid documents for the strict Envoy: it must never fetch them.
  "/clients/private.json": {
    json: { client_id: `${origin}/clients/private.json`, client_name: "Private", redirect_uris: [REDIRECT] },
  },
});

function pluginConfig(origin, cimd) {
  return {
    resource: `${origin}/mcp`,
    routes: [{ prefix: "/mcp", scopes: [SCOPE] }],
    authorization_server: {
      ...keysSection(m),
      display_name: "CIMD Gateway",
      scopes: [{ name: SCOPE, description: "Use the tools" }],
      default_scopes: [SCOPE],
      users: [m.userEntry()],
      client_id_metadata_documents: cimd,
      rate_limits: { token_per_minute_per_client: 1000, token_per_minute_per_address: 1000, register_per_minute_per_address: 1000 },
    },
  };
}

before(async () => {
  m = await authServerMaterial();
  [echo, docs] = await Promise.all([startEcho(), startMetadataServer(routes)]);
  const common = { backendPort: echo.port, envKeyValues: m.envKeyValues, extraClusters: [metadataCluster("cimd", docs.port)] };
  [envoy, strict] = await Promise.all([
    startEnvoy({
      ...common,
      pluginConfig: ({ origin }) => pluginConfig(origin, { cluster: "cimd", allow_private_hosts: true, timeout_ms: TIMEOUT_MS, min_cache_seconds: 1 }),
    }),
    startEnvoy({
      ...common,
      pluginConfig: ({ origin }) => pluginConfig(origin, { cluster: "cimd", timeout_ms: TIMEOUT_MS }),
    }),
  ]);
});

after(async () => {
  await Promise.all([envoy?.stop(), strict?.stop()]);
  await Promise.all([echo?.stop(), docs?.stop()]);
});

const requestsSeen = () => docs.requests.map((r) => `${r.method} ${r.path} host=${r.headers.host}`).join("\n");
const T = (name, fn) => test(name, () => withLog([envoy, strict], fn, () => `metadata server saw:\n${requestsSeen()}`));

const GOOD = () => docs.url("/clients/good.json");
const RESOURCE = () => `${envoy.origin}/mcp`;

function authorizeParams(client_id, { redirect_uri = REDIRECT, org = envoy.origin } = {}) {
  const pk = pkce();
  const state = randomSecret(12);
  const url = authorizeUrl(org, {
    response_type: "code",
    client_id,
    redirect_uri,
    scope: SCOPE,
    state,
    code_challenge: pk.challenge,
    code_challenge_method: "S256",
    resource: `${org}/mcp`,
  });
  return { url, pk, state };
}

/** A 400 (or `status`) HTML error page, never a redirect. */
function assertHtmlError(res, { status = 400, note = "" } = {}) {
  const ctx = `${note} (got ${res.status} location=${res.headers.location} ${res.headers["content-type"]} ${String(res.body).slice(0, 400)})`;
  if (typeof status === "function") assert.ok(status(res.status), `status ${ctx}`);
  else assert.equal(res.status, status, `status ${ctx}`);
  assert.match(res.headers["content-type"] ?? "", /^text\/html\b/, `content-type ${ctx}`);
  assert.equal(res.headers.location, undefined, `never redirects ${ctx}`);
  assert.ok(pageText(res.body).length > 0, `an error page ${ctx}`);
  return pageText(res.body);
}

/** Authorize with `client_id` through sign-in (if asked) and consent; returns the code and the pages. */
async function authorize(agent, client_id, { expectSignIn } = {}) {
  const { url, pk, state } = authorizeParams(client_id, { org: agent.origin });
  const flow = await authorizeFlow(agent, url, { username: m.user.username, password: m.user.password });
  assert.ok(flow.location, `no redirect to the client\n${describeFlow(flow)}`);
  const kinds = flow.pages.map((p) => p.kind);
  if (expectSignIn !== undefined) assert.deepEqual(kinds, expectSignIn ? ["signin", "consent"] : ["consent"], describeFlow(flow));
  else assert.equal(kinds.at(-1), "consent", describeFlow(flow));
  const u = new URL(flow.location);
  assert.equal(`${u.origin}${u.pathname}`, REDIRECT, flow.location);
  assert.equal(u.searchParams.get("state"), state, flow.location);
  assert.equal(u.searchParams.get("iss"), agent.origin, flow.location);
  assert.equal(u.searchParams.get("error"), null, flow.location);
  const code = u.searchParams.get("code");
  assert.ok(code && code.length >= 16, flow.location);
  return { flow, code, verifier: pk.verifier, consent: flow.pages.find((p) => p.kind === "consent") };
}

/** The backend got the /mcp request with this identity. */
async function assertMcpPasses(token, client_id, note) {
  const n = echo.requests.length;
  const res = await mcpPost(envoy.origin, token);
  assert.equal(res.status, 200, `/mcp ${note}: ${res.status} ${res.body} www-authenticate=${res.headers["www-authenticate"]}`);
  const seen = echo.requests.slice(n).find((r) => r.url.startsWith("/mcp"));
  assert.ok(seen, `the backend saw /mcp ${note}`);
  assert.equal(seen.headers["x-mcp-client-id"], client_id, `x-mcp-client-id ${note}`);
  assert.equal(seen.headers["x-mcp-subject"], m.user.subject, `x-mcp-subject ${note}`);
  assert.equal(seen.headers.authorization, undefined, `no Authorization at the backend ${note}`);
}

// ---------- tests (in order: the good document's fetch count is checked across them) ----------

T("metadata: client_id_metadata_document_supported is true", async () => {
  for (const e of [envoy, strict]) {
    const r = await request(e.url("/.well-known/oauth-authorization-server"), { headers: { accept: "application/json" } });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.client_id_metadata_document_supported, true, r.body);
    assert.ok(r.json.token_endpoint_auth_methods_supported.includes("none"), r.body);
  }
  assert.equal(docs.total(), 0, `nothing fetched yet:\n${requestsSeen()}`);
});

let jar, tokens;

T("authorization-code flow with a document URL as client_id: sign-in, consent names the client and its host, code, token, /mcp", async () => {
  const client_id = GOOD();
  jar = new CookieJar();
  const c = await authorize(new Agent(envoy.origin, { jar }), client_id, { expectSignIn: true });

  // Fetched exactly once, through the cluster, with the URL's authority and path.
  assert.equal(docs.count("/clients/good.json"), 1, requestsSeen());
  const fetch = docs.requests.find((r) => r.path === "/clients/good.json");
  assert.equal(fetch.method, "GET");
  assert.equal(fetch.headers.host, `localhost:${docs.port}`, "the document URL's authority");

  assert.ok(c.consent.text.includes(CLIENT_NAME), `the consent page names the client: ${c.consent.text}`);
  assert.ok(c.consent.text.includes("localhost"), `the consent page names the document's host: ${c.consent.text}`);

  const res = await tokenRequest(envoy.origin, {
    grant_type: "authorization_code",
    code: c.code,
    redirect_uri: REDIRECT,
    code_verifier: c.verifier,
    resource: RESOURCE(),
    client_id,
  });
  tokens = assertTokenResponse(res, { refresh: true, scope: SCOPE, note: "code exchange by the public CIMD client" });
  const { claims } = jwtParts(tokens.access_token);
  assert.equal(claims.client_id, client_id);
  assert.equal(claims.sub, m.user.subject);
  assert.equal(claims.aud, RESOURCE());
  await assertMcpPasses(tokens.access_token, client_id, "code-flow token");
  assert.equal(docs.count("/clients/good.json"), 1, `no refetch at the token endpoint:\n${requestsSeen()}`);
});

T("the code is bound to the document client: a wrong verifier or another client_id is refused", async () => {
  const c = await authorize(new Agent(envoy.origin, { jar }), GOOD(), { expectSignIn: false });
  const base = { grant_type: "authorization_code", code: c.code, redirect_uri: REDIRECT, resource: RESOURCE() };
  const otherClient = await tokenRequest(envoy.origin, { ...base, code_verifier: c.verifier, client_id: docs.url("/clients/private.json") });
  assert.ok(otherClient.status >= 400 && otherClient.status < 500, `another client_id: ${otherClient.status} ${otherClient.body}`);
  const badVerifier = await tokenRequest(envoy.origin, { ...base, code_verifier: pkce().verifier, client_id: GOOD() });
  assert.equal(badVerifier.status, 400, `wrong verifier: ${badVerifier.body}`);
  assert.equal(badVerifier.json?.error, "invalid_grant", badVerifier.body);
  assert.equal(docs.count("/clients/private.json"), 0, `the token endpoint fetches nothing:\n${requestsSeen()}`);
});

T("refresh as the public document client rotates and the new access token works", async () => {
  const res = await tokenRequest(envoy.origin, { grant_type: "refresh_token", refresh_token: tokens.refresh_token, client_id: GOOD() });
  const t2 = assertTokenResponse(res, { refresh: true, scope: SCOPE, note: "refresh" });
  assert.notEqual(t2.refresh_token, tokens.refresh_token);
  assert.equal(jwtParts(t2.access_token).claims.client_id, GOOD());
  await assertMcpPasses(t2.access_token, GOOD(), "refreshed token");
  assert.equal(docs.count("/clients/good.json"), 1, requestsSeen());
});

T("a second authorization within max-age does not refetch the document", async () => {
  // Signed in already (same jar): consent only; a new browser: sign-in + consent. Neither fetches.
  const again = await authorize(new Agent(envoy.origin, { jar }), GOOD(), { expectSignIn: false });
  assert.ok(again.consent.text.includes(CLIENT_NAME), again.consent.text);
  await authorize(new Agent(envoy.origin), GOOD(), { expectSignIn: true });
  assert.equal(docs.count("/clients/good.json"), 1, `cached for max-age=300:\n${requestsSeen()}`);
});

T("the cache follows the document's Cache-Control: max-age=1 is fetched again after it expires", async () => {
  const { url } = authorizeParams(docs.url("/clients/short.json"));
  const first = await request(url);
  assert.equal(first.status, 200, `sign-in page: ${first.status} ${first.body.slice(0, 300)}`);
  assert.equal(docs.count("/clients/short.json"), 1, requestsSeen());
  await request(url);
  assert.equal(docs.count("/clients/short.json"), 1, `still fresh:\n${requestsSeen()}`);
  await sleep(2100);
  const later = await request(url);
  assert.equal(later.status, 200, `sign-in page: ${later.status}`);
  assert.equal(docs.count("/clients/short.json"), 2, `refetched after max-age:\n${requestsSeen()}`);
});

T("a redirect_uri not in the document → 400 page, no redirect", async () => {
  for (const bad of ["http://127.0.0.1:45680/elsewhere", "https://evil.example/callback"]) {
    const { url } = authorizeParams(GOOD(), { redirect_uri: bad });
    assertHtmlError(await request(url), { note: `redirect_uri ${bad}` });
  }
  assert.equal(docs.count("/clients/good.json"), 1, requestsSeen());
});

T("a document whose client_id is not its URL → 400 page, no redirect", async () => {
  const client_id = docs.url("/clients/wrong-id.json");
  const text = assertHtmlError(await request(authorizeParams(client_id).url), { note: "wrong-id document" });
  assert.match(text, /client_id/, text);
  assert.equal(docs.count("/clients/wrong-id.json"), 1, requestsSeen());
  // The refusal is remembered: a second try does not fetch again.
  assertHtmlError(await request(authorizeParams(client_id).url), { note: "wrong-id document, again" });
  assert.equal(docs.count("/clients/wrong-id.json"), 1, `negative cache:\n${requestsSeen()}`);
  // And the token endpoint does not take it either.
  const res = await tokenRequest(envoy.origin, { grant_type: "authorization_code", code: "x".repeat(40), redirect_uri: REDIRECT, code_verifier: pkce().verifier, client_id });
  assert.ok(res.status === 400 || res.status === 401, `token endpoint with the refused client: ${res.status} ${res.body}`);
});

T("a document with a client_secret → 400 page, no redirect", async () => {
  const text = assertHtmlError(await request(authorizeParams(docs.url("/clients/secret.json")).url), { note: "secret document" });
  assert.match(text, /secret/i, text);
  assert.equal(docs.count("/clients/secret.json"), 1, requestsSeen());
});

T("a document larger than max_bytes → 400 page, no redirect", async () => {
  assertHtmlError(await request(authorizeParams(docs.url("/clients/big.json")).url), { note: "big document" });
  assert.equal(docs.count("/clients/big.json"), 1, requestsSeen());
});

T("a document that never answers → an error page within about timeout_ms, no hang", async () => {
  const client_id = docs.url("/clients/slow.json");
  const t0 = Date.now();
  const res = await request(authorizeParams(client_id).url, { timeoutMs: 8000 });
  const ms = Date.now() - t0;
  assert.ok(res.status >= 400 && res.status < 600, `status ${res.status} ${res.body.slice(0, 300)}`);
  assert.equal(res.headers.location, undefined, "no redirect");
  assert.ok(ms >= TIMEOUT_MS - 100 && ms < TIMEOUT_MS + 1500, `answered after ${ms} ms (timeout_ms ${TIMEOUT_MS})`);
  assert.equal(docs.count("/clients/slow.json"), 1, `it was fetched:\n${requestsSeen()}`);
  // Remembered as failed: the next try answers at once, without another fetch.
  const t1 = Date.now();
  const again = await request(authorizeParams(client_id).url, { timeoutMs: 8000 });
  assert.ok(again.status >= 400 && again.status < 600 && !again.headers.location, `again: ${again.status}`);
  assert.ok(Date.now() - t1 < TIMEOUT_MS, `the failure is cached (${Date.now() - t1} ms)`);
  assert.equal(docs.count("/clients/slow.json"), 1, requestsSeen());
});

T("without allow_private_hosts a loopback document URL → 400 page without any fetch", async () => {
  const before = docs.total();
  for (const client_id of [
    `https://127.0.0.1:${docs.port}/clients/private.json`,
    `https://localhost:${docs.port}/clients/private.json`,
    `https://[::1]:${docs.port}/clients/private.json`,
  ]) {
    const { url } = authorizeParams(client_id, { org: strict.origin });
    assertHtmlError(await request(url), { note: client_id });
  }
  // A non-https client_id is not a document URL at all: an unknown client.
  assertHtmlError(await request(authorizeParams(`http://localhost:${docs.port}/clients/private.json`, { org: strict.origin }).url), { note: "http URL" });
  assert.equal(docs.total(), before, `the strict Envoy fetched nothing:\n${requestsSeen()}`);
  // Control: the permissive Envoy does fetch that same (valid) document.
  const { url } = authorizeParams(docs.url("/clients/private.json"));
  const res = await request(url);
  assert.equal(docs.count("/clients/private.json"), 1, requestsSeen());
  assert.ok(res.status === 200 || res.status === 302, `control at the permissive Envoy: ${res.status} ${res.body.slice(0, 300)}`);
});
