// Start the real Envoy binary with a config rendered by envoy/render.mjs, wait until it serves, stop it by pid.
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync, openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_ROOT, findEnvoyBinary, wasmPath, ensureCerts, CERT_DIR } from "./paths.mjs";
import { freePort, canConnect, spawnTracked, stopTracked, waitFor } from "./procs.mjs";
import { request } from "./http.mjs";

let renderMod;
async function renderer() {
  if (!renderMod) {
    const p = join(REPO_ROOT, "envoy", "render.mjs");
    if (!existsSync(p)) throw new Error(`${p} not found (the Envoy config renderer)`);
    renderMod = await import(pathToFileURL(p).href);
  }
  return renderMod.renderEnvoyConfig;
}

/** Development aid only: drop the Wasm filter from a rendered config (used to check the harness without a .wasm). */
async function stripWasmFilter(yamlText) {
  const YAML = await import("yaml");
  const doc = YAML.parse(yamlText);
  const walk = (node) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === "object") {
      if (Array.isArray(node.http_filters)) {
        node.http_filters = node.http_filters.filter((f) => !/wasm/i.test(JSON.stringify(f.typed_config?.["@type"] ?? f.name)));
      }
      Object.values(node).forEach(walk);
    }
  };
  walk(doc);
  return YAML.stringify(doc);
}

/** The last `lines` lines, without Envoy's start-up inventory (extension and header-map lists), each cut at 600 chars. */
export function tailText(text, lines = 60) {
  const all = text
    .split("\n")
    .filter((l) => !/\[source\/server\/server\.cc:(467|547)\]/.test(l))
    .map((l) => (l.length > 600 ? `${l.slice(0, 600)}…` : l));
  return all.slice(Math.max(0, all.length - lines - 1)).join("\n");
}

