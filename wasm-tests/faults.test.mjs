// Faults, each in real Envoy with real parts:
//  - the JWKS host goes down and comes back, with a key rotated meanwhile (remote-jwks.test.mjs
//    covers the short outage, a hanging host and start-up without keys; this adds an outage
//    through several refresh intervals and a rotation picked up on return);
//  - the backend goes down (connection refused → 503, garbage → 502) and comes back;
//  - Envoy restarts: a new process with the same config and keys;
//  - the authorization server's signing key is rotated by a config reload. The reload is what a
//    plain-Envoy, docker-compose or Kubernetes user does to change a static config: a new Envoy
//    process with the new config on the same address (not an xDS update or a hot restart).
//
// No sleeps stand in for readiness: Envoy readiness is admin /ready + the listener, a backend is
// up when its listen() returned, a rotated key is fetched when a token signed with it passes.
// The only waits are for time itself (refresh-token issue times are compared in seconds).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { randomUUID } from "node:crypto";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEcho, startJwks } from "./lib/backends.mjs";
import { request } from "./lib/http.mjs";
import { freePort, waitFor, sleep } from "./lib/procs.mjs";
import { assertChallenge, assertOAuthError } from "./lib/assertions.mjs";
import { keyPair, mint, tamperSignature } from "./lib/tokens.mjs";
import {
  CookieJar,
  assertTokenResponse,
  authServerMaterial,
  codeFlow as sharedCodeFlow,
  es256PrivateJwk,
  jwtParts,
  randomSecret,
  register,
  tokenRequest,
} from "./lib/authz.mjs";

const SCOPE = "mcp:tools";
const REDIRECT = "http://127.0.0.1:45681/callback"; // nothing listens: the tests read the 302 Location

// ---------------------------------------------------------------- shared helpers

/**
 * A test whose failure message carries the log tails of the Envoys `envoys()` returns when it
 * fails (a test may replace an Envoy), and `extra()`.
 */
const testWithLogs =
  (envoys, extra = () => undefined) =>
  (name, fn) =>
    test(name, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        await withLog(
          envoys(),
          () => {
            throw e;
          },
          extra(),
        );
      }
    });

/** POST /mcp (an MCP initialize) with an id the echo backend records; returns the response and what the backend saw. */
async function callMcp(origin, echo, token, extraHeaders = {}) {
  const id = randomUUID();
  const headers = { "content-type": "application/json", accept: "application/json, text/event-stream", "x-test-id": id, ...extraHeaders };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await request(`${origin}/mcp`, {
    method: "POST",
    headers,
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
    timeoutMs: 15000,
  });
  return { res, seen: echo?.find((r) => r.headers["x-test-id"] === id) };
}

/** The request reached the backend with this identity, and without the token. */
function assertForwarded({ res, seen }, { sub, client_id, iss }, note) {
  assert.equal(res.status, 200, `${note}: ${res.status} ${res.body} www-authenticate=${res.headers["www-authenticate"]}`);
  assert.ok(seen, `${note}: the backend did not see the request`);
  assert.equal(seen.headers["x-mcp-subject"], sub, `${note}: x-mcp-subject`);
  if (client_id !== undefined) assert.equal(seen.headers["x-mcp-client-id"], client_id, `${note}: x-mcp-client-id`);
  if (iss !== undefined) assert.equal(seen.headers["x-mcp-issuer"], iss, `${note}: x-mcp-issuer`);
  assert.equal(seen.headers.authorization, undefined, `${note}: Authorization reached the backend`);
}

/** 401 invalid_token with exactly this description, the challenge pointing at the metadata, and nothing at the backend. */
function assertInvalidToken({ res, seen }, origin, description, note) {
  assert.equal(seen, undefined, `${note}: a refused request reached the backend`);
  assertOAuthError(res, 401, "invalid_token", description, note);
  assertChallenge(
    res.headers["www-authenticate"],
    { error: "invalid_token", error_description: description, resource_metadata: `${origin}/.well-known/oauth-protected-resource/mcp`, scope: SCOPE },
    note,
  );
}

