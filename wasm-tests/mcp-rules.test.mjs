// MCP-aware authorization (docs/mcp-authorization.md) in a real Envoy, with the built-in
// authorization server: per-tool scopes read from the JSON-RPC body (403 insufficient_scope and the
// step-up it triggers in the real @modelcontextprotocol/sdk client), per-client tool lists, bad
// bodies (400/413), batches refused whole, and proof that the backend sees nothing — not even the
// headers — of a request the filter refuses.
//
// One Envoy: /mcp → the unchanged server-everything (streamable HTTP), /message → a recorder that
// notes every connection, every byte and every request at its headers (lib/recorder.mjs). Both
// paths are MCP endpoints of the `mcp` section.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError, auth } from "@modelcontextprotocol/sdk/client/auth.js";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEverything } from "./lib/backends.mjs";
import { startRecorder } from "./lib/recorder.mjs";
import { request, tlsFetch } from "./lib/http.mjs";
import { FormPostingProvider } from "./lib/sdk-provider.mjs";
import { assertChallenge } from "./lib/assertions.mjs";
import {
  Agent,
  assertTokenResponse,
  authServerMaterial,
  authorizeFlow,
  authorizeUrl,
  describeFlow,
  jwtParts,
  keysSection,
  mcpSession,
  pkce,
  randomSecret,
  sha256Hash,
  sleep,
  tokenRequest,
} from "./lib/authz.mjs";

const READ = "mcp:read";
const WRITE = "mcp:write";
const BOTH = `${READ} ${WRITE}`;
const WRITE_TOOL = "toggle-subscriber-updates"; // not read-only: changes what the session is sent
const DENIED_TOOL = "get-env"; // the bot may never call it
const MAX_BODY = 4096;
const REDIRECT_CLI = "http://127.0.0.1:43121/cli/callback";
const REDIRECT_SDK = "http://127.0.0.1:43122/sdk/callback";
const STEP_UP_DESCRIPTION = "Change things: call the tools that change state";

let m, envoy, everything, recorder, origin;
const secrets = { bot: randomSecret(32), reporter: randomSecret(32) };
const tokens = {}; // read (a person's token with mcp:read only), bot, reporter
let baseline; // counters right after start-up
const clients = [];
const wire = []; // every request the SDK made: {method, path, status, www}

before(async () => {
  m = await authServerMaterial({ jwkEnv: "MCP_OAUTH_E2E_RULES_JWK" });
  [everything, recorder] = await Promise.all([startEverything("streamableHttp"), startRecorder()]);
  envoy = await startEnvoy({
    backendPort: everything.port,
    sseBackendPort: recorder.port, // /message → the recorder
    envKeyValues: m.envKeyValues,
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      resource_name: "server-everything (MCP rules e2e)",
      routes: [
        { prefix: "/mcp", scopes: [READ] },
        { prefix: "/message", scopes: [READ] },
      ],
      authorization_server: {
        ...keysSection(m),
        display_name: "MCP rules e2e",
        scopes: [
          { name: READ, description: "Read: call the read-only tools" },
          { name: WRITE, description: STEP_UP_DESCRIPTION },
        ],
        default_scopes: [READ],
        users: [{ ...m.userEntry(), scopes: [READ, WRITE] }],
        clients: [
          {
            client_id: "bot",
            client_name: "Bot",
            client_secret_hash: sha256Hash(secrets.bot),
            grant_types: ["client_credentials"],
            scopes: [READ, WRITE],
          },
          {
            client_id: "reporter",
            client_name: "Reporter",
            client_secret_hash: sha256Hash(secrets.reporter),
            grant_types: ["client_credentials"],
            scopes: [READ],
          },
          // A public client driven with plain HTTP (tokens for the raw tests).
          { client_id: "e2e-cli", client_name: "E2E CLI", redirect_uris: [REDIRECT_CLI], grant_types: ["authorization_code"] },
          // Pre-registered public clients for the SDK: without and with refresh tokens.
          { client_id: "sdk-app", client_name: "SDK app", redirect_uris: [REDIRECT_SDK], grant_types: ["authorization_code"] },
          { client_id: "sdk-app-refresh", client_name: "SDK app (refresh)", redirect_uris: [REDIRECT_SDK] },
        ],
      },
      mcp: {
        endpoints: ["/mcp", "/message"],
        max_body_bytes: MAX_BODY,
        rules: [
          { method: "tools/call", name: "toggle-*", scopes: [WRITE] },
          { method: "tools/call", name: "echo", scopes: [READ] },
          { method: "tools/call", name: "get-*", scopes: [READ] },
        ],
        default_scopes: [READ],
        clients: [
          { client_id: "bot", deny_tools: [DENIED_TOOL] },
          { client_id: "reporter", allow_tools: ["echo", "get-sum"] },
        ],
      },
    }),
  });
  origin = envoy.origin;
  tokens.read = await userToken(undefined, READ); // no scope asked: the server's default_scopes
  tokens.bot = await clientToken("bot", secrets.bot, BOTH);
  tokens.reporter = await clientToken("reporter", secrets.reporter, READ);
  baseline = await envoy.stats();
});

