// Issuers with `remote_jwks`: keys fetched through Envoy's `jwks` cluster from a test JWKS server
// that can rotate keys, go down, or hang.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEcho, startJwks } from "./lib/backends.mjs";
import { request } from "./lib/http.mjs";
import { waitFor, sleep } from "./lib/procs.mjs";
import { assertChallenge, assertOAuthError } from "./lib/assertions.mjs";
import { keyPair, mint } from "./lib/tokens.mjs";

const ISS = "https://remote.issuer.test";

/** Sleep until `ms` after `t` (used only to let a configured min-refetch interval pass). */
const sleepUntil = async (at) => {
  const d = at - Date.now();
  if (d > 0) await sleep(d);
};

function setup({ prepare, jwksKeys, remote, startState = "up", concurrency }) {
  const ctx = {};
  before(async () => {
    if (prepare) await prepare();
    ctx.echo = await startEcho();
    ctx.jwks = await startJwks(jwksKeys());
    if (startState === "down") await ctx.jwks.stop();
    if (startState === "hang") ctx.jwks.setHang(true);
    ctx.envoy = await startEnvoy({
      backendPort: ctx.echo.port,
      jwksPort: ctx.jwks.port,
      concurrency,
      pluginConfig: ({ origin }) => ({
        resource: `${origin}/mcp`,
        authorization_servers: [ISS],
        issuers: [{ issuer: ISS, remote_jwks: { uri: ctx.jwks.uri, cluster: "jwks", ...remote } }],
        routes: [{ prefix: "/mcp" }],
      }),
    });
    ctx.origin = ctx.envoy.origin;
  });
  after(async () => {
    await ctx.envoy?.stop();
    await ctx.jwks?.stop();
    await ctx.echo?.stop();
  });
  ctx.T = (name, fn) =>
    test(name, (t) =>
      withLog(ctx.envoy, () => fn(t), () => `JWKS server: ${ctx.jwks.fetches} answered fetches, requests: ${JSON.stringify(ctx.jwks.log.map((l) => [l.url, l.at]))}`),
    );
  ctx.call = async (token) => {
    const id = randomUUID();
    const headers = { "x-test-id": id };
    if (token) headers.authorization = `Bearer ${token}`;
    const t0 = Date.now();
    const res = await request(`${ctx.origin}/mcp`, { headers, timeoutMs: 15000 });
    return { res, ms: Date.now() - t0, seen: ctx.echo.find((r) => r.headers["x-test-id"] === id) };
  };
  ctx.token = (key, extra = {}) => mint(key, { iss: ISS, aud: `${ctx.origin}/mcp`, sub: "remote-user", ...extra });
  return ctx;
}

function assertAllowed({ res, seen }, note = "") {
  assert.equal(res.status, 200, `${note}: expected 200, got ${res.status} ${res.body} ${res.headers["www-authenticate"] ?? ""}`);
  assert.ok(seen, `${note}: backend did not see the request`);
  assert.equal(seen.headers["x-mcp-subject"], "remote-user");
  assert.equal(seen.headers["x-mcp-issuer"], ISS);
  assert.equal(seen.headers.authorization, undefined);
}

function assertUnknownKey(ctx, { res, seen }) {
  assert.equal(seen, undefined);
  assertOAuthError(res, 401, "invalid_token", "The access token is signed with an unknown key");
  assertChallenge(res.headers["www-authenticate"], {
    error: "invalid_token",
    error_description: "The access token is signed with an unknown key",
    resource_metadata: `${ctx.origin}/.well-known/oauth-protected-resource/mcp`,
  });
}

function assertKeysUnavailable({ res, seen }) {
  assert.equal(seen, undefined, "must not reach the backend");
  assertOAuthError(res, 503, "temporarily_unavailable", /\S/);
  assert.equal(res.headers["retry-after"], "5");
  assert.equal(res.headers["www-authenticate"], undefined);
}

