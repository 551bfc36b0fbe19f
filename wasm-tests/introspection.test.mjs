// Opaque access tokens checked by RFC 7662 introspection: the filter asks a real HTTP
// introspection endpoint (a small server run here, reached through an Envoy cluster) as a
// configured client, caches active answers, refuses inactive ones, and never lets a token pass
// when the endpoint is down.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEcho } from "./lib/backends.mjs";
import { request } from "./lib/http.mjs";

const CLIENT = "gateway";
const SECRET = "introspection-secret-123";
let envoy, echo, idp, idpPort, origin;
const calls = [];
let down = false;

const answers = {
  "good-token": () => ({ active: true, iss: "https://idp.test", sub: "opaque-user", client_id: "app", scope: "mcp:tools", aud: `${origin}/mcp`, exp: Math.floor(Date.now() / 1000) + 300 }),
  "no-scope-token": () => ({ active: true, iss: "https://idp.test", sub: "u2", scope: "other", exp: Math.floor(Date.now() / 1000) + 300 }),
  "other-aud-token": () => ({ active: true, iss: "https://idp.test", sub: "u3", scope: "mcp:tools", aud: "https://elsewhere.test/mcp", exp: Math.floor(Date.now() / 1000) + 300 }),
  "foreign-iss-token": () => ({ active: true, iss: "https://evil.test", sub: "u4", scope: "mcp:tools", exp: Math.floor(Date.now() / 1000) + 300 }),
};

before(async () => {
  idp = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      const params = new URLSearchParams(body);
      calls.push({ auth: req.headers.authorization, token: params.get("token"), path: req.url });
      if (down) {
        res.writeHead(503).end();
        return;
      }
      const expected = `Basic ${Buffer.from(`${CLIENT}:${SECRET}`).toString("base64")}`;
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { "content-type": "application/json" }).end('{"error":"invalid_client"}');
        return;
      }
      const answer = answers[params.get("token")]?.() ?? { active: false };
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(answer));
    });
  });
  await new Promise((r) => idp.listen(0, "127.0.0.1", r));
  idpPort = idp.address().port;
  echo = await startEcho();
  envoy = await startEnvoy({
    backendPort: echo.port,
    concurrency: 1,
    extraClusters: [
      {
        name: "idp",
        type: "STATIC",
        connect_timeout: "1s",
        load_assignment: {
          cluster_name: "idp",
          endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: idpPort } } } }] }],
        },
      },
    ],
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      authorization_servers: ["https://idp.test"],
      routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
      introspection: {
        endpoint: `http://127.0.0.1:${idpPort}/oauth/introspect`,
        cluster: "idp",
        client_id: CLIENT,
        client_secret: SECRET,
        issuer: "https://idp.test",
        max_cache_seconds: 60,
      },
      mcp: {},
    }),
  });
  origin = envoy.origin;
});

after(async () => {
  await envoy?.stop();
  await echo?.stop();
  await new Promise((r) => idp?.close(r));
});

const T = (name, fn) => test(name, () => withLog(envoy, fn, () => `introspection calls: ${JSON.stringify(calls)}`));

async function call(token, { method = "GET", body } = {}) {
  const id = randomUUID();
  const headers = { "x-test-id": id, authorization: `Bearer ${token}` };
  if (body) headers["content-type"] = "application/json";
  const res = await request(`${origin}/mcp`, { method, headers, body, timeoutMs: 10000 });
  return { res, seen: echo.find((r) => r.headers["x-test-id"] === id) };
}

T("an active opaque token passes, with its identity and without the token", async () => {
  const { res, seen } = await call("good-token");
  assert.equal(res.status, 200, res.body);
  assert.equal(seen.headers["x-mcp-subject"], "opaque-user");
  assert.equal(seen.headers["x-mcp-client-id"], "app");
  assert.equal(seen.headers["x-mcp-issuer"], "https://idp.test");
  assert.equal(seen.headers.authorization, undefined);
  const last = calls.at(-1);
  assert.equal(last.token, "good-token");
  assert.equal(last.path, "/oauth/introspect");
});

T("the answer is cached: a second request makes no call", async () => {
  const before = calls.length;
  const { res } = await call("good-token");
  assert.equal(res.status, 200);
  assert.equal(calls.length, before);
});

T("an inactive or unknown token gets 401 invalid_token", async () => {
  const { res, seen } = await call("unknown-token");
  assert.equal(res.status, 401);
  assert.equal(res.json.error, "invalid_token");
  assert.match(res.headers["www-authenticate"], /error="invalid_token"/);
  assert.equal(seen, undefined);
});

T("scope, audience and issuer still apply to introspected tokens", async () => {
  assert.equal((await call("no-scope-token")).res.status, 403);
  assert.equal((await call("other-aud-token")).res.status, 401);
  assert.equal((await call("foreign-iss-token")).res.status, 401);
});

T("an inspected MCP POST with an opaque token arrives with its body intact", async () => {
  const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", arguments: { message: "é".repeat(100) } } });
  const { res, seen } = await call("good-token", { method: "POST", body });
  assert.equal(res.status, 200, res.body);
  assert.equal(seen.body, body);
});

T("introspection down: 503, never a pass; back up: works again", async () => {
  down = true;
  const { res, seen } = await call("fresh-token-while-down");
  assert.equal(res.status, 503, res.body);
  assert.equal(res.json.error, "temporarily_unavailable");
  assert.equal(seen, undefined);
  down = false;
  answers["fresh-token-while-down"] = answers["good-token"];
  await new Promise((r) => setTimeout(r, 2100)); // the failure is remembered for 2 s
  assert.equal((await call("fresh-token-while-down")).res.status, 200);
});
