// A real etcd cluster for the tests: Debian's etcd-server (`/usr/bin/etcd`, or ETCD_BIN), N
// members on loopback ports, each with its own data dir. Members are started and killed by pid
// (SIGKILL: a crash, not a clean leave) and restarted on the same ports and data.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, spawnTracked, stopTracked, waitFor } from "./procs.mjs";
import { request } from "./http.mjs";
import { CERT_DIR, ensureCerts } from "./paths.mjs";

/**
 * Certificates for an etcd that takes TLS with client certificates, signed by the test CA
 * (envoy/certs/ca.pem): `server` (127.0.0.1 and localhost; serverAuth and clientAuth, since etcd's
 * JSON gateway calls its own gRPC server with it) and `client` (clientAuth), in `dir`.
 */
export function makeEtcdTls(dir) {
  ensureCerts();
  const ca = join(CERT_DIR, "ca.pem");
  const caKey = join(CERT_DIR, "ca-key.pem");
  const make = (name, eku, san) => {
    const key = join(dir, `${name}-key.pem`);
    const csr = join(dir, `${name}.csr`);
    const ext = join(dir, `${name}.ext`);
    const cert = join(dir, `${name}.pem`);
    execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key]);
    execFileSync("openssl", ["req", "-new", "-sha256", "-key", key, "-out", csr, "-subj", `/CN=etcd-${name}`]);
    writeFileSync(ext, `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${eku}\n${san ? `subjectAltName=${san}\n` : ""}`);
    execFileSync("openssl", ["x509", "-req", "-sha256", "-days", "2", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-CAserial", join(dir, "ca.srl"), "-extfile", ext, "-out", cert], { stdio: "ignore" });
    return { cert, key };
  };
  return {
    ca,
    server: make("server", "serverAuth,clientAuth", "DNS:localhost,IP:127.0.0.1"),
    client: make("client", "clientAuth"),
  };
}

export function findEtcdBinary() {
  const candidates = [process.env.ETCD_BIN, "/usr/bin/etcd", "/usr/local/bin/etcd"].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`etcd not found (tried ${candidates.join(", ")}): apt-get install etcd-server, or set ETCD_BIN`);
  return found;
}

/**
 * Starts `size` members and waits until each says it is healthy (a leader is elected and it
 * serves). Returns { endpoints, members, kill(i), restart(i), waitHealthy(indexes), stop(), ... }.
 */
