// The resource-server side of the filter in real Envoy: challenges, protected-resource metadata,
// CORS, token checks for HS256/ES256/RS256/ES384/EdDSA, identity headers, stats, health.
// One Envoy (several issuers and routes) in front of an echo backend serves every test here.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEcho } from "./lib/backends.mjs";
import { request } from "./lib/http.mjs";
import { assertChallenge, assertOAuthError } from "./lib/assertions.mjs";
import {
  hsKey,
  keyPair,
  mint,
  now,
  tamperSignature,
  tamperPayload,
  algNone,
  confusedHs256,
  hmacJws,
} from "./lib/tokens.mjs";

const ISS_HS = "https://hs.issuer.test";
const ISS_EC = "https://ec.issuer.test";
const ISS_RS = "https://rs.issuer.test";
const ISS_EC384 = "https://ec384.issuer.test";
const ISS_ED = "https://ed.issuer.test";
const AS = "https://auth.issuer.test";

let envoy, echo, hs, hs2, ec, rs, ecOther, ec384, ed, origin, RESOURCE;

before(async () => {
  [hs, hs2, ec, rs, ecOther] = [hsKey("hs-1"), hsKey("hs-2"), await keyPair("ES256", "ec-1"), await keyPair("RS256", "rs-1"), await keyPair("ES256", "ec-1")];
  [ec384, ed] = [await keyPair("ES384", "ec384-1"), await keyPair("EdDSA", "ed-1")];
  echo = await startEcho();
  envoy = await startEnvoy({
    backendPort: echo.port,
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      resource_name: "E2E resource server",
      authorization_servers: [AS],
      scopes_supported: ["mcp:read", "mcp:write", "mcp:admin"],
      issuers: [
        { issuer: ISS_HS, algorithms: ["HS256"], secrets: [{ kid: hs.kid, value: hs.value }, { kid: hs2.kid, value_base64url: Buffer.from(hs2.value).toString("base64url") }] },
        { issuer: ISS_EC, jwks: { keys: [ec.publicJwk] } },
        { issuer: ISS_RS, jwks: { keys: [rs.publicJwk] } },
        { issuer: ISS_EC384, jwks: { keys: [ec384.publicJwk] } },
        { issuer: ISS_ED, jwks: { keys: [ed.publicJwk] } },
      ],
      routes: [
        { prefix: "/mcp", scopes: ["mcp:read"] },
        { prefix: "/admin", scopes: ["mcp:admin", "mcp:write"] },
        { prefix: "/plain" },
      ],
      public_paths: ["/health", "/public"],
    }),
  });
  origin = envoy.origin;
  RESOURCE = `${origin}/mcp`;
});

after(async () => {
  await envoy?.stop();
  await echo?.stop();
});

const PRM = () => `${origin}/.well-known/oauth-protected-resource`;
const claims = (extra = {}) => ({ iss: ISS_HS, aud: RESOURCE, sub: "user-1", client_id: "client-1", scope: "mcp:read", ...extra });
const T = (name, fn) => test(name, () => withLog(envoy, fn, () => `echo saw ${echo.requests.length} requests; last: ${JSON.stringify(echo.requests.at(-1)?.headers ?? null)}`));

/** Send a request through Envoy tagged with a unique id; returns {res, seen} where seen is what the echo backend got (or undefined). */
async function call(path, { token, headers = {}, method = "GET", scheme = "Bearer", body, rawPath } = {}) {
  const id = randomUUID();
  const h = { "x-test-id": id, ...headers };
  if (token !== undefined) h.authorization = `${scheme} ${token}`;
  const res = await request(`${origin}${path}`, { method, headers: h, body, rawPath });
  const seen = echo.find((r) => r.headers["x-test-id"] === id);
  return { res, seen };
}