after(async () => {
  for (const c of clients) await c.close().catch(() => {});
  await envoy?.stop();
  await everything?.stop();
  await recorder?.stop();
});

const T = (name, fn) =>
  test(name, (t) =>
    withLog(envoy, () => fn(t), () =>
      [
        `SDK requests:\n  ${wire.map((w) => `${w.method} ${w.path} -> ${w.status}`).join("\n  ")}`,
        `server-everything:\n${everything.output().slice(-800)}`,
        `recorder: ${recorder.requests.map((r) => `${r.method} ${r.url}`).join(", ")}`,
      ].join("\n"),
    ),
  );

// ---------- helpers ----------

const prm = (prefix) => `${origin}/.well-known/oauth-protected-resource${prefix}`;

/** A person's access token through the code flow (sign-in + consent by form posts) with client e2e-cli. */
async function userToken(scope, expectScope) {
  const { verifier, challenge } = pkce();
  const url = authorizeUrl(origin, {
    response_type: "code",
    client_id: "e2e-cli",
    redirect_uri: REDIRECT_CLI,
    code_challenge: challenge,
    code_challenge_method: "S256",
    state: randomSecret(8),
    scope,
    resource: `${origin}/mcp`,
  });
  const flow = await authorizeFlow(new Agent(origin), url, { username: m.user.username, password: m.user.password });
  const code = flow.params?.get("code");
  assert.ok(code, describeFlow(flow));
  const res = await tokenRequest(origin, {
    grant_type: "authorization_code",
    code,
    redirect_uri: REDIRECT_CLI,
    client_id: "e2e-cli",
    code_verifier: verifier,
    resource: `${origin}/mcp`,
  });
  return assertTokenResponse(res, { scope: expectScope, refresh: false }).access_token;
}

async function clientToken(id, secret, scope) {
  const res = await tokenRequest(origin, { grant_type: "client_credentials", scope }, { basic: [id, secret] });
  return assertTokenResponse(res, { scope, refresh: false }).access_token;
}

let rpcId = 1000;
const toolCall = (name, args = {}, id = ++rpcId) => ({ jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } });

/** One raw POST of `body` (string or object) to `path`; `session` adds the MCP session headers. */
function post(path, token, body, { session } = {}) {
  const headers = { accept: "application/json, text/event-stream", "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (session) Object.assign(headers, { "mcp-session-id": session, "mcp-protocol-version": "2025-06-18" });
  return request(`${origin}${path}`, { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) });
}

const show = (res) => `${res.status} ${res.headers["www-authenticate"] ?? ""} ${String(res.body).slice(0, 300)}`;

/** The text of a tools/call result (raw session). */
function toolText(r, note = "") {
  assert.equal(r.res.status, 200, `${note}: ${show(r.res)}`);
  assert.ok(r.result, `${note}: no result: ${r.res.body.slice(0, 300)}`);
  return r.result.content?.[0]?.text;
}

/** A JSON-RPC error answer of the filter: status, JSON, {jsonrpc, id, error: {code, message}}. */
function assertJsonRpcError(res, status, code, { id = null, message } = {}, note = "") {
  const ctx = `${note} (got ${show(res)})`;
  assert.equal(res.status, status, `status ${ctx}`);
  assert.match(res.headers["content-type"] ?? "", /^application\/json\b/, `content-type ${ctx}`);
  assert.ok(res.json && typeof res.json === "object", `JSON body ${ctx}`);
  assert.equal(res.json.jsonrpc, "2.0", `jsonrpc ${ctx}`);
  assert.deepEqual(res.json.id, id, `id ${ctx}`);
  assert.equal(res.json.error?.code, code, `error.code ${ctx}`);
  assert.equal(typeof res.json.error?.message, "string", `error.message ${ctx}`);
  if (message instanceof RegExp) assert.match(res.json.error.message, message, `error.message ${ctx}`);
}

