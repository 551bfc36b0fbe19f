// The upstream OpenID provider harness (lib/oidc-idp.mjs, lib/idp-browser.mjs) proven on its own,
// without Envoy: a tiny HTTPS relying party callback (test certificate, https://localhost:<port>/cb)
// plays the gateway. Headless Chromium runs the real authorization code flow with PKCE S256,
// state and nonce (sign-in with a wrong then the right password, consent, Authorize); the code is
// exchanged with fetch and client_secret_basic; the id_token is verified with jose against the
// provider's JWKS (iss, aud, nonce); userinfo, refresh (same and rotated refresh tokens, reuse
// detection), a 2 s access token expiring, Deny and Cancel, strict client_secret_basic, and every
// fault control: error500, hang (client timeout), invalid_grant, canned answers, `times` and
// `grantType`, a tampered but correctly signed id_token (nonce, aud; another key under the same
// kid), userinfo faults, live account changes, autoConsent, rotateKey, stop/restart on the same
// port with the same keys (and with state wiped). Three providers: `idp` (defaults), `rot`
// (rotating refresh tokens, 2 s access tokens, oidc-provider's offline_access rule), `auto`.
//
// Needs Chromium at /usr/bin/chromium (Debian package `chromium`) or CHROMIUM_PATH.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createLocalJWKSet, jwtVerify, decodeJwt, decodeProtectedHeader, errors as joseErrors } from "jose";
import { CERT_DIR, ensureCerts } from "./lib/paths.mjs";
import { request, tlsFetch } from "./lib/http.mjs";
import { basicAuth, pkce, randomSecret } from "./lib/authz.mjs";
import { canConnect } from "./lib/procs.mjs";
import { startIdp, generateSigningKey, IDP_PATHS, IDP_SELECTORS as S, DEFAULT_ACCOUNTS } from "./lib/oidc-idp.mjs";
import { openBrowser, newContext, signInAtIdp, submitIdpLogin, answerIdpConsent, idpPageKind, throughIdp } from "./lib/idp-browser.mjs";

let idp, rot, auto, rp, browser, context;

/** The relying party's redirect URI over HTTPS: records each hit, answers a small page. */
async function startRp() {
  ensureCerts();
  const hits = [];
  const server = https.createServer(
    { cert: readFileSync(join(CERT_DIR, "server.pem")), key: readFileSync(join(CERT_DIR, "server-key.pem")) },
    (req, res) => {
      const u = new URL(req.url, "https://localhost");
      hits.push(u);
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end("<!doctype html><title>RP</title><p>Back at the relying party.</p>");
    },
  );
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return {
    uri: `https://localhost:${port}/cb`,
    hits,
    stop: () => new Promise((r) => (server.closeAllConnections?.(), server.close(r))),
  };
}

before(async () => {
  // RSA key generation is the slow part of starting a provider: all keys at once, with the browser.
  let keys;
  [rp, browser, keys] = await Promise.all([startRp(), openBrowser(), Promise.all([1, 2, 3].map(() => generateSigningKey()))]);
  [idp, rot, auto] = await Promise.all([
    startIdp({ redirectUris: [rp.uri], signingKey: keys[0] }),
    startIdp({ redirectUris: [rp.uri], signingKey: keys[1], rotateRefreshToken: true, accessTokenTtl: 2, refreshWithoutOfflineAccess: false }),
    startIdp({ redirectUris: [rp.uri], signingKey: keys[2], autoConsent: true }),
  ]);
  context = await newContext(browser);
});

after(async () => {
  await context?.close().catch(() => {});
  await browser?.close().catch(() => {});
  await Promise.all([idp?.stop(), rot?.stop(), auto?.stop(), rp?.stop()]);
});

/** An authorization request to `p` (PKCE S256, state, nonce). */
function authorization(p, { scope = "openid email profile groups", ...extra } = {}) {
  const pk = pkce();
  const state = randomSecret(12);
  const nonce = randomSecret(12);
  const u = new URL(p.url(IDP_PATHS.authorization));
  const params = { response_type: "code", client_id: p.client.client_id, redirect_uri: rp.uri, scope, state, nonce, code_challenge: pk.challenge, code_challenge_method: "S256", ...extra };
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  return { pk, state, nonce, url: u.href };
}

