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
import { Agent, authServerMaterial, authorizeFlow, authorizeUrl, authServerSection, pkce, randomSecret, tokenRequest } from "../wasm-tests/lib/authz.mjs";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_DURATION ?? 8);
const CHAINS = Number(process.env.BENCH_CHAINS ?? 32);
const REDIRECT = "http://127.0.0.1:45681/callback";
// A second shared-data Envoy, identical to the first, shows how much two equal configurations
// differ on this machine: differences smaller than that are noise.
const IDS = ["shared data", "etcd", "control"];
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
  for (const id of IDS) {
    envoys[id] = await startEnvoy({
      envKeyValues: m.envKeyValues,
      extraClusters: [etcdEnvoyCluster(etcd)],
      transformConfig: directResponse,
      logLevel: "warn",
      pluginConfig: ({ origin }) => ({
        resource: `${origin}/mcp`,
        routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
        authorization_server: authServerSection(m, { clientId: "bench", redirectUri: REDIRECT }),
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

  /** User+system CPU seconds of an Envoy process so far. */
  const cpuSeconds = (envoy) => {
    const fields = readFileSync(`/proc/${envoy.pid}/stat`, "utf8").split(") ").pop().split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100/s)
  };

  /** etcd's own write latency, from this process straight to one member (no Envoy): the floor under a grant. */
  async function etcdWriteLatency(n = 200) {
    const times = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await etcd.call("/v3/kv/put", { key: Buffer.from(`/bench-floor/${i}`).toString("base64"), value: "eA==" });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return { p50: times[Math.floor(n / 2)], p99: times[Math.floor(n * 0.99)] };
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
    const cpu0 = cpuSeconds(envoys[id]);
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
    const cpuUs = ((cpuSeconds(envoys[id]) - cpu0) * 1e6) / latencies.length;
    return { cpuUs, rps: latencies.length / SECONDS, p50: latencies[Math.floor(latencies.length / 2)], p99: latencies[Math.floor(latencies.length * 0.99)] };
  }

  function wrkRun(id) {
    const cpu0 = cpuSeconds(envoys[id]);
    const r = spawnSync("wrk", ["-t2", "-c8", `-d${SECONDS}s`, "-H", `Authorization: Bearer ${access[id]}`, `${envoys[id].origin}/mcp`], { encoding: "utf8" });
    const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(r.stdout)?.[1]);
    const non2xx = Number(/Non-2xx or 3xx responses:\s*(\d+)/.exec(r.stdout)?.[1] ?? 0);
    if (!rps || non2xx) throw new Error(`wrk at ${id}: ${r.stdout}${r.stderr}`);
    const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1]);
    return { rps, cpuUs: ((cpuSeconds(envoys[id]) - cpu0) * 1e6) / requests };
  }

  const floor = await etcdWriteLatency();
  const upstream = async () => {
    const s = await envoys.etcd.stats("cluster.etcd.upstream_");
    return { cx: s["cluster.etcd.upstream_cx_total"] ?? 0, rq: s["cluster.etcd.upstream_rq_total"] ?? 0 };
  };
  const upstreamBefore = await upstream();
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const results = { token: Object.fromEntries(IDS.map((id) => [id, []])), validation: Object.fromEntries(IDS.map((id) => [id, []])) };
  for (let round = 0; round < ROUNDS; round++) {
    const order = IDS.map((_, i) => IDS[(i + round) % IDS.length]);
    for (const id of order) results.token[id].push(await tokenRun(id));
    for (const id of order) results.validation[id].push(wrkRun(id));
  }
  const upstreamAfter = await upstream();
  const median = (xs) => {
    const v = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(v.length / 2);
    return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  };
  const f0 = (x) => Math.round(x).toLocaleString("en-US");
  const f1 = (x) => x.toFixed(1);
  const med = (kind, id, field) => median(results[kind][id].map((r) => r[field]));
  const ratio = (kind, id, field) => (med(kind, id, field) / med(kind, "shared data", field)).toFixed(2);
  const row = (label, kind, field, fmt) =>
    `| ${label} | ${fmt(med(kind, "shared data", field))} | ${fmt(med(kind, "etcd", field))} | ${ratio(kind, "etcd", field)} | ${ratio(kind, "control", field)} |`;
  const tok = (id) => results.token[id];
  const val = (id) => results.validation[id];
  const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: REPO_ROOT, encoding: "utf8" }).trim();
  const section = [
    "## Many replicas: etcd vs shared data (`make bench-etcd`)",
    "",
    `Generated by \`make bench-etcd\` (bench/etcd.mjs) on ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC in ${f1((Date.now() - started) / 60000)} min, commit ${commit}, ${cpus().length} CPUs shared by everything below.`,
    `Three Envoys (\`--concurrency 2\`, HTTPS listener, the e2e config with every route a \`direct_response\`), the same plugin config (ES256 signing key) but for \`state_store.etcd\` on one of them (the third is a control, identical to the first); a 3-member etcd 3.4 on loopback; ${ROUNDS} interleaved rounds of ${SECONDS} s, medians.`,
    `*Token endpoint*: ${CHAINS} concurrent chains of \`refresh_token\` grants over keep-alive HTTPS (each rotation is one etcd transaction with etcd; a compare-and-swap in shared data without), latency per request at the client (Node).`,
    "*Validation*: wrk, 2 threads, 8 connections, `GET /mcp` with a valid access token (the revocation check reads the local snapshot in both).",
    "",
    "| measurement | shared data | etcd | etcd ÷ shared data | control (shared data again) ÷ shared data |",
    "|---|---:|---:|---:|---:|",
    row("token endpoint, refresh grants/s", "token", "rps", f0),
    `| token endpoint, p50 / p99 ms | ${f1(med("token", "shared data", "p50"))} / ${f1(med("token", "shared data", "p99"))} | ${f1(med("token", "etcd", "p50"))} / ${f1(med("token", "etcd", "p99"))} | | |`,
    row("token endpoint, Envoy CPU µs per grant", "token", "cpuUs", f0),
    row("validation, `GET /mcp` req/s", "validation", "rps", f0),
    row("validation, Envoy CPU µs per request", "validation", "cpuUs", f1),
    "",
    `etcd's own write latency on this machine (a put from the bench process to one member, no Envoy; a commit needs a quorum of the three members to write and fsync their logs, all on one disk here): p50 ${f1(floor.p50)} ms, p99 ${f1(floor.p99)} ms. Load average (other work on the machine) before the rounds: ${load}.`,
    `The etcd Envoy made ${f0(upstreamAfter.rq - upstreamBefore.rq)} calls to etcd over ${f0(upstreamAfter.cx - upstreamBefore.cx)} new connections during the rounds (grants, polls and health checks).`,
    `Envoy CPU per request is user+system time of the Envoy process over the run divided by the requests served; it is what the filter costs, where req/s also depends on the load generator and on other work.`,
    "",
    `Per round, req/s and CPU µs (shared data / etcd / control): token ${tok("shared data").map((r, i) => `${f0(r.rps)} / ${f0(tok("etcd")[i].rps)} / ${f0(tok("control")[i].rps)} (${f0(r.cpuUs)} / ${f0(tok("etcd")[i].cpuUs)} / ${f0(tok("control")[i].cpuUs)})`).join("; ")}; validation ${val("shared data").map((r, i) => `${f0(r.rps)} / ${f0(val("etcd")[i].rps)} / ${f0(val("control")[i].rps)} (${f1(r.cpuUs)} / ${f1(val("etcd")[i].cpuUs)} / ${f1(val("control")[i].cpuUs)})`).join("; ")}.`,
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