/** The `authorization_server` section shared by the Envoys below: a user, a robot, a public app, DCR open. */
function authServer(m, { signingKeys } = {}) {
  return {
    signing_keys: signingKeys ?? [{ jwk_env: m.jwkEnv }],
    sealing_keys: [{ kid: "s1", value_base64url: m.sealing }],
    display_name: "Faults gateway",
    scopes: [{ name: SCOPE, description: "Use the tools" }],
    default_scopes: [SCOPE],
    users: [m.userEntry()],
    clients: [m.robotEntry({ scopes: [SCOPE] }), { client_id: "faults-app", client_name: "Faults App", redirect_uris: [REDIRECT] }],
    rate_limits: { token_per_minute_per_client: 10000, token_per_minute_per_address: 10000, register_per_minute_per_address: 10000 },
  };
}

/** The code flow of lib/authz.mjs with this file's redirect URI and scope; `client_id` defaults to the configured app. */
const codeFlow = (origin, resource, { client_id = "faults-app", ...opts }) => sharedCodeFlow(origin, resource, { client_id, redirect: REDIRECT, scope: SCOPE, ...opts });

async function refreshOk(origin, refresh_token, { client_id = "faults-app", note = "refresh" } = {}) {
  const res = await tokenRequest(origin, { grant_type: "refresh_token", refresh_token, client_id });
  const j = assertTokenResponse(res, { refresh: true, scope: SCOPE, note });
  assert.notEqual(j.refresh_token, refresh_token, `${note}: the refresh token rotates`);
  return j;
}

async function refreshRefused(origin, refresh_token, description, { client_id = "faults-app", note = "refresh" } = {}) {
  const res = await tokenRequest(origin, { grant_type: "refresh_token", refresh_token, client_id });
  assertOAuthError(res, 400, "invalid_grant", description, note);
}

async function clientCredentials(origin, m, resource) {
  const res = await tokenRequest(origin, { grant_type: "client_credentials", resource }, { basic: [m.robot.client_id, m.robot.secret] });
  return assertTokenResponse(res, { refresh: false, scope: SCOPE, note: "client_credentials" });
}

/** Sleep until the wall clock is at least `seconds` past the unix time `t` (refresh-token issue times are in whole seconds). */
async function untilSecondsAfter(t, seconds) {
  const at = (t + seconds + 1) * 1000 + 50;
  if (Date.now() < at) await sleep(at - Date.now());
}

// ---------------------------------------------------------------- JWKS host down and back