/** The callback's query once the browser is back at the relying party. */
function callbackParams(page) {
  const u = new URL(page.url());
  assert.equal(`${u.origin}${u.pathname}`, rp.uri, `back at the RP: ${page.url()}`);
  return u.searchParams;
}

/** Token endpoint with fetch (tlsFetch: a WHATWG fetch trusting the test CA) and client_secret_basic. */
async function token(p, params, { signal, auth = "basic" } = {}) {
  const headers = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
  const form = { ...params };
  if (auth === "basic") headers.authorization = basicAuth(p.client.client_id, p.client.client_secret);
  else if (auth === "post") Object.assign(form, { client_id: p.client.client_id, client_secret: p.client.client_secret });
  const res = await tlsFetch(p.url(IDP_PATHS.token), { method: "POST", headers, body: new URLSearchParams(form), signal });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

const codeExchange = (p, code, verifier, opts) =>
  token(p, { grant_type: "authorization_code", code, redirect_uri: rp.uri, code_verifier: verifier }, opts);

/** Verify an id_token as a relying party would: signature by the JWKS, iss, aud, alg, then nonce. */
async function verifyIdToken(p, idToken, { nonce } = {}) {
  const jwks = (await request(p.url(IDP_PATHS.jwks))).json;
  const { payload, protectedHeader } = await jwtVerify(idToken, createLocalJWKSet(jwks), {
    issuer: p.issuer,
    audience: p.client.client_id,
    algorithms: ["RS256"],
  });
  if (nonce !== undefined && payload.nonce !== nonce) throw new Error(`nonce mismatch: ${payload.nonce} != ${nonce}`);
  return { payload, protectedHeader };
}

/** A code from the shared browser (`throughIdp`: signs in / consents only if asked). */
async function browserCode(p, opts, through = {}) {
  const a = authorization(p, opts);
  const page = await context.newPage();
  try {
    await page.goto(a.url);
    const r = await throughIdp(page, p.origin, through);
    const q = callbackParams(page);
    assert.equal(q.get("state"), a.state);
    return { ...a, ...r, code: q.get("code") };
  } finally {
    await page.close();
  }
}

/** A code from a browser that is already signed in and has consented (no page to answer). */
async function silentCode(p, opts) {
  const r = await browserCode(p, opts); // no username: throws if the sign-in page comes
  assert.equal(r.consentShown, false, "no consent page");
  return r;
}

let first; // { tokens, a } from the first flow, reused by later tests

test("discovery document and JWKS: endpoints on https://localhost:<port>, RS256 key with kid, no private parts", async () => {
  const d = await request(idp.discoveryUrl);
  assert.equal(d.status, 200);
  const doc = d.json;
  assert.equal(doc.issuer, `https://localhost:${idp.port}`);
  assert.equal(doc.issuer, idp.issuer);
  for (const [field, path] of [
    ["authorization_endpoint", "/authorize"],
    ["token_endpoint", "/token"],
    ["userinfo_endpoint", "/userinfo"],
    ["jwks_uri", "/jwks"],
    ["revocation_endpoint", "/revoke"],
  ]) {
    assert.equal(doc[field], `https://localhost:${idp.port}${path}`, field);
  }
  assert.ok(doc.token_endpoint_auth_methods_supported.includes("client_secret_basic"));
  assert.deepEqual(doc.id_token_signing_alg_values_supported, ["RS256"]);
  assert.deepEqual(doc.code_challenge_methods_supported, ["S256"]);
  assert.deepEqual(doc.response_types_supported, ["code"]);
  for (const s of ["openid", "email", "profile", "groups", "offline_access"]) assert.ok(doc.scopes_supported.includes(s), s);
  for (const c of ["email", "email_verified", "groups", "name"]) assert.ok(doc.claims_supported.includes(c), c);
  assert.equal(doc.authorization_response_iss_parameter_supported, true);

  const jwks = (await request(idp.url("/jwks"))).json;
  assert.equal(jwks.keys.length, 1);
  const [k] = jwks.keys;
  assert.equal(k.kid, idp.kid);
  assert.equal(k.kty, "RSA");
  assert.equal(k.alg, "RS256");
  assert.equal(k.d, undefined, "no private parts in the JWKS");
  assert.deepEqual(idp.jwks.keys[0], { kty: k.kty, n: k.n, e: k.e, kid: k.kid, alg: k.alg, use: k.use });
  assert.ok(idp.privateJwk.d, "the handle keeps the private JWK");

  // Whatever Host the caller sends (Envoy sends the cluster's authority), URLs use the issuer.
  const viaCluster = await new Promise((resolve, reject) =>
    https
      .get({ host: "127.0.0.1", port: idp.port, path: IDP_PATHS.discovery, servername: "localhost", ca: readFileSync(join(CERT_DIR, "ca.pem")), headers: { host: "upstream_idp" } }, (res) => {
        let b = "";
        res.on("data", (c) => (b += c));
        res.on("end", () => resolve(JSON.parse(b)));
      })
      .on("error", reject),
  );
  assert.equal(viaCluster.token_endpoint, `https://localhost:${idp.port}/token`);
  assert.equal(idp.requests.at(-1).host, "upstream_idp");

  // The Envoy cluster for it.
  const c = idp.clusterFor("upstream_idp");
  assert.equal(c.name, "upstream_idp");
  assert.equal(c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value, idp.port);
  assert.equal(c.transport_socket.typed_config.sni, "localhost");
});

test("browser: wrong password, then sign in and Authorize; code + PKCE + client_secret_basic → verified id_token (iss, aud, nonce), userinfo, refresh", async () => {
  const a = authorization(idp, { scope: "openid email profile groups offline_access" });
  const page = await context.newPage();
  let landed;
  try {
    const resp = await page.goto(a.url);
    assert.equal(resp.status(), 200);
    assert.equal(await idpPageKind(page, idp.origin), "login");
    assert.equal(await submitIdpLogin(page, { username: "alice", password: "not-the-password" }), "login");
    assert.match(await page.locator(S.loginError).innerText(), /Invalid username or password/);

    // The sign-in cookies are the provider's own (port in the name), secure, httpOnly.
    const cookies = await context.cookies(); // all paths: the interaction cookie's is /interaction/<uid>
    const mine = cookies.filter((c) => c.name.startsWith(`idp${idp.port}_`));
    assert.ok(mine.length >= 1, JSON.stringify(cookies));
    for (const c of mine) assert.equal(c.secure, true, c.name);

    assert.equal(await submitIdpLogin(page, { username: "ALICE@example.com" }), "consent");
    assert.match(await page.locator(S.account).innerText(), /alice@example\.com/);
    const scopes = await page.locator(`${S.scopes} li`).allInnerTexts();
    for (const s of ["email", "profile", "groups"]) assert.ok(scopes.includes(s), `consent lists ${s}: ${scopes}`);
    landed = await answerIdpConsent(page, "approve");
  } finally {
    await page.close();
  }
  const q = new URL(landed).searchParams;
  assert.equal(rp.hits.filter((u) => u.pathname === "/cb").at(-1).search, new URL(landed).search, "the RP saw it");
  assert.equal(q.get("state"), a.state);
  assert.equal(q.get("iss"), idp.issuer);
  const code = q.get("code");
  assert.ok(code);

  // What the relying party sent is in the log.
  const authz = idp.requests.filter((r) => r.path === "/authorize").at(-1);
  assert.equal(authz.query.code_challenge, a.pk.challenge);
  assert.equal(authz.query.nonce, a.nonce);

  const res = await codeExchange(idp, code, a.pk.verifier);
  assert.equal(res.status, 200, res.text);
  const t = res.json;
  assert.equal(t.token_type, "Bearer");
  assert.equal(t.expires_in, 3600);
  assert.ok(t.access_token && t.refresh_token && t.id_token);
  // offline_access without prompt=consent is dropped (OIDC Core), yet a refresh token is issued.
  assert.deepEqual(t.scope.split(" ").sort(), ["email", "groups", "openid", "profile"]);

  const log = idp.requests.filter((r) => r.path === "/token").at(-1);
  assert.equal(log.clientAuth, "client_secret_basic");
  assert.equal(log.basicClientId, idp.client.client_id);
  assert.equal(log.form.grant_type, "authorization_code");
  assert.equal(log.form.code_verifier, a.pk.verifier);
  assert.equal(log.form.redirect_uri, rp.uri);
  assert.equal(log.form.client_secret, undefined);
  assert.equal(log.status, 200);

  const { payload, protectedHeader } = await verifyIdToken(idp, t.id_token, { nonce: a.nonce });
  assert.equal(protectedHeader.kid, idp.kid);
  assert.equal(payload.sub, "alice");
  assert.equal(payload.email, "alice@example.com");
  assert.equal(payload.email_verified, true);
  assert.deepEqual(payload.groups, ["mcp-users"]);
  assert.equal(payload.name, "Alice Example");

  const ui = await request(idp.url("/userinfo"), { headers: { authorization: `Bearer ${t.access_token}` } });
  assert.equal(ui.status, 200, ui.body);
  assert.deepEqual(ui.json, { sub: "alice", email: "alice@example.com", email_verified: true, name: "Alice Example", groups: ["mcp-users"] });
  assert.equal(idp.requests.filter((r) => r.path === "/userinfo").at(-1).authScheme, "bearer");

  // Refresh (no rotation on this provider): a new access token and id_token, the same refresh token.
  const r = await token(idp, { grant_type: "refresh_token", refresh_token: t.refresh_token });
  assert.equal(r.status, 200, r.text);
  assert.notEqual(r.json.access_token, t.access_token);
  assert.equal(r.json.refresh_token, t.refresh_token);
  const refreshed = await verifyIdToken(idp, r.json.id_token);
  assert.equal(refreshed.payload.sub, "alice");
  assert.equal(refreshed.payload.nonce, a.nonce, "oidc-provider repeats the original nonce in refreshed id_tokens");
  // The same refresh token works again.
  assert.equal((await token(idp, { grant_type: "refresh_token", refresh_token: t.refresh_token })).status, 200);

  // Wrong client authentication: client_secret_post is not this client's method (strictClientAuth).
  const post = await token(idp, { grant_type: "refresh_token", refresh_token: t.refresh_token }, { auth: "post" });
  assert.equal(post.status, 401);
  assert.equal(post.json.error, "invalid_client");
  const refused = idp.requests.at(-1);
  assert.equal(refused.clientAuth, "client_secret_post");
  assert.match(refused.refused, /registered client_secret_basic/);
  assert.equal(refused.form.client_secret, undefined, "never logged");
  first = { t, a };
});

test("PKCE is required: no code_challenge → error redirect; a code without its verifier → invalid_grant; `resource` ignored", async () => {
  const a = authorization(idp, { code_challenge: undefined, code_challenge_method: undefined });
  const res = await request(a.url);
  assert.equal(res.status, 303);
  const loc = new URL(res.headers.location);
  assert.equal(`${loc.origin}${loc.pathname}`, rp.uri);
  assert.equal(loc.searchParams.get("error"), "invalid_request");
  assert.match(loc.searchParams.get("error_description"), /PKCE/);

  // resourceIndicators is off in the harness (on by default in oidc-provider 9, refusing any
  // `resource` with invalid_target): a `resource` parameter is ignored, and logged.
  const withResource = await silentCode(idp, { resource: "https://mcp.example/mcp" });
  assert.equal(idp.requests.filter((r) => r.path === "/authorize").at(-1).query.resource, "https://mcp.example/mcp");
  assert.equal((await codeExchange(idp, withResource.code, withResource.pk.verifier)).status, 200);

  const b = await silentCode(idp); // signed in and consented already: no page at all
  const bad = await token(idp, { grant_type: "authorization_code", code: b.code, redirect_uri: rp.uri });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error, "invalid_grant");
});

