// An HTTPS server on 127.0.0.1 that serves Client ID Metadata Documents (or anything else per
// path), with the test certificate envoy/certs/server.pem (SAN localhost and 127.0.0.1, signed by
// envoy/certs/ca.pem), and records every request. Envoy reaches it through a STATIC cluster with
// an UpstreamTlsContext trusting ca.pem (`metadataCluster`).
import https from "node:https";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CERT_DIR, ensureCerts } from "./paths.mjs";

/**
 * Start the server. `routes(origin)` returns `{ [path]: route }`, where a route is
 *  - `{ json: object, status?: 200, headers?: {} }`: the JSON document (default
 *    `Cache-Control: max-age=300`, `Content-Type: application/json`),
 *  - `{ body: string|Buffer, status?, headers? }`: raw, or
 *  - `{ hang: true }`: never answers (the connection stays open until `stop()`).
 * Unknown paths answer 404. `origin` is `https://localhost:<port>`.
 * Returns {port, origin, url(path), requests: [{method, path, headers, at}], count(path), total(), setRoute, stop()}.
 */
export async function startMetadataServer(routes = () => ({})) {
  ensureCerts();
  const requests = [];
  let table = {};
  const server = https.createServer(
    { cert: readFileSync(join(CERT_DIR, "server.pem")), key: readFileSync(join(CERT_DIR, "server-key.pem")) },
    (req, res) => {
      const path = req.url;
      requests.push({ method: req.method, path, headers: req.headers, at: Date.now() });
      const route = table[path.split("?")[0]];
      if (!route) {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found");
        return;
      }
      if (route.hang) return; // never answers
      const body = route.json !== undefined ? JSON.stringify(route.json) : (route.body ?? "");
      res.writeHead(route.status ?? 200, {
        "content-type": route.json !== undefined ? "application/json" : "text/plain",
        "cache-control": "max-age=300",
        "content-length": Buffer.byteLength(body),
        ...(route.headers ?? {}),
      });
      res.end(body);
    },
  );
  const port = await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address().port));
  });
  const origin = `https://localhost:${port}`;
  table = routes(origin) ?? {};
  return {
    port,
    origin,
    url: (path) => `${origin}${path}`,
    requests,
    /** Requests whose path (without the query) is `path`. */
    count: (path) => requests.filter((r) => r.path.split("?")[0] === path).length,
    total: () => requests.length,
    setRoute(path, route) {
      table[path] = route;
    },
    stop: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}

/**
 * A STATIC Envoy cluster `name` to 127.0.0.1:`port` over TLS (SNI `sni`, server certificate
 * checked against envoy/certs/ca.pem): for `renderEnvoyConfig({ extraClusters: [...] })`.
 */
export function metadataCluster(name, port, { sni = "localhost", connectTimeout = "1s" } = {}) {
  ensureCerts();
  return {
    name,
    type: "STATIC",
    connect_timeout: connectTimeout,
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: port } } } }] }],
    },
    transport_socket: {
      name: "envoy.transport_sockets.tls",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        sni,
        common_tls_context: {
          validation_context: {
            trusted_ca: { filename: join(CERT_DIR, "ca.pem") },
            match_typed_subject_alt_names: [{ san_type: "DNS", matcher: { exact: sni } }],
          },
        },
      },
    },
  };
}
