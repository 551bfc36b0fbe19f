// The built-in OAuth 2.1 authorization server (docs/authorization-server.md) in a real Envoy, driven
// with plain HTTP: metadata, client_credentials, Dynamic Client Registration, the authorization-code
// flow with sign-in and consent pages (form posts + a cookie jar), refresh rotation, attacks,
// revocation, introspection and rate limits. Tokens are used on /mcp against the unchanged
// server-everything.
//
// Three Envoys, started together: `envoy` (generous rate limits, default lifetimes, a verify_only
// key from an earlier rotation) serves almost every test; `aux` (token limit 3/min per client,
// registration 2/min per address, 2 s access tokens, 2 s codes, resource-server leeway 0) serves
// the rate-limit and expiry tests; `alt` (issuer with a path, HS256, registration behind an
// initial access token) serves the last three.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createLocalJWKSet, importJWK, jwtVerify, SignJWT } from "jose";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEverything } from "./lib/backends.mjs";
import { request } from "./lib/http.mjs";
import { assertChallenge, assertOAuthError } from "./lib/assertions.mjs";
import {
  Agent,
  assertHostCookie,
  assertTokenResponse,
  authServerMaterial,
  authorizeFlow,
  authorizeUrl,
  awayFromMinuteBoundary,
  credentialsFill,
  describeFlow,
  findSubmit,
  APPROVE,
  DENY,
  es256PrivateJwk,
  jwtParts,
  keysSection,
  mcpPost,
  mcpSession,
  pageText,
  parseForms,
  pkce,
  postForm,
  randomSecret,
  register,
  sha256Hash,
  signInForm,
  sleep,
  tokenRequest,
} from "./lib/authz.mjs";

// Loopback redirect URIs (nothing listens: the tests read the 302 Location).
const REDIRECT = "http://127.0.0.1:45678/callback";
const REDIRECT_HOST = "127.0.0.1:45678";
const DISPLAY_NAME = "E2E Everything Gateway";
const SCOPES = [
  { name: "mcp:tools", description: "Use the tools of the everything server" },
  { name: "mcp:admin", description: "Administer the everything server" },
];

let envoy, aux, alt, everything, m, oldKey, origin, auxOrigin, altOrigin;
const HS_SECRET = randomSecret(32);
const INITIAL_ACCESS_TOKEN = randomSecret(24);
const ALT_PATH = "/tenant-a";

function asSection(extra = {}) {
  return {
    ...keysSection(m),
    // The key of a previous rotation: published and trusted, not used to sign.
    signing_keys: [{ jwk_env: m.jwkEnv }, { jwk: oldKey, verify_only: true }],
    display_name: DISPLAY_NAME,
    scopes: SCOPES,
    default_scopes: ["mcp:tools"],
    users: [m.userEntry()],
    clients: [
      m.robotEntry({ scopes: ["mcp:tools"] }),
      { client_id: "e2e-public", client_name: "E2E Public App", redirect_uris: [REDIRECT] },
      { client_id: "e2e-other", client_name: "Other App", redirect_uris: [REDIRECT] },
      { client_id: "e2e-public-2", client_name: "Second Public App", redirect_uris: [REDIRECT] },
      { client_id: "svc-robot-2", client_secret_hash: sha256Hash(m.robot.secret), grant_types: ["client_credentials"] },
      { client_id: "first-party", client_name: "First Party", redirect_uris: [REDIRECT], skip_consent: true },
      { client_id: "tools-only", client_name: "Tools Only", redirect_uris: [REDIRECT], scopes: ["mcp:tools"] },
    ],
    ...extra,
  };
}

before(async () => {
  m = await authServerMaterial();
  oldKey = await es256PrivateJwk("rotated-out");
  everything = await startEverything("streamableHttp");
  const common = { backendPort: everything.port, envKeyValues: m.envKeyValues };
  [envoy, aux, alt] = await Promise.all([
    startEnvoy({
      ...common,
      pluginConfig: ({ origin }) => ({
        resource: `${origin}/mcp`,
        resource_name: "server-everything behind the built-in authorization server",
        routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
        authorization_server: asSection({
          rate_limits: { token_per_minute_per_client: 1000, token_per_minute_per_address: 1000, register_per_minute_per_address: 1000 },
        }),
      }),
    }),
    startEnvoy({
      ...common,
      concurrency: 1,
      pluginConfig: ({ origin }) => ({
        resource: `${origin}/mcp`,
        leeway_seconds: 0,
        routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
        authorization_server: asSection({
          access_token_ttl_seconds: 2,
          code_ttl_seconds: 2,
          rate_limits: { token_per_minute_per_client: 3, token_per_minute_per_address: 1000, register_per_minute_per_address: 2 },
        }),
      }),
    }),
    // An issuer with a path, HS256 signing, registration behind an initial access token.
    startEnvoy({
      ...common,
      concurrency: 1,
      pluginConfig: ({ origin }) => ({
        resource: `${origin}/mcp`,
        routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
        authorization_server: {
          issuer: `${origin}${ALT_PATH}`,
          signing_keys: [{ kid: "hs-alt", hs256_secret_base64url: HS_SECRET }],
          sealing_keys: [{ kid: "s1", value_base64url: m.sealing }],
          users: [m.userEntry()],
          clients: [{ client_id: "e2e-public", client_name: "E2E Public App", redirect_uris: [REDIRECT] }],
          registration: { initial_access_token_hashes: [sha256Hash(INITIAL_ACCESS_TOKEN)] },
        },
      }),
    }),
  ]);
  origin = envoy.origin;
  auxOrigin = aux.origin;
  altOrigin = alt.origin;
});

after(async () => {
  await Promise.all([envoy?.stop(), aux?.stop(), alt?.stop()]);
  await everything?.stop();
});

const T = (name, fn) => test(name, () => withLog([envoy, aux, alt], fn, () => `server-everything output:\n${everything.output().slice(-1500)}`));
const RESOURCE = () => `${origin}/mcp`;
const robotBasic = () => [m.robot.client_id, m.robot.secret];

// ---------- helpers ----------

/** Start an authorization at `org` and drive it through sign-in and consent. Returns the flow plus pkce/state/code. */
async function obtainCode({
  org = origin,
  client_id = "e2e-public",
  redirect_uri = REDIRECT,
  scope = "mcp:tools",
  resource = `${org}/mcp`,
  agent = new Agent(org),
  decision = "approve",
  extra = {},
} = {}) {
  const pk = pkce();
  const state = randomSecret(12);
  const url = authorizeUrl(org, {
    response_type: "code",
    client_id,
    redirect_uri,
    scope,
    state,
    code_challenge: pk.challenge,
    code_challenge_method: "S256",
    resource,
    ...extra,
  });
  const flow = await authorizeFlow(agent, url, { username: m.user.username, password: m.user.password, decision });
  assert.ok(flow.location, `the authorization did not end in a redirect to the client\n${describeFlow(flow)}`);
  const code = flow.params.get("code");
  return { ...flow, pk, state, code, url, client_id, redirect_uri };
}

/** Assert the client's redirect: exact base URI, the same state, iss = issuer, and either a code or the error. */
function assertClientRedirect(location, { redirect = REDIRECT, state, iss = origin, error, note = "" }) {
  const u = new URL(location);
  assert.equal(`${u.origin}${u.pathname}`, redirect, `redirect base ${location} ${note}`);
  const p = u.searchParams;
  if (state !== undefined) assert.equal(p.get("state"), state, `state ${location} ${note}`);
  assert.equal(p.get("iss"), iss, `iss (RFC 9207) ${location} ${note}`);
  if (error) {
    assert.equal(p.get("error"), error, `error ${location} ${note}`);
    assert.equal(p.get("code"), null, `no code with an error ${location} ${note}`);
  } else {
    assert.equal(p.get("error"), null, `no error ${location} ${note}`);
    assert.ok((p.get("code") ?? "").length >= 16, `code ${location} ${note}`);
  }
  return p;
}