/** The step-up challenge for a token with mcp:read calling the write tool. */
function assertStepUp(res, note = "") {
  assert.equal(res.status, 403, `${note}: ${show(res)}`);
  assertChallenge(
    res.headers["www-authenticate"],
    { error: "insufficient_scope", error_description: /mcp:write/, scope: BOTH, resource_metadata: prm("/mcp") },
    note,
  );
  assert.equal(res.json?.error, "insufficient_scope", `${note}: ${show(res)}`);
}

const postsSeenByEverything = () => (everything.output().match(/Received MCP POST request/g) ?? []).length;

// ---------- tests ----------

T("tools/list through Envoy: the tools the rules name exist, with the annotations the rules assume", async () => {
  // A token with both scopes and no client list, so that the list is not filtered.
  const s = await mcpSession(origin, await userToken(BOTH, BOTH));
  try {
    const r = await s.call("tools/list", {});
    assert.equal(r.res.status, 200, show(r.res));
    const tools = Object.fromEntries(r.result.tools.map((x) => [x.name, x]));
    for (const name of ["echo", "get-sum", "get-tiny-image", DENIED_TOOL]) {
      assert.ok(tools[name], `${name} in ${Object.keys(tools)}`);
      assert.equal(tools[name].annotations?.readOnlyHint, true, `${name} is read-only`);
    }
    assert.ok(tools[WRITE_TOOL], `${WRITE_TOOL} in ${Object.keys(tools)}`);
    assert.equal(tools[WRITE_TOOL].annotations?.readOnlyHint, false, `${WRITE_TOOL} is not read-only`);
    // The person's token for the other tests: only the server's default scope.
    assert.equal(jwtParts(tokens.read).claims.scope, READ);
  } finally {
    await s.close();
  }
});

T("a token with only mcp:read: echo and get-sum pass; the write tool → 403 insufficient_scope step-up challenge", async () => {
  const s = await mcpSession(origin, tokens.read);
  try {
    assert.equal(toolText(await s.call("tools/call", { name: "echo", arguments: { message: "read ok" } }), "echo"), "Echo: read ok");
    assert.match(toolText(await s.call("tools/call", { name: "get-sum", arguments: { a: 2, b: 3 } }), "get-sum"), /\b5\b/);

    const before = postsSeenByEverything();
    const denied = await s.call("tools/call", { name: WRITE_TOOL, arguments: {} });
    assertStepUp(denied.res, WRITE_TOOL);
    assert.match(denied.res.headers["content-type"] ?? "", /^application\/json\b/);

    // The session is unharmed, and server-everything never saw the refused call.
    assert.equal(toolText(await s.call("tools/call", { name: "echo", arguments: { message: "still" } }), "echo after 403"), "Echo: still");
    await sleep(150);
    assert.equal(postsSeenByEverything(), before + 1, "server-everything saw the echo after the 403, not the refused call");
  } finally {
    await s.close();
  }
});

// ---------- step-up with the real SDK ----------

/** tlsFetch that records what the SDK sends and gets (and the challenge of every 401/403). */
async function recordingFetch(input, init = {}) {
  const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  const entry = { method: (init.method || "GET").toUpperCase(), path: url.pathname, status: undefined };
  wire.push(entry);
  const res = await tlsFetch(input, init);
  entry.status = res.status;
  entry.www = res.headers.get("www-authenticate") ?? undefined;
  return res;
}

/**
 * The shared form-posting provider (the person signs in once: the agent keeps the gateway's
 * session cookie), plus credential invalidation and the code of its last authorization.
 */
