// Replicas and restarts (docs/authorization-server.md, "State, replicas and restarts"): any number
// of Envoys with the same config accept each other's tokens, clients, grants and sign-in sessions,
// and a restart logs nobody out.
//
// Two Envoys, A and B, with the SAME plugin config (signing JWK via the same `jwk_env` value,
// sealing key, users, clients, and `resource` = A's origin + /mcp, since the filter takes its
// issuer and endpoint URLs from the config, not from the Host header), on their own ports, in front
// of one echo backend: two replicas behind one load balancer. One browser talking to "the gateway"
// is modelled by one cookie jar shared by an Agent at A and an Agent at B.
//
// Not tested here, on purpose: one-time use of codes, refresh rotation and access-token
// revocation are per Envoy (shared data) for now, so a code or an old refresh token could be used
// once per replica. That is a documented limitation, not a behaviour to assert; shared state
// (etcd) is planned.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createLocalJWKSet, jwtVerify } from "jose";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEcho } from "./lib/backends.mjs";
import { request } from "./lib/http.mjs";
import { freePort } from "./lib/procs.mjs";
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
  pkce,
  randomSecret,
  register,
  tokenRequest,
} from "./lib/authz.mjs";

const REDIRECT = "http://127.0.0.1:45679/callback"; // nothing listens: the tests read the 302 Location
const SCOPE = "mcp:tools";

let m, echo, pluginConfig, envKeyValues, portA;
let A, B; // the running replicas; A is replaced by the restart test
let RESOURCE, ISSUER;
let oldALog = ""; // A's log tail from before the restart (its temp dir goes with stop())

function authorizationServer() {
  return {
    ...keysSection(m),
    display_name: "Replicated gateway",
    scopes: [{ name: SCOPE, description: "Use the tools" }],
    default_scopes: [SCOPE],
    users: [m.userEntry()],
    clients: [
      m.robotEntry({ scopes: [SCOPE] }),
      { client_id: "replica-public", client_name: "Replica Public App", redirect_uris: [REDIRECT] },
    ],
    rate_limits: { token_per_minute_per_client: 1000, token_per_minute_per_address: 1000, register_per_minute_per_address: 1000 },
  };
}

/** Start one replica: the one plugin config, the one backend, its own admin port (and listener port unless given). */
const startReplica = (listenerPort) =>
  startEnvoy({ pluginConfig, envKeyValues, backendPort: echo.port, ...(listenerPort ? { listenerPort } : {}) });

before(async () => {
  m = await authServerMaterial();
  echo = await startEcho();
  envKeyValues = m.envKeyValues;
  portA = await freePort();
  ISSUER = `https://localhost:${portA}`;
  RESOURCE = `${ISSUER}/mcp`;
  // Built once: both replicas get this exact object (same password hash and salt too).
  pluginConfig = {
    resource: RESOURCE,
    routes: [{ prefix: "/mcp", scopes: [SCOPE] }],
    authorization_server: authorizationServer(),
  };
  [A, B] = await Promise.all([startReplica(portA), startReplica()]);
  assert.equal(A.origin, ISSUER);
  assert.notEqual(B.origin, A.origin);
});

after(async () => {
  await Promise.all([A?.stop(), B?.stop()]);
  await echo?.stop();
});

/** A test whose failure message carries the log tails of the replicas running at that moment. */
const T = (name, fn) =>
  test(name, async () => {
    try {
      await fn();
    } catch (e) {
      await withLog([A, B], () => {
        throw e;
      }, oldALog ? `A before the restart:\n${oldALog}` : undefined);
    }
  });

const robotBasic = () => [m.robot.client_id, m.robot.secret];

// ---------- helpers ----------

async function clientCredentials(org) {
  const res = await tokenRequest(org, { grant_type: "client_credentials", resource: RESOURCE }, { basic: robotBasic() });
  return assertTokenResponse(res, { refresh: false, scope: SCOPE, note: `client_credentials at ${org}` });
}

