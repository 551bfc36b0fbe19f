// "State, replicas and restarts" of docs/authorization-server.md, in real Envoys: two gateways with
// the same config and keys (replicas behind one public name, https://mcp.replicas.test) share
// registered clients, sign-in sessions, codes, refresh tokens and access tokens; and a restarted
// gateway still honours what it issued before.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEverything } from "./lib/backends.mjs";
import {
  Agent,
  assertTokenResponse,
  authServerMaterial,
  authorizeFlow,
  authorizeUrl,
  describeFlow,
  keysSection,
  mcpSession,
  pkce,
  randomSecret,
  register,
  tokenRequest,
} from "./lib/authz.mjs";

const PUBLIC = "https://mcp.replicas.test";
const RESOURCE = `${PUBLIC}/mcp`;
const REDIRECT = "http://127.0.0.1:45999/callback";

let a, b, everything, m, opts;

before(async () => {
  m = await authServerMaterial();
  everything = await startEverything("streamableHttp");
  const config = {
    resource: RESOURCE,
    routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
    authorization_server: { ...keysSection(m), users: [m.userEntry()] },
  };
  opts = { backendPort: everything.port, envKeyValues: m.envKeyValues, pluginConfig: config };
  [a, b] = await Promise.all([startEnvoy(opts), startEnvoy(opts)]);
});

after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await everything?.stop();
});

const T = (name, fn) => test(name, () => withLog([a, b], fn));

async function assertMcp(envoy, token, note) {
  const s = await mcpSession(envoy.origin, token);
  assert.equal(s.result.serverInfo?.name, "mcp-servers/everything", note);
  const r = await s.call("tools/call", { name: "echo", arguments: { message: note } });
  assert.deepEqual(r.result?.content, [{ type: "text", text: `Echo: ${note}` }], r.res.body);
  await s.close();
}

function authorizeParams(client_id) {
  const pk = pkce();
  const state = randomSecret(8);
  return {
    pk,
    state,
    params: {
      response_type: "code",
      client_id,
      redirect_uri: REDIRECT,
      scope: "mcp:tools",
      state,
      code_challenge: pk.challenge,
      code_challenge_method: "S256",
      resource: RESOURCE,
    },
  };
}

const shared = {};

T("across replicas: register at A, authorize at B, redeem at A, use at both, refresh at B", async () => {
  const reg = await register(a.origin, { client_name: "Replica client", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none", grant_types: ["authorization_code", "refresh_token"] });
  assert.equal(reg.status, 201, reg.body);
  const client_id = reg.json.client_id;

  const { pk, state, params } = authorizeParams(client_id);
  const agentB = new Agent(b.origin);
  const flow = await authorizeFlow(agentB, authorizeUrl(b.origin, params), { username: m.user.username, password: m.user.password });
  assert.ok(flow.location, describeFlow(flow));
  assert.equal(flow.params.get("state"), state);
  assert.equal(flow.params.get("iss"), PUBLIC);
  const code = flow.params.get("code");

  const tok = assertTokenResponse(
    await tokenRequest(a.origin, { grant_type: "authorization_code", code, redirect_uri: REDIRECT, client_id, code_verifier: pk.verifier, resource: RESOURCE }),
    { refresh: true, scope: "mcp:tools", note: "code from B redeemed at A" },
  );
  await assertMcp(a, tok.access_token, "at A");
  await assertMcp(b, tok.access_token, "at B");

  const t2 = assertTokenResponse(await tokenRequest(b.origin, { grant_type: "refresh_token", refresh_token: tok.refresh_token, client_id }), { refresh: true, note: "A's refresh token at B" });
  await assertMcp(a, t2.access_token, "refreshed at B, used at A");

  // The sign-in session cookie B set is good at A too (one public host behind a load balancer).
  const agentA = new Agent(a.origin, { jar: agentB.jar });
  const again = authorizeParams(client_id);
  const flowA = await authorizeFlow(agentA, authorizeUrl(a.origin, again.params), { username: m.user.username, password: m.user.password });
  assert.deepEqual(flowA.pages.map((p) => p.kind), ["consent"], `signed in at B, so no sign-in at A: ${describeFlow(flowA)}`);
  assert.ok(flowA.params?.get("code"), describeFlow(flowA));

  Object.assign(shared, { client_id, tokens: t2 });
});

T("after a restart (same keys, same port): registered client, refresh token and access token still work", async () => {
  assert.ok(shared.client_id, "needs the previous test");
  const port = b.listenerPort;
  await b.stop();
  b = await startEnvoy({ ...opts, listenerPort: port });
  await assertMcp(b, shared.tokens.access_token, "access token after restart");
  const t3 = assertTokenResponse(
    await tokenRequest(b.origin, { grant_type: "refresh_token", refresh_token: shared.tokens.refresh_token, client_id: shared.client_id }),
    { refresh: true, note: "refresh token after restart" },
  );
  await assertMcp(b, t3.access_token, "refreshed after restart");
  const { params } = authorizeParams(shared.client_id);
  const flow = await authorizeFlow(new Agent(b.origin), authorizeUrl(b.origin, params), { username: m.user.username, password: m.user.password });
  assert.ok(flow.params?.get("code"), `registered client after restart: ${describeFlow(flow)}`);
});