function readLog(path) {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

let baseIdSeq = 0;

// Temp dirs of Envoys still running; removed at exit even when a test run is interrupted.
const liveDirs = new Set();
process.on("exit", () => {
  if (process.env.KEEP_E2E_TMP) return;
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
});

/**
 * Render a config and spawn Envoy. Returns the handle immediately after spawn (not yet ready).
 * opts:
 *  - pluginConfig: object | string | ({origin, listenerPort, adminPort, host}) => object
 *  - backendPort, sseBackendPort, jwksPort, envKeyValues, extraClusters: passed to renderEnvoyConfig
 *  - render: extra renderEnvoyConfig options
 *  - host: the host name clients use (default "localhost"; the cert has localhost and 127.0.0.1)
 *  - stripWasm: development aid only
 */
export async function spawnEnvoy(opts = {}) {
  ensureCerts();
  const listenerPort = opts.listenerPort ?? (await freePort());
  const adminPort = await freePort();
  const host = opts.host ?? "localhost";
  const origin = `https://${host}:${listenerPort}`;
  const dir = mkdtempSync(join(tmpdir(), "mcp-oauth-e2e-"));
  liveDirs.add(dir);
  const logPath = join(dir, "envoy.log");
  const accessLogPath = join(dir, "access.log");
  let pluginConfig = opts.pluginConfig;
  if (typeof pluginConfig === "function") pluginConfig = pluginConfig({ origin, listenerPort, adminPort, host });
  const renderEnvoyConfig = await renderer();
  const renderOpts = {
    listenerPort,
    adminPort,
    backendPort: opts.backendPort ?? (await freePort()),
    jwksPort: opts.jwksPort ?? (await freePort()),
    pluginConfig,
    wasmPath: opts.wasmPath ?? wasmPath(),
    certDir: CERT_DIR,
    accessLogPath,
    ...(opts.sseBackendPort !== undefined ? { sseBackendPort: opts.sseBackendPort } : {}),
    ...(opts.envKeyValues ? { envKeyValues: opts.envKeyValues } : {}),
    ...(opts.extraClusters ? { extraClusters: opts.extraClusters } : {}),
    ...(opts.render ?? {}),
  };
  let yamlText = await renderEnvoyConfig(renderOpts);
  if (opts.stripWasm) yamlText = await stripWasmFilter(yamlText);
  // Benchmarks only: change the rendered config (a function of its YAML text, returning YAML).
  if (opts.transformConfig) yamlText = await opts.transformConfig(yamlText);
  const configPath = join(dir, "envoy.yaml");
  writeFileSync(configPath, yamlText);
  if (typeof pluginConfig === "object") writeFileSync(join(dir, "plugin-config.json"), JSON.stringify(pluginConfig, null, 2));

  // Unique per running Envoy: the admin port is unique on this machine while it runs.
  const baseId = (adminPort * 8 + (baseIdSeq++ % 8)) % 2 ** 31;
  // The log goes to stderr, which is the file itself: Envoy's --log-path sink is flushed only every
  // few seconds, too late for a failure message.
  const args = ["-c", configPath, "--concurrency", String(opts.concurrency ?? 2), "--base-id", String(baseId), "-l", opts.logLevel ?? "info"];
  if (opts.componentLogLevel) args.push("--component-log-level", opts.componentLogLevel);
  const bin = findEnvoyBinary();
  const logFd = openSync(logPath, "a");
  const proc = spawnTracked(bin, args, { cwd: dir, stdio: ["ignore", logFd, logFd] });
  closeSync(logFd);
  const stdio = [];
  let exitInfo = null;
  proc.exited.then((e) => {
    exitInfo = e;
  });

  const envoy = {
    dir,
    configPath,
    logPath,
    accessLogPath,
    listenerPort,
    adminPort,
    host,
    origin,
    pid: proc.child.pid,
    renderOpts,
    pluginConfig,
    get exitInfo() {
      return exitInfo;
    },
    exited: proc.exited,
    url: (path = "/") => `${origin}${path}`,
    log: () => readLog(logPath) + (stdio.length ? `\n[stdout/stderr]\n${stdio.join("")}` : ""),
    logTail: (lines = 60) => tailText(envoy.log(), lines),
    async stop() {
      await stopTracked(proc);
      if (!process.env.KEEP_E2E_TMP) rmSync(dir, { recursive: true, force: true });
      liveDirs.delete(dir);
    },
    /** Counters whose name contains mcp_oauth, names without Envoy's "wasmcustom." prefix. */
    async stats(filter = "mcp_oauth") {
      const r = await request(`http://127.0.0.1:${adminPort}/stats?filter=${encodeURIComponent(filter)}`);
      const out = {};
      for (const line of r.body.split("\n")) {
        const m = /^([^:]+):\s*(\d+)\s*$/.exec(line.trim());
        if (m) out[m[1].replace(/^wasmcustom\./, "")] = Number(m[2]);
      }
      return out;
    },
    async counter(name) {
      const s = await envoy.stats();
      return s[name] ?? 0;
    },
  };
  return envoy;
}

/** Wait until admin /ready says LIVE and the TLS listener accepts. Throws with the log tail otherwise. */
export async function waitReady(envoy, timeoutMs = 30000) {
  const abort = () =>
    envoy.exitInfo ? new Error(`Envoy exited before it was ready (${JSON.stringify(envoy.exitInfo)})`) : null;
  try {
    await waitFor(
      async () => {
        const r = await request(`http://127.0.0.1:${envoy.adminPort}/ready`, { timeoutMs: 1000 });
        return r.status === 200 && r.body.trim() === "LIVE";
      },
      { timeoutMs, intervalMs: 50, what: "Envoy admin /ready = LIVE", abort },
    );
    await waitFor(() => canConnect(envoy.listenerPort), { timeoutMs, intervalMs: 50, what: "Envoy listener", abort });
  } catch (e) {
    const tail = envoy.logTail(80);
    await envoy.stop().catch(() => {});
    e.message += `\n--- Envoy log tail (${envoy.logPath}) ---\n${tail}`;
    throw e;
  }
  return envoy;
}

/** spawnEnvoy + waitReady. */
export async function startEnvoy(opts = {}) {
  const envoy = await spawnEnvoy(opts);
  return waitReady(envoy, opts.readyTimeoutMs ?? 30000);
}

/**
 * For configs that must be refused: start Envoy and wait at most `timeoutMs` for it to exit.
 * Returns {exited, exitInfo, served, log}: `served` is true if the listener became ready (a failure for such tests).
 * Envoy is always stopped before returning.
 */
export async function startEnvoyExpectingFailure(opts = {}, timeoutMs = 8000) {
  const envoy = await spawnEnvoy(opts);
  const deadline = Date.now() + timeoutMs;
  let served = false;
  while (Date.now() < deadline && !envoy.exitInfo) {
    const r = await request(`http://127.0.0.1:${envoy.adminPort}/ready`, { timeoutMs: 500 }).catch(() => null);
    if (r && r.status === 200 && r.body.trim() === "LIVE" && (await canConnect(envoy.listenerPort))) {
      served = true;
      break;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  const exitInfo = envoy.exitInfo;
  const log = envoy.log();
  await envoy.stop();
  return { exited: !!exitInfo, exitInfo, served, log, envoy };
}

/**
 * Run `fn`; if it throws, append the Envoy log tail (and optional extra context) to the error message.
 * Use in every test: `test("x", () => withLog(envoy, async () => {...}))`.
 */
export async function withLog(envoys, fn, extra) {
  try {
    return await fn();
  } catch (e) {
    const list = Array.isArray(envoys) ? envoys : [envoys];
    let add = "";
    for (const ev of list) if (ev) add += `\n--- Envoy log tail (${ev.logPath}) ---\n${ev.logTail(40)}`;
    if (extra) add += `\n--- context ---\n${typeof extra === "function" ? extra() : extra}`;
    if (e && typeof e === "object") {
      try {
        const stack = e.stack; // format it before the message changes (V8 formats the stack lazily)
        e.message = `${e.message}${add}`;
        if (typeof stack === "string") e.stack = `${stack}${add}`;
      } catch {
        /* read-only message */
      }
    }
    throw e;
  }
}
