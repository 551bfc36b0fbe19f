// A crashing filter fails closed: envoy/envoy.yaml ships `failure_policy: FAIL_RELOAD`, and with
// that policy a filter that panics on every request must never let a request through to the
// backend — neither while the crashed VM is down nor after Envoy has reloaded a fresh one.
//
// The filter here is not mcp-oauth but a tiny proxy-wasm crate (wasm-tests/fixtures/panicking-filter)
// that configures fine and then panics in on_http_request_headers. It is built by this test when its
// .wasm is missing or older than its sources (about 10 s, once), into target/fixtures/. Envoy runs
// with envoy/envoy.yaml rendered as for every other e2e test, only with that .wasm (and test ports);
// the backend is lib/recorder.mjs, which notes every TCP connection and byte it gets.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import YAML from "yaml";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startRecorder } from "./lib/recorder.mjs";
import { request } from "./lib/http.mjs";
import { REPO_ROOT, TESTS_DIR } from "./lib/paths.mjs";
import { sleep } from "./lib/procs.mjs";

const FIXTURE_DIR = join(TESTS_DIR, "fixtures", "panicking-filter");
const FIXTURE_TARGET_DIR = join(REPO_ROOT, "target", "fixtures");
const FIXTURE_WASM = process.env.PANICKING_FILTER_WASM || join(FIXTURE_TARGET_DIR, "wasm32-wasip1", "release", "panicking_filter.wasm");
const BUILD_TIMEOUT_MS = 10 * 60 * 1000;

let envoy, recorder;

/** Builds the fixture unless its .wasm is there and newer than its sources. */
function ensureFixture() {
  if (process.env.PANICKING_FILTER_WASM) {
    assert.ok(existsSync(FIXTURE_WASM), `PANICKING_FILTER_WASM=${FIXTURE_WASM} does not exist`);
    return;
  }
  const sources = [join(FIXTURE_DIR, "Cargo.toml"), join(FIXTURE_DIR, "src", "lib.rs")];
  const newest = Math.max(...sources.map((f) => statSync(f).mtimeMs));
  if (existsSync(FIXTURE_WASM) && statSync(FIXTURE_WASM).mtimeMs >= newest) return;
  const args = [
    "build",
    "--release",
    "--target",
    "wasm32-wasip1",
    "--manifest-path",
    join(FIXTURE_DIR, "Cargo.toml"),
    "--target-dir",
    FIXTURE_TARGET_DIR,
  ];
  const r = spawnSync("cargo", args, { cwd: REPO_ROOT, encoding: "utf8", timeout: BUILD_TIMEOUT_MS });
  if (r.error || r.status !== 0 || !existsSync(FIXTURE_WASM)) {
    throw new Error(
      `building the panicking fixture failed (cargo ${args.join(" ")}): ${r.error?.message ?? `exit ${r.status}`}\n${(r.stderr ?? "").slice(-3000)}`,
    );
  }
}

/** The mcp_oauth Wasm filter's `config` in a parsed Envoy config. */
function wasmFilterConfig(cfg) {
  const listener = cfg.static_resources.listeners.find((l) => l.name === "mcp_https");
  const hcm = listener.filter_chains[0].filters.find((f) => f.name === "envoy.filters.network.http_connection_manager").typed_config;
  const filter = hcm.http_filters.find((f) => f.name === "mcp_oauth");
  assert.ok(filter, "no http filter named mcp_oauth");
  return filter.typed_config.config;
}

before(
  async () => {
    ensureFixture();
    recorder = await startRecorder();
    envoy = await startEnvoy({
      wasmPath: FIXTURE_WASM,
      backendPort: recorder.port,
      sseBackendPort: recorder.port,
      jwksPort: recorder.port,
      // No pluginConfig: the shipped configuration text stays (the fixture ignores it).
    });
  },
  { timeout: BUILD_TIMEOUT_MS + 60000 },
);

after(async () => {
  await envoy?.stop();
  await recorder?.stop();
});

const T = (name, fn) =>
  test(name, () =>
    withLog(envoy, fn, () => `recorder: ${recorder.connections} connections, ${recorder.bytes} bytes, requests: ${recorder.requests.map((r) => `${r.method} ${r.url}`).join(", ")}`),
  );

const panics = () => (envoy.log().match(/panicked at/g) ?? []).length;
// The fixture logs this from on_configure: once per VM at start-up (N+2 VMs), once per reloaded VM.
const configured = () => (envoy.log().match(/panicking-filter: configured/g) ?? []).length;

function assertAlive() {
  assert.equal(envoy.exitInfo, null, `Envoy exited: ${JSON.stringify(envoy.exitInfo)}`);
  process.kill(envoy.pid, 0); // throws if the process is gone
}

