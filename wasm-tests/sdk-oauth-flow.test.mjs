// The real @modelcontextprotocol/sdk client does the whole OAuth dance against the built-in
// authorization server, over TLS through Envoy to the unchanged server-everything:
// 401 → PRM → AS metadata → Dynamic Client Registration → authorization (a person signs in and
// approves, with real form posts and cookies) → finishAuth(code) → MCP calls → the short-lived
// access token expires → the SDK refreshes by itself → calls keep working.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEverything } from "./lib/backends.mjs";
import { tlsFetch } from "./lib/http.mjs";
import { FormPostingProvider } from "./lib/sdk-provider.mjs";
import { authServerMaterial, describeFlow, jwtParts, keysSection, sleep } from "./lib/authz.mjs";

const REDIRECT = "http://127.0.0.1:43111/sdk/callback";
const ACCESS_TTL = 3;

let envoy, everything, m, origin;
const clients = [];
const wire = []; // every request the SDK made: {method, path, status}

before(async () => {
  m = await authServerMaterial();
  everything = await startEverything("streamableHttp");
  envoy = await startEnvoy({
    backendPort: everything.port,
    envKeyValues: m.envKeyValues,
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      resource_name: "server-everything (SDK OAuth e2e)",
      leeway_seconds: 0,
      routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
      authorization_server: {
        ...keysSection(m),
        display_name: "SDK e2e gateway",
        access_token_ttl_seconds: ACCESS_TTL,
        users: [m.userEntry()],
      },
    }),
  });
  origin = envoy.origin;
});

after(async () => {
  for (const c of clients) await c.close().catch(() => {});
  await envoy?.stop();
  await everything?.stop();
});

const T = (name, fn) =>
  test(name, () =>
    withLog(envoy, fn, () => `SDK requests:\n  ${wire.map((w) => `${w.method} ${w.path} -> ${w.status}`).join("\n  ")}\nserver-everything:\n${everything.output().slice(-1000)}`),
  );

/** tlsFetch that records what the SDK sends and gets. */
async function recordingFetch(input, init = {}) {
  const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  const method = (init.method || "GET").toUpperCase();
  const entry = { method, path: url.pathname, status: undefined, t: Date.now() };
  wire.push(entry);
  const res = await tlsFetch(input, init);
  entry.status = res.status;
  return res;
}

/** The shared form-posting provider, plus the callback of its last authorization. */
class PersonAtBrowserProvider extends FormPostingProvider {
  constructor() {
    super({ origin, redirect: REDIRECT, clientName: "SDK e2e client", user: m.user });
  }
  /** The callback of the last authorization: {code, state, iss, error}. */
  get callback() {
    const p = this.authorizations.at(-1)?.flow.params;
    return p && { code: p.get("code"), state: p.get("state"), iss: p.get("iss"), error: p.get("error") };
  }
}

function newClient() {
  const c = new Client({ name: "sdk-oauth-e2e", version: "1.0.0" }, { capabilities: {} });
  clients.push(c);
  return c;
}
const transportFor = (provider) => new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), { fetch: recordingFetch, authProvider: provider });

let provider;

async function echo(client, message) {
  const r = await client.callTool({ name: "echo", arguments: { message } });
  assert.deepEqual(r.content, [{ type: "text", text: `Echo: ${message}` }]);
}

T("connect → 401 → PRM → AS metadata → DCR → authorization with sign-in and consent → code", async () => {
  provider = new PersonAtBrowserProvider();
  const client = newClient();
  await assert.rejects(client.connect(transportFor(provider)), (e) => {
    assert.ok(e instanceof UnauthorizedError, `expected UnauthorizedError, got ${e?.constructor?.name}: ${e?.message}`);
    return true;
  });

  if (process.env.E2E_DEBUG) console.log(wire.map((w) => `${w.t % 100000} ${w.method} ${w.path} ${w.status}`).join("\n"), provider.agent.history);
  // What the SDK did, in order.
  const paths = wire.map((w) => `${w.method} ${w.path} ${w.status}`);
  const idx = (re) => paths.findIndex((p) => re.test(p));
  const order = [
    idx(/^POST \/mcp 401$/),
    idx(/^GET \/\.well-known\/oauth-protected-resource(\/mcp)? 200$/),
    idx(/^GET \/\.well-known\/(oauth-authorization-server|openid-configuration) 200$/),
    idx(/^POST \/oauth\/register 201$/),
  ];
  assert.ok(order.every((i) => i >= 0) && order.every((v, i) => i === 0 || v > order[i - 1]), `discovery order: ${paths.join(", ")}`);
  assert.ok(!paths.some((p) => / 5\d\d$/.test(p)), `no 5xx: ${paths.join(", ")}`);

  // Registered dynamically.
  assert.equal(provider.registrations.length, 1);
  const reg = provider.client;
  assert.ok(reg.client_id, JSON.stringify(reg));
  assert.deepEqual(reg.redirect_uris, [REDIRECT]);
  assert.equal(reg.token_endpoint_auth_method, "none");

  // The authorization request the SDK built.
  assert.equal(provider.authorizations.length, 1);
  const { url, flow } = provider.authorizations[0];
  assert.equal(`${url.origin}${url.pathname}`, `${origin}/oauth/authorize`);
  const q = url.searchParams;
  assert.equal(q.get("response_type"), "code");
  assert.equal(q.get("client_id"), reg.client_id);
  assert.equal(q.get("redirect_uri"), REDIRECT);
  assert.equal(q.get("code_challenge_method"), "S256");
  assert.ok(q.get("code_challenge"));
  assert.equal(q.get("resource"), `${origin}/mcp`);
  assert.equal(q.get("scope"), "mcp:tools");
  assert.equal(q.get("state"), provider.states.at(-1));

  // The person signed in, saw the consent page, approved; the gateway redirected to the client.
  assert.ok(flow.location, describeFlow(flow));
  assert.deepEqual(flow.pages.map((p) => p.kind), ["signin", "consent"], describeFlow(flow));
  assert.ok(flow.pages[1].text.includes("SDK e2e client"), flow.pages[1].text);
  assert.ok(flow.pages[1].text.includes("127.0.0.1:43111"), flow.pages[1].text);
  assert.equal(flow.status, 302);
  const cb = provider.callback;
  assert.ok(flow.location.startsWith(`${REDIRECT}?`), flow.location);
  assert.ok(cb.code, flow.location);
  assert.equal(cb.state, provider.states.at(-1));
  assert.equal(cb.iss, origin);
  assert.equal(provider.savedTokens.length, 0, "no tokens before finishAuth");
});