describe("JWKS host down through a periodic refresh, back with a rotated key", () => {
  const ISS = "https://jwks-faults.issuer.test";
  const REFRESH_SECONDS = 10; // the shortest refresh_interval_seconds the config accepts
  let k1, k2, echo, jwks, envoy, origin;
  const T = testWithLogs(() => [envoy]);
  const call = (token) => callMcp(origin, echo, token);
  const token = (key) => mint(key, { iss: ISS, aud: `${origin}/mcp`, sub: "jwks-user", scope: SCOPE, jti: randomUUID() });
  const failedFetches = async () => (await envoy.stats())["mcp_oauth.jwks.fetch_failed"] ?? 0;
  const okFetches = async () => (await envoy.stats())["mcp_oauth.jwks.fetch_ok"] ?? 0;
  const identity = { sub: "jwks-user", iss: ISS };
  let k1Token; // one token string, verified (and cached) before the outage

  before(async () => {
    [k1, k2] = await Promise.all([keyPair("ES256", "fault-k1"), keyPair("ES256", "fault-k2")]);
    echo = await startEcho();
    jwks = await startJwks([k1.publicJwk]);
    envoy = await startEnvoy({
      backendPort: echo.port,
      jwksPort: jwks.port,
      // One worker: the VM that serves requests is the one whose keys the assertions are about.
      concurrency: 1,
      pluginConfig: ({ origin }) => ({
        resource: `${origin}/mcp`,
        authorization_servers: [ISS],
        issuers: [
          {
            issuer: ISS,
            remote_jwks: {
              uri: jwks.uri,
              cluster: "jwks",
              refresh_interval_seconds: REFRESH_SECONDS,
              min_refetch_interval_seconds: 1,
              startup_wait_ms: 3000,
              timeout_ms: 1000,
            },
          },
        ],
        routes: [{ prefix: "/mcp", scopes: [SCOPE] }],
      }),
    });
    origin = envoy.origin;
  });
  after(async () => {
    await envoy?.stop();
    await jwks?.stop();
    await echo?.stop();
  });

  T("JWKS host down longer than the refresh interval: cached keys verify new tokens, the refreshes fail, /health stays 200", async (t) => {
    k1Token = await token(k1);
    assertForwarded(await call(k1Token), identity, "k1 token with the JWKS host up");
    await jwks.stop();
    const stoppedAt = Date.now();
    const failedAtStop = await failedFetches();
    // Every VM (three with one worker) last fetched before the stop, so each one's periodic
    // refresh falls due within REFRESH_SECONDS of it and fails at once (connection refused),
    // then retries with backoff. Wait for that time to pass, and for the failures to show.
    await waitFor(async () => Date.now() - stoppedAt > REFRESH_SECONDS * 1000 + 500 && (await failedFetches()) >= failedAtStop + 3, {
      timeoutMs: REFRESH_SECONDS * 1000 + 10000,
      intervalMs: 250,
      what: "a refresh interval with the JWKS host down, and a failed fetch per VM",
    });
    for (let i = 0; i < 5; i++) assertForwarded(await call(await token(k1)), identity, `fresh k1 token #${i} with the JWKS host down`);
    assertForwarded(await call(k1Token), identity, "the k1 token from before the outage");
    const health = await request(`${origin}/health`);
    assert.equal(health.status, 200, health.body);
    assert.equal(health.json.keys_loaded, true);
    t.diagnostic(`failed fetches during the outage: ${(await failedFetches()) - failedAtStop}`);
  });

  T("a key that only the JWKS host knows is unknown while it is down: 401, not 503, and not forwarded", async () => {
    // The host's key set is now rotated: k1 removed, k2 added. Nobody can fetch it yet.
    jwks.setKeys([k2.publicJwk]);
    const r = await call(await token(k2));
    assertInvalidToken(r, origin, "The access token is signed with an unknown key", "k2 token with the JWKS host down");
  });

  T("JWKS host back: the rotated set is fetched, k2 tokens pass, and k1 tokens (the cached one too) are refused at once", async (t) => {
    const okBefore = await okFetches();
    const fetchesBefore = jwks.fetches;
    await jwks.start();
    const t0 = Date.now();
    let last;
    await waitFor(
      async () => {
        last = await call(await token(k2));
        return last.res.status === 200;
      },
      { timeoutMs: 10000, intervalMs: 100, what: "a k2 token to pass after the JWKS host came back" },
    ).catch((e) => {
      e.message += ` (last: ${last?.res.status} ${last?.res.body})`;
      throw e;
    });
    assertForwarded(last, identity, "k2 token after the JWKS host came back");
    t.diagnostic(`rotated key usable ${Date.now() - t0} ms after the JWKS host came back`);
    assert.ok(jwks.fetches > fetchesBefore, "the JWKS host was asked again");
    assert.ok((await okFetches()) > okBefore, "mcp_oauth.jwks.fetch_ok counted the fetch");
    // The worker VM now has the rotated set: the removed key verifies nothing, not even the
    // token it verified (and cached) before.
    assertInvalidToken(await call(k1Token), origin, "The access token is signed with an unknown key", "the cached k1 token after the rotation");
    assertInvalidToken(await call(await token(k1)), origin, "The access token is signed with an unknown key", "a fresh k1 token after the rotation");
    assertForwarded(await call(await token(k2)), identity, "k2 again");
  });
});

// ---------------------------------------------------------------- backend down and back

