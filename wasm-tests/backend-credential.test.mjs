// A service credential for the backend: the gateway gets a token from an upstream token
// endpoint with client_credentials (a real HTTP server here, through an Envoy cluster), shares
// it across workers, refreshes it before it expires, keeps the old one through a failed
// refresh, and puts it on backend requests in place of the client's token.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEcho } from "./lib/backends.mjs";
import { request } from "./lib/http.mjs";
import { hsKey, mint } from "./lib/tokens.mjs";

const ISS = "https://issuer.test";
const LIFETIME = 4; // seconds
let envoy, echo, tokenServer, origin, hs;
const issued = [];
let failNext = 0;

before(async () => {
  hs = hsKey("hs-1");
  tokenServer = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      const form = new URLSearchParams(body);
      const okAuth = req.headers.authorization === `Basic ${Buffer.from("gateway:upstream-secret").toString("base64")}`;
      if (failNext > 0) {
        failNext -= 1;
        res.writeHead(500).end();
        return;
      }
      if (!okAuth || form.get("grant_type") !== "client_credentials" || form.get("scope") !== "backend:read") {
        res.writeHead(400, { "content-type": "application/json" }).end('{"error":"invalid_request"}');
        return;
      }
      const token = `svc-${issued.length + 1}`;
      issued.push({ token, at: Date.now() });
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ access_token: token, token_type: "Bearer", expires_in: LIFETIME }));
    });
  });
  await new Promise((r) => tokenServer.listen(0, "127.0.0.1", r));
  const port = tokenServer.address().port;
  echo = await startEcho();
  envoy = await startEnvoy({
    backendPort: echo.port,
    extraClusters: [
      {
        name: "upstream_idp",
        type: "STATIC",
        connect_timeout: "1s",
        load_assignment: {
          cluster_name: "upstream_idp",
          endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } }] }],
        },
      },
    ],
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      authorization_servers: [ISS],
      issuers: [{ issuer: ISS, secrets: [{ kid: hs.kid, value: hs.value }] }],
      backend_credentials: [
        {
          name: "backend",
          token_endpoint: `http://127.0.0.1:${port}/oauth/token`,
          cluster: "upstream_idp",
          client_id: "gateway",
          client_secret: "upstream-secret",
          scope: "backend:read",
          refresh_before_seconds: 2,
        },
      ],
      routes: [{ prefix: "/mcp", backend_credential: "backend" }],
    }),
  });
  origin = envoy.origin;
});

after(async () => {
  await envoy?.stop();
  await echo?.stop();
  await new Promise((r) => tokenServer?.close(r));
});

const T = (name, fn) => test(name, () => withLog(envoy, fn, () => `issued: ${JSON.stringify(issued)}`));

async function call() {
  const id = randomUUID();
  const token = await mint(hs, { iss: ISS, aud: `${origin}/mcp`, sub: "alice" });
  const res = await request(`${origin}/mcp`, { headers: { authorization: `Bearer ${token}`, "x-test-id": id } });
  return { res, seen: echo.find((r) => r.headers["x-test-id"] === id), token };
}

async function until(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

T("the backend gets the service token, never the client's token", async () => {
  const { res, seen, token } = await until(async () => {
    const r = await call();
    return r.res.status === 200 ? r : null;
  }, 5000, "the first service token");
  assert.equal(res.status, 200);
  assert.match(seen.headers.authorization, /^Bearer svc-\d+$/);
  assert.notEqual(seen.headers.authorization, `Bearer ${token}`);
  assert.equal(seen.headers["x-mcp-subject"], "alice");
  assert.ok(issued.length <= 2, `one fetch per refresh, not one per worker: ${issued.length}`);
});

T("the token is refreshed before it expires and the new one is used", async () => {
  const first = issued.length;
  const { seen } = await until(async () => {
    const r = await call();
    return r.seen?.headers.authorization === `Bearer svc-${first + 1}` ? r : null;
  }, (LIFETIME + 2) * 1000, "a refreshed token");
  assert.equal(seen.headers.authorization, `Bearer svc-${first + 1}`);
});

T("a failed refresh keeps the current token while it is valid", async () => {
  const current = issued.length;
  failNext = 1;
  // The next refresh (within LIFETIME - 2 s) fails once; requests keep getting the current token.
  for (let i = 0; i < 5; i++) {
    const { res, seen } = await call();
    assert.equal(res.status, 200, res.body);
    assert.match(seen.headers.authorization, /^Bearer svc-\d+$/);
    await new Promise((r) => setTimeout(r, 300));
  }
  // Then the retry succeeds and a newer token comes.
  await until(async () => issued.length > current, (LIFETIME + 3) * 1000, "a refresh after the failure");
  assert.equal(failNext, 0, "the failure happened");
});
