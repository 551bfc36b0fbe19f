#!/usr/bin/env node
// `make bench-etcd`: the cost of keeping the authorization server's state in etcd
// (docs/state-store.md). Two Envoys with the same plugin config, one with `state_store.etcd` (a
// 3-member etcd on loopback, Debian's etcd-server) and one without (shared data), measured in
// interleaved rounds:
//  - token endpoint: refresh-token rotations (the grant that writes to the store on every call),
//    CHAINS concurrent chains over keep-alive HTTPS, each refreshing its newest token in a loop;
//  - validation: wrk on `GET /mcp` with a valid access token; the route answers with a
//    direct_response after the filter, so no backend is measured.
// Writes a section between the `etcd-bench` markers of BENCHMARKS.md and prints it.
import { execFileSync, spawnSync } from "node:child_process";
import https from "node:https";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import { startEnvoy } from "../wasm-tests/lib/envoy.mjs";
import { startEtcdCluster, etcdEnvoyCluster } from "../wasm-tests/lib/etcd.mjs";
import { caPem } from "../wasm-tests/lib/http.mjs";
import { REPO_ROOT } from "../wasm-tests/lib/paths.mjs";
import { Agent, authServerMaterial, authorizeFlow, authorizeUrl, keysSection, pkce, randomSecret, tokenRequest } from "../wasm-tests/lib/authz.mjs";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const SECONDS = Number(process.env.BENCH_DURATION ?? 8);
const CHAINS = Number(process.env.BENCH_CHAINS ?? 8);
const REDIRECT = "http://127.0.0.1:45681/callback";
const started = Date.now();