test("Deny on the consent page (fresh browser, bob) → error=access_denied with state and iss", async () => {
  const fresh = await newContext(browser);
  try {
    const page = await fresh.newPage();
    const a = authorization(idp);
    await page.goto(a.url);
    assert.equal(await submitIdpLogin(page, { username: "bob" }), "consent");
    const q = new URL(await answerIdpConsent(page, "deny")).searchParams;
    assert.equal(q.get("error"), "access_denied");
    assert.equal(q.get("state"), a.state);
    assert.equal(q.get("iss"), idp.issuer);
    assert.equal(q.get("code"), null);

    // bob approves this time: no groups claim at all, email from another domain.
    const b = authorization(idp);
    await page.goto(b.url);
    assert.equal(await idpPageKind(page, idp.origin), "consent", "still signed in after Deny: consent straight away");
    const r = { url: await answerIdpConsent(page, "approve") };
    const code = new URL(r.url).searchParams.get("code");
    const t = (await codeExchange(idp, code, b.pk.verifier)).json;
    const { payload } = await verifyIdToken(idp, t.id_token, { nonce: b.nonce });
    assert.equal(payload.email, DEFAULT_ACCOUNTS.bob.email);
    assert.equal("groups" in payload, false);
  } finally {
    await fresh.close();
  }
});

