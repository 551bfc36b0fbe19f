#!/usr/bin/env node
// Soak test behind `make soak` (not part of `make test`): one real Envoy with the filter and its
// built-in authorization server, in front of a minimal backend, all on 127.0.0.1, driven by this
// script at a fixed concurrency for a fixed number of requests. It checks that
//  - every request gets the status its kind must get (no unexpected status at all);
//  - Envoy's resident memory (VmRSS from /proc/<pid>/status, sampled during the run) stays within
//    SOAK_RSS_TOLERANCE (10%) of its value after the warm-up;
//  - revocations made mid-run still hold at the end.
//
// Request kinds (fixed proportions, interleaved):
//   valid     POST /mcp with a token the authorization server issued (client_credentials tokens
//             issued during the run, and each lane's latest refreshed token)            → 200
//   expired   a token signed with the server's own key, expired 10 minutes ago          → 401
//   forged    the server's kid and claims, signed with another key; or a tampered token  → 401
//   missing   no Authorization header                                                    → 401
//   cc        POST /oauth/token grant_type=client_credentials (Basic auth)               → 200
//   refresh   POST /oauth/token grant_type=refresh_token: each of the SOAK_CONCURRENCY lanes
//             owns one code-flow grant and rotates it                                    → 200
//   revoked   a client_credentials token: 200 before the mid-run revocation, 401 after
// Mid-run (after half the requests) the driver lets in-flight requests finish, revokes that
// access token and the refresh token of a separate grant, then goes on. At the end: the revoked
// access token and the revoked grant's last access token get 401, its refresh token 400.
//
// Environment (all optional except the first two, which `make soak` sets):
//   ENVOY_BIN, MCP_OAUTH_WASM
//   SOAK_REQUESTS      total requests (default 200000)
//   SOAK_CONCURRENCY   requests in flight (default 64)
//   SOAK_WARMUP        fraction of the requests before the memory baseline (default 0.2)
//   SOAK_SAMPLE_MS     memory sampling period (default 2000)
//   SOAK_RSS_TOLERANCE allowed drift of VmRSS from the baseline (default 0.10)
//   SOAK_ENVOY_CONCURRENCY  Envoy worker threads (default 2)
// Exit status 0 when every check passed, 1 otherwise.
import http from "node:http";
import https from "node:https";
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { importJWK } from "jose";
import { startEnvoy } from "../wasm-tests/lib/envoy.mjs";
import { caPem, request } from "../wasm-tests/lib/http.mjs";
import { keyPair, mint, tamperPayload } from "../wasm-tests/lib/tokens.mjs";
import { CookieJar, authServerMaterial, basicAuth, codeFlow, sleep } from "../wasm-tests/lib/authz.mjs";

const env = process.env;
const TOTAL = Number(env.SOAK_REQUESTS ?? 200000);
const CONCURRENCY = Number(env.SOAK_CONCURRENCY ?? 64);
const WARMUP = Number(env.SOAK_WARMUP ?? 0.2);
const SAMPLE_MS = Number(env.SOAK_SAMPLE_MS ?? 2000);
const RSS_TOLERANCE = Number(env.SOAK_RSS_TOLERANCE ?? 0.1);
const ENVOY_CONCURRENCY = Number(env.SOAK_ENVOY_CONCURRENCY ?? 2);
for (const [name, v] of Object.entries({ TOTAL, CONCURRENCY, WARMUP, SAMPLE_MS, RSS_TOLERANCE, ENVOY_CONCURRENCY })) {
  if (!Number.isFinite(v) || v < 0) throw new Error(`bad setting ${name}=${v}`);
}

const SCOPE = "mcp:tools";
const REDIRECT = "http://127.0.0.1:45690/callback"; // never called: the code is read from the 302
// Out of every 100 requests.
const MIX = { valid: 40, expired: 12, forged: 12, missing: 10, cc: 8, refresh: 8, revoked: 10 };