describe("remote JWKS, server up", () => {
  let k1, k2, k3;
  const ctx = setup({
    prepare: async () => {
      [k1, k2, k3] = await Promise.all([keyPair("ES256", "k1"), keyPair("RS256", "k2"), keyPair("ES256", "k3")]);
    },
    jwksKeys: () => [k1.publicJwk],
    remote: { min_refetch_interval_seconds: 1, refresh_interval_seconds: 300, startup_wait_ms: 3000, timeout_ms: 1500 },
    // Each Wasm VM keeps its own key set. With one worker, which VM a request reaches is certain, so
    // "a key seen once stays cached" is deterministic (with two, a request may land on the other VM).
    concurrency: 1,
  });

  ctx.T("a valid token passes once keys were fetched through cluster jwks", async (t) => {
    const r = await ctx.call(await ctx.token(k1));
    assertAllowed(r, "k1 token");
    assert.ok(ctx.jwks.fetches >= 1, "the JWKS server was never asked");
    const fetch = ctx.jwks.log.find((l) => l.url === "/jwks.json");
    assert.equal(fetch.method, "GET");
    assert.equal(fetch.headers.host, `127.0.0.1:${ctx.jwks.port}`);
    const stats = await ctx.envoy.stats();
    assert.ok((stats["mcp_oauth.jwks.fetch_ok"] ?? 0) >= 1, JSON.stringify(stats));
    const health = await request(`${ctx.origin}/health`);
    assert.equal(health.status, 200, health.body);
    assert.equal(health.json.keys_loaded, true);
    t.diagnostic(`JWKS fetches at startup (a VM without keys fetches at once): ${ctx.jwks.fetches}`);
  });

  ctx.T("unknown kid triggers a refetch (rate limited), still unknown → 401 invalid_token", async () => {
    await sleepUntil(ctx.jwks.lastRequestAt + 1100); // past min_refetch_interval_seconds
    const before = ctx.jwks.fetches;
    const r = await ctx.call(await ctx.token(k2));
    assertUnknownKey(ctx, r);
    assert.ok(ctx.jwks.fetches > before, `expected a refetch: fetches ${before} → ${ctx.jwks.fetches}`);
  });

  ctx.T("a key added to the JWKS server is picked up by the next token that names it", async () => {
    ctx.jwks.setKeys([k1.publicJwk, k2.publicJwk]);
    await sleepUntil(ctx.jwks.lastRequestAt + 1100);
    const before = ctx.jwks.fetches;
    for (let i = 0; i < 3; i++) assertAllowed(await ctx.call(await ctx.token(k2)), `k2 token #${i}`);
    assert.ok(ctx.jwks.fetches > before, "k2 verified without a refetch?");
    assertAllowed(await ctx.call(await ctx.token(k1)), "k1 still valid");
  });

  ctx.T("JWKS server stopped: cached keys keep working; unknown kid → 401 and fetch_failed counted", async () => {
    await ctx.jwks.stop();
    for (let i = 0; i < 4; i++) {
      assertAllowed(await ctx.call(await ctx.token(k1)), `k1 #${i} with JWKS down`);
      assertAllowed(await ctx.call(await ctx.token(k2)), `k2 #${i} with JWKS down`);
    }
    const failedBefore = (await ctx.envoy.stats())["mcp_oauth.jwks.fetch_failed"] ?? 0;
    await sleep(1100); // past min_refetch_interval_seconds
    const r = await ctx.call(await ctx.token(k3));
    assertUnknownKey(ctx, r);
    assert.ok(r.ms < 3000, `unknown kid with the JWKS host down took ${r.ms} ms`);
    await waitFor(async () => ((await ctx.envoy.stats())["mcp_oauth.jwks.fetch_failed"] ?? 0) > failedBefore, {
      timeoutMs: 3000,
      what: "mcp_oauth.jwks.fetch_failed to increase",
    });
    // The failed fetch did not drop the good keys.
    assertAllowed(await ctx.call(await ctx.token(k1)), "k1 after a failed refetch");
    const health = await request(`${ctx.origin}/health`);
    assert.equal(health.status, 200, health.body);
  });

  ctx.T("a client that gives up while its request waits for a refetch does not wedge the key fetcher", async () => {
    ctx.jwks.setHang(true);
    // Counted before the restart: a retry scheduled by earlier failures may be the fetch that
    // the waiting request joins (there is at most one fetch in flight per VM).
    const seenBefore = ctx.jwks.log.length;
    await ctx.jwks.start();
    await sleep(1100); // past min_refetch_interval_seconds
    const k4 = await keyPair("ES256", "k4");
    // Unknown kid → the request waits for a refetch that hangs; the client hangs up after 300 ms.
    await assert.rejects(
      request(`${ctx.origin}/mcp`, { headers: { authorization: `Bearer ${await ctx.token(k4)}` }, timeoutMs: 300 }),
      /timed out/,
    );
    await waitFor(() => ctx.jwks.log.length > seenBefore, { timeoutMs: 2000, what: "the refetch to reach the JWKS server" });
    // The JWKS host answers again, now with k4.
    ctx.jwks.setHang(false);
    ctx.jwks.setKeys([k1.publicJwk, k2.publicJwk, k4.publicJwk]);
    await sleep(1600); // the hung fetch times out (timeout_ms 1500) and the refetch limit has passed
    const r = await ctx.call(await ctx.token(k4));
    assertAllowed(r, `k4 after an abandoned refetch (took ${r.ms} ms)`);
  });
});

