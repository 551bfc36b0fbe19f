// A bad plugin config must stop Envoy from serving, and the log must name the field.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { startEnvoyExpectingFailure, tailText } from "./lib/envoy.mjs";
import { keyPair } from "./lib/tokens.mjs";

const key = await keyPair("ES256", "cfg-1");

const base = ({ origin }) => ({
  resource: `${origin}/mcp`,
  authorization_servers: ["https://auth.issuer.test"],
  issuers: [
    { issuer: "https://inline.issuer.test", jwks: { keys: [key.publicJwk] } },
    { issuer: "https://remote.issuer.test", remote_jwks: { uri: "http://127.0.0.1:9/jwks.json", cluster: "jwks", startup_wait_ms: 0 } },
  ],
  routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
});

/** Apply `mutate` to a fresh base config (mutate may return a replacement, e.g. a string). */
const variant = (mutate) => (ports) => {
  const cfg = base(ports);
  return mutate(cfg) ?? cfg;
};

const cases = [
  {
    name: "unknown field (typo `scope` for `scopes` in routes[0])",
    config: variant((c) => {
      c.routes[0] = { prefix: "/mcp", scope: ["mcp:tools"] };
    }),
    expect: /mcp-oauth: config error at routes\[0\]\.scope: unknown field `scope`/,
  },
  {
    name: "unknown top-level field",
    config: variant((c) => {
      c.resouce_name = "typo";
    }),
    expect: /mcp-oauth: config error at resouce_name: unknown field `resouce_name`/,
  },
  {
    name: "wrong type (leeway_seconds as a string)",
    config: variant((c) => {
      c.leeway_seconds = "60";
    }),
    expect: /mcp-oauth: config error at leeway_seconds: /,
  },
  {
    name: "wrong type (issuers[1].remote_jwks.timeout_ms fractional)",
    config: variant((c) => {
      c.issuers[1].remote_jwks.timeout_ms = 1500.5;
    }),
    expect: /mcp-oauth: config error at issuers\[1\]\.remote_jwks\.timeout_ms: /,
  },
  {
    name: "missing `resource`",
    config: variant((c) => {
      delete c.resource;
    }),
    expect: /mcp-oauth: config error.*missing field `resource`/,
  },
  {
    name: "bad URL in issuers[0].remote_jwks.uri",
    config: variant((c) => {
      c.issuers[0] = { issuer: "https://ftp.issuer.test", remote_jwks: { uri: "ftp://jwks.example/keys", cluster: "jwks" } };
    }),
    expect: /mcp-oauth: config error at issuers\[0\]\.remote_jwks\.uri: must be an absolute https:\/\/ URL/,
  },
  {
    name: "non-canonical resource (trailing slash)",
    config: variant((c) => {
      c.resource = `${c.resource}/`;
    }),
    expect: /mcp-oauth: config error at resource: /,
  },
  {
    name: "HMAC secret shorter than 32 bytes",
    config: variant((c) => {
      c.issuers[0] = { issuer: "https://hs.issuer.test", secrets: [{ value: "too-short" }] };
    }),
    expect: /mcp-oauth: config error at issuers\[0\]\.secrets\[0\]/,
  },
  {
    name: "not JSON at all",
    config: () => "{ this is not json",
    expect: /mcp-oauth: config error/,
  },
];

// Envoy needs about 2 s to compile the filter, so the attempts run a few at a time, started up front;
// each test awaits its own attempt.
const POOL = 2;
let running = 0;
const queue = [];
const limit = (fn) =>
  new Promise((resolve, reject) => {
    const run = async () => {
      running++;
      try {
        resolve(await fn());
      } catch (e) {
        reject(e);
      } finally {
        running--;
        queue.shift()?.();
      }
    };
    if (running < POOL) run();
    else queue.push(run);
  });

const attempts = new Map();
before(() => {
  for (const c of cases) {
    const p = limit(async () => {
      const t0 = Date.now();
      const r = await startEnvoyExpectingFailure({ pluginConfig: c.config }, 10000);
      return { ...r, ms: Date.now() - t0 };
    });
    p.catch(() => {}); // reported by the test that awaits it
    attempts.set(c, p);
  }
});

for (const c of cases) {
  test(`refused: ${c.name}`, async () => {
    const r = await attempts.get(c);
    const tail = tailText(r.log, 40);
    assert.equal(r.served, false, `Envoy served with a bad config (${r.ms} ms)\n--- Envoy log tail ---\n${tail}`);
    if (r.exited) assert.notEqual(r.exitInfo.code, 0, `Envoy exited with code 0\n${tail}`);
    assert.match(r.log, c.expect, `log does not name the field (exited=${r.exited} ${JSON.stringify(r.exitInfo)}, ${r.ms} ms)\n--- Envoy log tail ---\n${tail}`);
  });
}