/** Code → tokens for a public client. */
async function exchange(c, { org = origin, verifier = c.pk.verifier, client_id = c.client_id, redirect_uri = c.redirect_uri, resource = `${org}/mcp`, basic } = {}) {
  return tokenRequest(
    org,
    { grant_type: "authorization_code", code: c.code, redirect_uri, code_verifier: verifier, resource, client_id: basic ? undefined : client_id },
    { basic },
  );
}

async function obtainTokens(opts = {}) {
  const c = await obtainCode(opts);
  assertClientRedirect(c.location, { redirect: opts.redirect_uri ?? REDIRECT, state: c.state, iss: opts.org ?? origin });
  const res = await exchange(c, { org: opts.org, basic: opts.basic });
  return { c, tokens: assertTokenResponse(res, { refresh: true, note: "code exchange" }) };
}

const refresh = (refresh_token, { org = origin, client_id = "e2e-public", basic } = {}) =>
  tokenRequest(org, { grant_type: "refresh_token", refresh_token, client_id: basic ? undefined : client_id }, { basic });

/** The token works on /mcp: initialize through Envoy to server-everything, and one echo call. */
async function assertMcpWorks(token, org = origin, note = "") {
  const s = await mcpSession(org, token);
  try {
    assert.equal(s.res.status, 200, note);
    assert.equal(s.result.serverInfo?.name, "mcp-servers/everything", `serverInfo ${JSON.stringify(s.result)} ${note}`);
    const echo = await s.call("tools/call", { name: "echo", arguments: { message: `hi ${note}` } });
    assert.equal(echo.res.status, 200, `tools/call ${echo.res.body} ${note}`);
    assert.deepEqual(echo.result?.content, [{ type: "text", text: `Echo: hi ${note}` }], `echo result ${echo.res.body}`);
  } finally {
    await s.close();
  }
}

/** /mcp refuses the token with 401 invalid_token (several requests: both Envoy workers). */
async function assertMcpRefused(token, org = origin, note = "") {
  for (let i = 0; i < 4; i++) {
    const res = await mcpPost(org, token);
    assert.equal(res.status, 401, `/mcp with a dead token, try ${i}: ${res.status} ${res.body} ${note}`);
    const params = assertChallenge(res.headers["www-authenticate"], {
      error: "invalid_token",
      error_description: /./,
      resource_metadata: `${org}/.well-known/oauth-protected-resource/mcp`,
      scope: "mcp:tools",
    }, note);
    assert.ok(params.error_description.length > 0);
  }
}

async function jwks(org = origin) {
  const res = await request(`${org}/oauth/jwks`);
  assert.equal(res.status, 200, `jwks ${res.body}`);
  return res.json;
}

/** Verify one of our access tokens against the published JWKS and check the RFC 9068 shape. */
async function assertAccessToken(token, { sub, client_id, scope, org = origin, ttl }) {
  const { header, claims } = jwtParts(token);
  assert.equal(header.typ, "at+jwt", `header typ ${JSON.stringify(header)}`);
  assert.equal(header.alg, "ES256", `header alg ${JSON.stringify(header)}`);
  assert.equal(header.kid, m.kid, `header kid ${JSON.stringify(header)}`);
  const { payload } = await jwtVerify(token, createLocalJWKSet(await jwks(org)), {
    issuer: org,
    audience: `${org}/mcp`,
    typ: "at+jwt",
    algorithms: ["ES256"],
  });
  for (const k of ["iss", "sub", "aud", "client_id", "scope", "exp", "iat", "jti"]) assert.ok(k in payload, `claim ${k} in ${JSON.stringify(claims)}`);
  assert.equal(payload.iss, org);
  const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  assert.deepEqual(aud, [`${org}/mcp`], `aud ${JSON.stringify(payload.aud)}`);
  if (sub !== undefined) assert.equal(payload.sub, sub);
  assert.equal(payload.client_id, client_id);
  assert.equal(payload.scope, scope);
  assert.ok(typeof payload.jti === "string" && payload.jti.length >= 8, `jti ${payload.jti}`);
  const now = Math.floor(Date.now() / 1000);
  assert.ok(Math.abs(payload.iat - now) <= 5, `iat ${payload.iat} vs now ${now}`);
  if (ttl !== undefined) assert.equal(payload.exp - payload.iat, ttl, `exp - iat`);
  return payload;
}

function assertHtmlError(res, status = 400, note = "") {
  const ctx = `${note} (got ${res.status} location=${res.headers.location} ${String(res.body).slice(0, 300)})`;
  assert.equal(res.status, status, `status ${ctx}`);
  assert.match(res.headers["content-type"] ?? "", /^text\/html\b/, `content-type ${ctx}`);
  assert.equal(res.headers.location, undefined, `never redirects ${ctx}`);
  assert.ok(pageText(res.body).length > 0, `an error page ${ctx}`);
}

/** GET authorize directly and expect an error redirect to the client. */
async function assertAuthorizeErrorRedirect(params, error, note) {
  const state = params.state;
  const res = await request(authorizeUrl(origin, params));
  assert.ok([302, 303].includes(res.status), `${note}: expected a redirect, got ${res.status} ${res.body.slice(0, 300)}`);
  assertClientRedirect(res.headers.location, { state, error, note });
  return res;
}

const baseAuthorize = (extra = {}) => {
  const pk = pkce();
  return {
    response_type: "code",
    client_id: "e2e-public",
    redirect_uri: REDIRECT,
    scope: "mcp:tools",
    state: randomSecret(8),
    code_challenge: pk.challenge,
    code_challenge_method: "S256",
    resource: RESOURCE(),
    ...extra,
  };
};

// ---------- metadata ----------

T("metadata: /.well-known/oauth-authorization-server and openid-configuration, exact issuer and endpoints", async () => {
  const expectedEndpoints = {
    issuer: origin,
    authorization_endpoint: `${origin}/oauth/authorize`,
    token_endpoint: `${origin}/oauth/token`,
    registration_endpoint: `${origin}/oauth/register`,
    revocation_endpoint: `${origin}/oauth/revoke`,
    introspection_endpoint: `${origin}/oauth/introspect`,
    jwks_uri: `${origin}/oauth/jwks`,
  };
  const docs = {};
  for (const path of ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]) {
    const res = await request(`${origin}${path}`);
    assert.equal(res.status, 200, `${path}: ${res.status} ${res.body}`);
    assert.match(res.headers["content-type"] ?? "", /^application\/json\b/, path);
    const j = res.json;
    for (const [k, v] of Object.entries(expectedEndpoints)) assert.equal(j[k], v, `${path} ${k}: ${JSON.stringify(j)}`);
    assert.deepEqual(j.response_types_supported, ["code"], path);
    assert.deepEqual(j.code_challenge_methods_supported, ["S256"], path);
    assert.deepEqual([...j.token_endpoint_auth_methods_supported].sort(), ["client_secret_basic", "client_secret_post", "none"], path);
    assert.deepEqual([...j.grant_types_supported].sort(), ["authorization_code", "client_credentials", "refresh_token"], path);
    assert.deepEqual(j.scopes_supported, ["mcp:tools", "mcp:admin"], path);
    assert.equal(j.authorization_response_iss_parameter_supported, true, path);
    assert.equal(j.client_id_metadata_document_supported, false, path);
    docs[path] = j;
  }
  // The two documents agree on everything OAuth.
  const a = docs["/.well-known/oauth-authorization-server"];
  const b = docs["/.well-known/openid-configuration"];
  for (const k of Object.keys(a)) assert.deepEqual(b[k], a[k], `openid-configuration ${k}`);
});

