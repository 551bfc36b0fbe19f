import { test, after } from "node:test";
import { startEnvoy } from "./lib/envoy.mjs";
import { startMetadataServer, metadataCluster } from "./lib/metadata-server.mjs";
import { request } from "./lib/http.mjs";
import { authServerMaterial, keysSection, pkce, authorizeUrl } from "./lib/authz.mjs";
const REDIRECT = "http://127.0.0.1:45999/callback";
test("x", async () => {
  const m = await authServerMaterial();
  const docs = await startMetadataServer((o) => ({ "/c.json": { body: Buffer.from(JSON.stringify({ client_id: `${o}/c.json`, client_name: "D", redirect_uris: [REDIRECT] })), headers: { "content-type": "application/json", "cache-control": "max-age=60, caf\u00e9" } } }));
  const envoy = await startEnvoy({ envKeyValues: m.envKeyValues, extraClusters: [metadataCluster("cimd", docs.port)], componentLogLevel: "http:debug,client:debug,wasm:debug",
    pluginConfig: ({ origin }) => ({ resource: `${origin}/mcp`, authorization_server: { ...keysSection(m), users: [m.userEntry()], client_id_metadata_documents: { cluster: "cimd", allow_private_hosts: true } } }) });
  const { challenge } = pkce();
  const r = await request(authorizeUrl(envoy.origin, { response_type: "code", client_id: docs.url("/c.json"), redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: "S256", state: "s" }));
  console.log("STATUS", r.status);
  const log = envoy.log();
  for (const l of log.split("\n")) if (/cache-control|caf|panick|Uncaught/i.test(l)) console.log("LOG", JSON.stringify(l.slice(-200)));
  await envoy.stop(); await docs.stop();
});
