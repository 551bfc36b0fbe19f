// tools/list through the filter shows a token only the tools it may call, whether the unchanged
// server answers with an SSE stream (server-everything's default for POST) or with plain JSON;
// other answers pass untouched.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEverything } from "./lib/backends.mjs";
import { authServerMaterial, keysSection, mcpSession, tokenRequest } from "./lib/authz.mjs";
import { request } from "./lib/http.mjs";

let envoy, everything, m, origin;
const WRITE_TOOLS = ["toggle-simulated-logging", "toggle-subscriber-updates"];

before(async () => {
  m = await authServerMaterial();
  everything = await startEverything("streamableHttp");
  envoy = await startEnvoy({
    backendPort: everything.port,
    envKeyValues: m.envKeyValues,
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      routes: [{ prefix: "/mcp", scopes: ["mcp:read"] }],
      authorization_server: {
        ...keysSection(m),
        scopes: [
          { name: "mcp:read", description: "Read" },
          { name: "mcp:write", description: "Change things" },
        ],
        clients: [
          m.robotEntry({ scopes: ["mcp:read", "mcp:write"] }),
          { ...m.robotEntry({ scopes: ["mcp:read", "mcp:write"] }), client_id: "limited-bot" },
        ],
      },
      mcp: {
        rules: [
          { method: "tools/call", name: "toggle-*", scopes: ["mcp:write"] },
          { method: "tools/call", scopes: ["mcp:read"] },
        ],
        clients: [{ client_id: "limited-bot", allow_tools: ["echo", "get-sum"] }],
      },
    }),
  });
  origin = envoy.origin;
});

after(async () => {
  await envoy?.stop();
  await everything?.stop();
});

const T = (name, fn) => test(name, () => withLog(envoy, fn));

async function tokenFor(clientId, scope) {
  const res = await tokenRequest(origin, { grant_type: "client_credentials", scope }, { basic: [clientId, m.robot.secret] });
  assert.equal(res.status, 200, res.body);
  return res.json.access_token;
}

async function toolNames(token) {
  const session = await mcpSession(origin, token);
  try {
    const listed = await session.call("tools/list", {});
    assert.equal(listed.res.status, 200, listed.res.body);
    return { names: listed.result.tools.map((t) => t.name), contentType: listed.res.headers["content-type"] };
  } finally {
    await session.close();
  }
}

T("a read-only token sees no write tools (SSE answer)", async () => {
  const { names, contentType } = await toolNames(await tokenFor(m.robot.client_id, "mcp:read"));
  assert.match(contentType, /text\/event-stream/);
  assert.ok(names.includes("echo"), names.join(","));
  for (const tool of WRITE_TOOLS) assert.ok(!names.includes(tool), `${tool} shown to a read-only token`);
});

T("a read+write token sees the write tools too", async () => {
  const { names } = await toolNames(await tokenFor(m.robot.client_id, "mcp:read mcp:write"));
  for (const tool of WRITE_TOOLS) assert.ok(names.includes(tool), `${tool} missing: ${names.join(",")}`);
});

T("a client's allow-list limits its listing", async () => {
  const { names } = await toolNames(await tokenFor("limited-bot", "mcp:read mcp:write"));
  assert.deepEqual(names.sort(), ["echo", "get-sum"]);
});

T("other answers pass untouched (initialize, prompts/list)", async () => {
  const session = await mcpSession(origin, await tokenFor(m.robot.client_id, "mcp:read"));
  try {
    assert.equal(session.result.serverInfo.name, "mcp-servers/everything");
    const prompts = await session.call("prompts/list", {});
    assert.equal(prompts.res.status, 200);
    assert.ok(prompts.result.prompts.length > 0);
  } finally {
    await session.close();
  }
});

T("a session id used with another identity's token is refused as lost (404); its owner goes on", async () => {
  const owner = await mcpSession(origin, await tokenFor(m.robot.client_id, "mcp:read"));
  try {
    assert.ok(owner.sessionId, "server-everything opened a session");
    const thiefToken = await tokenFor("limited-bot", "mcp:read");
    const stolen = await request(`${origin}/mcp`, {
      method: "POST",
      headers: {
        accept: "application/json, text/event-stream",
        "content-type": "application/json",
        authorization: `Bearer ${thiefToken}`,
        "mcp-session-id": owner.sessionId,
        "mcp-protocol-version": "2025-06-18",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 99, method: "tools/list", params: {} }),
    });
    assert.equal(stolen.status, 404, stolen.body);
    assert.equal(stolen.json.error.message, "Session not found");
    const mine = await owner.call("tools/list", {});
    assert.equal(mine.res.status, 200, mine.res.body);
  } finally {
    await owner.close();
  }
});

T("inspected requests count per MCP method", async () => {
  const before = await envoy.stats();
  const session = await mcpSession(origin, await tokenFor(m.robot.client_id, "mcp:read"));
  try {
    await session.call("tools/list", {});
    await session.call("tools/call", { name: "toggle-simulated-logging", arguments: {} });
  } finally {
    await session.close();
  }
  const after = await envoy.stats();
  const delta = (name) => (after[name] ?? 0) - (before[name] ?? 0);
  assert.ok(delta("mcp_oauth.mcp.tools_list.allowed") >= 1, JSON.stringify(after));
  assert.ok(delta("mcp_oauth.mcp.initialize.allowed") >= 1, JSON.stringify(after));
  assert.equal(delta("mcp_oauth.mcp.tools_call.denied"), 1, JSON.stringify(after));
});

T("a long-running streamed tool call arrives complete through an inspected endpoint", async () => {
  const session = await mcpSession(origin, await tokenFor(m.robot.client_id, "mcp:read"));
  try {
    const r = await session.call("tools/call", {
      name: "trigger-long-running-operation",
      arguments: { duration: 1, steps: 5 },
      _meta: { progressToken: "p1" },
    });
    assert.equal(r.res.status, 200, r.res.body);
    assert.match(r.res.headers["content-type"], /text\/event-stream/);
    const progress = r.res.body.split("\n").filter((l) => l.startsWith("data:") && l.includes("notifications/progress"));
    assert.equal(progress.length, 5, r.res.body);
    assert.ok(r.result?.content?.length > 0, r.res.body);
  } finally {
    await session.close();
  }
});