test("rotating provider: offline_access + prompt=consent → refresh token; 2 s access token expires; rotation; reuse revokes the grant", async () => {
  // refreshWithoutOfflineAccess: false → oidc-provider's own rule: offline_access (with prompt=consent) needed.
  const none = authorization(rot);
  const page = await context.newPage();
  try {
    await page.goto(none.url);
    const r0 = await signInAtIdp(page, { username: "alice" });
    assert.equal(r0.consentShown, true);
    const t0 = (await codeExchange(rot, new URL(r0.url).searchParams.get("code"), none.pk.verifier)).json;
    assert.equal(t0.refresh_token, undefined, "no offline_access: no refresh token under the default rule");

    const a = authorization(rot, { scope: "openid email offline_access", prompt: "consent" });
    await page.goto(a.url);
    assert.equal(await idpPageKind(page, rot.origin), "consent", "prompt=consent: the consent page again, no sign-in");
    const q = new URL(await answerIdpConsent(page)).searchParams;
    const res = await codeExchange(rot, q.get("code"), a.pk.verifier);
    const receivedAt = Date.now();
    assert.equal(res.status, 200, res.text);
    const t = res.json;
    assert.ok(t.refresh_token);
    assert.equal(t.expires_in, 2);
    assert.deepEqual(t.scope.split(" ").sort(), ["email", "offline_access", "openid"]);

    const ok = await request(rot.url("/userinfo"), { headers: { authorization: `Bearer ${t.access_token}` } });
    assert.equal(ok.status, 200);
    // The harness's storage drops the token 2 s after it was saved, i.e. before the answer came.
    await new Promise((r) => setTimeout(r, receivedAt + 2050 - Date.now()));
    const expired = await request(rot.url("/userinfo"), { headers: { authorization: `Bearer ${t.access_token}` } });
    assert.equal(expired.status, 401);
    assert.match(expired.headers["www-authenticate"], /invalid_token/);

    const r1 = await token(rot, { grant_type: "refresh_token", refresh_token: t.refresh_token });
    assert.equal(r1.status, 200, r1.text);
    assert.ok(r1.json.refresh_token);
    assert.notEqual(r1.json.refresh_token, t.refresh_token, "rotated");
    assert.equal((await request(rot.url("/userinfo"), { headers: { authorization: `Bearer ${r1.json.access_token}` } })).status, 200);

    const reuse = await token(rot, { grant_type: "refresh_token", refresh_token: t.refresh_token });
    assert.equal(reuse.status, 400);
    assert.equal(reuse.json.error, "invalid_grant");
    const after = await token(rot, { grant_type: "refresh_token", refresh_token: r1.json.refresh_token });
    assert.equal(after.json.error, "invalid_grant", "reuse of a rotated token revoked the whole grant");
  } finally {
    await page.close();
  }
});

