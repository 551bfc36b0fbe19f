// Real MCP clients (@modelcontextprotocol/sdk) through Envoy + the filter over TLS to the unchanged
// server-everything, both transports: streamable HTTP (/mcp) and legacy HTTP+SSE (/sse + /message).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport, SseError } from "@modelcontextprotocol/sdk/client/sse.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEverything } from "./lib/backends.mjs";
import { request, tlsFetch } from "./lib/http.mjs";
import { assertChallenge } from "./lib/assertions.mjs";
import { keyPair, mint } from "./lib/tokens.mjs";

const ISS = "https://issuer.mcp-clients.test";
let envoy, streamable, sse, key, as, asUrl, origin;
const clients = []; // closed in after()

/** A minimal authorization-server metadata host (only discovery is exercised, no tokens issued). */
async function startAsMetadata() {
  const hits = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url);
    const base = `http://127.0.0.1:${server.address().port}`;
    if (req.url === "/.well-known/oauth-authorization-server" || req.url === "/.well-known/openid-configuration") {
      const body = JSON.stringify({
        issuer: base,
        authorization_endpoint: `${base}/authorize`,
        token_endpoint: `${base}/token`,
        response_types_supported: ["code"],
        grant_types_supported: ["authorization_code", "refresh_token"],
        code_challenge_methods_supported: ["S256"],
        token_endpoint_auth_methods_supported: ["none"],
      });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(body);
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, hits, stop: () => new Promise((r) => server.close(r)) };
}

before(async () => {
  key = await keyPair("ES256", "clients-1");
  as = await startAsMetadata();
  asUrl = as.url;
  [streamable, sse] = await Promise.all([startEverything("streamableHttp"), startEverything("sse")]);
  envoy = await startEnvoy({
    backendPort: streamable.port,
    sseBackendPort: sse.port,
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      resource_name: "server-everything behind mcp-oauth",
      authorization_servers: [asUrl],
      issuers: [{ issuer: ISS, jwks: { keys: [key.publicJwk] } }],
      routes: [
        { prefix: "/mcp", scopes: ["mcp:tools"] },
        { prefix: "/sse", scopes: ["mcp:tools"], resource: `${origin}/sse` },
        { prefix: "/message", scopes: ["mcp:tools"], resource: `${origin}/sse` },
      ],
    }),
  });
  origin = envoy.origin;
});

after(async () => {
  for (const c of clients) await c.close().catch(() => {});
  await envoy?.stop();
  await Promise.all([streamable?.stop(), sse?.stop(), as?.stop()]);
});

const T = (name, fn) =>
  test(name, () => withLog(envoy, fn, () => `streamable server output:\n${streamable.output().slice(-2000)}\nsse server output:\n${sse.output().slice(-2000)}`));

const token = (aud, scope = "mcp:tools") => mint(key, { iss: ISS, aud, sub: "mcp-user", client_id: "sdk-client", scope });

function newClient() {
  const c = new Client({ name: "e2e-client", version: "1.0.0" }, { capabilities: {} });
  clients.push(c);
  return c;
}

async function exercise(client, transport) {
  // Record what arrives on the wire (after Envoy), before the SDK dispatches it.
  const wire = [];
  const dispatch = transport.onmessage;
  transport.onmessage = (msg, extra) => {
    wire.push(msg);
    dispatch?.(msg, extra);
  };

  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  assert.ok(names.includes("echo"), `tools: ${names}`);
  assert.ok(names.includes("trigger-long-running-operation"), `tools: ${names}`);

  const echoed = await client.callTool({ name: "echo", arguments: { message: "hello through envoy" } });
  assert.deepEqual(echoed.content, [{ type: "text", text: "Echo: hello through envoy" }]);

  const progress = [];
  const long = await client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 1, steps: 5 } },
    undefined,
    { onprogress: (p) => progress.push(p), timeout: 15000 },
  );
  assert.deepEqual(long.content, [{ type: "text", text: "Long running operation completed. Duration: 1 seconds, Steps: 5." }]);
  const onWire = wire.filter((m) => m.method === "notifications/progress").map((m) => [m.params.progress, m.params.total]);
  assert.deepEqual(
    onWire,
    [
      [1, 5],
      [2, 5],
      [3, 5],
      [4, 5],
      [5, 5],
    ],
    "every progress notification must come through Envoy, in order",
  );
  // The SDK dispatches notifications a tick later than responses, so with the SSE transport the last
  // progress notification (sent right before the result) can reach onprogress after the request settled.
  assert.deepEqual(
    progress.map((p) => p.progress),
    [1, 2, 3, 4, 5].slice(0, progress.length),
  );
  assert.ok(progress.length >= 4, `onprogress saw ${progress.length} notifications`);
}