describe("backend down and back (built-in authorization server in front of an echo backend)", () => {
  let m, echo, envoy, origin, resource, backendPort, garbage;
  const T = testWithLogs(() => [envoy]);
  const jar = new CookieJar();
  const SESSION = `faults-session-${randomSecret(8)}`;
  let user; // the code-flow grant: {tokens}
  let robot; // a client_credentials token response
  let latestRefresh;
  const userIdentity = () => ({ sub: m.user.subject, client_id: "faults-app", iss: origin });
  const robotIdentity = () => ({ sub: m.robot.client_id, client_id: m.robot.client_id, iss: origin });
  const withSession = { "mcp-session-id": SESSION };

  /** Envoy's own answer to a request it could not forward, passed through the filter untouched. */
  function assertEnvoyUpstreamError({ res, seen }, status, note) {
    assert.equal(res.status, status, `${note}: ${res.status} ${res.body}`);
    assert.equal(seen, undefined, `${note}: the echo backend is down, yet recorded the request`);
    assert.match(res.headers["content-type"] ?? "", /^text\/plain/, `${note}: Envoy's local reply`);
    assert.match(res.body, /^upstream connect error or disconnect\/reset before headers\./, `${note}: body ${res.body}`);
    assert.equal(res.headers["www-authenticate"], undefined, `${note}: no challenge on an upstream error`);
  }

  /** What the filter itself answers whatever the backend's state: 401 without or with a bad token, 404 for another identity's session. */
  async function assertFilterStillRefuses(note) {
    const none = await callMcp(origin, echo, undefined);
    assert.equal(none.seen, undefined);
    assert.equal(none.res.status, 401, `${note}: no token: ${none.res.status} ${none.res.body}`);
    assertChallenge(none.res.headers["www-authenticate"], { resource_metadata: `${origin}/.well-known/oauth-protected-resource/mcp`, scope: SCOPE }, `${note}: no token`);
    assertInvalidToken(await callMcp(origin, echo, tamperSignature(user.tokens.access_token)), origin, "The access token signature is invalid", `${note}: forged token`);
    // The session was created under the user's identity: the robot's valid token may not use it.
    const other = await callMcp(origin, echo, robot.access_token, withSession);
    assert.equal(other.seen, undefined, `${note}: another identity's session request reached the backend`);
    assert.equal(other.res.status, 404, `${note}: another identity's session: ${other.res.status} ${other.res.body}`);
    assert.equal(other.res.json?.error?.code, -32001, other.res.body);
  }

  before(async () => {
    m = await authServerMaterial();
    echo = await startEcho();
    backendPort = echo.port;
    envoy = await startEnvoy({
      backendPort,
      envKeyValues: m.envKeyValues,
      pluginConfig: ({ origin }) => ({ resource: `${origin}/mcp`, routes: [{ prefix: "/mcp", scopes: [SCOPE] }], authorization_server: authServer(m) }),
    });
    origin = envoy.origin;
    resource = `${origin}/mcp`;
  });
  after(async () => {
    await envoy?.stop();
    await echo?.stop();
    await new Promise((r) => (garbage ? garbage.close(() => r()) : r()));
  });

  T("before: a user's code-flow token and a robot's token pass; the user opens a session", async () => {
    user = await codeFlow(origin, resource, { jar, user: m.user });
    assert.deepEqual(user.pages, ["signin", "consent"]);
    latestRefresh = user.tokens.refresh_token;
    robot = await clientCredentials(origin, m, resource);
    assertForwarded(await callMcp(origin, echo, user.tokens.access_token, withSession), userIdentity(), "user token, new session");
    assertForwarded(await callMcp(origin, echo, robot.access_token), robotIdentity(), "robot token");
    await assertFilterStillRefuses("backend up");
  });

  T("backend down (connection refused): valid requests get Envoy's 503; the filter still refuses what it refused; the authorization server keeps working", async () => {
    await echo.stop();
    const allowedBefore = await envoy.counter("mcp_oauth.requests.allowed");
    assertEnvoyUpstreamError(await callMcp(origin, echo, user.tokens.access_token, withSession), 503, "user token, own session, backend down");
    assertEnvoyUpstreamError(await callMcp(origin, echo, robot.access_token), 503, "robot token, backend down");
    assert.equal(await envoy.counter("mcp_oauth.requests.allowed"), allowedBefore + 2, "both were allowed by the filter");
    await assertFilterStillRefuses("backend down");
    // The authorization server lives in the filter: refresh, client_credentials and a signed-in
    // browser (consent only) do not need the backend.
    const refreshed = await refreshOk(origin, latestRefresh, { note: "refresh with the backend down" });
    latestRefresh = refreshed.refresh_token;
    user.refreshedAccess = refreshed.access_token;
    await clientCredentials(origin, m, resource);
    const again = await codeFlow(origin, resource, { jar, user: m.user });
    assert.deepEqual(again.pages, ["consent"], "still signed in: no sign-in page");
  });

  T("backend answering garbage: Envoy's 502 passes through; the filter still refuses what it refused", async () => {
    // A raw TCP server on the backend's port that answers every request with a broken response.
    garbage = net.createServer((sock) => {
      sock.on("error", () => {});
      sock.once("data", () => sock.end("HTTP/1.1 200 OK\r\nContent-Length: not-a-number\r\n\r\n"));
    });
    await new Promise((resolve, reject) => {
      garbage.once("error", reject);
      garbage.listen(backendPort, "127.0.0.1", resolve);
    });
    assertEnvoyUpstreamError(await callMcp(origin, echo, user.tokens.access_token, withSession), 502, "user token, garbage backend");
    await assertFilterStillRefuses("garbage backend");
    await new Promise((r) => garbage.close(() => r()));
    garbage = undefined;
  });

  T("backend back: the same tokens, the rotated refresh token and the session work; nothing was lost", async () => {
    echo = await startEcho({ port: backendPort });
    assertForwarded(await callMcp(origin, echo, user.tokens.access_token, withSession), userIdentity(), "the user's first token, own session");
    assertForwarded(await callMcp(origin, echo, user.refreshedAccess), userIdentity(), "the token refreshed during the outage");
    assertForwarded(await callMcp(origin, echo, robot.access_token), robotIdentity(), "the robot's token");
    const next = await refreshOk(origin, latestRefresh, { note: "refresh token issued during the outage" });
    assertForwarded(await callMcp(origin, echo, next.access_token, withSession), userIdentity(), "token refreshed after the outage, own session");
    await assertFilterStillRefuses("backend back");
  });
});