class StepUpProvider extends FormPostingProvider {
  constructor({ clientId, grantTypes }) {
    super({
      origin,
      redirect: REDIRECT_SDK,
      clientName: "Step-up SDK app",
      grantTypes,
      user: m.user,
      client: clientId ? { client_id: clientId } : undefined, // pre-registered, or DCR
    });
    this.invalidated = [];
  }
  invalidateCredentials(scope) {
    this.invalidated.push(scope);
    if (scope === "all" || scope === "tokens") this.savedTokens.push(undefined);
    if (scope === "all" || scope === "client") this.client = undefined;
  }
  /** The code of the last authorization (asserting the person's approval ended at the redirect URI). */
  lastCode(note) {
    const a = this.authorizations.at(-1);
    assert.ok(a, `${note}: no authorization`);
    const p = a.flow.params;
    assert.ok(
      p?.get("code"),
      `${note}: authorization for scope "${a.url.searchParams.get("scope")}" gave no code: error=${p?.get("error")} ` +
        `error_description=${p?.get("error_description")}\n${describeFlow(a.flow)}`,
    );
    assert.equal(p.get("state"), this.states.at(-1), `${note}: state`);
    assert.equal(p.get("iss"), origin, `${note}: iss`);
    return p.get("code");
  }
}

function newClient() {
  const c = new Client({ name: "mcp-rules-e2e", version: "1.0.0" }, { capabilities: {} });
  clients.push(c);
  return c;
}
const transportFor = (provider) =>
  new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), { fetch: recordingFetch, authProvider: provider });
const callWrite = (client) => client.callTool({ name: WRITE_TOOL, arguments: {} });
const wroteOk = (r) => assert.match(r.content?.[0]?.text ?? "", /simulated resource updated notifications/i, JSON.stringify(r));

/**
 * The whole story with one provider: connect → 401 → authorization with mcp:read → finishAuth →
 * echo → the write tool → 403 insufficient_scope → the SDK re-authorizes with "mcp:read mcp:write"
 * (the person approves again) → UnauthorizedError → finishAuth → the caller retries → success.
 * `allowRefreshDeadEnd`: SDK 1.32.2 refreshes instead when it holds a refresh token
 * (typescript-sdk#2255); the app then starts the authorization for the challenged scope itself.
 * Returns {path: "native" | "refresh-dead-end"}.
 */
async function stepUpStory(provider, t, { allowRefreshDeadEnd = false } = {}) {
  // 1. First connection: 401 → discovery → authorization for the route's scope.
  await assert.rejects(newClient().connect(transportFor(provider)), (e) => {
    assert.ok(e instanceof UnauthorizedError, `expected UnauthorizedError, got ${e?.constructor?.name}: ${e?.message}`);
    return true;
  });
  assert.equal(provider.authorizations.length, 1);
  const first = provider.authorizations[0];
  assert.equal(first.url.searchParams.get("scope"), READ, "the first authorization asks for the 401's scope");
  assert.equal(first.url.searchParams.get("resource"), `${origin}/mcp`);
  assert.deepEqual(first.flow.pages.map((p) => p.kind), ["signin", "consent"], describeFlow(first.flow));
  await transportFor(provider).finishAuth(provider.lastCode("first authorization"));
  assert.equal(provider.tokens().scope, READ);

  // 2. Connected with mcp:read: echo works (and the SDK's GET SSE stream opened).
  const client = newClient();
  const transport = transportFor(provider);
  await client.connect(transport);
  const r = await client.callTool({ name: "echo", arguments: { message: "before step-up" } });
  assert.deepEqual(r.content, [{ type: "text", text: "Echo: before step-up" }]);

  // 3. The write tool: 403 insufficient_scope → the SDK re-authorizes.
  const mark = wire.length;
  const savedBefore = provider.savedTokens.length;
  let error;
  try {
    wroteOk(await callWrite(client));
  } catch (e) {
    error = e;
  }
  const reqs = () => wire.slice(mark).map((w) => `${w.method} ${w.path} ${w.status}`);
  const refused = wire.slice(mark).find((w) => w.method === "POST" && w.path === "/mcp" && w.status === 403);
  assert.ok(refused, `the write call was refused with 403: ${reqs()}`);
  const challenge = assertChallenge(refused.www, {
    error: "insufficient_scope",
    error_description: /mcp:write/,
    scope: BOTH,
    resource_metadata: prm("/mcp"),
  });

  let path = "native";
  if (error instanceof StreamableHTTPError && error.code === 403 && /after trying upscoping/.test(error.message)) {
    // SDK 1.32.2 with a refresh token: it refreshed (a refresh cannot widen the scope), got the
    // same 403 and gave up without asking the person.
    assert.ok(allowRefreshDeadEnd, `SDK gave up on the step-up: ${error.message}; ${reqs()}`);
    assert.ok(reqs().includes("POST /oauth/token 200"), `it refreshed: ${reqs()}`);
    assert.equal(provider.tokens().scope, READ, "the refreshed token still has only mcp:read");
    assert.equal(provider.authorizations.length, 1, "no new authorization by the SDK");
    path = "refresh-dead-end";
    // What an app does: forget the tokens and authorize for the scope of the 403's challenge
    // (its fetch wrapper saw it; the SDK's error does not carry it).
    provider.invalidateCredentials("tokens");
    const result = await auth(provider, {
      serverUrl: new URL(`${origin}/mcp`),
      scope: challenge.scope,
      resourceMetadataUrl: new URL(challenge.resource_metadata),
      fetchFn: recordingFetch,
    });
    assert.equal(result, "REDIRECT");
  } else {
    assert.ok(error instanceof UnauthorizedError, `expected UnauthorizedError (re-authorization pending), got ${error?.constructor?.name}: ${error?.message}; ${reqs()}`);
  }
  t.diagnostic(`step-up path: ${path}`);

  // The second authorization: the wider scope, the same person (still signed in), consent again.
  assert.equal(provider.authorizations.length, 2, `a second authorization: ${reqs()}`);
  const second = provider.authorizations[1];
  assert.equal(second.url.searchParams.get("scope"), BOTH, "step-up asks for granted + needed");
  assert.equal(second.url.searchParams.get("resource"), `${origin}/mcp`);
  const code = provider.lastCode("step-up authorization");
  const consent = second.flow.pages.find((p) => p.kind === "consent");
  assert.ok(consent, describeFlow(second.flow));
  assert.ok(consent.text.includes(STEP_UP_DESCRIPTION), `the consent page names the new scope: ${consent.text}`);
  await transport.finishAuth(code);
  const wide = provider.tokens();
  assert.ok(provider.savedTokens.length > savedBefore);
  assert.equal(wide.scope, BOTH);
  assert.equal(jwtParts(wide.access_token).claims.scope, BOTH);

  // 4. The caller retries on the same connection: it succeeds.
  wroteOk(await callWrite(client));
  const again = await client.callTool({ name: "echo", arguments: { message: "after step-up" } });
  assert.deepEqual(again.content, [{ type: "text", text: "Echo: after step-up" }]);
  return { path, client };
}