/** The access token passes on /mcp at `org`: 200 from the backend, with the identity of the token. */
async function assertMcpPasses(org, token, { sub, client_id }, note = "") {
  const before = echo.requests.length;
  const res = await mcpPost(org, token);
  assert.equal(res.status, 200, `/mcp at ${org} ${note}: ${res.status} ${res.body} www-authenticate=${res.headers["www-authenticate"]}`);
  const seen = echo.requests.slice(before).find((r) => r.url.startsWith("/mcp"));
  assert.ok(seen, `the backend saw the /mcp request ${note}`);
  assert.equal(seen.headers["x-mcp-subject"], sub, `x-mcp-subject ${note}`);
  assert.equal(seen.headers["x-mcp-client-id"], client_id, `x-mcp-client-id ${note}`);
  assert.equal(seen.headers["x-mcp-issuer"], ISSUER, `x-mcp-issuer ${note}`);
  assert.equal(seen.headers.authorization, undefined, `no Authorization at the backend ${note}`);
}

/** Every replica accepts `token`. */
async function assertPassesEverywhere(token, identity, note) {
  for (const [name, r] of [["A", A], ["B", B]]) await assertMcpPasses(r.origin, token, identity, `${note} at ${name}`);
}

/** The signature checks out against a replica's published JWKS, with the shared issuer and audience. */
async function assertVerifies(token, org) {
  const jwks = await request(`${org}/oauth/jwks`);
  assert.equal(jwks.status, 200, `jwks at ${org}: ${jwks.body}`);
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks.json), { issuer: ISSUER, audience: RESOURCE });
  return payload;
}

/**
 * Authorize at `org` with `agent` (sign in if asked, approve), PKCE S256. Returns the flow, the code
 * and the verifier. `expectSignIn` asserts whether the sign-in page was shown.
 */
async function authorize(agent, client_id, { expectSignIn } = {}) {
  const pk = pkce();
  const state = randomSecret(12);
  const url = authorizeUrl(agent.origin, {
    response_type: "code",
    client_id,
    redirect_uri: REDIRECT,
    scope: SCOPE,
    state,
    code_challenge: pk.challenge,
    code_challenge_method: "S256",
    resource: RESOURCE,
  });
  const flow = await authorizeFlow(agent, url, { username: m.user.username, password: m.user.password });
  assert.ok(flow.location, `no redirect to the client at ${agent.origin}\n${describeFlow(flow)}`);
  const kinds = flow.pages.map((p) => p.kind);
  if (expectSignIn !== undefined) {
    assert.deepEqual(kinds, expectSignIn ? ["signin", "consent"] : ["consent"], `pages at ${agent.origin}\n${describeFlow(flow)}`);
  }
  const u = new URL(flow.location);
  assert.equal(`${u.origin}${u.pathname}`, REDIRECT, flow.location);
  assert.equal(u.searchParams.get("state"), state, flow.location);
  assert.equal(u.searchParams.get("iss"), ISSUER, `iss is the shared issuer, whichever replica answered: ${flow.location}`);
  assert.equal(u.searchParams.get("error"), null, flow.location);
  const code = u.searchParams.get("code");
  assert.ok(code && code.length >= 16, flow.location);
  return { flow, code, verifier: pk.verifier, client_id };
}

async function redeem(org, { code, verifier, client_id }) {
  const res = await tokenRequest(org, {
    grant_type: "authorization_code",
    code,
    redirect_uri: REDIRECT,
    code_verifier: verifier,
    resource: RESOURCE,
    client_id,
  });
  return assertTokenResponse(res, { refresh: true, scope: SCOPE, note: `code at ${org}` });
}

async function refreshAt(org, refresh_token, client_id) {
  const res = await tokenRequest(org, { grant_type: "refresh_token", refresh_token, client_id });
  const j = assertTokenResponse(res, { refresh: true, scope: SCOPE, note: `refresh at ${org}` });
  assert.notEqual(j.refresh_token, refresh_token, `the refresh token rotates at ${org}`);
  return j;
}

