// `state_store.etcd` over TLS with client certificates (docs/state-store.md): etcd requires a
// client certificate (`--client-cert-auth`), and the plugin's calls get it from the Envoy clusters'
// `transport_socket` (the JSON gateway over HTTPS, the Watch over HTTP/2 with ALPN h2). Nothing in
// the plugin config is about TLS. One etcd member, one Envoy.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEcho } from "./lib/backends.mjs";
import { startEtcdCluster, etcdEnvoyCluster, etcdGrpcEnvoyCluster, makeEtcdTls } from "./lib/etcd.mjs";
import { request } from "./lib/http.mjs";
import { waitFor } from "./lib/procs.mjs";
import { Agent, authServerMaterial, authorizeFlow, authorizeUrl, authServerSection, mcpPost, pkce, tokenRequest } from "./lib/authz.mjs";

const REDIRECT = "http://127.0.0.1:45683/callback";
let m, echo, etcd, envoy, certDir;

before(async () => {
  certDir = mkdtempSync(join(tmpdir(), "mcp-oauth-etcd-tls-"));
  m = await authServerMaterial();
  echo = await startEcho();
  etcd = await startEtcdCluster({ size: 1, tls: makeEtcdTls(certDir) });
  envoy = await startEnvoy({
    envKeyValues: m.envKeyValues,
    backendPort: echo.port,
    extraClusters: [etcdEnvoyCluster(etcd), etcdGrpcEnvoyCluster(etcd)],
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
      authorization_server: authServerSection(m, { clientId: "tls-app", redirectUri: REDIRECT }),
      state_store: { etcd: { cluster: "etcd", watch_cluster: "etcd_grpc", prefix: "/tls-e2e/" } },
    }),
  });
});

after(async () => {
  await envoy?.stop();
  await echo?.stop();
  await etcd?.stop();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

test("etcd over TLS with a client certificate: snapshot, watch, one-time codes and revocations", () =>
  withLog(envoy, async () => {
    // etcd really refuses a client without a certificate.
    const bare = await request(`${etcd.endpoints[0]}/health`, { timeoutMs: 3000 }).then(
      (r) => `answered ${r.status}`,
      (e) => `refused (${e.code ?? e.message})`,
    );
    assert.match(bare, /^refused/, `etcd without a client certificate: ${bare}`);

    await waitFor(async () => (await request(`${envoy.origin}/health`)).json?.state_store === "ok", { timeoutMs: 15000, what: "/health state_store ok over TLS" });
    await waitFor(() => envoy.log().includes("etcd watch on revocations is live"), { timeoutMs: 10000, what: "the watch over TLS (h2) is live" });

    const pk = pkce();
    const url = authorizeUrl(envoy.origin, { response_type: "code", client_id: "tls-app", redirect_uri: REDIRECT, scope: "mcp:tools", state: "s", code_challenge: pk.challenge, code_challenge_method: "S256" });
    const flow = await authorizeFlow(new Agent(envoy.origin), url, { username: m.user.username, password: m.user.password });
    const params = { grant_type: "authorization_code", code: new URL(flow.location).searchParams.get("code"), redirect_uri: REDIRECT, code_verifier: pk.verifier, client_id: "tls-app" };
    const first = await tokenRequest(envoy.origin, params);
    assert.equal(first.status, 200, first.body);
    const again = await tokenRequest(envoy.origin, params);
    assert.equal(again.status, 400, again.body);
    const keys = (await etcd.list("/tls-e2e/")).map((k) => k.key);
    assert.ok(keys.some((k) => k.startsWith("/tls-e2e/code/")), keys.join(", "));

    // A revocation put into etcd by another writer arrives over the TLS watch, well before a poll.
    const robot = await tokenRequest(envoy.origin, { grant_type: "client_credentials" }, { basic: [m.robot.client_id, m.robot.secret] });
    assert.equal((await mcpPost(envoy.origin, robot.json.access_token)).status, 200);
    const jti = JSON.parse(Buffer.from(robot.json.access_token.split(".")[1], "base64url")).jti;
    const t0 = Date.now();
    await etcd.call("/v3/kv/put", { key: Buffer.from(`/tls-e2e/revoked/at/${jti}`).toString("base64"), value: Buffer.from(String(Math.floor(Date.now() / 1000) + 600)).toString("base64") });
    await waitFor(async () => (await mcpPost(envoy.origin, robot.json.access_token)).status === 401, { timeoutMs: 3000, intervalMs: 10, what: "401 after the put" });
    const ms = Date.now() - t0;
    assert.ok(ms < 300, `the watch brought the revocation in ${ms} ms`);
    assert.doesNotMatch(envoy.log(), /etcd watch closed|etcd poll .* failed/);
  }));