T("metadata: PRM lists the issuer; a 401 on /mcp points at it; JWKS has the public key only", async () => {
  for (const path of ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]) {
    const res = await request(`${origin}${path}`);
    assert.equal(res.status, 200, `${path}: ${res.body}`);
    assert.equal(res.json.resource, RESOURCE(), path);
    assert.deepEqual(res.json.authorization_servers, [origin], path);
  }
  const res = await mcpPost(origin, undefined);
  assert.equal(res.status, 401);
  assertChallenge(res.headers["www-authenticate"], { resource_metadata: `${origin}/.well-known/oauth-protected-resource/mcp`, scope: "mcp:tools" });

  const set = await jwks();
  assert.deepEqual(set.keys.map((k) => k.kid).sort(), [m.kid, "rotated-out"].sort(), JSON.stringify(set));
  for (const [k, src] of [[set.keys.find((x) => x.kid === m.kid), m.jwk], [set.keys.find((x) => x.kid === "rotated-out"), oldKey]]) {
    assert.equal(k.kty, "EC");
    assert.equal(k.crv, "P-256");
    assert.equal(k.x, src.x);
    assert.equal(k.y, src.y);
    assert.equal(k.d, undefined, "the private part must never be published");
  }
});

T("metadata: other well-known paths are 404, never 401 or 5xx (clients probe them)", async () => {
  for (const path of ["/.well-known/oauth-authorization-server/mcp", "/.well-known/openid-configuration/mcp", "/.well-known/oauth-authorization-server/other"]) {
    const res = await request(`${origin}${path}`);
    assert.equal(res.status, 404, `${path}: ${res.status} ${res.body} www-authenticate=${res.headers["www-authenticate"]}`);
  }
});

T("CORS for browser-based clients: preflight and responses of metadata, register, token", async () => {
  const o = "http://localhost:6274";
  for (const path of ["/.well-known/oauth-authorization-server", "/oauth/register", "/oauth/token", "/oauth/revoke"]) {
    const pre = await request(`${origin}${path}`, {
      method: "OPTIONS",
      headers: { origin: o, "access-control-request-method": path.startsWith("/.well") ? "GET" : "POST", "access-control-request-headers": "content-type" },
    });
    assert.ok([200, 204].includes(pre.status), `preflight ${path}: ${pre.status}`);
    assert.ok(["*", o].includes(pre.headers["access-control-allow-origin"]), `preflight ${path}: ${JSON.stringify(pre.headers)}`);
    assert.match(pre.headers["access-control-allow-headers"] ?? "", /content-type/i, path);
  }
  const meta = await request(`${origin}/.well-known/oauth-authorization-server`, { headers: { origin: o } });
  assert.ok(["*", o].includes(meta.headers["access-control-allow-origin"]), JSON.stringify(meta.headers));
  const tok = await tokenRequest(origin, { grant_type: "client_credentials" }, { basic: robotBasic(), headers: { origin: o } });
  assert.equal(tok.status, 200);
  assert.ok(["*", o].includes(tok.headers["access-control-allow-origin"]), `token response: ${JSON.stringify(tok.headers)}`);
  const reg = await request(`${origin}/oauth/register`, {
    method: "POST",
    headers: { origin: o, "content-type": "application/json" },
    body: JSON.stringify({ client_name: "inspector", redirect_uris: ["http://localhost:6274/oauth/callback"], token_endpoint_auth_method: "none" }),
  });
  assert.equal(reg.status, 201, reg.body);
  assert.ok(["*", o].includes(reg.headers["access-control-allow-origin"]), `register response: ${JSON.stringify(reg.headers)}`);
});

T("pages: sign-in and consent carry no-store, anti-framing and no-referrer headers", async () => {
  const agent = new Agent(origin);
  const flow = await authorizeFlow(agent, authorizeUrl(origin, baseAuthorize()), { username: m.user.username, password: m.user.password, decision: "stop" });
  assert.ok(flow.atConsent, describeFlow(flow));
  for (const p of flow.pages) {
    const h = p.res.headers;
    const ctx = `${p.kind} page: ${JSON.stringify(h)}`;
    assert.match(h["cache-control"] ?? "", /\bno-store\b/, ctx);
    assert.ok(h["x-frame-options"] === "DENY" || /frame-ancestors 'none'/.test(h["content-security-policy"] ?? ""), ctx);
    assert.match(h["content-security-policy"] ?? "", /frame-ancestors 'none'/, ctx);
    assert.doesNotMatch(h["content-security-policy"] ?? "", /form-action/, `form-action would stop browsers following the redirect to the client: ${ctx}`);
    assert.equal(h["referrer-policy"], "no-referrer", ctx);
  }
});

T("key rotation: a token signed by a verify_only key is still accepted on /mcp; new tokens use the signing key", async () => {
  const key = await importJWK(oldKey, "ES256");
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ client_id: "e2e-public", scope: "mcp:tools", jti: randomSecret(12) })
    .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid: "rotated-out" })
    .setIssuer(origin)
    .setAudience(RESOURCE())
    .setSubject(m.user.subject)
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(key);
  await assertMcpWorks(token, origin, "token of the rotated-out key");
  const j = assertTokenResponse(await tokenRequest(origin, { grant_type: "client_credentials" }, { basic: robotBasic() }), { refresh: false });
  assert.equal(jwtParts(j.access_token).header.kid, m.kid, "the first key that is not verify_only signs");
});

// ---------- client_credentials ----------

T("client_credentials with client_secret_basic: token JSON, RFC 9068 JWT, works on /mcp", async () => {
  const res = await tokenRequest(origin, { grant_type: "client_credentials" }, { basic: robotBasic() });
  const j = assertTokenResponse(res, { refresh: false, scope: "mcp:tools" });
  assert.equal(j.expires_in, 900);
  await assertAccessToken(j.access_token, { sub: m.robot.client_id, client_id: m.robot.client_id, scope: "mcp:tools", ttl: 900 });
  await assertMcpWorks(j.access_token, origin, "client_credentials basic");
});

T("client_credentials with client_secret_post, explicit scope and resource", async () => {
  const res = await tokenRequest(origin, {
    grant_type: "client_credentials",
    client_id: m.robot.client_id,
    client_secret: m.robot.secret,
    scope: "mcp:tools",
    resource: RESOURCE(),
  });
  const j = assertTokenResponse(res, { refresh: false, scope: "mcp:tools" });
  await assertAccessToken(j.access_token, { client_id: m.robot.client_id, scope: "mcp:tools" });
  const s = await mcpSession(origin, j.access_token);
  assert.equal(s.result.serverInfo?.name, "mcp-servers/everything");
  await s.close();
});

T("client_credentials errors: wrong secret (Basic → 401 + WWW-Authenticate: Basic; post → 401), unknown client", async () => {
  let res = await tokenRequest(origin, { grant_type: "client_credentials" }, { basic: [m.robot.client_id, `${m.robot.secret}x`] });
  assertOAuthError(res, 401, "invalid_client", undefined, "wrong secret, Basic");
  assert.match(res.headers["www-authenticate"] ?? "", /^Basic\b/i, "WWW-Authenticate after Basic auth");

  res = await tokenRequest(origin, { grant_type: "client_credentials", client_id: m.robot.client_id, client_secret: "nope" });
  assertOAuthError(res, 401, "invalid_client", undefined, "wrong secret, post");

  res = await tokenRequest(origin, { grant_type: "client_credentials", client_id: "no-such-client", client_secret: "x" });
  assertOAuthError(res, 401, "invalid_client", undefined, "unknown client");

  res = await tokenRequest(origin, { grant_type: "client_credentials" }, { basic: ["no-such-client", "x"] });
  assertOAuthError(res, 401, "invalid_client", undefined, "unknown client, Basic");
  assert.match(res.headers["www-authenticate"] ?? "", /^Basic\b/i);
});