async function registerPublic(org, name) {
  const res = await register(org, {
    client_name: name,
    redirect_uris: [REDIRECT],
    token_endpoint_auth_method: "none",
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    application_type: "native",
    scope: SCOPE,
  });
  assert.equal(res.status, 201, `register at ${org}: ${res.status} ${res.body}`);
  return res.json.client_id;
}

const userIdentity = (client_id) => ({ sub: m.user.subject, client_id });
const robotIdentity = () => ({ sub: m.robot.client_id, client_id: m.robot.client_id });

// ---------- tests ----------

T("both replicas publish the same issuer, endpoints, keys and protected-resource metadata", async () => {
  const get = async (org, path) => {
    const r = await request(`${org}${path}`, { headers: { accept: "application/json" } });
    assert.equal(r.status, 200, `${org}${path}: ${r.status} ${r.body}`);
    return r.json;
  };
  for (const path of ["/.well-known/oauth-authorization-server", "/oauth/jwks", "/.well-known/oauth-protected-resource/mcp"]) {
    assert.deepEqual(await get(B.origin, path), await get(A.origin, path), path);
  }
  const meta = await get(B.origin, "/.well-known/oauth-authorization-server");
  assert.equal(meta.issuer, ISSUER);
  assert.equal(meta.token_endpoint, `${ISSUER}/oauth/token`);
  const prm = await get(B.origin, "/.well-known/oauth-protected-resource/mcp");
  assert.equal(prm.resource, RESOURCE);
  assert.deepEqual(prm.authorization_servers, [ISSUER]);
});

T("a client_credentials token from A passes /mcp at B, and one from B passes at A", async () => {
  const fromA = await clientCredentials(A.origin);
  const fromB = await clientCredentials(B.origin);
  for (const t of [fromA, fromB]) {
    const { header, claims } = jwtParts(t.access_token);
    assert.equal(header.kid, m.kid);
    assert.equal(claims.iss, ISSUER);
    assert.equal(claims.aud, RESOURCE);
  }
  await assertVerifies(fromA.access_token, B.origin);
  await assertVerifies(fromB.access_token, A.origin);
  await assertMcpPasses(B.origin, fromA.access_token, robotIdentity(), "token from A");
  await assertMcpPasses(A.origin, fromB.access_token, robotIdentity(), "token from B");
  // And neither replica passes a request without a token: the acceptance above is the token's doing.
  for (const org of [A.origin, B.origin]) assert.equal((await mcpPost(org, undefined)).status, 401, org);
});

T("a client registered by DCR at A: sign-in + consent at B, code redeemed at B, refresh at A rotates, then at B", async () => {
  const client_id = await registerPublic(A.origin, "Registered at A");
  const agentB = new Agent(B.origin);
  const c = await authorize(agentB, client_id, { expectSignIn: true });
  const consent = c.flow.pages.find((p) => p.kind === "consent");
  assert.ok(consent.text.includes("Registered at A"), `B's consent page names the client registered at A: ${consent.text}`);

  const t1 = await redeem(B.origin, c);
  assert.equal(jwtParts(t1.access_token).claims.client_id, client_id);
  await assertPassesEverywhere(t1.access_token, userIdentity(client_id), "code-flow token from B");

  const t2 = await refreshAt(A.origin, t1.refresh_token, client_id);
  await assertPassesEverywhere(t2.access_token, userIdentity(client_id), "refreshed at A");
  const t3 = await refreshAt(B.origin, t2.refresh_token, client_id);
  await assertPassesEverywhere(t3.access_token, userIdentity(client_id), "refreshed at B");

  // A rotated at t1 and refuses it now (within one replica rotation is enforced; across replicas
  // it is not yet, see the header comment, so this grant is not used again).
  const reuse = await tokenRequest(A.origin, { grant_type: "refresh_token", refresh_token: t1.refresh_token, client_id });
  assert.equal(reuse.status, 400, `reuse of a rotated refresh token at A: ${reuse.status} ${reuse.body}`);
  assert.equal(reuse.json?.error, "invalid_grant", reuse.body);
});