test("token faults: error500, hang (client timeout), invalid_grant, times", async () => {
  const rt = first.t.refresh_token;
  idp.setTokenMode("error500");
  const e = await token(idp, { grant_type: "refresh_token", refresh_token: rt });
  assert.equal(e.status, 500);
  assert.equal(e.json.error, "server_error");
  assert.equal(idp.requests.at(-1).mode, "error500");
  assert.equal(idp.requests.at(-1).form.refresh_token, rt, "the form is logged in fault modes too");

  idp.setTokenMode("hang");
  const t0 = Date.now();
  await assert.rejects(token(idp, { grant_type: "refresh_token", refresh_token: rt }, { signal: AbortSignal.timeout(700) }), (err) => err.name === "TimeoutError" || /abort|timeout/i.test(String(err)));
  assert.ok(Date.now() - t0 >= 650);
  assert.equal(idp.requests.at(-1).status, undefined, "never answered");

  // grantType: only refresh requests fail; times: 1 → normal afterwards.
  idp.setTokenMode("invalid_grant", { times: 1, grantType: "refresh_token" });
  const ig = await token(idp, { grant_type: "refresh_token", refresh_token: rt });
  assert.equal(ig.status, 400);
  assert.equal(ig.json.error, "invalid_grant");
  const back = await token(idp, { grant_type: "refresh_token", refresh_token: rt });
  assert.equal(back.status, 200, "times: 1 → normal again, and the token was never touched");

  idp.setTokenMode({ status: 503, json: { error: "temporarily_unavailable" } });
  assert.equal((await token(idp, { grant_type: "refresh_token", refresh_token: rt })).status, 503);
  idp.setTokenMode("normal");
  assert.equal((await token(idp, { grant_type: "refresh_token", refresh_token: rt })).status, 200);
});