T("SDK step-up, pre-registered client (no refresh tokens): 403 → re-authorization with mcp:read mcp:write → finishAuth → retry succeeds", async (t) => {
  const provider = new StepUpProvider({ clientId: "sdk-app", grantTypes: ["authorization_code"] });
  const mark = wire.length;
  const { path } = await stepUpStory(provider, t);
  assert.equal(path, "native");
  const mine = wire.slice(mark);
  assert.ok(!mine.some((w) => w.path === "/oauth/register"), "no registration for a pre-registered client");
  assert.ok(mine.some((w) => w.method === "GET" && w.path === "/mcp" && w.status === 200), "the SDK's GET SSE stream passed with a token");
});

T("SDK step-up, dynamically registered client (no refresh tokens): the same story", async (t) => {
  const provider = new StepUpProvider({ grantTypes: ["authorization_code"] });
  const mark = wire.length;
  let path;
  try {
    ({ path } = await stepUpStory(provider, t));
  } catch (e) {
    // The SDK registers with the scope of the first 401 (its resolvedScope): say what was registered.
    e.message = `${e.message}\n(registered client: scope=${JSON.stringify(provider.client?.scope)}, grant_types=${JSON.stringify(provider.client?.grant_types)})`;
    throw e;
  }
  assert.equal(path, "native");
  assert.equal(wire.slice(mark).filter((w) => w.path === "/oauth/register").length, 1, "registered once");
});

T("SDK step-up when the client holds a refresh token: the step-up ends with the wider token and the retry succeeds", async (t) => {
  const provider = new StepUpProvider({ clientId: "sdk-app-refresh", grantTypes: ["authorization_code", "refresh_token"] });
  const { path } = await stepUpStory(provider, t, { allowRefreshDeadEnd: true });
  t.diagnostic(path === "refresh-dead-end" ? "SDK 1.32.2 refreshed instead of re-authorizing (typescript-sdk#2255); the app authorized itself" : "SDK re-authorized by itself");
  assert.ok(provider.tokens().refresh_token, "a refresh token with the wider grant");
});

// ---------- per-client tool lists ----------