/** Refuse to send load anywhere but this machine's loopback. */
function assertLoopback(url) {
  const host = new URL(url).hostname;
  if (!["127.0.0.1", "localhost", "[::1]"].includes(host)) throw new Error(`soak target ${url} is not loopback`);
}

/** The backend: answers every request 200 with a small JSON body; records nothing. */
function startBackend() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json", "content-length": 11 });
      res.end('{"ok":true}');
    });
  });
  server.keepAliveTimeout = 60000;
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ port: server.address().port, stop: () => new Promise((r) => server.close(r)) })));
}

function rssKb(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

async function main() {
  const m = await authServerMaterial();
  const backend = await startBackend();
  const envoy = await startEnvoy({
    backendPort: backend.port,
    envKeyValues: m.envKeyValues,
    concurrency: ENVOY_CONCURRENCY,
    logLevel: "warn", // a denial is logged at info; 100k log lines are not what is measured
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      routes: [{ prefix: "/mcp", scopes: [SCOPE] }],
      authorization_server: {
        signing_keys: [{ jwk_env: m.jwkEnv }],
        sealing_keys: [{ kid: "s1", value_base64url: m.sealing }],
        scopes: [{ name: SCOPE, description: "Use the tools" }],
        users: [m.userEntry()],
        clients: [m.robotEntry({ scopes: [SCOPE] }), { client_id: "soak-app", client_name: "Soak App", redirect_uris: [REDIRECT] }],
        // The soak measures the filter, not its rate limits.
        rate_limits: { token_per_minute_per_client: 1e9, token_per_minute_per_address: 1e9 },
      },
    }),
  });
  const origin = envoy.origin;
  const resource = `${origin}/mcp`;
  assertLoopback(origin);
  const stopAll = async () => {
    await envoy.stop();
    await backend.stop();
  };

  try {
    // ------------------------------------------------------------ material
    const robotAuth = basicAuth(m.robot.client_id, m.robot.secret);
    const ccToken = async () => {
      const r = await request(`${origin}/oauth/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", authorization: robotAuth },
        body: "grant_type=client_credentials",
      });
      if (r.status !== 200) throw new Error(`client_credentials: ${r.status} ${r.body}`);
      return r.json.access_token;
    };
    const jar = new CookieJar();
    const grant = async () => (await codeFlow(origin, resource, { jar, client_id: "soak-app", redirect: REDIRECT, scope: SCOPE, user: m.user })).tokens;
    process.stdout.write(`setting up: ${CONCURRENCY + 1} code-flow grants, tokens ... `);
    const lanes = [];
    for (let i = 0; i < CONCURRENCY; i++) {
      const g = await grant();
      lanes.push({ refresh: g.refresh_token, access: g.access_token });
    }
    const victimGrant = await grant();
    const victimToken = await ccToken();
    const validPool = [];
    for (let i = 0; i < 32; i++) validPool.push(await ccToken());
    const asKey = { alg: "ES256", kid: m.kid, privateKey: await importJWK(m.jwk, "ES256") };
    const otherKey = await keyPair("ES256", m.kid); // same kid, wrong key
    const t = Math.floor(Date.now() / 1000);
    const claims = () => ({ iss: origin, aud: resource, sub: "soak-user", client_id: "soak-app", scope: SCOPE, jti: randomUUID() });
    const expired = [];
    const forged = [];
    for (let i = 0; i < 20; i++) {
      expired.push(await mint(asKey, { ...claims(), iat: t - 1500, exp: t - 600 }, { typ: "at+jwt" }));
      forged.push(await mint(otherKey, claims(), { typ: "at+jwt" }));
      forged.push(tamperPayload(validPool[i], { scope: `${SCOPE} admin` }));
    }
    console.log("done");

    // ------------------------------------------------------------ the driver
    const agent = new https.Agent({ ca: caPem(), keepAlive: true, maxSockets: CONCURRENCY, family: 4 });
    const { port } = new URL(origin);
    const send = (method, path, headers, body) =>
      new Promise((resolve, reject) => {
        const req = https.request({ host: "localhost", servername: "localhost", port, method, path, headers, agent, family: 4 }, (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", reject);
        });
        req.setTimeout(30000, () => req.destroy(new Error(`${method} ${path} timed out`)));
        req.on("error", reject);
        req.end(body);
      });
    const MCP_BODY = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" });
    const mcp = (token) =>
      send("POST", "/mcp", {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "content-length": Buffer.byteLength(MCP_BODY),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      }, MCP_BODY);
    const form = (body, authorization) =>
      send("POST", "/oauth/token", {
        "content-type": "application/x-www-form-urlencoded",
        "content-length": Buffer.byteLength(body),
        ...(authorization ? { authorization } : {}),
      }, body);

    const schedule = [];
    for (const [kind, n] of Object.entries(MIX)) for (let i = 0; i < n; i++) schedule.push(kind);
    for (let i = schedule.length - 1; i > 0; i--) {
      const j = (i * 7919) % (i + 1); // a fixed shuffle: the same interleaving every run
      [schedule[i], schedule[j]] = [schedule[j], schedule[i]];
    }
    const counts = Object.fromEntries(Object.keys(MIX).map((k) => [k, { sent: 0, unexpected: 0 }]));
    const unexpected = []; // the first few, for the report
    let revoked = false;
    const note = (kind, what) => {
      counts[kind].unexpected++;
      if (unexpected.length < 10) unexpected.push(`${kind}: ${what}`);
    };
    const expect401 = (kind, res, description) => {
      if (res.status !== 401) return note(kind, `${res.status} ${res.body.slice(0, 200)}`);
      if (description && !res.body.includes(description)) note(kind, `401 without "${description}": ${res.body.slice(0, 200)}`);
    };

    let pick = 0;
    async function one(kind, lane) {
      counts[kind].sent++;
      switch (kind) {
        case "valid": {
          const token = pick++ % 2 ? validPool[pick % validPool.length] : lane.access;
          const res = await mcp(token);
          if (res.status !== 200) note(kind, `${res.status} ${res.body.slice(0, 200)}`);
          return;
        }
        case "expired":
          return expect401(kind, await mcp(expired[pick++ % expired.length]), "The access token expired");
        case "forged":
          return expect401(kind, await mcp(forged[pick++ % forged.length]), "The access token signature is invalid");
        case "missing": {
          const res = await mcp(undefined);
          if (res.status !== 401 || !/^Bearer .*resource_metadata="/.test(res.headers["www-authenticate"] ?? "")) note(kind, `${res.status} ${res.headers["www-authenticate"]}`);
          return;
        }
        case "revoked": {
          const res = await mcp(victimToken);
          if (revoked) return expect401(kind, res, "The access token was revoked");
          if (res.status !== 200) note(kind, `before the revocation: ${res.status} ${res.body.slice(0, 200)}`);
          return;
        }
        case "cc": {
          const res = await form("grant_type=client_credentials", robotAuth);
          if (res.status !== 200) return note(kind, `${res.status} ${res.body.slice(0, 200)}`);
          validPool[pick++ % validPool.length] = JSON.parse(res.body).access_token;
          return;
        }
        case "refresh": {
          const res = await form(new URLSearchParams({ grant_type: "refresh_token", refresh_token: lane.refresh, client_id: "soak-app" }).toString());
          if (res.status !== 200) return note(kind, `${res.status} ${res.body.slice(0, 200)}`);
          const j = JSON.parse(res.body);
          lane.refresh = j.refresh_token;
          lane.access = j.access_token;
          return;
        }
        default:
          throw new Error(kind);
      }
    }

    // Memory samples: [{at (requests done), ms, rssKb, allocated, heap}].
    const samples = [];
    let done = 0;
    const t0 = performance.now();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const s = { at: done, ms: Math.round(performance.now() - t0), rssKb: rssKb(envoy.pid) };
        try {
          const mem = JSON.parse((await request(`http://127.0.0.1:${envoy.adminPort}/memory`, { timeoutMs: 5000 })).body);
          s.allocated = Number(mem.allocated);
          s.heap = Number(mem.heap_size);
        } catch {
          /* the admin answer is optional in the report */
        }
        samples.push(s);
        await sleep(SAMPLE_MS);
      }
    })();

    let next = 0;
    let inFlight = 0;
    let gate = null; // a promise while the driver drains for the revocation
    const midpoint = Math.floor(TOTAL / 2);
    const latencies = new Float64Array(TOTAL);
    const errors = [];
    async function runLane(lane) {
      for (;;) {
        if (gate) await gate;
        if (next >= TOTAL) return;
        const i = next++;
        if (i === midpoint) {
          let open;
          gate = new Promise((r) => (open = r));
          // Revoke through the revocation endpoint (RFC 7009), then let everyone go on.
          await (async () => {
            while (inFlight > 0) await sleep(5);
            const a = await send("POST", "/oauth/revoke", { "content-type": "application/x-www-form-urlencoded", authorization: robotAuth }, new URLSearchParams({ token: victimToken }).toString());
            const b = await send("POST", "/oauth/revoke", { "content-type": "application/x-www-form-urlencoded" }, new URLSearchParams({ token: victimGrant.refresh_token, client_id: "soak-app" }).toString());
            if (a.status !== 200 || b.status !== 200) throw new Error(`revocation: ${a.status} ${b.status}`);
            revoked = true;
          })().finally(() => {
            gate = null;
            open();
          });
        }
        const kind = schedule[i % schedule.length];
        inFlight++;
        const start = performance.now();
        try {
          await one(kind, lane);
        } catch (e) {
          note(kind, `error ${e.message}`);
          if (errors.length < 5) errors.push(e);
        } finally {
          inFlight--;
          latencies[i] = performance.now() - start;
          done++;
        }
      }
    }

    console.log(`soak: ${TOTAL} requests, concurrency ${CONCURRENCY}, Envoy pid ${envoy.pid} (--concurrency ${ENVOY_CONCURRENCY}) at ${origin}`);
    const progress = setInterval(() => {
      const s = samples.at(-1);
      console.log(`  ${done}/${TOTAL} requests, ${Math.round(done / ((performance.now() - t0) / 1000))} req/s, VmRSS ${s ? (s.rssKb / 1024).toFixed(1) : "?"} MiB`);
    }, 15000);
    await Promise.all(lanes.map(runLane));
    const seconds = (performance.now() - t0) / 1000;
    clearInterval(progress);
    sampling = false;
    await sampler;
    samples.push({ at: done, ms: Math.round(seconds * 1000), rssKb: rssKb(envoy.pid) });
    agent.destroy();

    // ------------------------------------------------------------ end checks
    const endChecks = [];
    const check = (name, ok, detail) => endChecks.push({ name, ok, detail });
    const r1 = await request(`${origin}/mcp`, { method: "POST", headers: { authorization: `Bearer ${victimToken}`, "content-type": "application/json" }, body: MCP_BODY });
    check("the access token revoked mid-run is refused", r1.status === 401 && r1.body.includes("revoked"), `${r1.status} ${r1.body}`);
    const r2 = await request(`${origin}/mcp`, { method: "POST", headers: { authorization: `Bearer ${victimGrant.access_token}`, "content-type": "application/json" }, body: MCP_BODY });
    check("the access token of the grant revoked mid-run is refused", r2.status === 401, `${r2.status} ${r2.body}`);
    const r3 = await request(`${origin}/oauth/token`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: victimGrant.refresh_token, client_id: "soak-app" }).toString(),
    });
    check("the refresh token revoked mid-run is refused", r3.status === 400 && r3.json?.error === "invalid_grant", `${r3.status} ${r3.body}`);
    const r4 = await request(`${origin}/mcp`, { method: "POST", headers: { authorization: `Bearer ${lanes[0].access}`, "content-type": "application/json" }, body: MCP_BODY });
    check("a lane's latest token still passes", r4.status === 200, `${r4.status} ${r4.body}`);
    const stats = await envoy.stats();

    // ------------------------------------------------------------ memory
    const warm = samples.filter((s) => s.at >= TOTAL * WARMUP);
    const baseline = warm[0]?.rssKb;
    const drift = warm.map((s) => s.rssKb / baseline - 1);
    const maxDrift = drift.length ? Math.max(...drift.map(Math.abs)) : NaN;
    const memoryOk = warm.length >= 3 && maxDrift <= RSS_TOLERANCE;

    // ------------------------------------------------------------ report
    const unexpectedTotal = Object.values(counts).reduce((a, c) => a + c.unexpected, 0);
    const sorted = Array.from(latencies).sort((a, b) => a - b);
    const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))].toFixed(1);
    const mib = (kb) => (kb / 1024).toFixed(1);
    const lines = [];
    lines.push("", "## Soak report", "");
    lines.push(`requests ${done} in ${seconds.toFixed(1)} s: ${Math.round(done / seconds)} req/s at concurrency ${CONCURRENCY}; latency p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms`);
    lines.push("", "| kind | expected | sent | unexpected |", "|---|---|---|---|");
    const expectedOf = { valid: "200", expired: "401", forged: "401", missing: "401", cc: "200", refresh: "200", revoked: "200, then 401" };
    for (const [k, c] of Object.entries(counts)) lines.push(`| ${k} | ${expectedOf[k]} | ${c.sent} | ${c.unexpected} |`);
    lines.push(`| total | | ${done} | ${unexpectedTotal} |`);
    if (unexpected.length) lines.push("", "first unexpected answers:", ...unexpected.map((u) => `  ${u}`));
    lines.push("", `memory (VmRSS; Envoy admin /memory allocated and heap_size), a sample every ${SAMPLE_MS} ms; baseline: first sample after ${Math.round(WARMUP * 100)}% of the requests`);
    const every = Math.max(1, Math.ceil(samples.length / 25));
    lines.push("", "| requests done | s | VmRSS MiB | allocated MiB | heap MiB |", "|---|---|---|---|---|");
    samples.forEach((s, i) => {
      if (i % every === 0 || i === samples.length - 1 || s === warm[0])
        lines.push(`| ${s.at}${s === warm[0] ? " (baseline)" : ""} | ${(s.ms / 1000).toFixed(0)} | ${mib(s.rssKb)} | ${s.allocated ? (s.allocated / 2 ** 20).toFixed(1) : "-"} | ${s.heap ? (s.heap / 2 ** 20).toFixed(1) : "-"} |`);
    });
    lines.push("", `VmRSS after warm-up: ${mib(Math.min(...warm.map((s) => s.rssKb)))}–${mib(Math.max(...warm.map((s) => s.rssKb)))} MiB, largest drift from the baseline ${(maxDrift * 100).toFixed(1)}% (allowed ${RSS_TOLERANCE * 100}%), ${warm.length} samples`);
    lines.push("", "end checks:");
    for (const c of endChecks) lines.push(`  ${c.ok ? "ok  " : "FAIL"} ${c.name}${c.ok ? "" : `: ${c.detail}`}`);
    lines.push("", `filter counters: ${Object.entries(stats).filter(([k, v]) => v > 0 && /^mcp_oauth\.(requests|authz)/.test(k)).map(([k, v]) => `${k.replace("mcp_oauth.", "")}=${v}`).join(" ")}`);
    const pass = unexpectedTotal === 0 && memoryOk && endChecks.every((c) => c.ok) && done === TOTAL;
    lines.push("", `result: ${pass ? "PASS" : "FAIL"} (unexpected statuses ${unexpectedTotal}, memory ${memoryOk ? "flat" : "NOT flat"}, end checks ${endChecks.filter((c) => c.ok).length}/${endChecks.length})`);
    console.log(lines.join("\n"));
    for (const e of errors) console.error(e);
    process.exitCode = pass ? 0 : 1;
  } finally {
    await stopAll();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