// ---------------------------------------------------------------- Envoy restart

describe("Envoy restart: same config and keys, new process", () => {
  let m, echo, envoy, origin, resource, listenerPort, pluginConfig, oldPid;
  let oldLog = "";
  const T = testWithLogs(
    () => [envoy],
    () => (oldLog ? `Envoy before the restart:\n${oldLog}` : undefined),
  );
  const jar = new CookieJar();
  const before_ = {}; // what the old process issued
  const userIdentity = (client_id = "faults-app") => ({ sub: m.user.subject, client_id, iss: origin });
  const start = () => startEnvoy({ pluginConfig, listenerPort, backendPort: echo.port, envKeyValues: m.envKeyValues });

  before(async () => {
    m = await authServerMaterial();
    echo = await startEcho();
    listenerPort = await freePort();
    origin = `https://localhost:${listenerPort}`;
    resource = `${origin}/mcp`;
    pluginConfig = { resource, routes: [{ prefix: "/mcp", scopes: [SCOPE] }], authorization_server: authServer(m) };
    envoy = await start();
    assert.equal(envoy.origin, origin);
  });
  after(async () => {
    await envoy?.stop();
    await echo?.stop();
  });

  T("before the restart: DCR clients, grants (one rotated once, one rotated twice), a signed-in browser, tokens", async () => {
    // A confidential DCR client for client_credentials, and a public DCR client for the code flow.
    const robotReg = await register(origin, { client_name: "DCR robot", token_endpoint_auth_method: "client_secret_basic", grant_types: ["client_credentials"] });
    assert.equal(robotReg.status, 201, robotReg.body);
    before_.dcrRobot = { client_id: robotReg.json.client_id, secret: robotReg.json.client_secret };
    const appReg = await register(origin, {
      client_name: "DCR app",
      redirect_uris: [REDIRECT],
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
    });
    assert.equal(appReg.status, 201, appReg.body);
    before_.dcrApp = appReg.json.client_id;

    const dcrToken = await tokenRequest(origin, { grant_type: "client_credentials" }, { basic: [before_.dcrRobot.client_id, before_.dcrRobot.secret] });
    before_.dcrRobotToken = assertTokenResponse(dcrToken, { refresh: false, scope: SCOPE, note: "DCR robot" }).access_token;

    // Grant A: the DCR app's, never refreshed. Signs the browser in.
    const a = await codeFlow(origin, resource, { jar, client_id: before_.dcrApp, user: m.user });
    assert.deepEqual(a.pages, ["signin", "consent"]);
    before_.grantA = a.tokens;
    // Grant B: rotated once. Its first refresh token is superseded, the second is current.
    const b = (await codeFlow(origin, resource, { jar, user: m.user })).tokens;
    const b1 = await refreshOk(origin, b.refresh_token, { note: "grant B, rotation 1" });
    before_.grantB = { superseded: b.refresh_token, current: b1.refresh_token };
    // Grant C: rotated twice. Its first refresh token is two generations behind.
    const c = (await codeFlow(origin, resource, { jar, user: m.user })).tokens;
    const c1 = await refreshOk(origin, c.refresh_token, { note: "grant C, rotation 1" });
    const c2 = await refreshOk(origin, c1.refresh_token, { note: "grant C, rotation 2" });
    before_.grantC = { stale: c.refresh_token, current: c2.refresh_token, currentIssuedAt: jwtParts(c2.access_token).claims.iat };
    // Grant D: rotated once, only its current token comes back (the everyday case).
    const d = (await codeFlow(origin, resource, { jar, user: m.user })).tokens;
    before_.grantD = (await refreshOk(origin, d.refresh_token, { note: "grant D, rotation 1" })).refresh_token;

    before_.robotToken = (await clientCredentials(origin, m, resource)).access_token;
    for (const [token, id] of [
      [before_.grantA.access_token, userIdentity(before_.dcrApp)],
      [before_.dcrRobotToken, { sub: before_.dcrRobot.client_id, client_id: before_.dcrRobot.client_id, iss: origin }],
    ]) {
      assertForwarded(await callMcp(origin, echo, token), id, "before the restart");
    }
  });

  T("restart: the old process is gone, a new one serves the same origin", async () => {
    oldPid = envoy.pid;
    oldLog = envoy.logTail(40);
    await envoy.stop();
    assert.ok(envoy.exitInfo, "the old Envoy exited");
    await assert.rejects(request(`${origin}/health`, { timeoutMs: 2000 }), /ECONNREFUSED/, "nothing serves while Envoy is down");
    envoy = await start();
    assert.notEqual(envoy.pid, oldPid);
    assert.equal(envoy.origin, origin);
  });

  T("after the restart: access tokens from before pass", async () => {
    assertForwarded(await callMcp(origin, echo, before_.grantA.access_token), userIdentity(before_.dcrApp), "DCR app's code-flow token");
    assertForwarded(
      await callMcp(origin, echo, before_.dcrRobotToken),
      { sub: before_.dcrRobot.client_id, client_id: before_.dcrRobot.client_id, iss: origin },
      "DCR robot's client_credentials token",
    );
    assertForwarded(await callMcp(origin, echo, before_.robotToken), { sub: m.robot.client_id, client_id: m.robot.client_id, iss: origin }, "configured robot's token");
  });

  T("after the restart: refresh tokens from before refresh, and rotation is enforced from there", async () => {
    const a1 = await refreshOk(origin, before_.grantA.refresh_token, { client_id: before_.dcrApp, note: "grant A after the restart" });
    assertForwarded(await callMcp(origin, echo, a1.access_token), userIdentity(before_.dcrApp), "grant A's new access token");
    await refreshRefused(origin, before_.grantA.refresh_token, "The refresh token was already used; the grant is revoked", {
      client_id: before_.dcrApp,
      note: "grant A's pre-restart token, used twice",
    });
    await refreshRefused(origin, a1.refresh_token, "The grant was revoked", { client_id: before_.dcrApp, note: "grant A after its reuse" });

    const d1 = await refreshOk(origin, before_.grantD, { note: "grant D's current token after the restart" });
    const d2 = await refreshOk(origin, d1.refresh_token, { note: "grant D, next rotation" });
    assertForwarded(await callMcp(origin, echo, d2.access_token), userIdentity(), "grant D's token");
  });

  T("after the restart: DCR clients still work (client_credentials; code flow with the browser still signed in)", async () => {
    const cc = await tokenRequest(origin, { grant_type: "client_credentials" }, { basic: [before_.dcrRobot.client_id, before_.dcrRobot.secret] });
    const j = assertTokenResponse(cc, { refresh: false, scope: SCOPE, note: "DCR robot after the restart" });
    assertForwarded(await callMcp(origin, echo, j.access_token), { sub: before_.dcrRobot.client_id, client_id: before_.dcrRobot.client_id, iss: origin }, "DCR robot's new token");
    const bad = await tokenRequest(origin, { grant_type: "client_credentials" }, { basic: [before_.dcrRobot.client_id, `${before_.dcrRobot.secret}x`] });
    assertOAuthError(bad, 401, "invalid_client", undefined, "DCR robot with a wrong secret");
    const flow = await codeFlow(origin, resource, { jar, client_id: before_.dcrApp, user: m.user });
    assert.deepEqual(flow.pages, ["consent"], "the sign-in session from before the restart holds");
    assertForwarded(await callMcp(origin, echo, flow.tokens.access_token), userIdentity(before_.dcrApp), "DCR app's token after the restart");
  });

  T("after the restart: a superseded refresh token is accepted once, and revoked with its access token when the current one returns", async () => {
    // Nothing in the new process says grant B's first token was rotated: it is adopted...
    const stolen = await refreshOk(origin, before_.grantB.superseded, { note: "grant B's superseded token after the restart" });
    assertForwarded(await callMcp(origin, echo, stolen.access_token), userIdentity(), "the superseded token's access token, for now");
    // ...and the client's current token proves the fork: reuse, the grant and that access token die.
    await refreshRefused(origin, before_.grantB.current, "The refresh token was already used; the grant is revoked", { note: "grant B's current token" });
    assertInvalidToken(await callMcp(origin, echo, stolen.access_token), origin, "The access token was revoked", "the superseded token's access token");
    await refreshRefused(origin, stolen.refresh_token, "The grant was revoked", { note: "the chain of the superseded token" });
  });

  T("after the restart: a token two generations behind is adopted; the current one, issued before that, proves reuse", async (t) => {
    // The current token of grant C was issued before the restart; the rule needs its issue time to
    // be more than the 5 s clock-skew margin before the adoption.
    const waited = Date.now();
    await untilSecondsAfter(before_.grantC.currentIssuedAt, 5);
    t.diagnostic(`waited ${Date.now() - waited} ms for the clock`);
    const stolen = await refreshOk(origin, before_.grantC.stale, { note: "grant C's stale token after the restart" });
    await refreshRefused(origin, before_.grantC.current, "The refresh token was already used; the grant is revoked", { note: "grant C's current token" });
    assertInvalidToken(await callMcp(origin, echo, stolen.access_token), origin, "The access token was revoked", "the stale token's access token");
  });
});