T("streamable HTTP: initialize, tools/list, tools/call (echo, long-running with progress) through Envoy", async () => {
  const transport = new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), {
    fetch: tlsFetch,
    requestInit: { headers: { Authorization: `Bearer ${await token(`${origin}/mcp`)}` } },
  });
  const client = newClient();
  await client.connect(transport);
  assert.equal(client.getServerVersion()?.name, "mcp-servers/everything");
  assert.ok(transport.sessionId, "server-everything gives a session id");
  await exercise(client, transport);

  // A session id is never authentication: the same session without the token is refused.
  const sid = transport.sessionId;
  for (const method of ["POST", "GET", "DELETE"]) {
    const res = await request(`${origin}/mcp`, {
      method,
      headers: {
        "mcp-session-id": sid,
        accept: "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": transport.protocolVersion ?? "2025-06-18",
      },
      body: method === "POST" ? { jsonrpc: "2.0", id: 99, method: "tools/list" } : undefined,
    });
    assert.equal(res.status, 401, `${method} with session id but no token: ${res.status} ${res.body}`);
    assertChallenge(res.headers["www-authenticate"], { scope: "mcp:tools", resource_metadata: `${origin}/.well-known/oauth-protected-resource/mcp` });
  }

  // With the token, the session ends cleanly (DELETE passes the filter).
  await transport.terminateSession();
  assert.equal(transport.sessionId, undefined);
  await client.close();
});

T("legacy SSE: GET /sse + POST /message through Envoy, tools/list and tools/call with progress", async () => {
  const auth = { Authorization: `Bearer ${await token(`${origin}/sse`)}` };
  const transport = new SSEClientTransport(new URL(`${origin}/sse`), {
    fetch: tlsFetch,
    eventSourceInit: { fetch: tlsFetch },
    requestInit: { headers: auth },
  });
  const client = newClient();
  await client.connect(transport);
  assert.equal(client.getServerVersion()?.name, "mcp-servers/everything");
  await exercise(client, transport);
  await client.close();
});

T("legacy SSE: a token for /mcp (other audience) is refused at /sse", async () => {
  const transport = new SSEClientTransport(new URL(`${origin}/sse`), {
    fetch: tlsFetch,
    eventSourceInit: { fetch: tlsFetch },
    requestInit: { headers: { Authorization: `Bearer ${await token(`${origin}/mcp`)}` } },
  });
  const client = newClient();
  await assert.rejects(client.connect(transport), (e) => {
    assert.ok(e instanceof SseError, `expected SseError, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.code, 401);
    return true;
  });
});

T("streamable HTTP without a token: connect fails with 401", async () => {
  const transport = new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), { fetch: tlsFetch });
  const client = newClient();
  await assert.rejects(client.connect(transport), (e) => {
    assert.ok(e instanceof StreamableHTTPError, `expected StreamableHTTPError, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.code, 401);
    return true;
  });
});

T("streamable HTTP with a token lacking the scope: connect fails with 403", async () => {
  const transport = new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), {
    fetch: tlsFetch,
    requestInit: { headers: { Authorization: `Bearer ${await token(`${origin}/mcp`, "other")}` } },
  });
  const client = newClient();
  await assert.rejects(client.connect(transport), (e) => {
    assert.ok(e instanceof StreamableHTTPError, `expected StreamableHTTPError, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.code, 403);
    return true;
  });
});

T("legacy SSE without a token: connect fails with 401", async () => {
  const transport = new SSEClientTransport(new URL(`${origin}/sse`), { fetch: tlsFetch, eventSourceInit: { fetch: tlsFetch } });
  const client = newClient();
  await assert.rejects(client.connect(transport), (e) => {
    assert.ok(e instanceof SseError, `expected SseError, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.code, 401);
    return true;
  });
});

T("SDK OAuth discovery from the 401: UnauthorizedError, PRM found, authorize URL carries resource and scope", async () => {
  const seen = {};
  const provider = {
    get redirectUrl() {
      return "http://127.0.0.1:1/callback";
    },
    get clientMetadata() {
      return { client_name: "e2e", redirect_uris: ["http://127.0.0.1:1/callback"], grant_types: ["authorization_code"], response_types: ["code"], token_endpoint_auth_method: "none" };
    },
    clientInformation: () => ({ client_id: "e2e-preregistered" }),
    tokens: () => undefined,
    saveTokens: () => {},
    redirectToAuthorization: (url) => {
      seen.authorizationUrl = url;
    },
    saveCodeVerifier: (v) => {
      seen.verifier = v;
    },
    codeVerifier: () => seen.verifier,
  };
  const transport = new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), { fetch: tlsFetch, authProvider: provider });
  const client = newClient();
  await assert.rejects(client.connect(transport), (e) => {
    assert.ok(e instanceof UnauthorizedError, `expected UnauthorizedError, got ${e?.constructor?.name}: ${e?.message}`);
    return true;
  });
  assert.ok(seen.authorizationUrl, "the SDK never got to the authorization step");
  const u = new URL(seen.authorizationUrl);
  assert.equal(`${u.origin}${u.pathname}`, `${asUrl}/authorize`);
  assert.equal(u.searchParams.get("resource"), `${origin}/mcp`);
  assert.equal(u.searchParams.get("scope"), "mcp:tools");
  assert.equal(u.searchParams.get("code_challenge_method"), "S256");
  assert.equal(u.searchParams.get("client_id"), "e2e-preregistered");
  assert.ok(as.hits.includes("/.well-known/oauth-authorization-server"), `AS hits: ${as.hits}`);
});
