// `state_store.etcd` against an etcd with authentication on (docs/state-store.md): the filter
// authenticates with `username` and the password from `password_env`, and every call (grants,
// the poll, the gRPC watch) carries the token. One etcd member with a root user, one Envoy.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEcho } from "./lib/backends.mjs";
import { startEtcdCluster, etcdEnvoyCluster, etcdGrpcEnvoyCluster } from "./lib/etcd.mjs";
import { request } from "./lib/http.mjs";
import { waitFor } from "./lib/procs.mjs";
import { Agent, authServerMaterial, authorizeFlow, authorizeUrl, authServerSection, mcpPost, pkce, postForm, randomSecret, tokenRequest } from "./lib/authz.mjs";

const REDIRECT = "http://127.0.0.1:45682/callback";
const PASSWORD = `pw-${randomSecret(12)}`;
let m, echo, etcd, envoy;

async function etcdCall(path, body, token) {
  const r = await request(`${etcd.endpoints[0]}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: token } : {}) },
    body: JSON.stringify(body),
  });
  assert.equal(r.status, 200, `${path}: ${r.status} ${r.body}`);
  return JSON.parse(r.body);
}

before(async () => {
  m = await authServerMaterial();
  echo = await startEcho();
  etcd = await startEtcdCluster({ size: 1 });
  await etcdCall("/v3/auth/user/add", { name: "root", password: PASSWORD });
  await etcdCall("/v3/auth/user/grant", { user: "root", role: "root" });
  await etcdCall("/v3/auth/enable", {});
  envoy = await startEnvoy({
    envKeyValues: { ...m.envKeyValues, ETCD_PASSWORD: PASSWORD },
    backendPort: echo.port,
    extraClusters: [etcdEnvoyCluster(etcd), etcdGrpcEnvoyCluster(etcd)],
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
      authorization_server: authServerSection(m, { clientId: "auth-app", redirectUri: REDIRECT }),
      state_store: { etcd: { cluster: "etcd", watch_cluster: "etcd_grpc", prefix: "/auth-e2e/", username: "root", password_env: "ETCD_PASSWORD" } },
    }),
  });
});

after(async () => {
  await envoy?.stop();
  await echo?.stop();
  await etcd?.stop();
});

test("with etcd auth: the snapshot loads, the watch stays open, a code is one-time, a revocation is recorded, no secret is logged", () =>
  withLog(envoy, async () => {
    await waitFor(async () => (await request(`${envoy.origin}/health`)).json?.state_store === "ok", { timeoutMs: 15000, what: "/health state_store ok" });
    await waitFor(() => envoy.log().includes("etcd watch on revocations is live"), { timeoutMs: 10000, what: "the etcd watch (authenticated) is live" });
    const pk = pkce();
    const url = authorizeUrl(envoy.origin, { response_type: "code", client_id: "auth-app", redirect_uri: REDIRECT, scope: "mcp:tools", state: "s", code_challenge: pk.challenge, code_challenge_method: "S256" });
    const flow = await authorizeFlow(new Agent(envoy.origin), url, { username: m.user.username, password: m.user.password });
    const code = new URL(flow.location).searchParams.get("code");
    const params = { grant_type: "authorization_code", code, redirect_uri: REDIRECT, code_verifier: pk.verifier, client_id: "auth-app" };
    const first = await tokenRequest(envoy.origin, params);
    assert.equal(first.status, 200, first.body);
    const again = await tokenRequest(envoy.origin, params);
    assert.equal(again.status, 400, again.body);
    // The state is in etcd (read with our own token), and a revocation lands there too.
    const token = (await etcdCall("/v3/auth/authenticate", { name: "root", password: PASSWORD })).token;
    const prefix = Buffer.from("/auth-e2e/").toString("base64");
    const end = Buffer.from("/auth-e2e0").toString("base64");
    const keys = async () => ((await etcdCall("/v3/kv/range", { key: prefix, range_end: end }, token)).kvs ?? []).map((kv) => Buffer.from(kv.key, "base64").toString());
    assert.ok((await keys()).some((k) => k.startsWith("/auth-e2e/code/")), (await keys()).join(", "));
    const revoked = await postForm(envoy.origin, "/oauth/revoke", { token: first.json.refresh_token, client_id: "auth-app" });
    assert.equal(revoked.status, 200, revoked.body);
    assert.ok((await keys()).some((k) => k.startsWith("/auth-e2e/revoked/at/")), (await keys()).join(", "));
    assert.equal((await mcpPost(envoy.origin, first.json.access_token)).status, 401);
    // A revocation written into etcd by someone else reaches this Envoy over the (authenticated)
    // watch: much sooner than the 1 s poll could bring it.
    const robot = await tokenRequest(envoy.origin, { grant_type: "client_credentials" }, { basic: [m.robot.client_id, m.robot.secret] });
    assert.equal((await mcpPost(envoy.origin, robot.json.access_token)).status, 200);
    const jti = JSON.parse(Buffer.from(robot.json.access_token.split(".")[1], "base64url")).jti;
    const exp = String(Math.floor(Date.now() / 1000) + 600);
    const t0 = Date.now();
    await etcdCall("/v3/kv/put", { key: Buffer.from(`/auth-e2e/revoked/at/${jti}`).toString("base64"), value: Buffer.from(exp).toString("base64") }, token);
    await waitFor(async () => (await mcpPost(envoy.origin, robot.json.access_token)).status === 401, { timeoutMs: 3000, intervalMs: 10, what: "401 after the put" });
    const ms = Date.now() - t0;
    assert.ok(ms < 300, `the watch brought the revocation in ${ms} ms`);
    const log = envoy.log();
    assert.ok(!log.includes(PASSWORD), "the etcd password is not in Envoy's log");
    assert.ok(!log.includes(token), "nor an etcd token");
    assert.doesNotMatch(log, /etcd watch closed|etcd poll .* failed|cannot (open|start) an? etcd watch/, "the poll and the watch authenticated");
  }));