function assertNothingReachedTheBackend() {
  assert.equal(recorder.connections, 0, "the backend got a TCP connection");
  assert.equal(recorder.bytes, 0, "the backend got bytes");
  assert.equal(recorder.requests.length, 0, "the backend got a request");
}

// One probe of each kind: MCP POST with a (made-up) token, MCP GET, public-looking paths, the
// authorization server's endpoints. All of them run through the crashing filter.
const PROBES = [
  {
    what: "POST /mcp",
    path: "/mcp",
    method: "POST",
    headers: { authorization: "Bearer abc.def.ghi", "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
  },
  { what: "GET /mcp", path: "/mcp", method: "GET", headers: { accept: "text/event-stream" } },
  { what: "GET /health", path: "/health", method: "GET" },
  { what: "GET PRM", path: "/.well-known/oauth-protected-resource", method: "GET" },
  {
    what: "POST /oauth/token",
    path: "/oauth/token",
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: "grant_type=client_credentials",
  },
  { what: "GET /anything", path: "/anything/else", method: "GET" },
];

async function probe(p) {
  const res = await request(envoy.url(p.path), { method: p.method, headers: p.headers ?? {}, body: p.body, timeoutMs: 5000 });
  return { ...p, status: res.status, body: res.body, details: res.headers["x-envoy-response-code-details"] };
}

T("envoy/envoy.yaml ships failure_policy FAIL_RELOAD, and the rendered test config keeps it", async () => {
  const shipped = wasmFilterConfig(YAML.parse(readFileSync(join(REPO_ROOT, "envoy", "envoy.yaml"), "utf8")));
  assert.equal(shipped.failure_policy, "FAIL_RELOAD", "envoy/envoy.yaml: failure_policy of the mcp_oauth filter");
  assert.notEqual(shipped.fail_open, true, "envoy/envoy.yaml must not set the legacy fail_open");
  const rendered = wasmFilterConfig(YAML.parse(readFileSync(envoy.configPath, "utf8")));
  assert.equal(rendered.failure_policy, "FAIL_RELOAD", "rendered config: failure_policy");
  assert.notEqual(rendered.fail_open, true, "rendered config: fail_open");
  assert.equal(rendered.vm_config.code.local.filename, FIXTURE_WASM, "the rendered config runs the panicking fixture");
});

T("the first request to /mcp gets 503 and the fixture really panicked; the backend sees nothing", async () => {
  const before = panics();
  const r = await probe(PROBES[0]);
  assert.equal(r.status, 503, `POST /mcp through a panicking filter: ${r.status} ${r.body}`);
  assertNothingReachedTheBackend();
  // Envoy logs the panic message through the proxy-wasm panic hook.
  assert.ok(panics() > before, "no 'panicked at' line in the Envoy log: the fixture did not run");
  assert.match(envoy.log(), /deliberate panic in on_http_request_headers/);
  assertAlive();
});

T("every kind of request, sequential over 3 s (through and after the reload window): 503, never the backend", async () => {
  const panicsBefore = panics();
  const configuredBefore = configured();
  const seen = [];
  const t0 = Date.now();
  let i = 0;
  while (Date.now() - t0 < 3000) {
    seen.push(await probe(PROBES[i++ % PROBES.length]));
    await sleep(120);
  }
  const summary = seen.map((s) => `${s.what}: ${s.status}`).join("\n");
  assert.ok(seen.length >= 12, `only ${seen.length} requests in 3 s`);
  for (const s of seen) assert.equal(s.status, 503, `${s.what}: ${s.status} ${s.body}\nall:\n${summary}`);
  assertNothingReachedTheBackend();
  // A fresh VM was loaded at least once in that time and it crashed again: the reload is real,
  // and what comes back after it fails closed too.
  assert.ok(panics() > panicsBefore, `no new panic in 3 s\n${summary}`);
  assert.ok(configured() > configuredBefore, `no VM was reloaded (configured again) in 3 s\n${summary}`);
  assertAlive();
});

T("bursts of parallel requests while VMs crash and reload: all 503, never the backend", async () => {
  const statuses = [];
  for (let round = 0; round < 4; round++) {
    const batch = await Promise.all(Array.from({ length: 12 }, (_, k) => probe(PROBES[k % PROBES.length])));
    statuses.push(...batch.map((s) => `${s.what}: ${s.status}`));
    for (const s of batch) assert.equal(s.status, 503, `${s.what}: ${s.status} ${s.body}`);
    await sleep(400);
  }
  assertNothingReachedTheBackend();
  assertAlive();
});

T("after everything: Envoy is alive, its admin answers, and the backend never got a byte", async () => {
  const ready = await request(`http://127.0.0.1:${envoy.adminPort}/ready`);
  assert.equal(ready.status, 200);
  assert.equal(ready.body.trim(), "LIVE");
  assertNothingReachedTheBackend();
  assertAlive();
});