function assertForwarded({ res, seen }, path, identity) {
  assert.equal(res.status, 200, `expected the echo backend's 200, got ${res.status} ${res.body} www-authenticate=${res.headers["www-authenticate"]}`);
  assert.deepEqual(res.json, { ok: true, method: seen?.method ?? "GET", path });
  assert.ok(seen, "the backend did not see the request");
  assert.equal(seen.headers.authorization, undefined, "Authorization must not reach the backend");
  for (const [name, value] of Object.entries(identity)) {
    assert.equal(seen.headers[name], value, `backend header ${name}`);
  }
  // Each identity header exactly once (no client copy left next to ours).
  for (const name of ["x-mcp-subject", "x-mcp-client-id", "x-mcp-scopes", "x-mcp-issuer"]) {
    const n = seen.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === name).length;
    assert.ok(n <= 1, `${name} appears ${n} times at the backend`);
  }
}

function assertUnauthorized({ res, seen }, { prefix = "/mcp", scope = "mcp:read", error, description } = {}) {
  const expected = { resource_metadata: `${PRM()}${prefix === "/" ? "" : prefix}` };
  if (scope) expected.scope = scope;
  if (error) {
    expected.error = error;
    expected.error_description = description ?? /\S/;
  }
  assertChallenge(res.headers["www-authenticate"], expected);
  assertOAuthError(res, 401, "invalid_token", error ? description : "An access token is required");
  assert.equal(seen, undefined, "a refused request must not reach the backend");
}

// ---- challenges without a token ----

T("no token: 401 with resource_metadata and scope of the route", async () => {
  const r = await call("/mcp");
  assertUnauthorized(r); // exactly the parameters scope="mcp:read" and resource_metadata (in any order)
});

T("no token on POST /mcp (an MCP initialize): same 401", async () => {
  const r = await call("/mcp", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: { jsonrpc: "2.0", id: 1, method: "initialize", params: {} },
  });
  assertUnauthorized(r);
});

T("no token on a route without scopes: 401 without scope=", async () => {
  const r = await call("/plain/x");
  assertUnauthorized(r, { prefix: "/plain", scope: null });
  assert.equal(r.res.headers["www-authenticate"], `Bearer resource_metadata="${PRM()}/plain"`);
});

T("no token on an unmatched path (unmatched=authenticate): 401 pointing at the root metadata", async () => {
  const r = await call("/elsewhere");
  assertUnauthorized(r, { prefix: "/", scope: null });
});

T("route prefixes match whole segments: /mcpx is not /mcp", async () => {
  const r = await call("/mcpx");
  assertUnauthorized(r, { prefix: "/", scope: null });
});

T("another scheme (Basic) counts as no token", async () => {
  const r = await call("/mcp", { scheme: "Basic", token: Buffer.from("u:p").toString("base64") });
  assertUnauthorized(r);
});

T("token in the query string is ignored: still 401 without error=", async () => {
  const token = await mint(hs, claims());
  const r = await call(`/mcp?access_token=${token}`);
  assertUnauthorized(r);
});

T("token in a form body is ignored: still 401", async () => {
  const token = await mint(hs, claims());
  const r = await call("/mcp", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: `access_token=${token}`,
  });
  assertUnauthorized(r);
});

T("dot segments cannot reach /mcp through the public prefix", async () => {
  for (const raw of ["/public/../mcp", "/public/%2e%2e/mcp", "/public%2f..%2fmcp", "//public/../mcp"]) {
    const r = await call("/", { rawPath: raw });
    assert.ok(r.res.status === 401 || r.res.status === 400 || (r.res.status >= 300 && r.res.status < 400), `${raw}: got ${r.res.status} ${r.res.body}`);
    assert.equal(r.seen, undefined, `${raw}: the backend must not see it`);
  }
});

// ---- protected-resource metadata ----

const prmDoc = () => ({
  resource: RESOURCE,
  authorization_servers: [AS],
  scopes_supported: ["mcp:read", "mcp:write", "mcp:admin"],
  bearer_methods_supported: ["header"],
  resource_name: "E2E resource server",
});

for (const suffix of ["", "/mcp"]) {
  T(`PRM at /.well-known/oauth-protected-resource${suffix}`, async () => {
    const { res, seen } = await call(`/.well-known/oauth-protected-resource${suffix}`);
    assert.equal(res.status, 200, res.body);
    assert.match(res.headers["content-type"], /^application\/json\b/);
    assert.deepEqual(res.json, prmDoc());
    assert.equal(res.headers["www-authenticate"], undefined);
    assert.equal(seen, undefined, "metadata is answered by the filter, not the backend");
  });
}