T("a code issued at A is redeemed at B (its first use), a code issued at B at A", async () => {
  const jar = new CookieJar();
  const atA = await authorize(new Agent(A.origin, { jar }), "replica-public");
  const tA = await redeem(B.origin, atA);
  await assertPassesEverywhere(tA.access_token, userIdentity("replica-public"), "code from A redeemed at B");
  const atB = await authorize(new Agent(B.origin, { jar }), "replica-public");
  const tB = await redeem(A.origin, atB);
  await assertPassesEverywhere(tB.access_token, userIdentity("replica-public"), "code from B redeemed at A");
});

T("a sign-in at A is honoured by B: B's /oauth/authorize goes straight to consent", async () => {
  const jar = new CookieJar(); // one browser; the load balancer sends it to A, then to B
  await authorize(new Agent(A.origin, { jar }), "replica-public", { expectSignIn: true });
  assert.ok(jar.cookies.has("__Host-mcp-oauth-session"), `A set the session cookie: ${[...jar.cookies.keys()]}`);

  const c = await authorize(new Agent(B.origin, { jar }), "replica-public", { expectSignIn: false });
  const t = await redeem(B.origin, c);
  await assertMcpPasses(A.origin, t.access_token, userIdentity("replica-public"), "after a consent at B");

  // Control: a browser without A's cookie is asked to sign in at B.
  await authorize(new Agent(B.origin), "replica-public", { expectSignIn: true });
});

T("restart of A: tokens, refresh tokens, DCR clients and sign-in sessions from before still work", async () => {
  // Before: a DCR client, a signed-in browser, a code-flow grant and a client_credentials token, all from A.
  const client_id = await registerPublic(A.origin, "Registered before the restart");
  const jar = new CookieJar();
  const c = await authorize(new Agent(A.origin, { jar }), client_id, { expectSignIn: true });
  const grant = await redeem(A.origin, c);
  const robot = await clientCredentials(A.origin);
  // A grant refreshed once at A before the restart: its current generation is the rotated one.
  const rotated = await refreshAt(A.origin, (await redeem(A.origin, await authorize(new Agent(A.origin, { jar }), client_id))).refresh_token, client_id);

  const oldPid = A.pid;
  oldALog = A.logTail(40);
  await A.stop();
  assert.ok(A.exitInfo, "the old A exited");
  assert.equal((await mcpPost(B.origin, robot.access_token)).status, 200, "B serves while A is down");
  A = await startReplica(portA); // same config, same listener port (same resource), new admin port, new process
  assert.notEqual(A.pid, oldPid);
  assert.equal(A.origin, ISSUER);

  // Access tokens from before pass at the new A (and at B).
  await assertPassesEverywhere(grant.access_token, userIdentity(client_id), "code-flow token from the old A");
  await assertPassesEverywhere(robot.access_token, robotIdentity(), "client_credentials token from the old A");
  await assertVerifies(robot.access_token, A.origin);

  // Refresh tokens from before refresh at the new A, and the rotated tokens go on at B.
  const r1 = await refreshAt(A.origin, grant.refresh_token, client_id);
  await assertPassesEverywhere(r1.access_token, userIdentity(client_id), "refreshed at the new A");
  await refreshAt(B.origin, r1.refresh_token, client_id);
  const r2 = await refreshAt(A.origin, rotated.refresh_token, client_id);
  await refreshAt(A.origin, r2.refresh_token, client_id);

  // The DCR client still authorizes at the new A, and the browser is still signed in (consent only).
  const again = await authorize(new Agent(A.origin, { jar }), client_id, { expectSignIn: false });
  const t = await redeem(A.origin, again);
  await assertPassesEverywhere(t.access_token, userIdentity(client_id), "code flow after the restart");

  // A client registered at the new A works at B as well.
  const newClient = await registerPublic(A.origin, "Registered after the restart");
  const cb = await authorize(new Agent(B.origin, { jar }), newClient, { expectSignIn: false });
  await redeem(B.origin, cb);
});