T("client lists: bot (deny_tools get-env) → 403 JSON-RPC error naming the tool, other tools pass; reporter (allow_tools) likewise", async () => {
  const bot = await mcpSession(origin, tokens.bot);
  try {
    const before = postsSeenByEverything();
    const denied = await post("/mcp", tokens.bot, toolCall(DENIED_TOOL, {}, 55), { session: bot.sessionId });
    assertJsonRpcError(denied, 403, -32001, { id: 55 }, "bot get-env");
    assert.equal(denied.json.error.message, `Tool ${DENIED_TOOL} is not allowed for this client`);
    // The same tool in a batch (with an allowed call) is refused whole.
    const batch = await post("/mcp", tokens.bot, [toolCall("echo", { message: "x" }), toolCall(DENIED_TOOL, {}, 77)], { session: bot.sessionId });
    assertJsonRpcError(batch, 403, -32001, { id: 77, message: new RegExp(DENIED_TOOL) }, "bot batch");
    await sleep(150);
    assert.equal(postsSeenByEverything(), before, "server-everything saw none of the refused calls");

    assert.equal(toolText(await bot.call("tools/call", { name: "echo", arguments: { message: "bot" } }), "bot echo"), "Echo: bot");
    assert.match(toolText(await bot.call("tools/call", { name: "get-sum", arguments: { a: 1, b: 1 } }), "bot get-sum"), /\b2\b/);
    // The bot has mcp:write: the write tool passes for it.
    assert.match(toolText(await bot.call("tools/call", { name: WRITE_TOOL, arguments: {} }), "bot write"), /simulated resource updated/i);
  } finally {
    await bot.close();
  }

  const reporter = await mcpSession(origin, tokens.reporter);
  try {
    const denied = await post("/mcp", tokens.reporter, toolCall("get-tiny-image", {}, "r-1"), { session: reporter.sessionId });
    assertJsonRpcError(denied, 403, -32001, { id: "r-1", message: /\bget-tiny-image\b/ }, "reporter get-tiny-image");
    assert.equal(toolText(await reporter.call("tools/call", { name: "echo", arguments: { message: "r" } }), "reporter echo"), "Echo: r");
    assert.match(toolText(await reporter.call("tools/call", { name: "get-sum", arguments: { a: 4, b: 4 } }), "reporter get-sum"), /\b8\b/);
  } finally {
    await reporter.close();
  }
});

// ---------- bad bodies ----------

/** The refused bodies of the bad-body tests, each with its expected answer. */
function badBodies() {
  const big = JSON.stringify(toolCall("echo", { message: "x".repeat(MAX_BODY + 500) }));
  return [
    { what: "malformed JSON", body: '{"jsonrpc":"2.0","id":1,"method":', status: 400, code: -32700 },
    { what: "empty body", body: "", status: 400, code: -32700 },
    { what: "[]", body: "[]", status: 400, code: -32600 },
    { what: "not JSON-RPC", body: '{"id":1,"method":"tools/list"}', status: 400, code: -32600 },
    { what: "tools/call without a name", body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}', status: 400, code: -32600 },
    { what: `over max_body_bytes (${big.length} bytes)`, body: big, status: 413, code: -32600 },
    {
      what: "batch of 2 with one forbidden call",
      body: JSON.stringify([toolCall("echo", { message: "ok" }), toolCall(WRITE_TOOL)]),
      status: 403,
      stepUp: true,
    },
  ];
}

function assertBadBody(res, b, prefix) {
  const note = `${b.what} → ${prefix}`;
  if (b.stepUp) {
    assert.equal(res.status, 403, `${note}: ${show(res)}`);
    assertChallenge(res.headers["www-authenticate"], {
      error: "insufficient_scope",
      error_description: /mcp:write/,
      scope: BOTH,
      resource_metadata: prm(prefix),
    });
  } else {
    assertJsonRpcError(res, b.status, b.code, {}, note);
  }
}

T("bad bodies with a valid token on /mcp: 400 -32700 / -32600, 413 over max_body_bytes, a batch with one forbidden call 403; server-everything sees none", async () => {
  const s = await mcpSession(origin, tokens.read);
  try {
    const before = postsSeenByEverything();
    const failures = [];
    for (const b of badBodies()) {
      const res = await post("/mcp", tokens.read, b.body, { session: s.sessionId });
      try {
        assertBadBody(res, b, "/mcp");
      } catch (e) {
        failures.push(e.message.split("\n")[0]);
      }
    }
    await sleep(150);
    assert.equal(postsSeenByEverything(), before, "server-everything saw none of the refused bodies");
    // The session still works.
    assert.equal(toolText(await s.call("tools/call", { name: "echo", arguments: { message: "fine" } }), "echo"), "Echo: fine");
    assert.deepEqual(failures, [], failures.join("\n"));
  } finally {
    await s.close();
  }
});