test("tampered id_token: correctly signed (same kid) but wrong nonce or aud → the relying party's checks fail", async () => {
  const a = await silentCode(idp);
  idp.setTokenMode({ tamper: (c) => ({ ...c, nonce: "not-the-nonce" }) });
  const res = await codeExchange(idp, a.code, a.pk.verifier);
  idp.setTokenMode("normal");
  assert.equal(res.status, 200, res.text);
  assert.equal(decodeProtectedHeader(res.json.id_token).kid, idp.kid);
  // The signature, iss and aud verify; only the nonce is wrong.
  await assert.rejects(verifyIdToken(idp, res.json.id_token, { nonce: a.nonce }), /nonce mismatch/);
  const { payload } = await verifyIdToken(idp, res.json.id_token);
  assert.equal(payload.nonce, "not-the-nonce");
  assert.equal(payload.email, "alice@example.com");
  assert.equal(idp.requests.filter((r) => r.path === "/token").at(-1).mode, "tamper");

  idp.setTokenMode({ tamper: (c) => ({ ...c, aud: "someone-else" }) }, { times: 1 });
  const r2 = await token(idp, { grant_type: "refresh_token", refresh_token: first.t.refresh_token });
  await assert.rejects(verifyIdToken(idp, r2.json.id_token), (err) => err instanceof joseErrors.JWTClaimValidationFailed && err.claim === "aud");

  // A different key (the other provider's) under this provider's kid: the signature no longer verifies.
  idp.setTokenMode({ tamper: (c) => c, key: { ...rot.privateJwk, kid: idp.kid } }, { times: 1 });
  const r3 = await token(idp, { grant_type: "refresh_token", refresh_token: first.t.refresh_token });
  assert.equal(decodeProtectedHeader(r3.json.id_token).kid, idp.kid);
  await assert.rejects(verifyIdToken(idp, r3.json.id_token), joseErrors.JWSSignatureVerificationFailed);
  // signJwt: any claims, signed like the provider signs.
  const forged = await idp.signJwt({ iss: idp.issuer, aud: idp.client.client_id, sub: "mallory", exp: Math.floor(Date.now() / 1000) + 60, iat: Math.floor(Date.now() / 1000) });
  assert.equal((await verifyIdToken(idp, forged)).payload.sub, "mallory");
});