T("PRM for another route prefix publishes the same resource; unknown suffix 404 (never 401)", async () => {
  const plain = await call("/.well-known/oauth-protected-resource/plain");
  assert.equal(plain.res.status, 200, plain.res.body);
  assert.deepEqual(plain.res.json, prmDoc());
  const unknown = await call("/.well-known/oauth-protected-resource/nope");
  assert.equal(unknown.res.status, 404, unknown.res.body);
  assert.equal(unknown.res.headers["www-authenticate"], undefined);
});

T("PRM is served even with a bad token (metadata never answers 401)", async () => {
  const { res } = await call("/.well-known/oauth-protected-resource/mcp", { token: "garbage" });
  assert.equal(res.status, 200, res.body);
  assert.deepEqual(res.json, prmDoc());
});

T("CORS preflight on PRM: 204 with allow-origin *", async () => {
  const { res, seen } = await call("/.well-known/oauth-protected-resource/mcp", {
    method: "OPTIONS",
    headers: { origin: "https://app.example", "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
  });
  assert.equal(res.status, 204, res.body);
  assert.equal(res.headers["access-control-allow-origin"], "*");
  assert.match(res.headers["access-control-allow-methods"] ?? "", /\bGET\b/);
  assert.match(res.headers["access-control-allow-headers"] ?? "", /\bauthorization\b/i);
  assert.equal(res.body, "");
  assert.equal(seen, undefined);
});

T("CORS: PRM GET and a 401 carry allow-origin and expose WWW-Authenticate", async () => {
  const prm = await call("/.well-known/oauth-protected-resource", { headers: { origin: "https://app.example" } });
  assert.equal(prm.res.status, 200);
  assert.equal(prm.res.headers["access-control-allow-origin"], "*");
  const denied = await call("/mcp", { headers: { origin: "https://app.example" } });
  assert.equal(denied.res.status, 401);
  assert.equal(denied.res.headers["access-control-allow-origin"], "*");
  assert.match(denied.res.headers["access-control-expose-headers"] ?? "", /\bwww-authenticate\b/i);
});

T("CORS preflight on /mcp is answered without a token (204), never reaches the backend", async () => {
  const { res, seen } = await call("/mcp", {
    method: "OPTIONS",
    headers: { origin: "https://app.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type, mcp-session-id" },
  });
  assert.equal(res.status, 204, res.body);
  assert.equal(res.headers["access-control-allow-origin"], "*");
  assert.match(res.headers["access-control-allow-methods"] ?? "", /\bPOST\b/);
  assert.match(res.headers["access-control-allow-headers"] ?? "", /\bmcp-session-id\b/i);
  assert.equal(seen, undefined);
});

// ---- valid tokens ----

T("valid HS256 token: 200 from the backend, identity headers set, Authorization and spoofed headers removed", async () => {
  const token = await mint(hs, claims({ scope: "mcp:write mcp:read" }));
  const r = await call("/mcp/tools?x=1", {
    token,
    headers: { "x-mcp-subject": "attacker", "x-mcp-scopes": "mcp:admin", "x-mcp-issuer": "https://evil", "x-mcp-client-id": "evil" },
  });
  assertForwarded(r, "/mcp/tools?x=1", {
    "x-mcp-subject": "user-1",
    "x-mcp-client-id": "client-1",
    "x-mcp-scopes": "mcp:read mcp:write",
    "x-mcp-issuer": ISS_HS,
  });
});

T("valid ES256 token (inline JWKS): 200", async () => {
  const token = await mint(ec, claims({ iss: ISS_EC, sub: "ec-user", client_id: undefined, azp: "ec-azp" }));
  const r = await call("/mcp", { token, headers: { "x-mcp-subject": "attacker" } });
  assertForwarded(r, "/mcp", { "x-mcp-subject": "ec-user", "x-mcp-client-id": "ec-azp", "x-mcp-scopes": "mcp:read", "x-mcp-issuer": ISS_EC });
});

T("valid RS256 token (inline JWKS), scp array, aud as an array: 200", async () => {
  const token = await mint(rs, claims({ iss: ISS_RS, sub: "rs-user", scope: undefined, scp: ["mcp:read", "extra"], aud: ["https://other.test", RESOURCE] }));
  const r = await call("/mcp", { token, method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  assertForwarded(r, "/mcp", { "x-mcp-subject": "rs-user", "x-mcp-client-id": "client-1", "x-mcp-scopes": "extra mcp:read", "x-mcp-issuer": ISS_RS });
  assert.equal(r.seen.body, "{}");
});

T("valid ES384 and EdDSA tokens (inline JWKS): 200", async () => {
  for (const [key, iss] of [[ec384, ISS_EC384], [ed, ISS_ED]]) {
    const token = await mint(key, claims({ iss, sub: `${key.alg}-user` }));
    assertForwarded(await call("/mcp", { token }), "/mcp", { "x-mcp-subject": `${key.alg}-user`, "x-mcp-issuer": iss });
  }
});

T("lowercase `bearer` scheme is accepted", async () => {
  const token = await mint(hs, claims());
  const r = await call("/mcp", { token, scheme: "bearer" });
  assertForwarded(r, "/mcp", { "x-mcp-subject": "user-1" });
});

T("token without kid is tried against the issuer's keys", async () => {
  const token = await mint(ec, claims({ iss: ISS_EC }), { kid: undefined });
  assertForwarded(await call("/mcp", { token }), "/mcp", { "x-mcp-issuer": ISS_EC });
});

T("HS256 token without kid signed with the issuer's second secret: 200 (every secret is tried)", async () => {
  const token = await mint(hs2, claims({ sub: "second-secret" }), { kid: undefined });
  assertForwarded(await call("/mcp", { token }), "/mcp", { "x-mcp-subject": "second-secret" });
});

T("HS256 token with the second secret's kid: 200", async () => {
  const token = await mint(hs2, claims({ sub: "second-kid" }));
  assertForwarded(await call("/mcp", { token }), "/mcp", { "x-mcp-subject": "second-kid" });
});

T("expired within the leeway (exp = now - 10 s) still passes", async () => {
  const token = await mint(hs, claims({ exp: now() - 10 }));
  assertForwarded(await call("/mcp", { token }), "/mcp", { "x-mcp-subject": "user-1" });
});

T("public path: no token needed, spoofed identity headers and Authorization still removed", async () => {
  const r = await call("/public/page", { token: "whatever", headers: { "x-mcp-subject": "attacker", "x-mcp-scopes": "mcp:admin" } });
  assert.equal(r.res.status, 200, r.res.body);
  assert.ok(r.seen);
  assert.equal(r.seen.headers["x-mcp-subject"], undefined, "spoofed x-mcp-subject reached the backend on a public path");
  assert.equal(r.seen.headers["x-mcp-scopes"], undefined, "spoofed x-mcp-scopes reached the backend on a public path");
  assert.equal(r.seen.headers.authorization, undefined, "Authorization reached the backend on a public path");
});

T("identity headers of a route without scopes: empty scope claim gives no x-mcp-scopes", async () => {
  const token = await mint(hs, claims({ scope: undefined }));
  const r = await call("/plain", { token });
  assertForwarded(r, "/plain", { "x-mcp-subject": "user-1", "x-mcp-scopes": undefined, "x-mcp-issuer": ISS_HS });
});

// ---- bad tokens: 401 invalid_token ----

const badTokens = {
  "expired (exp = now - 600)": async () => ({ token: await mint(hs, claims({ iat: now() - 1200, exp: now() - 600 })), description: "The access token expired" }),
  "nbf in the future": async () => ({ token: await mint(hs, claims({ nbf: now() + 600 })), description: "The access token is not valid yet" }),
  "iat in the future": async () => ({ token: await mint(hs, claims({ iat: now() + 600, exp: now() + 900 })) }),
  "no exp": async () => ({ token: await mint(hs, claims({ exp: undefined })), description: "The access token has no expiry" }),
  "wrong aud": async () => ({ token: await mint(hs, claims({ aud: "https://other.test/mcp" })), description: "The access token is not meant for this resource" }),
  "aud with a trailing slash": async () => ({ token: await mint(hs, claims({ aud: `${RESOURCE}/` })), description: "The access token is not meant for this resource" }),
  "no aud": async () => ({ token: await mint(hs, claims({ aud: undefined })), description: "The access token is not meant for this resource" }),
  "wrong iss (untrusted issuer)": async () => ({ token: await mint(hs, claims({ iss: "https://evil.test" })), description: "The access token issuer is not trusted" }),
  "no iss": async () => ({ token: await mint(hs, claims({ iss: undefined })) }),
  "EC token claiming the RS issuer": async () => ({ token: await mint(ec, claims({ iss: ISS_RS })) }),
  "tampered signature (HS256)": async () => ({ token: tamperSignature(await mint(hs, claims())), description: "The access token signature is invalid" }),
  "tampered signature (ES256)": async () => ({ token: tamperSignature(await mint(ec, claims({ iss: ISS_EC }))) }),
  "tampered signature (RS256)": async () => ({ token: tamperSignature(await mint(rs, claims({ iss: ISS_RS }))) }),
  "tampered signature (ES384)": async () => ({ token: tamperSignature(await mint(ec384, claims({ iss: ISS_EC384 }))), description: "The access token signature is invalid" }),
  "tampered signature (EdDSA)": async () => ({ token: tamperSignature(await mint(ed, claims({ iss: ISS_ED }))), description: "The access token signature is invalid" }),
  "ES384 token signed by the EdDSA issuer's key type (algorithm not allowed)": async () => ({ token: await mint(ec384, claims({ iss: ISS_ED })) }),
  "tampered payload (scope elevated)": async () => ({ token: tamperPayload(await mint(rs, claims({ iss: ISS_RS })), { scope: "mcp:read mcp:admin mcp:write" }) }),
  "signed by another EC key with the same kid": async () => ({ token: await mint(ecOther, claims({ iss: ISS_EC })) }),
  "alg none": async () => ({ token: algNone(claims()) }),
  "alg none with the RS issuer's kid": async () => ({ token: algNone(claims({ iss: ISS_RS }), { kid: "rs-1" }) }),
  "HS256 signed with the RSA public key PEM": async () => ({ token: confusedHs256(rs, claims({ iss: ISS_RS })) }),
  "HS256 signed with the RSA public JWK JSON": async () => ({ token: confusedHs256(rs, claims({ iss: ISS_RS }), { as: "jwk" }) }),
  "HS256 signed with the EC public key PEM": async () => ({ token: confusedHs256(ec, claims({ iss: ISS_EC })) }),
  "HS256 token for the HS issuer signed with a wrong secret": async () => ({ token: hmacJws({ alg: "HS256", typ: "JWT", kid: "hs-1" }, { ...claims(), iat: now(), exp: now() + 300 }, Buffer.from("x".repeat(32))) }),
  "RS256 token for the HS-only issuer (algorithm not allowed)": async () => ({ token: await mint(rs, claims()) }),
  "unknown kid (inline JWKS)": async () => ({ token: await mint(ec, claims({ iss: ISS_EC }), { kid: "no-such-kid" }), description: "The access token is signed with an unknown key" }),
  "garbage": async () => ({ token: "not-a-jwt", description: "The access token is malformed" }),
  "garbage with three parts": async () => ({ token: "aaa.bbb.ccc", description: "The access token is malformed" }),
  "header that is not JSON": async () => ({ token: `${Buffer.from("nope").toString("base64url")}.${Buffer.from("{}").toString("base64url")}.sig` }),
  "four parts (JWE-like)": async () => ({ token: "a.b.c.d" }),
  "crit header": async () => ({ token: hmacJws({ alg: "HS256", typ: "JWT", kid: "hs-1", crit: ["x-custom"], "x-custom": 1 }, { ...claims(), iat: now(), exp: now() + 300 }, hs.secret), description: "The access token has unsupported critical headers" }),
  "longer than max_token_bytes (16384)": async () => ({ token: await mint(hs, claims({ pad: "x".repeat(17000) })), description: "The access token is too long" }),
};

for (const [name, make] of Object.entries(badTokens)) {
  T(`bad token → 401 invalid_token: ${name}`, async () => {
    const { token, description } = await make();
    const r = await call("/mcp", { token, headers: { "x-mcp-subject": "attacker" } });
    assertUnauthorized(r, { error: "invalid_token", description });
    // the description in the header matches the body
    assert.ok(r.res.headers["www-authenticate"].includes(`error_description="${r.res.json.error_description}"`), "header and body descriptions differ");
    assert.ok(!r.res.headers["www-authenticate"].includes(token.slice(0, 20)), "the token must not be echoed");
  });
}

T("malformed Authorization (Bearer with no token): 400 invalid_request", async () => {
  const { res, seen } = await call("/mcp", { headers: { authorization: "Bearer " } });
  assert.equal(seen, undefined);
  assert.equal(res.status, 400, `${res.status} ${res.body}`);
  assertOAuthError(res, 400, "invalid_request");
  assertChallenge(res.headers["www-authenticate"], { error: "invalid_request", error_description: /\S/, scope: "mcp:read", resource_metadata: `${PRM()}/mcp` });
});

// ---- scopes ----

T("missing scope → 403 insufficient_scope with the needed (and granted) scopes", async () => {
  const token = await mint(hs, claims({ scope: "mcp:read" }));
  const r = await call("/admin/users", { token });
  assert.equal(r.seen, undefined);
  assertOAuthError(r.res, 403, "insufficient_scope", "The access token lacks the scope mcp:admin mcp:write");
  assertChallenge(r.res.headers["www-authenticate"], {
    error: "insufficient_scope",
    error_description: "The access token lacks the scope mcp:admin mcp:write",
    scope: "mcp:read mcp:admin mcp:write",
    resource_metadata: `${PRM()}/admin`,
  });
});

T("one of two scopes → 403 naming the missing one; both → 200", async () => {
  const partial = await call("/admin", { token: await mint(ec, claims({ iss: ISS_EC, scope: "mcp:write" })) });
  assertOAuthError(partial.res, 403, "insufficient_scope", "The access token lacks the scope mcp:admin");
  assertChallenge(partial.res.headers["www-authenticate"], {
    error: "insufficient_scope",
    error_description: "The access token lacks the scope mcp:admin",
    scope: "mcp:write mcp:admin",
    resource_metadata: `${PRM()}/admin`,
  });
  const full = await call("/admin", { token: await mint(ec, claims({ iss: ISS_EC, scope: "mcp:admin mcp:write" })) });
  assertForwarded(full, "/admin", { "x-mcp-scopes": "mcp:admin mcp:write" });
});

// ---- health and stats ----

T("/health: 200 JSON {status, keys_loaded, version} answered by the filter", async () => {
  const { res, seen } = await call("/health");
  assert.equal(res.status, 200, res.body);
  assert.match(res.headers["content-type"], /^application\/json\b/);
  assert.deepEqual(Object.keys(res.json).sort(), ["keys_loaded", "status", "version"]);
  assert.equal(res.json.status, "ok");
  assert.equal(res.json.keys_loaded, true);
  assert.match(res.json.version, /^\d+\.\d+\.\d+/);
  assert.equal(seen, undefined);
});

T("stats counters count each outcome", async () => {
  const before = await envoy.stats();
  await call("/mcp", { token: await mint(hs, claims()) }); // allowed
  await call("/mcp"); // missing_token
  await call("/mcp", { token: "garbage" }); // invalid_token
  await call("/mcp", { token: await mint(hs, claims({ iat: now() - 1200, exp: now() - 600 })) }); // expired
  await call("/admin", { token: await mint(hs, claims()) }); // insufficient_scope
  await call("/public/x"); // public
  await call("/.well-known/oauth-protected-resource"); // metadata served
  const after = await envoy.stats();
  const delta = (name) => (after[name] ?? 0) - (before[name] ?? 0);
  const names = [
    "mcp_oauth.requests.allowed",
    "mcp_oauth.requests.denied.missing_token",
    "mcp_oauth.requests.denied.invalid_token",
    "mcp_oauth.requests.denied.expired",
    "mcp_oauth.requests.denied.insufficient_scope",
    "mcp_oauth.requests.public",
    "mcp_oauth.metadata.served",
  ];
  const got = Object.fromEntries(names.map((n) => [n, delta(n)]));
  assert.deepEqual(got, Object.fromEntries(names.map((n) => [n, 1])), `stats after: ${JSON.stringify(after)}`);
});
