// HTTPS to Envoy, trusting envoy/certs/ca.pem, without relying on NODE_EXTRA_CA_CERTS.
import http from "node:http";
import https from "node:https";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { CERT_DIR, ensureCerts } from "./paths.mjs";

let caCache;
export function caPem() {
  if (!caCache) {
    ensureCerts();
    caCache = readFileSync(join(CERT_DIR, "ca.pem"));
  }
  return caCache;
}

let agentCache;
function agent() {
  // keepAlive off: every request gets its own connection, so tests never see each other's state.
  if (!agentCache) agentCache = new https.Agent({ ca: caPem(), keepAlive: false, family: 4 });
  return agentCache;
}

/**
 * One request. Returns {status, headers (lower-case names; multi-valued joined by node), rawHeaders, body (string), json}.
 * `url` may be https:// (via Envoy's TLS, CA trusted) or http://. `rawPath` sends a path exactly as given
 * (WHATWG URL parsing would normalize dot segments away).
 */
export function request(url, { method = "GET", headers = {}, body, timeoutMs = 10000, rawPath } = {}) {
  const u = new URL(url);
  const isHttps = u.protocol === "https:";
  const lib = isHttps ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(
      {
        protocol: u.protocol,
        hostname: u.hostname,
        port: u.port,
        path: rawPath ?? u.pathname + u.search,
        method,
        headers,
        family: 4,
        ...(isHttps ? { agent: agent(), servername: u.hostname === "127.0.0.1" ? undefined : u.hostname } : { agent: false }),
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let json;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: text, json });
        });
        res.on("error", reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`request ${method} ${url} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    if (body !== undefined) req.write(typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body));
    req.end();
  });
}

/**
 * A WHATWG-fetch-compatible function over node:https that trusts the test CA, with a streaming body
 * (good for SSE). Give it to the MCP SDK transports as `fetch` (and `eventSourceInit.fetch`).
 */
export function tlsFetch(input, init = {}) {
  const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  const method = (init.method || (typeof input === "object" && input.method) || "GET").toUpperCase();
  const headers = {};
  new Headers(init.headers || (typeof input === "object" && !(input instanceof URL) ? input.headers : undefined)).forEach(
    (v, k) => {
      headers[k] = v;
    },
  );
  const signal = init.signal;
  const isHttps = url.protocol === "https:";
  const lib = isHttps ? https : http;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason ?? new DOMException("aborted", "AbortError"));
      return;
    }
    const req = lib.request(
      {
        protocol: url.protocol,
        hostname: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method,
        headers,
        family: 4,
        ...(isHttps ? { agent: agent() } : { agent: false }),
      },
      (res) => {
        const h = new Headers();
        for (let i = 0; i < res.rawHeaders.length; i += 2) h.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
        const nullBody = method === "HEAD" || [101, 204, 205, 304].includes(res.statusCode);
        if (nullBody) res.resume();
        const body = nullBody ? null : Readable.toWeb(res);
        const response = new Response(body, { status: res.statusCode, statusText: res.statusMessage || "", headers: h });
        Object.defineProperty(response, "url", { value: url.href });
        resolve(response);
      },
    );
    if (signal) {
      const onAbort = () => req.destroy(signal.reason ?? new DOMException("aborted", "AbortError"));
      signal.addEventListener("abort", onAbort, { once: true });
      req.once("close", () => signal.removeEventListener("abort", onAbort));
    }
    req.on("error", reject);
    const body = init.body;
    if (body === undefined || body === null) req.end();
    else if (typeof body === "string" || body instanceof Uint8Array) req.end(body);
    else if (body instanceof URLSearchParams) req.end(body.toString());
    else reject(new Error(`tlsFetch: unsupported body type ${Object.prototype.toString.call(body)}`));
  });
}