// ---------------------------------------------------------------- signing key rotated by a config reload

describe("signing key rotation by config reload (a new Envoy process with the new config)", () => {
  let m, echo, envoy, origin, resource, listenerPort, oldKey, newKey;
  const T = testWithLogs(() => [envoy]);
  const jar = new CookieJar();
  const OLD_ENV = "MCP_OAUTH_FAULTS_OLD_JWK";
  const NEW_ENV = "MCP_OAUTH_FAULTS_NEW_JWK";
  const issued = {};
  const userIdentity = () => ({ sub: m.user.subject, client_id: "faults-app", iss: origin });
  const robotIdentity = () => ({ sub: m.robot.client_id, client_id: m.robot.client_id, iss: origin });

  /** (Re)start Envoy on the same listener with these signing keys. */
  async function runWith(signingKeys) {
    await envoy?.stop();
    envoy = await startEnvoy({
      listenerPort,
      backendPort: echo.port,
      envKeyValues: { [OLD_ENV]: JSON.stringify(oldKey), [NEW_ENV]: JSON.stringify(newKey) },
      pluginConfig: { resource, routes: [{ prefix: "/mcp", scopes: [SCOPE] }], authorization_server: authServer(m, { signingKeys }) },
    });
  }
  async function publishedKids() {
    const res = await request(`${origin}/oauth/jwks`);
    assert.equal(res.status, 200, res.body);
    return res.json.keys.map((k) => k.kid).sort();
  }

  before(async () => {
    m = await authServerMaterial();
    [oldKey, newKey] = await Promise.all([es256PrivateJwk("old-key"), es256PrivateJwk("new-key")]);
    echo = await startEcho();
    listenerPort = await freePort();
    origin = `https://localhost:${listenerPort}`;
    resource = `${origin}/mcp`;
  });
  after(async () => {
    await envoy?.stop();
    await echo?.stop();
  });

  T("1. the old key signs: a user grant and a robot token", async () => {
    await runWith([{ jwk_env: OLD_ENV }]);
    assert.deepEqual(await publishedKids(), ["old-key"]);
    issued.user = (await codeFlow(origin, resource, { jar, user: m.user })).tokens;
    issued.robot = (await clientCredentials(origin, m, resource)).access_token;
    for (const t of [issued.user.access_token, issued.robot]) assert.equal(jwtParts(t).header.kid, "old-key");
    assertForwarded(await callMcp(origin, echo, issued.user.access_token), userIdentity(), "old-key user token");
  });

  T("2. reload with the new key signing and the old one verify_only: old tokens pass, new tokens use the new key", async () => {
    await runWith([{ jwk_env: NEW_ENV }, { jwk_env: OLD_ENV, verify_only: true }]);
    assert.deepEqual(await publishedKids(), ["new-key", "old-key"]);
    assertForwarded(await callMcp(origin, echo, issued.user.access_token), userIdentity(), "old-key user token after the reload");
    assertForwarded(await callMcp(origin, echo, issued.robot), robotIdentity(), "old-key robot token after the reload");
    const robot = (await clientCredentials(origin, m, resource)).access_token;
    assert.equal(jwtParts(robot).header.kid, "new-key");
    assertForwarded(await callMcp(origin, echo, robot), robotIdentity(), "new-key robot token");
    // The refresh token from phase 1 (sealed, not signed) refreshes into a new-key token.
    const refreshed = await refreshOk(origin, issued.user.refresh_token, { note: "phase-1 refresh token after the reload" });
    assert.equal(jwtParts(refreshed.access_token).header.kid, "new-key");
    assertForwarded(await callMcp(origin, echo, refreshed.access_token), userIdentity(), "new-key user token");
    issued.newUser = refreshed;
    issued.newRobot = robot;
  });

  T("3. reload without the old key: its tokens get 401 invalid_token; new-key tokens and refresh tokens go on", async () => {
    await runWith([{ jwk_env: NEW_ENV }]);
    assert.deepEqual(await publishedKids(), ["new-key"]);
    for (const [t, note] of [
      [issued.user.access_token, "old-key user token"],
      [issued.robot, "old-key robot token"],
    ]) {
      assertInvalidToken(await callMcp(origin, echo, t), origin, "The access token is signed with an unknown key", `${note} after the old key was removed`);
    }
    assertForwarded(await callMcp(origin, echo, issued.newRobot), robotIdentity(), "new-key robot token");
    assertForwarded(await callMcp(origin, echo, issued.newUser.access_token), userIdentity(), "new-key user token");
    const again = await refreshOk(origin, issued.newUser.refresh_token, { note: "refresh after the old key was removed" });
    assertForwarded(await callMcp(origin, echo, again.access_token), userIdentity(), "refreshed after the old key was removed");
  });
});