T("the backend sees nothing of refused requests (no connection, no byte), and an allowed POST arrives whole with identity headers", async () => {
  // Let connections of earlier requests settle, then mark.
  await sleep(100);
  const mark = recorder.mark();
  const failures = [];
  const attempt = async (label, fn) => {
    try {
      await fn();
    } catch (e) {
      failures.push(`${label}: ${e.message.split("\n")[0]}`);
    }
  };
  for (const b of badBodies()) {
    await attempt(b.what, async () => assertBadBody(await post("/message", tokens.read, b.body), b, "/message"));
  }
  await attempt("write tool with mcp:read", async () => {
    const res = await post("/message", tokens.read, toolCall(WRITE_TOOL));
    assert.equal(res.status, 403, show(res));
    assertChallenge(res.headers["www-authenticate"], { error: "insufficient_scope", error_description: /mcp:write/, scope: BOTH, resource_metadata: prm("/message") });
  });
  await attempt("bot calling get-env", async () =>
    assertJsonRpcError(await post("/message", tokens.bot, toolCall(DENIED_TOOL, {}, 9)), 403, -32001, { id: 9, message: /get-env/ }),
  );
  await attempt("no token", async () => {
    const res = await post("/message", undefined, toolCall("echo", { message: "x" }));
    assert.equal(res.status, 401, show(res));
  });
  await sleep(300);
  const seen = recorder.since(mark);
  assert.deepEqual(
    { requests: seen.requests.map((r) => `${r.method} ${r.url} ${JSON.stringify(r.headers)}`), bytes: seen.bytes, connections: seen.connections },
    { requests: [], bytes: 0, connections: 0 },
    "the backend saw nothing of the refused requests",
  );

  // Allowed: a single call, formatted oddly and close to the limit, arrives byte for byte.
  const pad = "é✓ ".repeat(Math.floor((MAX_BODY - 300) / 6));
  const body = `{ "params" : {"arguments":{"message":${JSON.stringify(pad)}} , "name":"echo"},\n "method":"tools/call", "id":"a-1", "jsonrpc":"2.0" }`;
  assert.ok(Buffer.byteLength(body) <= MAX_BODY && Buffer.byteLength(body) > MAX_BODY - 400, `${Buffer.byteLength(body)} bytes`);
  const res = await post("/message?sessionId=abc", tokens.read, body);
  assert.equal(res.status, 200, show(res));
  const got = recorder.since(mark).requests;
  assert.equal(got.length, 1, got.map((r) => r.url).join());
  const rec = got[0];
  assert.equal(rec.method, "POST");
  assert.equal(rec.url, "/message?sessionId=abc");
  assert.ok(rec.ended, "the body arrived complete");
  assert.equal(rec.body, body, "the body is intact, byte for byte");
  assert.equal(rec.headers["x-mcp-subject"], m.user.subject);
  assert.equal(rec.headers["x-mcp-client-id"], "e2e-cli");
  assert.equal(rec.headers["x-mcp-scopes"], READ);
  assert.equal(rec.headers["x-mcp-issuer"], origin);
  assert.equal(rec.headers.authorization, undefined, "no token at the backend");

  // Allowed: a batch of two permitted calls, and the bot's write call.
  const batch = JSON.stringify([toolCall("echo", { message: "1" }), { jsonrpc: "2.0", method: "notifications/initialized" }]);
  assert.equal((await post("/message", tokens.read, batch)).status, 200);
  assert.equal(recorder.requests.at(-1).body, batch);
  assert.equal((await post("/message", tokens.bot, toolCall(WRITE_TOOL))).status, 200);
  assert.equal(recorder.requests.at(-1).headers["x-mcp-client-id"], "bot");
  assert.equal(recorder.requests.at(-1).headers["x-mcp-scopes"], BOTH);
  // The refused requests answered as the spec says (checked last, so the rest ran too).
  assert.deepEqual(failures, [], failures.join("\n"));
});

// ---------- GET and DELETE ----------

