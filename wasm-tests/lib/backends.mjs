// Backends behind Envoy: an echo server, a JWKS server, and the unchanged MCP "everything" server.
import http from "node:http";
import { createRequire } from "node:module";
import { freePort, canConnect, spawnTracked, stopTracked, waitFor } from "./procs.mjs";
import { REPO_ROOT } from "./paths.mjs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve(server.address().port);
    });
  });
}

function closeServer(server) {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}

/**
 * A tiny HTTP server that records every request (method, url, headers, rawHeaders, body) and answers
 * 200 `{"ok":true,"method","path"}`. `port` (default: a free one) brings a stopped echo back on its port.
 */
export async function startEcho({ port: wanted = 0 } = {}) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const rec = {
        method: req.method,
        url: req.url,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(rec);
      const payload = JSON.stringify({ ok: true, method: req.method, path: req.url });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(payload) });
      res.end(payload);
    });
  });
  const port = await listen(server, wanted);
  return {
    port,
    requests,
    /** The last request whose url starts with `prefix` (and optionally carries header `marker`). */
    last(prefix = "/") {
      for (let i = requests.length - 1; i >= 0; i--) if (requests[i].url.startsWith(prefix)) return requests[i];
      return undefined;
    },
    find(pred) {
      return requests.find(pred);
    },
    clear() {
      requests.length = 0;
    },
    stop: () => closeServer(server),
  };
}

/**
 * A JWKS server at http://127.0.0.1:<port>/jwks.json. `setKeys([...jwk])` changes what it serves;
 * `stop()`/`start()` take it down and bring it back on the same port; `fetches` counts GETs of the JWKS.
 */
export async function startJwks(initialKeys = []) {
  let keys = initialKeys;
  let hang = false;
  let delayMs = 0;
  const state = { fetches: 0, log: [] };
  let server;
  const make = () =>
    http.createServer((req, res) => {
      state.log.push({ method: req.method, url: req.url, headers: req.headers, at: Date.now() });
      if (hang) return; // never answer: the caller's timeout has to fire
      if (req.method === "GET" && req.url.split("?")[0] === "/jwks.json") {
        state.fetches++;
        const body = JSON.stringify({ keys });
        setTimeout(() => {
          res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
          res.end(body);
        }, delayMs);
        return;
      }
      res.writeHead(404, { "content-type": "application/json" });
      res.end('{"error":"not_found"}');
    });
  server = make();
  const port = await listen(server, 0);
  const api = {
    port,
    uri: `http://127.0.0.1:${port}/jwks.json`,
    get fetches() {
      return state.fetches;
    },
    get log() {
      return state.log;
    },
    setKeys(k) {
      keys = k;
    },
    /** Answer key-set fetches this many ms late (so that fetches can overlap). */
    setDelay(ms) {
      delayMs = ms;
    },
    /** true: accept connections and requests but never answer them. */
    setHang(v) {
      hang = v;
    },
    /** Time of the last request seen (ms since epoch), or 0. */
    get lastRequestAt() {
      return state.log.at(-1)?.at ?? 0;
    },
    get keys() {
      return keys;
    },
    get running() {
      return server.listening;
    },
    async stop() {
      await closeServer(server);
    },
    async start() {
      if (server.listening) return;
      server = make();
      await listen(server, port);
    },
  };
  return api;
}

/** Path of server-everything's CLI (dist/index.js). */
export function everythingCli() {
  const require = createRequire(join(REPO_ROOT, "package.json"));
  return require.resolve("@modelcontextprotocol/server-everything/dist/index.js");
}

/**
 * Start `@modelcontextprotocol/server-everything` unchanged: mode "streamableHttp" (POST/GET/DELETE /mcp)
 * or "sse" (legacy: GET /sse, POST /message?sessionId=...). It reads its port from $PORT.
 */
export async function startEverything(mode = "streamableHttp") {
  const port = await freePort();
  const output = [];
  const preload = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), "loopback-only.mjs")).href;
  const proc = spawnTracked(process.execPath, ["--import", preload, everythingCli(), mode], {
    env: { ...process.env, PORT: String(port) },
    cwd: REPO_ROOT,
  });
  proc.child.stdout.on("data", (d) => output.push(d.toString()));
  proc.child.stderr.on("data", (d) => output.push(d.toString()));
  let exited = null;
  proc.exited.then((e) => {
    exited = e;
  });
  await waitFor(() => canConnect(port), {
    timeoutMs: 15000,
    what: `server-everything ${mode} on port ${port}`,
    abort: () => (exited ? new Error(`server-everything ${mode} exited early (${JSON.stringify(exited)}):\n${output.join("")}`) : null),
  });
  return {
    port,
    mode,
    pid: proc.child.pid,
    output: () => output.join(""),
    stop: () => stopTracked(proc),
  };
}