test("userinfo faults and live account changes", async () => {
  const r = await token(idp, { grant_type: "refresh_token", refresh_token: first.t.refresh_token });
  const at = r.json.access_token;
  idp.setUserinfoMode("error500");
  assert.equal((await request(idp.url("/userinfo"), { headers: { authorization: `Bearer ${at}` } })).status, 500);
  idp.setUserinfoMode({ tamper: (c) => ({ ...c, email: "evil@example.com" }) }, { times: 1 });
  assert.equal((await request(idp.url("/userinfo"), { headers: { authorization: `Bearer ${at}` } })).json.email, "evil@example.com");
  assert.equal((await request(idp.url("/userinfo"), { headers: { authorization: `Bearer ${at}` } })).json.email, "alice@example.com");

  idp.setAccount("alice", { ...DEFAULT_ACCOUNTS.alice, groups: ["mcp-admins"] });
  try {
    const again = await token(idp, { grant_type: "refresh_token", refresh_token: first.t.refresh_token });
    assert.deepEqual(decodeJwt(again.json.id_token).groups, ["mcp-admins"]);
  } finally {
    idp.setAccount("alice", DEFAULT_ACCOUNTS.alice);
  }
  assert.ok(idp.count("/userinfo") >= 3);
});

test("autoConsent (no consent page), rotateKey (new kid signs, old still published), Cancel on the sign-in page (prompt=login)", async () => {
  {
    const a = await browserCode(auto, {}, { username: "bob" });
    assert.equal(a.signedIn, true);
    assert.equal(a.consentShown, false);
    const oldKid = auto.kid;
    const newKid = await auto.rotateKey({ key: { ...rot.privateJwk, kid: "auto-rotated" } }); // any RSA key
    assert.equal(newKid, "auto-rotated");
    assert.notEqual(newKid, oldKid);
    assert.deepEqual(auto.jwks.keys.map((k) => k.kid), [newKid, oldKid]);
    const t = (await codeExchange(auto, a.code, a.pk.verifier)).json;
    assert.equal((await verifyIdToken(auto, t.id_token, { nonce: a.nonce })).protectedHeader.kid, newKid);

    // Signed in already, but prompt=login asks again; Cancel there → access_denied.
    const page = await context.newPage();
    try {
      const c = authorization(auto, { prompt: "login" });
      await page.goto(c.url);
      assert.equal(await idpPageKind(page, auto.origin), "login");
      await page.locator(S.cancel).click();
      await page.waitForURL((u) => u.origin !== auto.origin, { timeout: 5000 });
      assert.equal(callbackParams(page).get("error"), "access_denied");
      assert.equal(callbackParams(page).get("state"), c.state);
    } finally {
      await page.close();
    }
    assert.deepEqual(auto.errors, []);
  }
});

test("stop and restart: same port, same keys; sessions and refresh tokens survive, unless wiped", async () => {
  const kid = idp.kid;
  const served = (await request(idp.url("/jwks"))).json;
  await idp.stop();
  assert.equal(await canConnect(idp.port), false, "down");
  const down = await token(idp, { grant_type: "refresh_token", refresh_token: first.t.refresh_token }).catch((e) => e);
  assert.ok(down instanceof Error, "connection refused while stopped");

  await idp.restart();
  assert.equal(idp.kid, kid);
  assert.deepEqual((await request(idp.url("/jwks"))).json, served);
  assert.equal((await request(idp.discoveryUrl)).json.issuer, `https://localhost:${idp.port}`);
  const r = await token(idp, { grant_type: "refresh_token", refresh_token: first.t.refresh_token });
  assert.equal(r.status, 200, r.text);
  assert.equal((await verifyIdToken(idp, r.json.id_token)).protectedHeader.kid, kid);
  const a = await silentCode(idp); // the browser session survived the restart
  assert.equal((await codeExchange(idp, a.code, a.pk.verifier)).status, 200);

  await idp.restart({ wipe: true });
  const gone = await token(idp, { grant_type: "refresh_token", refresh_token: first.t.refresh_token });
  assert.equal(gone.status, 400);
  assert.equal(gone.json.error, "invalid_grant");
  assert.equal(idp.kid, kid, "keys are kept even when state is wiped");
  assert.deepEqual(idp.errors, [], "no server_error inside oidc-provider");
});