const m = await authServerMaterial();
const etcd = await startEtcdCluster({ size: 3 });
const directResponse = (yamlText) => {
  const cfg = YAML.parse(yamlText);
  for (const l of cfg.static_resources.listeners)
    for (const chain of l.filter_chains)
      for (const f of chain.filters)
        for (const vh of f.typed_config?.route_config?.virtual_hosts ?? [])
          vh.routes = [{ match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: "ok" } } }];
  return YAML.stringify(cfg, { lineWidth: 0 });
};
const envoys = {};
try {
  for (const id of ["shared data", "etcd"]) {
    envoys[id] = await startEnvoy({
      envKeyValues: m.envKeyValues,
      extraClusters: [etcdEnvoyCluster(etcd)],
      transformConfig: directResponse,
      logLevel: "warn",
      pluginConfig: ({ origin }) => ({
        resource: `${origin}/mcp`,
        routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
        authorization_server: {
          ...keysSection(m),
          scopes: [{ name: "mcp:tools", description: "Use the tools" }],
          users: [m.userEntry()],
          clients: [m.robotEntry({ scopes: ["mcp:tools"] }), { client_id: "bench", redirect_uris: [REDIRECT] }],
          rate_limits: { token_per_minute_per_client: 1e9, token_per_minute_per_address: 1e9 },
        },
        ...(id === "etcd" ? { state_store: { etcd: { cluster: "etcd", prefix: `/bench-${randomSecret(4)}/` } } } : {}),
      }),
    });
  }

  /** CHAINS refresh tokens from real code flows at `envoy`. */
  async function refreshTokens(envoy) {
    const out = [];
    for (let i = 0; i < CHAINS; i++) {
      const pk = pkce();
      const url = authorizeUrl(envoy.origin, { response_type: "code", client_id: "bench", redirect_uri: REDIRECT, scope: "mcp:tools", state: "s", code_challenge: pk.challenge, code_challenge_method: "S256" });
      const flow = await authorizeFlow(new Agent(envoy.origin), url, { username: m.user.username, password: m.user.password });
      const code = new URL(flow.location).searchParams.get("code");
      const res = await tokenRequest(envoy.origin, { grant_type: "authorization_code", code, redirect_uri: REDIRECT, code_verifier: pk.verifier, client_id: "bench" });
      if (res.status !== 200) throw new Error(`code at ${envoy.origin}: ${res.status} ${res.body}`);
      out.push(res.json);
    }
    return out;
  }

  const agent = new https.Agent({ ca: caPem(), keepAlive: true, maxSockets: CHAINS });
  function refresh(envoy, token) {
    const body = new URLSearchParams({ grant_type: "refresh_token", refresh_token: token, client_id: "bench" }).toString();
    return new Promise((resolve, reject) => {
      const req = https.request(`${envoy.origin}/oauth/token`, { method: "POST", agent, headers: { "content-type": "application/x-www-form-urlencoded", "content-length": Buffer.byteLength(body) } }, (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(text).refresh_token) : reject(new Error(`${res.statusCode} ${text}`))));
      });
      req.on("error", reject);
      req.end(body);
    });
  }

  const chains = {};
  for (const [id, envoy] of Object.entries(envoys)) chains[id] = (await refreshTokens(envoy)).map((t) => t.refresh_token);
  const access = {};
  for (const [id, envoy] of Object.entries(envoys)) {
    const res = await tokenRequest(envoy.origin, { grant_type: "client_credentials" }, { basic: [m.robot.client_id, m.robot.secret] });
    access[id] = res.json.access_token;
  }

  async function tokenRun(id) {
    const deadline = Date.now() + SECONDS * 1000;
    const latencies = [];
    await Promise.all(
      chains[id].map(async (_, i) => {
        while (Date.now() < deadline) {
          const t0 = performance.now();
          chains[id][i] = await refresh(envoys[id], chains[id][i]);
          latencies.push(performance.now() - t0);
        }
      }),
    );
    latencies.sort((a, b) => a - b);
    return { rps: latencies.length / SECONDS, p50: latencies[Math.floor(latencies.length / 2)], p99: latencies[Math.floor(latencies.length * 0.99)] };
  }

  function wrkRun(id) {
    const r = spawnSync("wrk", ["-t2", "-c8", `-d${SECONDS}s`, "-H", `Authorization: Bearer ${access[id]}`, `${envoys[id].origin}/mcp`], { encoding: "utf8" });
    const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(r.stdout)?.[1]);
    const non2xx = Number(/Non-2xx or 3xx responses:\s*(\d+)/.exec(r.stdout)?.[1] ?? 0);
    if (!rps || non2xx) throw new Error(`wrk at ${id}: ${r.stdout}${r.stderr}`);
    return { rps };
  }

  const results = { token: { "shared data": [], etcd: [] }, validation: { "shared data": [], etcd: [] } };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? ["etcd", "shared data"] : ["shared data", "etcd"];
    for (const id of order) results.token[id].push(await tokenRun(id));
    for (const id of order) results.validation[id].push(wrkRun(id));
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
  const f0 = (x) => Math.round(x).toLocaleString("en-US");
  const f1 = (x) => x.toFixed(1);
  const tok = (id) => results.token[id];
  const val = (id) => results.validation[id];
  const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: REPO_ROOT, encoding: "utf8" }).trim();
  const section = [
    "## Many replicas: etcd vs shared data (`make bench-etcd`)",
    "",
    `Generated by \`make bench-etcd\` (bench/etcd.mjs) on ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC in ${f1((Date.now() - started) / 60000)} min, commit ${commit}, ${cpus().length} CPUs shared by everything below.`,
    `Two Envoys (\`--concurrency 2\`, HTTPS listener, the e2e config with every route a \`direct_response\`), the same plugin config (ES256 signing key) but for \`state_store.etcd\`; a 3-member etcd 3.4 on loopback; ${ROUNDS} interleaved rounds of ${SECONDS} s, medians.`,
    `*Token endpoint*: ${CHAINS} concurrent chains of \`refresh_token\` grants over keep-alive HTTPS (each rotation is one etcd transaction with etcd; a compare-and-swap in shared data without), latency per request at the client (Node).`,
    "*Validation*: wrk, 2 threads, 8 connections, `GET /mcp` with a valid access token (the revocation check reads the local snapshot in both).",
    "",
    "| measurement | shared data | etcd | etcd ÷ shared data |",
    "|---|---:|---:|---:|",
    `| token endpoint, refresh grants/s | ${f0(median(tok("shared data").map((r) => r.rps)))} | ${f0(median(tok("etcd").map((r) => r.rps)))} | ${(median(tok("etcd").map((r) => r.rps)) / median(tok("shared data").map((r) => r.rps))).toFixed(2)} |`,
    `| token endpoint, p50 / p99 ms | ${f1(median(tok("shared data").map((r) => r.p50)))} / ${f1(median(tok("shared data").map((r) => r.p99)))} | ${f1(median(tok("etcd").map((r) => r.p50)))} / ${f1(median(tok("etcd").map((r) => r.p99)))} | |`,
    `| validation, \`GET /mcp\` req/s | ${f0(median(val("shared data").map((r) => r.rps)))} | ${f0(median(val("etcd").map((r) => r.rps)))} | ${(median(val("etcd").map((r) => r.rps)) / median(val("shared data").map((r) => r.rps))).toFixed(2)} |`,
    "",
    `Per round (shared data / etcd): token ${tok("shared data").map((r, i) => `${f0(r.rps)} / ${f0(tok("etcd")[i].rps)}`).join("; ")}; validation ${val("shared data").map((r, i) => `${f0(r.rps)} / ${f0(val("etcd")[i].rps)}`).join("; ")}.`,
  ].join("\n");
  console.log(section);
  const path = join(REPO_ROOT, "BENCHMARKS.md");
  const text = readFileSync(path, "utf8");
  const begin = "<!-- etcd-bench:begin -->";
  const end = "<!-- etcd-bench:end -->";
  const block = `${begin}\n${section}\n${end}`;
  writeFileSync(path, text.includes(begin) ? text.replace(new RegExp(`${begin}[\\s\\S]*${end}`), block) : `${text.trimEnd()}\n\n${block}\n`);
} finally {
  await Promise.all(Object.values(envoys).map((e) => e.stop()));
  await etcd.stop();
}