T("finishAuth(code) → reconnect → initialize, tools/list, tools/call echo", async () => {
  assert.ok(provider?.callback?.code, "needs the previous test");
  const t = transportFor(provider);
  await t.finishAuth(provider.callback.code);
  assert.equal(provider.savedTokens.length, 1);
  const tok = provider.savedTokens[0];
  assert.equal(tok.token_type, "Bearer");
  assert.equal(tok.expires_in, ACCESS_TTL);
  assert.equal(tok.scope, "mcp:tools");
  assert.ok(tok.refresh_token);
  const { header, claims } = jwtParts(tok.access_token);
  assert.equal(header.typ, "at+jwt");
  assert.equal(claims.aud, `${origin}/mcp`);
  assert.equal(claims.client_id, provider.client.client_id);
  assert.equal(claims.sub, m.user.subject);

  const client = newClient();
  await client.connect(transportFor(provider));
  assert.equal(client.getServerVersion()?.name, "mcp-servers/everything");
  const { tools } = await client.listTools();
  assert.ok(tools.some((x) => x.name === "echo"), tools.map((x) => x.name).join());
  await echo(client, "hello with a token from the built-in AS");
  provider.liveClient = client;
});

T("the access token expires → the SDK refreshes on the 401 by itself → calls keep working", async () => {
  const client = provider?.liveClient;
  assert.ok(client, "needs the previous test");
  const before = provider.savedTokens.at(-1);
  const exp = jwtParts(before.access_token).claims.exp;
  await sleep(Math.max(0, exp * 1000 - Date.now()) + 1200);
  const mark = wire.length;
  await echo(client, "after expiry");
  const after = wire.slice(mark).map((w) => `${w.method} ${w.path} ${w.status}`);
  assert.ok(after.includes("POST /mcp 401"), `the expired token was refused: ${after}`);
  assert.ok(after.includes("POST /oauth/token 200"), `a refresh: ${after}`);
  assert.equal(provider.savedTokens.length, 2, "one refresh");
  const now = provider.savedTokens[1];
  assert.notEqual(now.access_token, before.access_token);
  assert.ok(now.refresh_token && now.refresh_token !== before.refresh_token, "rotated refresh token");
  assert.equal(provider.authorizations.length, 1, "no new authorization");
  assert.equal(provider.registrations.length, 1, "no new registration");
  await client.listTools();
  await echo(client, "still working");
});

T("a token the server refuses (garbled by the client) → refresh with the rotated token → works", async () => {
  const client = provider?.liveClient;
  assert.ok(client, "needs the previous test");
  const last = provider.savedTokens.at(-1);
  provider.savedTokens.push({ ...last, access_token: `${last.access_token.slice(0, -4)}AAAA` });
  const count = provider.savedTokens.length;
  await echo(client, "after a garbled token");
  assert.equal(provider.savedTokens.length, count + 1, "refreshed once more");
  assert.notEqual(provider.savedTokens.at(-1).refresh_token, last.refresh_token);
  assert.equal(provider.authorizations.length, 1, "no new authorization");
});

T("a second connection with the stored client and tokens: no discovery flow, no new registration", async () => {
  assert.ok(provider?.savedTokens.length, "needs the previous tests");
  const mark = wire.length;
  const client = newClient();
  await client.connect(transportFor(provider));
  await echo(client, "second connection");
  const reqs = wire.slice(mark).map((w) => `${w.method} ${w.path} ${w.status}`);
  assert.ok(!reqs.some((r) => / 401$/.test(r)), `no 401: ${reqs}`);
  assert.ok(!reqs.some((r) => /register|authorize/.test(r)), `${reqs}`);
  assert.equal(provider.registrations.length, 1);
});