/** Open GET /mcp (an SSE stream): resolve at the response headers, then close it. */
async function openStream(path, headers) {
  const ac = new AbortController();
  const res = await tlsFetch(`${origin}${path}`, { method: "GET", headers: { accept: "text/event-stream", ...headers }, signal: ac.signal });
  const out = { status: res.status, contentType: res.headers.get("content-type"), www: res.headers.get("www-authenticate") };
  if (res.status !== 200) out.body = await res.text();
  ac.abort();
  await res.body?.cancel().catch(() => {});
  return out;
}

T("GET /mcp (SSE stream) and DELETE /mcp: 401 without a token, pass with one (server-everything session)", async () => {
  const s = await mcpSession(origin, tokens.read);
  const sessionHeaders = { "mcp-session-id": s.sessionId, "mcp-protocol-version": "2025-06-18" };
  const auth = { authorization: `Bearer ${tokens.read}` };

  const noToken = await openStream("/mcp", sessionHeaders);
  assert.equal(noToken.status, 401, JSON.stringify(noToken));
  assertChallenge(noToken.www, { scope: READ, resource_metadata: prm("/mcp") });

  const stream = await openStream("/mcp", { ...sessionHeaders, ...auth });
  assert.equal(stream.status, 200, JSON.stringify(stream));
  assert.match(stream.contentType ?? "", /^text\/event-stream\b/);

  const del = (headers) => request(`${origin}/mcp`, { method: "DELETE", headers });
  const delNoToken = await del(sessionHeaders);
  assert.equal(delNoToken.status, 401, show(delNoToken));
  assertChallenge(delNoToken.headers["www-authenticate"], { scope: READ, resource_metadata: prm("/mcp") });
  // The session survived the refused DELETE.
  assert.equal(toolText(await s.call("tools/call", { name: "echo", arguments: { message: "alive" } }), "echo"), "Echo: alive");

  const delOk = await del({ ...sessionHeaders, ...auth });
  assert.equal(delOk.status, 200, show(delOk));
  // The session is gone at server-everything: the DELETE reached it.
  const after = await s.call("tools/call", { name: "echo", arguments: { message: "gone" } });
  assert.ok([400, 404].includes(after.res.status), `after DELETE: ${show(after.res)}`);

  // GET and DELETE on the other endpoint go straight through (nothing to read), with identity headers.
  const mark = recorder.mark();
  const get = await request(`${origin}/message`, { headers: auth });
  assert.equal(get.status, 200, show(get));
  const d = await request(`${origin}/message`, { method: "DELETE", headers: auth });
  assert.equal(d.status, 200, show(d));
  const seen = recorder.since(mark).requests;
  assert.deepEqual(seen.map((r) => r.method), ["GET", "DELETE"]);
  for (const r of seen) {
    assert.equal(r.headers["x-mcp-subject"], m.user.subject);
    assert.equal(r.headers.authorization, undefined);
  }
});

// ---------- stats and logs ----------

T("stats: requests.denied.insufficient_scope and requests.denied.client_denied count every refusal; the log names the call and the missing scope", async () => {
  const IS = "mcp_oauth.requests.denied.insufficient_scope";
  const CD = "mcp_oauth.requests.denied.client_denied";
  const now = await envoy.stats();
  // The earlier tests refused calls for both reasons.
  assert.ok((now[IS] ?? 0) > (baseline[IS] ?? 0), `${IS}: ${baseline[IS]} → ${now[IS]}`);
  assert.ok((now[CD] ?? 0) > (baseline[CD] ?? 0), `${CD}: ${baseline[CD]} → ${now[CD]}`);

  // One more of each: each counter moves by exactly one.
  assert.equal((await post("/message", tokens.read, toolCall(WRITE_TOOL))).status, 403);
  assert.equal((await post("/message", tokens.bot, toolCall(DENIED_TOOL))).status, 403);
  const later = await envoy.stats();
  assert.equal(later[IS] - (now[IS] ?? 0), 1, `${IS}: ${now[IS]} → ${later[IS]}`);
  assert.equal(later[CD] - (now[CD] ?? 0), 1, `${CD}: ${now[CD]} → ${later[CD]}`);

  const log = envoy.log();
  assert.match(log, new RegExp(`denied \\(insufficient_scope\\).*tools/call ${WRITE_TOOL}.*mcp:write`), "the log names the call and the missing scope");
  assert.match(log, new RegExp(`denied \\(client_denied\\).*${DENIED_TOOL}.*bot`), "the log names the tool and the client");
});