T("token endpoint errors: unsupported grant, missing grant_type, scope and resource not allowed, public client", async () => {
  let res = await tokenRequest(origin, { grant_type: "password", username: "alice", password: "x" }, { basic: robotBasic() });
  assertOAuthError(res, 400, "unsupported_grant_type", undefined, "password grant");

  res = await tokenRequest(origin, {}, { basic: robotBasic() });
  assertOAuthError(res, 400, "invalid_request", undefined, "no grant_type");

  res = await tokenRequest(origin, { grant_type: "client_credentials", scope: "mcp:admin" }, { basic: robotBasic() });
  assertOAuthError(res, 400, "invalid_scope", undefined, "scope the client may not have");

  res = await tokenRequest(origin, { grant_type: "client_credentials", scope: "no-such-scope" }, { basic: robotBasic() });
  assertOAuthError(res, 400, "invalid_scope", undefined, "unknown scope");

  res = await tokenRequest(origin, { grant_type: "client_credentials", resource: "https://other.example/mcp" }, { basic: robotBasic() });
  assertOAuthError(res, 400, "invalid_target", undefined, "resource not ours");

  // A public client cannot use client_credentials.
  res = await tokenRequest(origin, { grant_type: "client_credentials", client_id: "e2e-public" });
  assert.ok([400, 401].includes(res.status), `public client_credentials: ${res.status} ${res.body}`);
  assert.ok(["unauthorized_client", "invalid_client"].includes(res.json?.error), res.body);
  assert.equal(res.json.access_token, undefined);

  // A code grant without a code.
  res = await tokenRequest(origin, { grant_type: "authorization_code", client_id: "e2e-public", redirect_uri: REDIRECT, code_verifier: pkce().verifier });
  assertOAuthError(res, 400, "invalid_request", undefined, "authorization_code without code");
});

// ---------- Dynamic Client Registration ----------

T("DCR: public client (none) → 201 with client_id; it then runs the whole code flow", async () => {
  const meta = {
    client_name: "Registered Native App",
    redirect_uris: [REDIRECT],
    token_endpoint_auth_method: "none",
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    application_type: "native",
    scope: "mcp:tools",
  };
  const res = await register(origin, meta);
  assert.equal(res.status, 201, `register: ${res.status} ${res.body}`);
  assert.match(res.headers["content-type"] ?? "", /^application\/json\b/);
  const j = res.json;
  assert.ok(typeof j.client_id === "string" && j.client_id.length > 10, res.body);
  assert.ok(Number.isInteger(j.client_id_issued_at) && Math.abs(j.client_id_issued_at - Date.now() / 1000) < 10, res.body);
  assert.deepEqual(j.redirect_uris, [REDIRECT]);
  assert.equal(j.token_endpoint_auth_method, "none");
  assert.equal(j.client_name, meta.client_name);
  assert.deepEqual([...j.grant_types].sort(), ["authorization_code", "refresh_token"]);
  assert.equal(j.client_secret, undefined, "a public client gets no secret");

  const c = await obtainCode({ client_id: j.client_id });
  assertClientRedirect(c.location, { state: c.state });
  const consent = c.pages.find((p) => p.kind === "consent");
  assert.ok(consent, describeFlow(c));
  assert.ok(consent.text.includes("Registered Native App"), `consent shows the registered name: ${consent.text}`);
  const tokens = assertTokenResponse(await exchange(c), { refresh: true, scope: "mcp:tools" });
  await assertAccessToken(tokens.access_token, { sub: m.user.subject, client_id: j.client_id, scope: "mcp:tools" });
  await assertMcpWorks(tokens.access_token, origin, "dcr public");
  const r2 = assertTokenResponse(await refresh(tokens.refresh_token, { client_id: j.client_id }), { refresh: true });
  assert.notEqual(r2.refresh_token, tokens.refresh_token);
});