export async function startEtcdCluster({ size = 3, tls } = {}) {
  const bin = findEtcdBinary();
  const root = mkdtempSync(join(tmpdir(), "mcp-oauth-etcd-"));
  const token = `mcp-oauth-${process.pid}-${Date.now()}`;
  const members = [];
  for (let i = 0; i < size; i++) {
    members.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort(), dataDir: join(root, `m${i}`), proc: null });
  }
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(",");
  const logs = members.map(() => []);
  const scheme = tls ? "https" : "http";
  // With TLS, the tests' own calls present the client certificate too.
  const clientAgent = tls
    ? new https.Agent({ ca: readFileSync(tls.ca), cert: readFileSync(tls.client.cert), key: readFileSync(tls.client.key), keepAlive: false })
    : undefined;
  const get = (url, opts = {}) =>
    tls
      ? new Promise((resolve, reject) => {
          const req = https.request(url, { method: opts.method ?? "GET", agent: clientAgent, headers: opts.headers, timeout: opts.timeoutMs ?? 3000 }, (res) => {
            let body = "";
            res.on("data", (c) => (body += c));
            res.on("end", () => resolve({ status: res.statusCode, body }));
          });
          req.on("timeout", () => req.destroy(new Error("timeout")));
          req.on("error", reject);
          req.end(opts.body);
        })
      : request(url, opts);

  const spawnMember = (i) => {
    const m = members[i];
    const args = [
      "--name", m.name,
      "--data-dir", m.dataDir,
      "--listen-client-urls", `${scheme}://127.0.0.1:${m.clientPort}`,
      "--advertise-client-urls", `${scheme}://127.0.0.1:${m.clientPort}`,
      ...(tls ? ["--cert-file", tls.server.cert, "--key-file", tls.server.key, "--client-cert-auth", "--trusted-ca-file", tls.ca] : []),
      "--listen-peer-urls", `http://127.0.0.1:${m.peerPort}`,
      "--initial-advertise-peer-urls", `http://127.0.0.1:${m.peerPort}`,
      "--initial-cluster", initialCluster,
      "--initial-cluster-token", token,
      "--initial-cluster-state", "new",
      // Loopback: fast heartbeats and elections, so losing the leader costs well under a second.
      "--heartbeat-interval", "50",
      "--election-timeout", "500",
      "--log-level", "warn",
    ];
    m.proc = spawnTracked(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    const keep = (chunk) => {
      logs[i].push(chunk.toString());
      if (logs[i].length > 200) logs[i].splice(0, logs[i].length - 200);
    };
    m.proc.child.stdout.on("data", keep);
    m.proc.child.stderr.on("data", keep);
  };

  const healthy = async (i) => {
    const r = await get(`${scheme}://127.0.0.1:${members[i].clientPort}/health`, { timeoutMs: 1000 });
    return r.status === 200 && JSON.parse(r.body).health === "true";
  };

  const cluster = {
    root,
    members,
    tls,
    get,
    endpoints: members.map((m) => `${scheme}://127.0.0.1:${m.clientPort}`),
    logTail: (i) => logs[i].join("").split("\n").slice(-30).join("\n"),
    async waitHealthy(indexes = members.map((_, i) => i), timeoutMs = 20000) {
      for (const i of indexes) {
        await waitFor(() => healthy(i), { timeoutMs, intervalMs: 50, what: `etcd member ${members[i].name} healthy` });
      }
    },
    /** SIGKILL member i and wait until it is gone. */
    async kill(i) {
      const m = members[i];
      if (!m.proc) return;
      await stopTracked(m.proc, 0);
      m.proc = null;
    },
    /** Start member i again on its ports and data (it rejoins the cluster). */
    restart(i) {
      if (!members[i].proc) spawnMember(i);
    },
    /** A JSON-gateway call on any live member. */
    async call(path, body) {
      let last;
      for (const m of members.filter((x) => x.proc)) {
        try {
          const r = await get(`${scheme}://127.0.0.1:${m.clientPort}${path}`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(body),
            timeoutMs: 3000,
          });
          if (r.status === 200) return JSON.parse(r.body);
          last = new Error(`${path}: ${r.status} ${r.body}`);
        } catch (e) {
          last = e;
        }
      }
      throw last ?? new Error("no live etcd member");
    },
    /** The index of the current leader (asks each live member). */
    async leaderIndex() {
      const ids = [];
      let leader;
      for (const m of members) {
        if (!m.proc) {
          ids.push(null);
          continue;
        }
        const r = await get(`${scheme}://127.0.0.1:${m.clientPort}/v3/maintenance/status`, { method: "POST", body: "{}", timeoutMs: 2000 });
        const j = JSON.parse(r.body);
        ids.push(j.header.member_id);
        leader = j.leader;
      }
      const i = ids.indexOf(leader);
      if (i < 0) throw new Error(`no leader among ${ids.join(", ")} (leader ${leader})`);
      return i;
    },
    /** Keys and values under `prefix` (strings). */
    async list(prefix) {
      const b64 = (s) => Buffer.from(s).toString("base64");
      const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
      const r = await cluster.call("/v3/kv/range", { key: b64(prefix), range_end: b64(end) });
      return (r.kvs ?? []).map((kv) => ({
        key: Buffer.from(kv.key, "base64").toString(),
        value: Buffer.from(kv.value ?? "", "base64").toString(),
        lease: kv.lease,
      }));
    },
    async stop() {
      await Promise.all(members.map((m) => (m.proc ? stopTracked(m.proc, 2000) : null)));
      members.forEach((m) => (m.proc = null));
      rmSync(root, { recursive: true, force: true });
    },
  };
  members.forEach((_, i) => spawnMember(i));
  try {
    await cluster.waitHealthy();
  } catch (e) {
    e.message += members.map((_, i) => `\n--- etcd ${members[i].name} ---\n${cluster.logTail(i)}`).join("");
    await cluster.stop();
    throw e;
  }
  // Later restarts find their data dir and ignore --initial-cluster-state.
  return cluster;
}

/**
 * The Envoy cluster the filter reaches etcd through: every member as an endpoint, HTTP/1.1 to the
 * JSON gateway, with an active health check (a killed member leaves the rotation within about
 * 200 ms) and outlier detection on connection failures.
 */
export function etcdEnvoyCluster(cluster, name = "etcd") {
  return {
    name,
    type: "STATIC",
    connect_timeout: "0.25s",
    lb_policy: "ROUND_ROBIN",
    load_assignment: {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: cluster.members.map((m) => ({
            endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: m.clientPort } } },
          })),
        },
      ],
    },
    health_checks: [
      {
        timeout: "0.25s",
        interval: "0.2s",
        unhealthy_threshold: 1,
        healthy_threshold: 1,
        no_traffic_interval: "0.2s",
        http_health_check: { path: "/health" },
      },
    ],
    common_lb_config: { healthy_panic_threshold: { value: 0 } },
    ...(cluster.tls ? { transport_socket: etcdTransportSocket(cluster.tls, []) } : {}),
  };
}

/** TLS to the members with the client certificate (what a deployment puts in its cluster). */
function etcdTransportSocket(tls, alpn) {
  return {
    name: "envoy.transport_sockets.tls",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
      sni: "localhost",
      common_tls_context: {
        tls_certificates: [{ certificate_chain: { filename: tls.client.cert }, private_key: { filename: tls.client.key } }],
        validation_context: { trusted_ca: { filename: tls.ca } },
        ...(alpn.length ? { alpn_protocols: alpn } : {}),
      },
    },
  };
}

/** The same members over HTTP/2, for etcd's gRPC API (the Watch stream of `watch_cluster`). */
export function etcdGrpcEnvoyCluster(cluster, name = "etcd_grpc") {
  const c = etcdEnvoyCluster(cluster, name);
  c.typed_extension_protocol_options = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
      "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
      explicit_http_config: { http2_protocol_options: {} },
    },
  };
  // etcd's gRPC health service: an HTTP/1.1 check cannot share an h2-only TLS connection.
  c.health_checks = c.health_checks.map(({ http_health_check: _, ...hc }) => ({ ...hc, grpc_health_check: {} }));
  if (cluster.tls) c.transport_socket = etcdTransportSocket(cluster.tls, ["h2"]);
  return c;
}