describe("remote JWKS, two workers: one fetch serves every worker's VM", () => {
  let k1, k5;
  const ctx = setup({
    prepare: async () => {
      [k1, k5] = await Promise.all([keyPair("ES256", "w-1"), keyPair("ES256", "w-5")]);
    },
    jwksKeys: () => [k1.publicJwk],
    remote: { min_refetch_interval_seconds: 1, refresh_interval_seconds: 300, startup_wait_ms: 4000, timeout_ms: 2000 },
    concurrency: 2,
  });

  ctx.T("a new key named on both workers at once is fetched once, and every request gets it", async (t) => {
    for (let i = 0; i < 6; i++) assertAllowed(await ctx.call(await ctx.token(k1)), `k1 token #${i}`);
    const atStart = ctx.jwks.fetches;
    await sleepUntil(ctx.jwks.lastRequestAt + 1100); // past min_refetch_interval_seconds
    ctx.jwks.setKeys([k1.publicJwk, k5.publicJwk]);
    ctx.jwks.setDelay(600); // the fetch is still running when the other worker asks
    const before = ctx.jwks.fetches;
    const token = await ctx.token(k5);
    const results = await Promise.all(Array.from({ length: 16 }, () => ctx.call(token)));
    results.forEach((r, i) => assertAllowed(r, `k5 token, connection ${i}`));
    // Each request had its own connection; both workers must have served some, or the test
    // proves nothing.
    const stats = await ctx.envoy.stats("worker_");
    const perWorker = [0, 1].map((w) =>
      Object.entries(stats)
        .filter(([name]) => name.startsWith("listener.") && name.endsWith(`.worker_${w}.downstream_cx_total`))
        .reduce((sum, [, v]) => sum + v, 0),
    );
    assert.ok(perWorker.every((n) => n > 0), `connections per worker: ${perWorker}`);
    assert.equal(ctx.jwks.fetches - before, 1, "one fetch for both workers");
    t.diagnostic(`fetches: ${atStart} at start (each VM without keys fetches), 1 for the new key; connections per worker ${perWorker}`);
  });
});

describe("remote JWKS, server hanging then down at Envoy start", () => {
  let k1;
  const ctx = setup({
    prepare: async () => {
      k1 = await keyPair("ES256", "late-1");
    },
    jwksKeys: () => [k1.publicJwk],
    startState: "hang",
    remote: { startup_wait_ms: 1000, timeout_ms: 4000, min_refetch_interval_seconds: 1, refresh_interval_seconds: 10 },
  });

  ctx.T("while the first fetch hangs: the request waits startup_wait_ms, then 503 JSON", async () => {
    const r = await ctx.call(await ctx.token(k1));
    assertKeysUnavailable(r);
    assert.ok(r.ms >= 900 && r.ms < 3000, `waited ${r.ms} ms, expected about startup_wait_ms = 1000`);
  });

  ctx.T("a POST with a body, held while the first fetch hangs, never reaches the backend", async () => {
    const { randomUUID } = await import("node:crypto");
    const id = randomUUID();
    const res = await request(`${ctx.origin}/mcp`, {
      method: "POST",
      headers: { authorization: `Bearer ${await ctx.token(k1)}`, "content-type": "application/json", "x-test-id": id },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping", padding: "x".repeat(20000) }),
      timeoutMs: 15000,
    });
    assertKeysUnavailable({ res, seen: ctx.echo.find((r) => r.headers["x-test-id"] === id) });
  });

  ctx.T("/health says 503 starting while no key set has loaded", async () => {
    const h = await request(`${ctx.origin}/health`);
    assert.equal(h.status, 503, h.body);
    assert.deepEqual({ status: h.json.status, keys_loaded: h.json.keys_loaded }, { status: "starting", keys_loaded: false });
  });

  ctx.T("JWKS host down (connection refused): 503 JSON, without waiting the full startup_wait_ms", async () => {
    await ctx.jwks.stop();
    await sleep(1100); // past min_refetch_interval_seconds, so the request may start a fetch of its own
    const r = await ctx.call(await ctx.token(k1));
    assertKeysUnavailable(r);
    assert.ok(r.ms < 1500, `took ${r.ms} ms`);
    const stats = await ctx.envoy.stats();
    assert.ok((stats["mcp_oauth.requests.denied.keys_unavailable"] ?? 0) >= 2, JSON.stringify(stats));
    assert.ok((stats["mcp_oauth.jwks.fetch_failed"] ?? 0) >= 1, JSON.stringify(stats));
  });

  ctx.T("JWKS host back: tokens pass again (fetched on demand), /health 200", async (t) => {
    ctx.jwks.setHang(false);
    await ctx.jwks.start();
    const t0 = Date.now();
    let last;
    await waitFor(
      async () => {
        last = await ctx.call(await ctx.token(k1));
        return last.res.status === 200;
      },
      { timeoutMs: 10000, intervalMs: 200, what: "a 200 after the JWKS host came back" },
    ).catch((e) => {
      e.message += ` (last: ${last?.res.status} ${last?.res.body})`;
      throw e;
    });
    assertAllowed(last, "after recovery");
    t.diagnostic(`recovered after ${Date.now() - t0} ms`);
    // Every VM has its own keys: /health may hit one that has not loaded yet; wait for it bounded.
    await waitFor(async () => (await request(`${ctx.origin}/health`)).status === 200, { timeoutMs: 12000, intervalMs: 200, what: "/health 200" });
  });
});
