// Scopes derived from the annotations the unchanged server publishes (server-everything marks
// every tool readOnlyHint true or false): no hand-written rules. The filter learns them from the
// tools/list answers passing through it; until it has seen a tool, calling it needs the write
// scope (fail safe).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEverything } from "./lib/backends.mjs";
import { authServerMaterial, keysSection, mcpSession, tokenRequest } from "./lib/authz.mjs";

let envoy, everything, m, origin;

before(async () => {
  m = await authServerMaterial();
  everything = await startEverything("streamableHttp");
  envoy = await startEnvoy({
    backendPort: everything.port,
    envKeyValues: m.envKeyValues,
    concurrency: 1,
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      routes: [{ prefix: "/mcp", scopes: ["mcp:read"] }],
      authorization_server: {
        ...keysSection(m),
        scopes: [
          { name: "mcp:read", description: "Read" },
          { name: "mcp:write", description: "Change things" },
        ],
        clients: [m.robotEntry({ scopes: ["mcp:read", "mcp:write"] })],
      },
      mcp: { annotation_scopes: { read_only: "mcp:read", write: "mcp:write" } },
    }),
  });
  origin = envoy.origin;
});

after(async () => {
  await envoy?.stop();
  await everything?.stop();
});

const T = (name, fn) => test(name, () => withLog(envoy, fn));

async function tokenFor(scope) {
  const res = await tokenRequest(origin, { grant_type: "client_credentials", scope }, { basic: [m.robot.client_id, m.robot.secret] });
  assert.equal(res.status, 200, res.body);
  return res.json.access_token;
}

const echo = (session) => session.call("tools/call", { name: "echo", arguments: { message: "hi" } });

T("before any tools/list, even a read-only tool needs the write scope", async () => {
  const session = await mcpSession(origin, await tokenFor("mcp:read"));
  try {
    const r = await echo(session);
    assert.equal(r.res.status, 403, r.res.body);
    assert.match(r.res.headers["www-authenticate"], /error="insufficient_scope"/);
    assert.match(r.res.headers["www-authenticate"], /scope="mcp:read mcp:write"/);
  } finally {
    await session.close();
  }
});

T("a read-only token's tools/list shows only readOnlyHint tools, and teaches the filter", async () => {
  const session = await mcpSession(origin, await tokenFor("mcp:read"));
  try {
    const listed = await session.call("tools/list", {});
    const names = listed.result.tools.map((t) => t.name);
    assert.ok(names.includes("echo") && names.includes("get-sum"), names.join(","));
    assert.ok(!names.includes("toggle-simulated-logging"), names.join(","));
    const r = await echo(session);
    assert.equal(r.res.status, 200, r.res.body);
    const write = await session.call("tools/call", { name: "toggle-simulated-logging", arguments: {} });
    assert.equal(write.res.status, 403, write.res.body);
  } finally {
    await session.close();
  }
});

T("a read+write token may call a tool that is not read-only", async () => {
  const session = await mcpSession(origin, await tokenFor("mcp:read mcp:write"));
  try {
    const names = (await session.call("tools/list", {})).result.tools.map((t) => t.name);
    assert.ok(names.includes("toggle-simulated-logging"), names.join(","));
    const r = await session.call("tools/call", { name: "toggle-simulated-logging", arguments: {} });
    assert.equal(r.res.status, 200, r.res.body);
  } finally {
    await session.close();
  }
});
