// A backend that answers MCP POSTs with plain JSON (streamable HTTP's `enableJsonResponse`
// mode): its tools/list answer is filtered to what the token may call, and the rewritten body is
// well-formed (no stale Content-Length). Other JSON answers are untouched.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { request } from "./lib/http.mjs";
import { hsKey, mint } from "./lib/tokens.mjs";

const ISS = "https://issuer.test";
const TOOLS = [
  { name: "echo", annotations: { readOnlyHint: true } },
  { name: "delete_all", annotations: { destructiveHint: true } },
  { name: "delete_one" },
];
let envoy, backend, origin, hs;

before(async () => {
  hs = hsKey("hs-1");
  backend = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      const msg = JSON.parse(body);
      const result = msg.method === "tools/list" ? { tools: TOOLS } : { content: [{ type: "text", text: `ran ${msg.params?.name}` }] };
      const payload = JSON.stringify({ jsonrpc: "2.0", id: msg.id, result });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }).end(payload);
    });
  });
  await new Promise((r) => backend.listen(0, "127.0.0.1", r));
  envoy = await startEnvoy({
    backendPort: backend.address().port,
    concurrency: 1,
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      authorization_servers: [ISS],
      issuers: [{ issuer: ISS, secrets: [{ kid: hs.kid, value: hs.value }] }],
      routes: [{ prefix: "/mcp", scopes: ["read"] }],
      mcp: { rules: [{ method: "tools/call", name: "delete_*", scopes: ["write"] }] },
    }),
  });
  origin = envoy.origin;
});

after(async () => {
  await envoy?.stop();
  await new Promise((r) => backend?.close(r));
});

const T = (name, fn) => test(name, () => withLog(envoy, fn));

async function rpc(scope, method, params = {}) {
  const token = await mint(hs, { iss: ISS, aud: `${origin}/mcp`, sub: "alice", scope });
  return request(`${origin}/mcp`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 5, method, params }),
  });
}

T("a read-only token's JSON tools/list shows only what it may call", async () => {
  const res = await rpc("read", "tools/list");
  assert.equal(res.status, 200, res.body);
  assert.match(res.headers["content-type"], /application\/json/);
  assert.deepEqual(res.json.result.tools.map((t) => t.name), ["echo"]);
  assert.equal(res.json.id, 5);
  if (res.headers["content-length"] !== undefined) assert.equal(Number(res.headers["content-length"]), Buffer.byteLength(res.body));
});

T("a read+write token sees every tool", async () => {
  const res = await rpc("read write", "tools/list");
  assert.deepEqual(res.json.result.tools.map((t) => t.name), ["echo", "delete_all", "delete_one"]);
});

T("other JSON answers pass untouched", async () => {
  const res = await rpc("read", "tools/call", { name: "echo", arguments: {} });
  assert.equal(res.status, 200);
  assert.equal(res.json.result.content[0].text, "ran echo");
});