T("DCR: refused metadata (http non-loopback, javascript:, fragment, no redirect for code, unknown auth method)", async () => {
  const base = { client_name: "bad", token_endpoint_auth_method: "none", grant_types: ["authorization_code"], response_types: ["code"] };
  let res = await register(origin, { ...base, redirect_uris: ["http://evil.example/cb"] });
  assertOAuthError(res, 400, "invalid_redirect_uri", undefined, "http non-loopback");
  res = await register(origin, { ...base, redirect_uris: ["javascript:alert(1)"] });
  assertOAuthError(res, 400, "invalid_redirect_uri", undefined, "javascript:");
  res = await register(origin, { ...base, redirect_uris: ["https://app.example/cb#frag"] });
  assertOAuthError(res, 400, "invalid_redirect_uri", undefined, "fragment");
  res = await register(origin, { ...base, redirect_uris: [] });
  assert.equal(res.status, 400, `no redirect_uris: ${res.body}`);
  assert.ok(["invalid_redirect_uri", "invalid_client_metadata"].includes(res.json?.error), res.body);
  res = await register(origin, { ...base, redirect_uris: [REDIRECT], token_endpoint_auth_method: "private_key_jwt" });
  assertOAuthError(res, 400, "invalid_client_metadata", undefined, "private_key_jwt");
  res = await request(`${origin}/oauth/register`, { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" });
  assert.equal(res.status, 400, `not JSON: ${res.body}`);
  assert.ok(["invalid_client_metadata", "invalid_request"].includes(res.json?.error), res.body);
});

T("DCR: confidential client gets a secret; it authenticates the code flow; no client_credentials unless registered", async () => {
  const res = await register(origin, {
    client_name: "Confidential Web App",
    redirect_uris: [REDIRECT],
    token_endpoint_auth_method: "client_secret_basic",
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
  });
  assert.equal(res.status, 201, `register: ${res.status} ${res.body}`);
  const { client_id, client_secret } = res.json;
  assert.ok(typeof client_secret === "string" && client_secret.length >= 20, res.body);
  assert.equal(res.json.client_secret_expires_at, 0);
  assert.equal(res.json.token_endpoint_auth_method, "client_secret_basic");

  // Not registered for client_credentials.
  let r = await tokenRequest(origin, { grant_type: "client_credentials" }, { basic: [client_id, client_secret] });
  assertOAuthError(r, 400, "unauthorized_client", undefined, "client_credentials not among its grant_types");

  const c = await obtainCode({ client_id });
  assertClientRedirect(c.location, { state: c.state });
  // Wrong secret, then no secret at all: the code is not spent by a failed client authentication.
  r = await exchange(c, { basic: [client_id, `${client_secret}x`] });
  assertOAuthError(r, 401, "invalid_client", undefined, "code exchange with a wrong secret");
  assert.match(r.headers["www-authenticate"] ?? "", /^Basic\b/i);
  r = await exchange(c, { client_id });
  assertOAuthError(r, 401, "invalid_client", undefined, "confidential client without its secret");
  const tokens = assertTokenResponse(await exchange(c, { basic: [client_id, client_secret] }), { refresh: true, scope: "mcp:tools" });
  await assertMcpWorks(tokens.access_token, origin, "dcr confidential");
  assertTokenResponse(await refresh(tokens.refresh_token, { basic: [client_id, client_secret] }), { refresh: true });
});

T("DCR: confidential client_credentials client (client_secret_post, no redirect URIs)", async () => {
  const res = await register(origin, {
    client_name: "Registered robot",
    token_endpoint_auth_method: "client_secret_post",
    grant_types: ["client_credentials"],
  });
  assert.equal(res.status, 201, `register: ${res.status} ${res.body}`);
  const { client_id, client_secret } = res.json;
  assert.ok(client_secret, res.body);
  const j = assertTokenResponse(await tokenRequest(origin, { grant_type: "client_credentials", client_id, client_secret }), { refresh: false, scope: "mcp:tools" });
  await assertAccessToken(j.access_token, { client_id, scope: "mcp:tools" });
  const bad = await tokenRequest(origin, { grant_type: "client_credentials", client_id, client_secret: `${client_secret}x` });
  assertOAuthError(bad, 401, "invalid_client");
});

// ---------- the authorization code flow ----------

T("code flow: sign-in page, consent page, 302 with code/state/iss, tokens, /mcp, refresh rotation and reuse detection", async () => {
  const agent = new Agent(origin);
  const pk = pkce();
  const state = randomSecret(12);
  const url = authorizeUrl(origin, {
    response_type: "code",
    client_id: "e2e-public",
    redirect_uri: REDIRECT,
    scope: "mcp:tools",
    state,
    code_challenge: pk.challenge,
    code_challenge_method: "S256",
    resource: RESOURCE(),
  });

  // 1. The sign-in page.
  const page1 = await agent.get(url);
  assert.equal(page1.status, 200, `authorize: ${page1.status} ${page1.headers.location ?? ""} ${page1.body.slice(0, 500)}`);
  assert.match(page1.headers["content-type"] ?? "", /^text\/html\b/);
  const forms1 = parseForms(page1.body);
  const signin = signInForm(forms1);
  assert.ok(signin, `a form with a password field: ${page1.body.slice(0, 1500)}`);
  assert.equal(signin.method, "post");
  assert.ok(pageText(page1.body).includes(DISPLAY_NAME), `sign-in page names the server: ${pageText(page1.body)}`);
  const hostCookies = agent.jar.log.filter((c) => c.name.startsWith("__Host-"));
  assert.ok(hostCookies.length >= 1, `a __Host- cookie with the sign-in form: ${agent.jar.log.map((c) => c.line)}`);
  for (const c of agent.jar.log) assertHostCookie(c, "(every cookie the gateway sets)");

  // 2. Credentials → the consent page (maybe after a same-origin redirect).
  let res = await agent.submit(url, signin, { fill: credentialsFill(signin, m.user.username, m.user.password), submitter: signin.submits[0] });
  let pageUrl = url;
  while ([302, 303].includes(res.status) && new URL(res.headers.location, pageUrl).origin === origin) {
    pageUrl = new URL(res.headers.location, pageUrl).href;
    res = await agent.get(pageUrl);
  }
  assert.equal(res.status, 200, `after sign-in: ${res.status} ${res.headers.location ?? ""} ${res.body.slice(0, 500)}`);
  const text = pageText(res.body);
  assert.ok(text.includes("E2E Public App"), `consent names the client: ${text}`);
  assert.ok(text.includes(REDIRECT_HOST), `consent names the redirect host ${REDIRECT_HOST}: ${text}`);
  assert.ok(text.includes("Use the tools of the everything server"), `consent describes the scope: ${text}`);
  assert.ok(!text.includes("Administer the everything server"), `only the requested scope: ${text}`);
  const forms2 = parseForms(res.body);
  assert.equal(signInForm(forms2), undefined, "no password field on the consent page");
  const [approveForm, approveBtn] = findSubmit(forms2, APPROVE);
  const [denyForm] = findSubmit(forms2, DENY);
  assert.ok(approveForm && denyForm, `Approve and Deny buttons: ${res.body.slice(0, 2000)}`);
  for (const c of agent.jar.log) assertHostCookie(c, "(every cookie the gateway sets)");

  // 3. Approve → 302 to the redirect URI.
  const done = await agent.submit(pageUrl, approveForm, { submitter: approveBtn });
  assert.equal(done.status, 302, `approve: ${done.status} ${done.body.slice(0, 300)}`);
  const p = assertClientRedirect(done.headers.location, { state });
  const code = p.get("code");

  // 4. Tokens.
  const tokRes = await tokenRequest(origin, {
    grant_type: "authorization_code",
    code,
    redirect_uri: REDIRECT,
    client_id: "e2e-public",
    code_verifier: pk.verifier,
    resource: RESOURCE(),
  });
  const t1 = assertTokenResponse(tokRes, { refresh: true, scope: "mcp:tools" });
  assert.equal(t1.expires_in, 900);
  await assertAccessToken(t1.access_token, { sub: m.user.subject, client_id: "e2e-public", scope: "mcp:tools", ttl: 900 });
  await assertMcpWorks(t1.access_token, origin, "code flow");

  // 5. Refresh: rotated.
  const t2 = assertTokenResponse(await refresh(t1.refresh_token), { refresh: true, scope: "mcp:tools" });
  assert.notEqual(t2.refresh_token, t1.refresh_token, "refresh tokens rotate");
  assert.notEqual(t2.access_token, t1.access_token);
  await assertAccessToken(t2.access_token, { sub: m.user.subject, client_id: "e2e-public", scope: "mcp:tools" });
  await assertMcpWorks(t2.access_token, origin, "refreshed");

  // 6. The old refresh token again: refused, and the whole family dies (RFC 9700 §4.14.2).
  assertOAuthError(await refresh(t1.refresh_token), 400, "invalid_grant", undefined, "reuse of a rotated refresh token");
  assertOAuthError(await refresh(t2.refresh_token), 400, "invalid_grant", undefined, "the newest refresh token after reuse");

  // 7. Signed in: a second authorization in the same browser skips the sign-in page.
  const again = await obtainCode({ agent });
  assert.deepEqual(again.pages.map((x) => x.kind), ["consent"], `session reused: ${describeFlow(again)}`);
  assertClientRedirect(again.location, { state: again.state });
});

T("code flow: a refresh token is bound to its client", async () => {
  const { tokens } = await obtainTokens();
  assertOAuthError(await refresh(tokens.refresh_token, { client_id: "e2e-other" }), 400, "invalid_grant", undefined, "another client's refresh token");
  assertTokenResponse(await refresh(tokens.refresh_token), { refresh: true });
});

T("code flow: loopback redirect URI on another port is accepted (RFC 8252 §7.3)", async () => {
  const other = "http://127.0.0.1:51234/callback";
  const { tokens } = await obtainTokens({ redirect_uri: other });
  assert.ok(tokens.access_token);
});

T("code flow: skip_consent client → no consent page; scope defaults; two scopes; client scope limits; resource optional", async () => {
  // A trusted first-party client: sign-in, then straight back to the client.
  let c = await obtainCode({ client_id: "first-party" });
  assert.deepEqual(c.pages.map((p) => p.kind), ["signin"], describeFlow(c));
  assertClientRedirect(c.location, { state: c.state });
  assertTokenResponse(await exchange(c), { refresh: true, scope: "mcp:tools" });

  // No scope asked: default_scopes.
  c = await obtainCode({ scope: undefined });
  assertClientRedirect(c.location, { state: c.state });
  let t = assertTokenResponse(await exchange(c), { refresh: true, scope: "mcp:tools" });
  await assertAccessToken(t.access_token, { sub: m.user.subject, client_id: "e2e-public", scope: "mcp:tools" });

  // Two scopes: both on the consent page, both granted.
  c = await obtainCode({ scope: "mcp:tools mcp:admin" });
  const consent = c.pages.find((p) => p.kind === "consent");
  assert.ok(consent?.text.includes("Administer the everything server") && consent.text.includes("Use the tools of the everything server"), consent?.text);
  t = assertTokenResponse(await exchange(c), { refresh: true });
  assert.deepEqual(t.scope.split(" ").sort(), ["mcp:admin", "mcp:tools"]);
  await assertMcpWorks(t.access_token, origin, "two scopes");

  // Refresh may narrow the scope, never widen it (RFC 6749 §6).
  const narrow = assertTokenResponse(await refresh(t.refresh_token), { refresh: true });
  assert.deepEqual(narrow.scope.split(" ").sort(), ["mcp:admin", "mcp:tools"]);
  const n2 = await tokenRequest(origin, { grant_type: "refresh_token", refresh_token: narrow.refresh_token, client_id: "e2e-public", scope: "mcp:tools" });
  const narrowed = assertTokenResponse(n2, { refresh: true, scope: "mcp:tools", note: "narrowed refresh" });
  const c3 = await obtainCode();
  const t3 = assertTokenResponse(await exchange(c3), { refresh: true, scope: "mcp:tools" });
  const wide = await tokenRequest(origin, { grant_type: "refresh_token", refresh_token: t3.refresh_token, client_id: "e2e-public", scope: "mcp:tools mcp:admin" });
  assertOAuthError(wide, 400, "invalid_scope", undefined, "refresh asking for more than was granted");
  assert.ok(narrowed.access_token);

  // A client limited to mcp:tools cannot get mcp:admin.
  await assertAuthorizeErrorRedirect(baseAuthorize({ client_id: "tools-only", scope: "mcp:admin" }), "invalid_scope", "scope beyond the client's");

  // No resource on either request: the token is for this server's resource anyway.
  c = await obtainCode({ resource: undefined });
  assertClientRedirect(c.location, { state: c.state });
  t = assertTokenResponse(await exchange(c, { resource: undefined }), { refresh: true });
  await assertAccessToken(t.access_token, { sub: m.user.subject, client_id: "e2e-public", scope: "mcp:tools" });
});

T("revoke: another client cannot revoke a token that is not its own", async () => {
  const { tokens } = await obtainTokens();
  const res = await postForm(origin, "/oauth/revoke", { token: tokens.refresh_token, token_type_hint: "refresh_token", client_id: "e2e-other" });
  assert.ok([200, 400, 401].includes(res.status), `revoke by another client: ${res.status} ${res.body}`);
  await postForm(origin, "/oauth/revoke", { token: tokens.access_token, client_id: "e2e-other" });
  assertTokenResponse(await refresh(tokens.refresh_token), { refresh: true, note: "the refresh token survived another client's revocation" });
  await assertMcpWorks(tokens.access_token, origin, "the access token survived another client's revocation");
});

// ---------- attacks on the authorization endpoint ----------

T("authorize: PKCE missing or plain, bad response_type, unknown scope, foreign resource → error redirects with state and iss", async () => {
  const noChallenge = baseAuthorize();
  delete noChallenge.code_challenge;
  delete noChallenge.code_challenge_method;
  await assertAuthorizeErrorRedirect(noChallenge, "invalid_request", "no code_challenge");

  const pk = pkce();
  await assertAuthorizeErrorRedirect(baseAuthorize({ code_challenge: pk.verifier, code_challenge_method: "plain" }), "invalid_request", "plain");
  const noMethod = baseAuthorize();
  delete noMethod.code_challenge_method; // defaults to plain (RFC 7636 §4.3), which is refused
  await assertAuthorizeErrorRedirect(noMethod, "invalid_request", "no code_challenge_method");

  await assertAuthorizeErrorRedirect(baseAuthorize({ response_type: "token" }), "unsupported_response_type", "implicit grant");
  await assertAuthorizeErrorRedirect(baseAuthorize({ scope: "mcp:tools no-such-scope" }), "invalid_scope", "unknown scope");
  await assertAuthorizeErrorRedirect(baseAuthorize({ resource: "https://other.example/mcp" }), "invalid_target", "foreign resource");
  await assertAuthorizeErrorRedirect(baseAuthorize({ resource: `${origin}/other` }), "invalid_target", "our origin, another path");
});

T("authorize: unknown client, missing client, unregistered redirect URI → 400 HTML page, never a redirect", async () => {
  assertHtmlError(await request(authorizeUrl(origin, baseAuthorize({ client_id: "no-such-client" }))), 400, "unknown client_id");
  const noClient = baseAuthorize();
  delete noClient.client_id;
  assertHtmlError(await request(authorizeUrl(origin, noClient)), 400, "no client_id");
  for (const bad of ["https://evil.example/callback", "http://127.0.0.1:45678/callback/other", `${REDIRECT}?x=1`, "http://localhost:45678/callback"]) {
    assertHtmlError(await request(authorizeUrl(origin, baseAuthorize({ redirect_uri: bad }))), 400, `unregistered redirect_uri ${bad}`);
  }
  // Even with other errors present, a bad redirect URI wins: no redirect to it.
  assertHtmlError(await request(authorizeUrl(origin, baseAuthorize({ redirect_uri: "https://evil.example/cb", code_challenge_method: "plain" }))), 400, "bad redirect + plain");
  // A sealed client id that was tampered with is unknown.
  const reg = await register(origin, { client_name: "x", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" });
  assert.equal(reg.status, 201, reg.body);
  const id = reg.json.client_id;
  const i = Math.floor(id.length / 2);
  const tampered = `${id.slice(0, i)}${id[i] === "A" ? "B" : "A"}${id.slice(i + 1)}`;
  assertHtmlError(await request(authorizeUrl(origin, baseAuthorize({ client_id: tampered }))), 400, "tampered registered client_id");
});

T("consent: Deny → error=access_denied with state and iss", async () => {
  const c = await obtainCode({ decision: "deny" });
  assert.equal(c.status, 302, describeFlow(c));
  assertClientRedirect(c.location, { state: c.state, error: "access_denied" });
});

T("sign-in: wrong password or unknown user → the sign-in page again with an error, no redirect; same words for both", async () => {
  const texts = [];
  for (const [username, password] of [
    [m.user.username, `${m.user.password}!`],
    ["mallory", m.user.password],
  ]) {
    const agent = new Agent(origin);
    const url = authorizeUrl(origin, baseAuthorize());
    const page = await agent.get(url);
    const form = signInForm(parseForms(page.body));
    assert.ok(form, page.body.slice(0, 500));
    const res = await agent.submit(url, form, { fill: credentialsFill(form, username, password), submitter: form.submits[0] });
    assert.ok([200, 400, 401, 403].includes(res.status), `bad credentials: ${res.status} ${res.headers.location ?? ""}`);
    assert.equal(res.headers.location, undefined, "no redirect after bad credentials");
    assert.match(res.headers["content-type"] ?? "", /^text\/html\b/);
    assert.ok(signInForm(parseForms(res.body)), `the sign-in form again: ${res.body.slice(0, 800)}`);
    const text = pageText(res.body);
    assert.match(text, /not right|invalid|incorrect|wrong|failed|not recogni[sz]ed|try again/i, `an error message: ${text}`);
    assert.ok(!/code=/.test(res.body), "no code anywhere");
    texts.push(text);
  }
  assert.equal(texts[0], texts[1], "a wrong password and an unknown user read the same (no user enumeration)");
});

T("CSRF: sign-in and consent posts without the cookie, or with another browser's cookie, are refused", async () => {
  // Sign-in form posted without cookies (a forged cross-site post).
  const victim = new Agent(origin);
  const url = authorizeUrl(origin, baseAuthorize());
  const page = await victim.get(url);
  const form = signInForm(parseForms(page.body));
  assert.ok(form);
  let res = await victim.submit(url, form, { fill: credentialsFill(form, m.user.username, m.user.password), submitter: form.submits[0], withCookies: false });
  assert.ok([400, 403].includes(res.status), `sign-in post without the CSRF cookie: ${res.status} ${res.headers.location ?? ""} ${res.body.slice(0, 300)}`);
  assert.equal(res.headers.location, undefined);

  // The victim signs in and reaches the consent page; an attacker replays that consent form from
  // another browser (its own cookies, or none).
  res = await victim.submit(url, form, { fill: credentialsFill(form, m.user.username, m.user.password), submitter: form.submits[0] });
  let pageUrl = url;
  while ([302, 303].includes(res.status) && new URL(res.headers.location, pageUrl).origin === origin) {
    pageUrl = new URL(res.headers.location, pageUrl).href;
    res = await victim.get(pageUrl);
  }
  const [consentForm, approveBtn] = findSubmit(parseForms(res.body), APPROVE);
  assert.ok(consentForm, `consent page: ${res.status} ${res.body.slice(0, 800)}`);

  res = await victim.submit(pageUrl, consentForm, { submitter: approveBtn, withCookies: false });
  assert.ok([400, 403].includes(res.status), `consent post without cookies: ${res.status} ${res.headers.location ?? ""}`);
  assert.equal(res.headers.location, undefined);

  const attacker = new Agent(origin);
  await authorizeFlow(attacker, authorizeUrl(origin, baseAuthorize()), { username: m.user.username, password: m.user.password, decision: "stop" });
  assert.ok(attacker.jar.size > 0, "the attacker has a session of its own");
  res = await attacker.submit(pageUrl, consentForm, { submitter: approveBtn });
  assert.ok([400, 403].includes(res.status), `consent post with another browser's cookies: ${res.status} ${res.headers.location ?? ""}`);
  assert.equal(res.headers.location, undefined);

  // A tampered CSRF field with the right cookie.
  const csrf = consentForm.fields.find((f) => /csrf|xsrf/i.test(f.name ?? ""));
  if (csrf) {
    res = await victim.submit(pageUrl, consentForm, { submitter: approveBtn, fill: { [csrf.name]: `${csrf.value.slice(0, -2)}xx` } });
    assert.ok([400, 403].includes(res.status), `tampered CSRF field: ${res.status} ${res.headers.location ?? ""}`);
    assert.equal(res.headers.location, undefined);
  }

  // The genuine post still works.
  res = await victim.submit(pageUrl, consentForm, { submitter: approveBtn });
  assert.equal(res.status, 302, `genuine consent: ${res.status} ${res.body.slice(0, 300)}`);
  assertClientRedirect(res.headers.location, {});
});

// ---------- attacks on the token endpoint ----------

T("token: PKCE verifier mismatch, missing verifier → refused", async () => {
  const c = await obtainCode();
  let res = await exchange(c, { verifier: pkce().verifier });
  assertOAuthError(res, 400, "invalid_grant", undefined, "wrong code_verifier");
  const c2 = await obtainCode();
  res = await tokenRequest(origin, { grant_type: "authorization_code", code: c2.code, redirect_uri: REDIRECT, client_id: "e2e-public", resource: RESOURCE() });
  assert.equal(res.status, 400, `no code_verifier: ${res.body}`);
  assert.ok(["invalid_request", "invalid_grant"].includes(res.json?.error), res.body);
  assert.equal(res.json.access_token, undefined);
});

T("token: code replay → invalid_grant, and the tokens issued from that code are revoked", async () => {
  const c = await obtainCode();
  const first = assertTokenResponse(await exchange(c), { refresh: true });
  await assertMcpWorks(first.access_token, origin, "before replay");
  assertOAuthError(await exchange(c), 400, "invalid_grant", undefined, "the same code twice");
  assertOAuthError(await refresh(first.refresh_token), 400, "invalid_grant", undefined, "refresh token of a replayed code");
  await assertMcpRefused(first.access_token, origin, "access token of a replayed code");
});

T("token: a code is bound to its client, its redirect URI and its resource", async () => {
  let c = await obtainCode();
  assertOAuthError(await exchange(c, { client_id: "e2e-other" }), 400, "invalid_grant", undefined, "code used by another client");
  c = await obtainCode();
  assertOAuthError(await exchange(c, { redirect_uri: "http://127.0.0.1:45678/other" }), 400, "invalid_grant", undefined, "altered redirect_uri");
  c = await obtainCode();
  const res = await exchange(c, { resource: "https://other.example/mcp" });
  assert.equal(res.status, 400, res.body);
  assert.ok(["invalid_target", "invalid_grant"].includes(res.json?.error), res.body);
  c = await obtainCode();
  assertOAuthError(await exchange(c, { client_id: "no-such-client" }), 401, "invalid_client", undefined, "unknown client");
  assertOAuthError(await tokenRequest(origin, { grant_type: "authorization_code", code: "garbage", redirect_uri: REDIRECT, client_id: "e2e-public", code_verifier: pkce().verifier }), 400, "invalid_grant", undefined, "garbage code");
  // A refresh token is not a code, and the other way round.
  const { c: c2, tokens } = await obtainTokens();
  assertOAuthError(await tokenRequest(origin, { grant_type: "authorization_code", code: tokens.refresh_token, redirect_uri: REDIRECT, client_id: "e2e-public", code_verifier: c2.pk.verifier }), 400, "invalid_grant", undefined, "refresh token as code");
  const c3 = await obtainCode();
  assertOAuthError(await refresh(c3.code), 400, "invalid_grant", undefined, "code as refresh token");
});

// ---------- revocation and introspection ----------

T("revoke: an access token → /mcp answers 401 invalid_token; a refresh token → refresh fails", async () => {
  const { tokens } = await obtainTokens();
  await assertMcpWorks(tokens.access_token, origin, "before revoke");
  let res = await postForm(origin, "/oauth/revoke", { token: tokens.access_token, token_type_hint: "access_token", client_id: "e2e-public" });
  assert.equal(res.status, 200, `revoke access token: ${res.status} ${res.body}`);
  await assertMcpRefused(tokens.access_token, origin, "revoked access token");

  res = await postForm(origin, "/oauth/revoke", { token: tokens.refresh_token, token_type_hint: "refresh_token", client_id: "e2e-public" });
  assert.equal(res.status, 200, `revoke refresh token: ${res.status} ${res.body}`);
  assertOAuthError(await refresh(tokens.refresh_token), 400, "invalid_grant", undefined, "revoked refresh token");

  // Without a hint, and for a refresh token of the same grant issued later? Here: a fresh grant, no hint.
  const { tokens: t2 } = await obtainTokens();
  res = await postForm(origin, "/oauth/revoke", { token: t2.refresh_token, client_id: "e2e-public" });
  assert.equal(res.status, 200);
  assertOAuthError(await refresh(t2.refresh_token), 400, "invalid_grant", undefined, "revoked without hint");

  // Garbage is fine (RFC 7009 §2.2).
  res = await postForm(origin, "/oauth/revoke", { token: "not-a-token", client_id: "e2e-public" });
  assert.equal(res.status, 200, `revoke garbage: ${res.status} ${res.body}`);
});

T("introspect: live token → active with claims; revoked → active false; without client auth → 401", async () => {
  const { tokens } = await obtainTokens();
  const { claims } = jwtParts(tokens.access_token);
  let res = await postForm(origin, "/oauth/introspect", { token: tokens.access_token }, { basic: robotBasic() });
  assert.equal(res.status, 200, `introspect: ${res.status} ${res.body}`);
  assert.match(res.headers["content-type"] ?? "", /^application\/json\b/);
  const j = res.json;
  assert.equal(j.active, true, res.body);
  assert.equal(j.scope, "mcp:tools");
  assert.equal(j.client_id, "e2e-public");
  assert.equal(j.sub, m.user.subject);
  assert.equal(j.iss, origin);
  assert.deepEqual([].concat(j.aud), [RESOURCE()]);
  assert.equal(j.exp, claims.exp);
  assert.equal(j.iat, claims.iat);
  assert.equal(j.jti, claims.jti);
  assert.equal(typeof j.token_type, "string");

  // client_secret_post works too.
  res = await postForm(origin, "/oauth/introspect", { token: tokens.access_token, client_id: m.robot.client_id, client_secret: m.robot.secret });
  assert.equal(res.json?.active, true, res.body);

  res = await postForm(origin, "/oauth/introspect", { token: "garbage" }, { basic: robotBasic() });
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, { active: false });

  assert.equal((await postForm(origin, "/oauth/revoke", { token: tokens.access_token, client_id: "e2e-public" })).status, 200);
  res = await postForm(origin, "/oauth/introspect", { token: tokens.access_token }, { basic: robotBasic() });
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, { active: false }, "revoked token");

  res = await postForm(origin, "/oauth/introspect", { token: tokens.access_token });
  assert.equal(res.status, 401, `introspect without client auth: ${res.status} ${res.body}`);
  assert.equal(res.json?.error, "invalid_client", res.body);
  res = await postForm(origin, "/oauth/introspect", { token: tokens.access_token, client_id: "e2e-public" });
  assert.equal(res.status, 401, `introspect by a public client: ${res.status} ${res.body}`);
  res = await postForm(origin, "/oauth/introspect", { token: tokens.access_token }, { basic: [m.robot.client_id, "wrong"] });
  assert.equal(res.status, 401, `introspect with a wrong secret: ${res.status} ${res.body}`);
});

// ---------- rate limits and lifetimes (aux Envoy) ----------

T("rate limit: the 4th token request of a client in a minute → 429 with Retry-After; other clients unaffected", async () => {
  await awayFromMinuteBoundary(4);
  for (let i = 1; i <= 3; i++) {
    const res = await tokenRequest(auxOrigin, { grant_type: "client_credentials" }, { basic: robotBasic() });
    assertTokenResponse(res, { refresh: false, note: `request ${i}` });
  }
  const res = await tokenRequest(auxOrigin, { grant_type: "client_credentials" }, { basic: robotBasic() });
  assert.equal(res.status, 429, `4th request: ${res.status} ${res.body}`);
  const retry = res.headers["retry-after"];
  assert.match(retry ?? "", /^\d+$/, `Retry-After: ${retry}`);
  assert.ok(Number(retry) >= 1 && Number(retry) <= 60, `Retry-After ${retry}`);
  assert.equal(res.json?.access_token, undefined);
  // Another client has its own budget.
  assertTokenResponse(await tokenRequest(auxOrigin, { grant_type: "client_credentials" }, { basic: ["svc-robot-2", m.robot.secret] }), { refresh: false, note: "other client" });
});

T("rate limit: registrations per address → 429 with Retry-After", async () => {
  await awayFromMinuteBoundary(3);
  const meta = { client_name: "rl", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" };
  for (let i = 1; i <= 2; i++) {
    const res = await register(auxOrigin, meta);
    assert.equal(res.status, 201, `registration ${i}: ${res.status} ${res.body}`);
  }
  const res = await register(auxOrigin, meta);
  assert.equal(res.status, 429, `3rd registration: ${res.status} ${res.body}`);
  assert.match(res.headers["retry-after"] ?? "", /^\d+$/);
});

T("lifetimes: a code older than code_ttl_seconds → invalid_grant; an expired access token → 401 invalid_token", async () => {
  const stale = await obtainCode({ org: auxOrigin, client_id: "e2e-other" });
  assertClientRedirect(stale.location, { state: stale.state, iss: auxOrigin });
  const { tokens } = await obtainTokens({ org: auxOrigin, client_id: "e2e-public-2" });
  assert.equal(tokens.expires_in, 2);
  await assertMcpWorks(tokens.access_token, auxOrigin, "fresh 2 s token");
  await sleep(3200);
  assertOAuthError(await exchange(stale, { org: auxOrigin }), 400, "invalid_grant", undefined, "expired code");
  const res = await mcpPost(auxOrigin, tokens.access_token);
  assert.equal(res.status, 401, `expired access token: ${res.status} ${res.body}`);
  assertChallenge(res.headers["www-authenticate"], {
    error: "invalid_token",
    error_description: /./,
    resource_metadata: `${auxOrigin}/.well-known/oauth-protected-resource/mcp`,
    scope: "mcp:tools",
  });
  // The refresh token outlives it.
  const t2 = assertTokenResponse(await refresh(tokens.refresh_token, { org: auxOrigin, client_id: "e2e-public-2" }), { refresh: true });
  await assertMcpWorks(t2.access_token, auxOrigin, "after refresh");
});

// ---------- an issuer with a path, HS256, registration with an initial access token (alt Envoy) ----------

T("issuer with a path: path-inserted and path-appended metadata, iss in the redirect and the token, HS256 at+jwt", async () => {
  const issuer = `${altOrigin}${ALT_PATH}`;
  for (const path of [
    `/.well-known/oauth-authorization-server${ALT_PATH}`,
    `/.well-known/openid-configuration${ALT_PATH}`,
    `${ALT_PATH}/.well-known/openid-configuration`,
  ]) {
    const res = await request(`${altOrigin}${path}`);
    assert.equal(res.status, 200, `${path}: ${res.status} ${res.body}`);
    assert.equal(res.json.issuer, issuer, path);
    assert.equal(res.json.token_endpoint, `${altOrigin}/oauth/token`, path);
    assert.deepEqual(res.json.code_challenge_methods_supported, ["S256"], path);
  }
  const prm = await request(`${altOrigin}/.well-known/oauth-protected-resource/mcp`);
  assert.deepEqual(prm.json.authorization_servers, [issuer]);

  // No shared secret is ever published.
  const set = await jwks(altOrigin);
  assert.ok(set.keys.every((k) => k.k === undefined && k.kty !== "oct"), `JWKS must not carry the HS256 secret: ${JSON.stringify(set)}`);

  const c = await obtainCode({ org: altOrigin });
  assertClientRedirect(c.location, { state: c.state, iss: issuer });
  const t = assertTokenResponse(await exchange(c, { org: altOrigin }), { refresh: true, scope: "mcp:tools" });
  const { header } = jwtParts(t.access_token);
  assert.equal(header.alg, "HS256");
  assert.equal(header.typ, "at+jwt");
  const { payload } = await jwtVerify(t.access_token, Buffer.from(HS_SECRET, "base64url"), { issuer, audience: `${altOrigin}/mcp`, typ: "at+jwt" });
  assert.equal(payload.client_id, "e2e-public");
  await assertMcpWorks(t.access_token, altOrigin, "HS256 token, issuer with a path");
});

T("registration with initial access tokens: none or a wrong one → 401; the right one → 201", async () => {
  const meta = { client_name: "iat", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" };
  let res = await register(altOrigin, meta);
  assert.equal(res.status, 401, `no initial access token: ${res.status} ${res.body}`);
  assert.equal(res.json?.client_id, undefined);
  res = await register(altOrigin, meta, { headers: { authorization: `Bearer ${INITIAL_ACCESS_TOKEN}x` } });
  assert.equal(res.status, 401, `wrong initial access token: ${res.status} ${res.body}`);
  res = await register(altOrigin, meta, { headers: { authorization: `Bearer ${INITIAL_ACCESS_TOKEN}` } });
  assert.equal(res.status, 201, `right initial access token: ${res.status} ${res.body}`);
  assert.ok(res.json.client_id);
  const page = await request(authorizeUrl(altOrigin, baseAuthorize({ client_id: res.json.client_id, resource: `${altOrigin}/mcp` })));
  assert.equal(page.status, 200, "the registered client can start an authorization");
});

T("a client registered at another issuer that shares the sealing key is unknown here (no way around the initial access token)", async () => {
  // The main server registers openly; alt wants an initial access token. Both use the same sealing key
  // (an operator shortcut, but a plausible one): alt must not accept main's registrations.
  const other = await register(origin, { client_name: "registered elsewhere", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" });
  assert.equal(other.status, 201);
  const res = await request(authorizeUrl(altOrigin, baseAuthorize({ client_id: other.json.client_id, resource: `${altOrigin}/mcp` })));
  assertHtmlError(res, 400, "registration sealed by another issuer");
});
