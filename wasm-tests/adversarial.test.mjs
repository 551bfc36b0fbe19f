// Hostile input against the filter in a real Envoy: oversized and non-UTF-8 headers, duplicate
// Authorization, token headers that try to make the verifier fetch or trust something (kid paths,
// jku, x5u, embedded jwk), crit, odd exp and alg values, deeply nested JSON in tokens and MCP
// bodies, repeated form parameters, bodies cut off mid-way, huge or odd registrations, and path
// tricks. Each case must get its documented status (or Envoy's own refusal where Envoy answers
// first), nothing it refuses may reach the backend, and Envoy must keep serving: every group
// ends with valid requests, a check that the Envoy process is alive, and a check that its log has
// no panic, `critical` line or failed Wasm call since the group started.
//
// One Envoy: a resource server with inline HS256/ES256/RS256 keys plus one issuer whose keys are
// fetched (to prove a `kid` never becomes part of a URL), the built-in authorization server, an
// `mcp` section, public paths /health and /public; the backend is lib/recorder.mjs (every
// connection, byte and request). A plain HTTP server stands in for an attacker's key host (jku,
// x5u): it must never be asked for anything. An HTTPS document server (lib/metadata-server.mjs)
// serves Client ID Metadata Documents for the upstream-header case at the end. Small raw HTTP/1.1
// and HTTP/2 clients below send bytes and repeated header fields exactly as given.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import tls from "node:tls";
import { createHmac, randomUUID } from "node:crypto";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startJwks } from "./lib/backends.mjs";
import { startRecorder } from "./lib/recorder.mjs";
import { startMetadataServer, metadataCluster } from "./lib/metadata-server.mjs";
import { request, caPem } from "./lib/http.mjs";
import { assertChallenge, assertOAuthError } from "./lib/assertions.mjs";
import { hsKey, keyPair, mint, now } from "./lib/tokens.mjs";
import { authServerMaterial, authorizeUrl, keysSection, pkce, randomSecret, sha256Hash, tokenRequest, register, sleep } from "./lib/authz.mjs";
import { waitFor } from "./lib/procs.mjs";

const ISS_HS = "https://hs.adversarial.test";
const ISS_EC = "https://ec.adversarial.test";
const ISS_RS = "https://rs.adversarial.test";
const ISS_REMOTE = "https://remote.adversarial.test";
const SCOPE = "mcp:read";
const REDIRECT = "http://127.0.0.1:45999/callback";

let m, envoy, recorder, jwks, attacker, docs, origin, RESOURCE;
let hs, ec, rs, remote, evil;
const robot = { id: "robot", secret: randomSecret(32) };

before(async () => {
  m = await authServerMaterial({ jwkEnv: "MCP_OAUTH_E2E_ADV_JWK" });
  [hs, ec, rs, remote, evil] = [hsKey("hs-1"), await keyPair("ES256", "ec-1"), await keyPair("RS256", "rs-1"), await keyPair("ES256", "remote-1"), await keyPair("ES256", "evil-1")];
  [recorder, jwks, attacker, docs] = await Promise.all([startRecorder(), startJwks([remote.publicJwk]), startAttackerHost(), startMetadataServer(cimdRoutes)]);
  envoy = await startEnvoy({
    backendPort: recorder.port,
    sseBackendPort: recorder.port,
    jwksPort: jwks.port,
    envKeyValues: m.envKeyValues,
    extraClusters: [metadataCluster("cimd", docs.port)],
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      resource_name: "Adversarial e2e",
      issuers: [
        { issuer: ISS_HS, algorithms: ["HS256"], secrets: [{ kid: hs.kid, value: hs.value }] },
        { issuer: ISS_EC, jwks: { keys: [ec.publicJwk] } },
        { issuer: ISS_RS, jwks: { keys: [rs.publicJwk] } },
        { issuer: ISS_REMOTE, remote_jwks: { uri: jwks.uri, cluster: "jwks", min_refetch_interval_seconds: 1, timeout_ms: 1000 } },
      ],
      routes: [{ prefix: "/mcp", scopes: [SCOPE] }],
      public_paths: ["/health", "/public"],
      authorization_server: {
        ...keysSection(m),
        display_name: "Adversarial e2e",
        scopes: [{ name: SCOPE, description: "Read" }],
        users: [m.userEntry()],
        clients: [
          { client_id: robot.id, client_name: "Robot", client_secret_hash: sha256Hash(robot.secret), grant_types: ["client_credentials"] },
          { client_id: "cli", client_name: "CLI", redirect_uris: [REDIRECT] },
        ],
        client_id_metadata_documents: { cluster: "cimd", allow_private_hosts: true, timeout_ms: 1000 },
        rate_limits: { token_per_minute_per_client: 10000, token_per_minute_per_address: 10000, register_per_minute_per_address: 10000 },
      },
      mcp: { endpoints: ["/mcp"] },
    }),
  });
  origin = envoy.origin;
  RESOURCE = `${origin}/mcp`;
  // The fetched issuer's keys load once at start-up; wait so that no test sees a 503 for them.
  await waitFor(async () => (await request(`${origin}/health`)).status === 200, { timeoutMs: 10000, what: "/health 200 (remote keys loaded)" });
});

after(async () => {
  await envoy?.stop();
  await Promise.all([recorder?.stop(), jwks?.stop(), attacker?.stop(), docs?.stop()]);
});

// ---------------------------------------------------------------- helpers

/** The attacker's key host for jku/x5u/kid URLs: plain HTTP, records every request (there must be none). */
async function startAttackerHost() {
  const requests = [];
  let evilJwks = { keys: [] };
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method, url: req.url });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(evilJwks));
  });
  const port = await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)));
  return {
    port,
    requests,
    url: (p) => `http://127.0.0.1:${port}${p}`,
    setJwks: (k) => (evilJwks = k),
    stop: () => new Promise((r) => (server.close(() => r()), server.closeAllConnections?.())),
  };
}

// Client ID Metadata Documents for the last group: one valid document with a Cache-Control
// header that is not UTF-8 (a byte 0xE9, what a Latin-1 server could send). The body is a Buffer
// so that node writes the head on its own, in Latin-1 (with a string body it would write head and
// body together as UTF-8, and 0xE9 would become the valid UTF-8 "é").
function cimdRoutes(docOrigin) {
  const doc = (path) => ({ client_id: `${docOrigin}${path}`, client_name: "Doc client", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" });
  return {
    "/clients/latin1-cache-control.json": {
      body: Buffer.from(JSON.stringify(doc("/clients/latin1-cache-control.json"))),
      headers: { "content-type": "application/json", "cache-control": "max-age=60, caf\u00e9" },
    },
    "/clients/good.json": { json: doc("/clients/good.json") },
  };
}

const b64 = (s) => Buffer.from(s).toString("base64url");
const claims = (extra = {}) => ({ iss: ISS_HS, aud: RESOURCE, sub: "user-1", client_id: "client-1", scope: SCOPE, iat: now(), exp: now() + 300, ...extra });

/** A compact JWS from raw header and payload TEXT, HMAC-SHA256 signed with the HS issuer's secret (or `sig` as given). */
function rawJws(headerText, payloadText, { sig } = {}) {
  const input = `${b64(headerText)}.${b64(payloadText)}`;
  const s = sig ?? createHmac("sha256", hs.secret).update(input).digest("base64url");
  return `${input}.${s}`;
}
const hsJws = (header, payload) => rawJws(JSON.stringify(header), typeof payload === "string" ? payload : JSON.stringify(payload));

const mcpHeaders = (token) => ({
  accept: "application/json, text/event-stream",
  "content-type": "application/json",
  ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
});
const ping = (id = 1) => JSON.stringify({ jsonrpc: "2.0", id, method: "ping" });

/** One HTTPS request; returns {res, seen}: what the recorder got for it (matched by a unique header), if anything. */
async function call(path, { token, headers = {}, method = "GET", body, rawPath } = {}) {
  const id = randomUUID();
  const h = { "x-test-id": id, ...headers };
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  const res = await request(`${origin}${path}`, { method, headers: h, body, rawPath });
  await sleep(5);
  return { res, seen: recorder.requests.find((r) => r.headers["x-test-id"] === id) };
}

const show = (res) => `${res.status} www-authenticate=${res.headers?.["www-authenticate"] ?? ""} ${String(res.body ?? "").slice(0, 300)}`;

/** Runs `fn` and asserts the backend got no request and no byte meanwhile. */
async function nothingReachesBackend(what, fn) {
  const mark = recorder.mark();
  const out = await fn();
  await sleep(30);
  const d = recorder.since(mark);
  assert.equal(d.requests.length, 0, `${what}: the backend got ${d.requests.map((r) => `${r.method} ${r.url}`).join(", ")}`);
  assert.equal(d.bytes, 0, `${what}: the backend got ${d.bytes} bytes`);
  return out;
}

/** 401 invalid_token from the filter, with the challenge for /mcp. */
function assertInvalidToken(res, description, note = "") {
  assertOAuthError(res, 401, "invalid_token", description, note);
  assertChallenge(
    res.headers["www-authenticate"],
    { error: "invalid_token", error_description: description ?? /\S/, scope: SCOPE, resource_metadata: `${origin}/.well-known/oauth-protected-resource/mcp` },
    note,
  );
}

/** A token must be refused on GET /mcp and on POST /mcp with 401 invalid_token, and reach nothing. */
async function assertTokenRefused(token, what, description) {
  for (const method of ["GET", "POST"]) {
    const { res } = await nothingReachesBackend(`${what} (${method})`, () =>
      call("/mcp", { method, token, headers: method === "POST" ? mcpHeaders() : {}, body: method === "POST" ? ping() : undefined }),
    );
    assertInvalidToken(res, description, `${what} (${method})`);
  }
}

/** A valid request of each kind goes through, with identity headers and without Authorization. */
async function assertServesValidRequests() {
  const cases = [
    ["HS256 GET /mcp", "GET", await mint(hs, claims())],
    ["ES256 POST /mcp", "POST", await mint(ec, claims({ iss: ISS_EC }))],
    ["RS256 POST /mcp", "POST", await mint(rs, claims({ iss: ISS_RS }))],
    ["fetched key ES256 GET /mcp", "GET", await mint(remote, claims({ iss: ISS_REMOTE }))],
    ["authorization server token POST /mcp", "POST", await asToken()],
  ];
  for (const [what, method, token] of cases) {
    const { res, seen } = await call("/mcp", { method, token, headers: method === "POST" ? mcpHeaders() : {}, body: method === "POST" ? ping(7) : undefined });
    assert.equal(res.status, 200, `${what}: ${show(res)}`);
    assert.ok(seen, `${what}: the backend did not get it`);
    assert.equal(seen.headers.authorization, undefined, `${what}: Authorization reached the backend`);
    assert.ok(seen.headers["x-mcp-issuer"], `${what}: no x-mcp-issuer at the backend`);
    if (method === "POST") assert.equal(seen.body, ping(7), `${what}: body at the backend`);
  }
}

let asTokenCache;
async function asToken() {
  if (!asTokenCache) {
    const res = await tokenRequest(origin, { grant_type: "client_credentials", scope: SCOPE }, { basic: [robot.id, robot.secret] });
    assert.equal(res.status, 200, `client_credentials: ${show(res)}`);
    asTokenCache = res.json.access_token;
  }
  return asTokenCache;
}

const BAD_LOG = /panicked|\]\[critical\]|Uncaught|RuntimeError|\[wasm\].*\bfailed\b|wasm.*\bfailed\b/;

function assertAlive() {
  assert.equal(envoy.exitInfo, null, `Envoy exited: ${JSON.stringify(envoy.exitInfo)}`);
  process.kill(envoy.pid, 0); // throws if the process is gone
}

/** Log lines since `offset` that tell of a crash or a failed Wasm call. */
function badLogLines(offset) {
  return envoy
    .log()
    .slice(offset)
    .split("\n")
    .filter((l) => BAD_LOG.test(l));
}

/**
 * A group of tests: records the log position first; ends with a test that valid requests are
 * served, Envoy is alive, and its log has no crash line since the group started.
 */
function group(name, body) {
  describe(name, () => {
    let offset = 0;
    before(() => {
      offset = envoy.log().length;
    });
    body();
    T(`${name}: afterwards Envoy serves valid requests, is alive, and logged no panic or Wasm failure`, async () => {
      await assertServesValidRequests();
      assertAlive();
      const bad = badLogLines(offset);
      assert.deepEqual(bad, [], `crash lines in the Envoy log:\n${bad.join("\n")}`);
    });
  });
}

const T = (name, fn, opts) =>
  test(name, opts ?? {}, () =>
    withLog(envoy, fn, () =>
      [
        `recorder: ${recorder.requests.slice(-5).map((r) => `${r.method} ${r.url}`).join(", ")}`,
        `attacker host: ${attacker.requests.map((r) => `${r.method} ${r.url}`).join(", ") || "none"}`,
        `jwks host: ${jwks.log.map((r) => `${r.method} ${r.url}`).join(", ")}`,
      ].join("\n"),
    ),
  );

// ---------- raw HTTP/1.1 over TLS (bytes exactly as given) ----------

function parseRaw(buf) {
  const text = buf.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return { status: 0, headers: {}, body: "", raw: text };
  const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers = {};
  for (const l of lines) {
    const i = l.indexOf(":");
    const k = l.slice(0, i).trim().toLowerCase();
    headers[k] = headers[k] === undefined ? l.slice(i + 1).trim() : `${headers[k]}, ${l.slice(i + 1).trim()}`;
  }
  let body = buf.subarray(Buffer.byteLength(text.slice(0, end + 4), "latin1"));
  if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
    const out = [];
    let rest = body;
    for (;;) {
      const crlf = rest.indexOf("\r\n");
      if (crlf < 0) break;
      const size = parseInt(rest.subarray(0, crlf).toString(), 16);
      if (!size) break;
      out.push(rest.subarray(crlf + 2, crlf + 2 + size));
      rest = rest.subarray(crlf + 2 + size + 2);
    }
    body = Buffer.concat(out);
  }
  const bodyText = body.toString("utf8");
  let json;
  try {
    json = JSON.parse(bodyText);
  } catch {
    json = undefined;
  }
  return { status, headers, body: bodyText, json, raw: text };
}

/** Connects with TLS (ALPN http/1.1), writes `chunks` (Buffers/strings, `{pauseMs}` entries wait), then `then`: "read" (until close or timeout), "destroy", "end" (half-close, then read). */
function raw(chunks, { then = "read", timeoutMs = 3000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: "127.0.0.1", port: envoy.listenerPort, servername: "localhost", ca: caPem(), ALPNProtocols: ["http/1.1"] });
    const got = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(parseRaw(Buffer.concat(got)));
    };
    const timer = setTimeout(finish, timeoutMs);
    sock.on("data", (d) => {
      got.push(d);
      // Done as soon as a response with a Content-Length is complete (no wait for the close).
      const all = Buffer.concat(got);
      const end = all.indexOf("\r\n\r\n");
      const cl = end >= 0 ? /\r\ncontent-length:\s*(\d+)/i.exec(all.subarray(0, end).toString("latin1")) : null;
      if (cl && all.length - (end + 4) >= Number(cl[1])) finish();
    });
    sock.on("end", finish);
    sock.on("close", finish);
    sock.on("error", (e) => (got.length ? finish() : done ? null : ((done = true), clearTimeout(timer), reject(e))));
    sock.on("secureConnect", async () => {
      for (const c of chunks) {
        if (c && typeof c === "object" && "pauseMs" in c) await sleep(c.pauseMs);
        else sock.write(typeof c === "string" ? Buffer.from(c, "latin1") : c);
      }
      if (then === "destroy") {
        await sleep(20);
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve({ status: 0, headers: {}, body: "", raw: "" });
      } else if (then === "end") sock.end();
    });
  });
}

/** A raw HTTP/1.1 request head; `headerLines` are strings or Buffers, each without CRLF. */
function head(method, target, headerLines = []) {
  const parts = [Buffer.from(`${method} ${target} HTTP/1.1\r\nhost: localhost:${envoy.listenerPort}\r\nconnection: close\r\n`, "latin1")];
  for (const l of headerLines) parts.push(Buffer.isBuffer(l) ? l : Buffer.from(l, "latin1"), Buffer.from("\r\n"));
  parts.push(Buffer.from("\r\n"));
  return Buffer.concat(parts);
}
const line = (name, valueBytes) => Buffer.concat([Buffer.from(`${name}: `, "latin1"), Buffer.isBuffer(valueBytes) ? valueBytes : Buffer.from(valueBytes, "latin1")]);

/** One HTTP/2 request (node:http2, which refuses to send a header twice, so no duplicates here). */
function h2(path, headers, body) {
  return new Promise((resolve, reject) => {
    const client = http2.connect(origin, { ca: caPem(), servername: "localhost" });
    client.on("error", reject);
    const req = client.request({ ":path": path, ":method": body ? "POST" : "GET", ...headers });
    const chunks = [];
    let status = 0;
    let resHeaders = {};
    req.on("response", (h) => ((status = h[":status"]), (resHeaders = h)));
    req.on("data", (d) => chunks.push(d));
    req.on("end", () => {
      client.close();
      const text = Buffer.concat(chunks).toString("utf8");
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      resolve({ status, headers: resHeaders, body: text, json });
    });
    req.on("error", (e) => (client.close(), reject(e)));
    req.end(body);
  });
}

// ---------- a minimal HTTP/2 client that sends header fields exactly as listed (repeats allowed) ----------

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value, prefixBits, firstByteFlags = 0) {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByteFlags | value];
  const out = [firstByteFlags | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}
/** A literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2). */
function hpackLiteral(name, value) {
  const n = Buffer.from(name, "latin1");
  const v = Buffer.isBuffer(value) ? value : Buffer.from(value, "latin1");
  return Buffer.concat([Buffer.from([0x00]), Buffer.from(hpackInt(n.length, 7)), n, Buffer.from(hpackInt(v.length, 7)), v]);
}
const frame = (type, flags, streamId, payload = Buffer.alloc(0)) => {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
};
// Huffman codes of the digits (RFC 7541 Appendix B), enough to read a :status value.
const HUFFMAN_DIGITS = [
  ["00000", "0"], ["00001", "1"], ["00010", "2"], ["011001", "3"], ["011010", "4"],
  ["011011", "5"], ["011100", "6"], ["011101", "7"], ["011110", "8"], ["011111", "9"],
];
function huffmanDigits(bytes) {
  let bits = [...bytes].map((b) => b.toString(2).padStart(8, "0")).join("");
  let out = "";
  while (bits.length && !/^1+$/.test(bits)) {
    const hit = HUFFMAN_DIGITS.find(([code]) => bits.startsWith(code));
    if (!hit) return null;
    out += hit[1];
    bits = bits.slice(hit[0].length);
  }
  return out;
}
/** :status from the first field of a response header block (Envoy sends it first). */
function statusOf(block) {
  const STATIC = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };
  const b = block[0];
  if (b & 0x80) return STATIC[b & 0x7f] ?? 0;
  // Literal with name index 8 (:status): 0x48 (incremental indexing), 0x08 or 0x18.
  if ((b & 0x3f) === 8 || (b & 0x0f) === 8) {
    const huff = (block[1] & 0x80) !== 0;
    const len = block[1] & 0x7f;
    const v = block.subarray(2, 2 + len);
    return Number(huff ? huffmanDigits(v) : v.toString("latin1"));
  }
  return 0;
}
/**
 * One HTTP/2 request over TLS with the header fields `fields` ([[name, value], ...], sent in that
 * order, repeats kept). Returns {status, body, json} (status 0 when the stream was reset).
 */
function h2raw(path, fields, { method = "GET", timeoutMs = 3000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: "127.0.0.1", port: envoy.listenerPort, servername: "localhost", ca: caPem(), ALPNProtocols: ["h2"] });
    let buf = Buffer.alloc(0);
    let status = 0;
    const data = [];
    let done = false;
    const finish = (extra = {}) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const body = Buffer.concat(data).toString("utf8");
      let json;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      resolve({ status, body, json, headers: {}, ...extra });
    };
    const timer = setTimeout(() => finish({ timedOut: true }), timeoutMs);
    sock.on("error", (e) => (done ? null : ((done = true), clearTimeout(timer), reject(e))));
    sock.on("close", () => finish());
    sock.on("secureConnect", () => {
      assert.equal(sock.alpnProtocol, "h2", "Envoy did not negotiate h2");
      const block = Buffer.concat([
        hpackLiteral(":method", method),
        hpackLiteral(":scheme", "https"),
        hpackLiteral(":path", path),
        hpackLiteral(":authority", `localhost:${envoy.listenerPort}`),
        ...fields.map(([n, v]) => hpackLiteral(n, v)),
      ]);
      sock.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(4, 0, 0), frame(1, 0x5, 1, block)]));
    });
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const [type, flags, stream] = [buf[3], buf[4], buf.readUInt32BE(5) & 0x7fffffff];
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === 4 && !(flags & 1)) sock.write(frame(4, 1, 0)); // ACK the server's SETTINGS
        if (stream !== 1) {
          if (type === 7) finish({ goaway: true });
          continue;
        }
        if (type === 1) status = statusOf(flags & 0x8 ? payload.subarray(1 + payload[0]) : payload);
        if (type === 0) data.push(flags & 0x8 ? payload.subarray(1, payload.length - payload[0]) : payload);
        if (type === 3) return finish({ reset: payload.readUInt32BE(0) });
        if ((type === 0 || type === 1) && flags & 1) return finish();
      }
    });
  });
}

// ================================================================= groups

group("headers", () => {
  T("a 60 KB Authorization value: refused by Envoy (431) or by the filter (401 too long), never 200 or 5xx", async () => {
    for (const value of [`Bearer ${"a".repeat(60 * 1024)}`, `Bearer ${"eyJ".repeat(20 * 1024)}.x.y`]) {
      const { res } = await nothingReachesBackend("60 KB Authorization", () => call("/mcp", { headers: { authorization: value } }));
      assert.ok([431, 401].includes(res.status), `60 KB Authorization: ${show(res)}`);
      if (res.status === 401) assertInvalidToken(res, "The access token is too long");
    }
    // Another 60 KB header next to a valid token: Envoy's header limit, not ours.
    const { res } = await nothingReachesBackend("60 KB other header", () => call("/mcp", { headers: { authorization: `Bearer x`, "x-pad": "p".repeat(60 * 1024) } }));
    assert.ok([431, 400, 401].includes(res.status), `60 KB x-pad: ${show(res)}`);
  });

  T("tokens longer than max_token_bytes (16384): 20 KB and 50 KB → 401 invalid_token 'too long'; 100 KB → Envoy's 431 first", async () => {
    for (const size of [16385, 20 * 1024, 50 * 1024]) {
      const token = `${"e".repeat(size - 20)}.${"p".repeat(10)}.${"s".repeat(8)}`;
      await assertTokenRefused(token, `${size}-byte token`, "The access token is too long");
    }
    // A validly signed token just over the limit is refused all the same.
    const big = await mint(hs, claims({ pad: "x".repeat(17000) }));
    await assertTokenRefused(big, "validly signed 23 KB token", "The access token is too long");
    // 100 KB: more than Envoy's default 60 KiB of request headers, so Envoy answers before the filter.
    const { res } = await nothingReachesBackend("100 KB token", () => call("/mcp", { token: "t".repeat(100 * 1024) }));
    assert.ok(res.status === 431 || res.status === 401, `100 KB token: ${show(res)}`);
    if (res.status === 401) assertInvalidToken(res, "The access token is too long");
  });

  T("Authorization with bytes that are not UTF-8 (raw socket): 400 invalid_request or 401, never forwarded", async () => {
    const valid = await mint(hs, claims());
    const cases = [
      ["Bearer + 0xFF 0xFE 0xFD", Buffer.concat([Buffer.from("Bearer "), Buffer.from([0xff, 0xfe, 0xfd])]), 400],
      ["valid token + 0xC3 0x28", Buffer.concat([Buffer.from(`Bearer ${valid}`), Buffer.from([0xc3, 0x28])]), 400],
      ["0xE9 inside the token", Buffer.concat([Buffer.from(`Bearer ${valid.slice(0, 20)}`), Buffer.from([0xe9]), Buffer.from(valid.slice(20))]), 400],
      ["scheme with 0xE9 (B\\xe9arer)", Buffer.concat([Buffer.from("B"), Buffer.from([0xe9]), Buffer.from(`arer ${valid}`)]), 401],
      ["overlong UTF-8 slash 0xC0 0xAF", Buffer.concat([Buffer.from("Bearer "), Buffer.from([0xc0, 0xaf])]), 400],
    ];
    for (const [what, value, status] of cases) {
      const res = await nothingReachesBackend(what, () => raw([head("GET", "/mcp", [line("authorization", value)])]));
      assert.equal(res.status, status, `${what}: ${show(res)}`);
      assert.match(res.headers["www-authenticate"] ?? "", /^Bearer /, `${what}: a challenge from the filter`);
      if (status === 400) assert.equal(res.json?.error, "invalid_request", `${what}: ${res.body}`);
    }
  });

  T("other headers with bytes that are not UTF-8, next to a valid token: forwarded (200), no crash", async () => {
    const valid = await mint(hs, claims());
    const junk = Buffer.from([0xff, 0xc3, 0x28, 0xe9, 0x80]);
    for (const name of ["x-junk", "origin", "mcp-session-id", "cookie", "accept", "user-agent", "x-mcp-subject"]) {
      const id = randomUUID();
      const res = await raw([head("GET", "/mcp", [`authorization: Bearer ${valid}`, `x-test-id: ${id}`, line(name, junk)])]);
      assert.equal(res.status, 200, `${name} with non-UTF-8 bytes: ${show(res)}`);
      const seen = recorder.requests.find((r) => r.headers["x-test-id"] === id);
      assert.ok(seen, `${name}: not forwarded`);
      assert.equal(seen.headers.authorization, undefined);
      if (name === "x-mcp-subject") assert.equal(seen.headers["x-mcp-subject"], "user-1", "a client's x-mcp-subject is replaced, whatever its bytes");
    }
    // On the authorization server's endpoints too.
    for (const [name, path, method, body] of [
      ["cookie", "/oauth/authorize?client_id=cli", "GET", null],
      ["content-type", "/oauth/token", "POST", "grant_type=client_credentials"],
      ["origin", "/oauth/register", "POST", "{}"],
    ]) {
      const lines = [line(name, junk)];
      if (body !== null) lines.push(`content-length: ${Buffer.byteLength(body)}`);
      const res = await nothingReachesBackend(`${name} on ${path}`, () => raw([head(method, path, lines), body ?? ""]));
      assert.ok(res.status >= 200 && res.status < 500, `${name} with non-UTF-8 bytes on ${path}: ${show(res)}`);
    }
  });

  T("a path and a header name with bytes that are not UTF-8: refused, never forwarded, no crash", async () => {
    const path = Buffer.concat([Buffer.from("GET /mcp/"), Buffer.from([0xff, 0xe9]), Buffer.from(" HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")]);
    const r1 = await nothingReachesBackend("non-UTF-8 path", () => raw([path]));
    assert.ok([400, 401, 404].includes(r1.status), `non-UTF-8 path: ${show(r1)}`);
    const name = Buffer.concat([head("GET", "/mcp", []).subarray(0, -2), Buffer.from("x-"), Buffer.from([0xff]), Buffer.from(": 1\r\n\r\n")]);
    const r2 = await nothingReachesBackend("non-UTF-8 header name", () => raw([name]));
    assert.ok([400, 401].includes(r2.status), `non-UTF-8 header name: ${show(r2)}`);
  });

  // Envoy joins repeated Authorization fields into one comma-separated value (HTTP/1.1 and HTTP/2
  // alike), so the filter sees "Bearer a,Bearer b" or "Basic x,Bearer a", not two headers.
  T("two Authorization headers (HTTP/1.1 and HTTP/2): 400 invalid_request, never forwarded", async () => {
    const valid = await mint(hs, claims());
    const body = ping();
    const cases = [
      ["HTTP/1.1 two valid tokens", () => raw([head("GET", "/mcp", [`authorization: Bearer ${valid}`, `authorization: Bearer ${valid}`])])],
      ["HTTP/1.1 valid + Basic", () => raw([head("GET", "/mcp", [`authorization: Bearer ${valid}`, "authorization: Basic dTpw"])])],
      ["HTTP/1.1 Basic + valid", () => raw([head("GET", "/mcp", ["Authorization: Basic dTpw", `AUTHORIZATION: Bearer ${valid}`])])],
      [
        "HTTP/1.1 two valid tokens on an inspected POST /mcp",
        () => raw([head("POST", "/mcp", [`authorization: Bearer ${valid}`, `authorization: Bearer ${valid}`, "content-type: application/json", `content-length: ${body.length}`]), body]),
      ],
      ["HTTP/2 two valid tokens", () => h2raw("/mcp", [["authorization", `Bearer ${valid}`], ["authorization", `Bearer ${valid}`]])],
      ["HTTP/2 valid + Basic", () => h2raw("/mcp", [["authorization", `Bearer ${valid}`], ["authorization", "Basic dTpw"]])],
      ["HTTP/2 Basic + valid", () => h2raw("/mcp", [["authorization", "Basic dTpw"], ["authorization", `Bearer ${valid}`]])],
    ];
    const observed = [];
    for (const [what, send] of cases) {
      const res = await nothingReachesBackend(what, send);
      // (The raw HTTP/2 client reads :status and the body, not the other response headers.)
      const www = what.startsWith("HTTP/2") ? 'error="invalid_request"' : res.headers["www-authenticate"];
      observed.push({ what, status: res.status, error: res.json?.error, description: res.json?.error_description, www });
    }
    const wrong = observed.filter((o) => !(o.status === 400 && o.error === "invalid_request" && /error="invalid_request"/.test(o.www ?? "")));
    // The raw HTTP/2 client itself works: one valid token is forwarded.
    const one = await h2raw("/mcp", [["authorization", `Bearer ${valid}`]]);
    assert.equal(one.status, 200, `HTTP/2 (raw client) with one valid token: ${show(one)}`);
    // An empty second header is not a second credential: Envoy folds it away and the filter sees
    // one valid token (forwarded) — or refuses; both are fine.
    const empty = await raw([head("GET", "/mcp", [`authorization: Bearer ${valid}`, "authorization: "])]);
    assert.ok([200, 400].includes(empty.status), `valid + empty Authorization: ${show(empty)}`);
    assert.deepEqual(wrong, [], `expected 400 invalid_request for every case; all observed:\n${observed.map((o) => `${o.what}: ${o.status} ${o.error} "${o.description}"`).join("\n")}`);
  });

  T("the scheme is case-insensitive: bEaReR, BEARER, bearer are accepted", async () => {
    const valid = await mint(ec, claims({ iss: ISS_EC }));
    for (const scheme of ["bEaReR", "BEARER", "bearer", "Bearer  "]) {
      const { res, seen } = await call("/mcp", { headers: { authorization: `${scheme} ${valid}` } });
      assert.equal(res.status, 200, `scheme ${JSON.stringify(scheme)}: ${show(res)}`);
      assert.ok(seen && seen.headers.authorization === undefined && seen.headers["x-mcp-subject"] === "user-1", `scheme ${scheme}`);
    }
  });
});

group("token headers and claims", () => {
  T("kid with path characters, URLs, CRLF or 8 KB: 401, and no key is fetched from anywhere but the configured JWKS URL", async () => {
    const kids = ["../../etc/passwd", "..%2f..%2fetc%2fpasswd", "/etc/passwd", "file:///etc/passwd", attacker.url("/kid.json"), "a\r\nx-injected: 1", "\u0000", "k".repeat(8 * 1024)];
    for (const kid of kids) {
      await assertTokenRefused(hsJws({ alg: "HS256", typ: "JWT", kid }, claims()), `HS256 kid ${JSON.stringify(kid).slice(0, 40)}`);
      await assertTokenRefused(await mint(ec, claims({ iss: ISS_EC }), { kid }), `ES256 kid ${JSON.stringify(kid).slice(0, 40)}`);
    }
    // The issuer with fetched keys: an unknown kid may trigger a refetch of the configured URL, nothing else.
    for (const kid of ["../../etc/passwd", attacker.url("/kid.json")]) {
      await assertTokenRefused(await mint(remote, claims({ iss: ISS_REMOTE }), { kid }), `fetched issuer, kid ${kid}`);
    }
    // kid of the wrong JSON type.
    for (const kid of [123, { path: "../../etc/passwd" }, ["a"], true]) {
      await assertTokenRefused(hsJws({ alg: "HS256", kid }, claims()), `kid ${JSON.stringify(kid)}`);
    }
    // "kid": null with a signature by the configured key reads as "no kid": the key is found by type.
    const { res } = await call("/mcp", { token: hsJws({ alg: "HS256", kid: null }, claims()) });
    assert.ok([200, 401].includes(res.status), `kid null, validly signed: ${show(res)}`);
    const paths = [...new Set(jwks.log.map((r) => r.url))];
    assert.deepEqual(paths, ["/jwks.json"], `the JWKS host was asked for ${paths.join(", ")}`);
    assert.deepEqual(attacker.requests, [], "the attacker's host was contacted");
  });

  T("jku, x5u, embedded jwk and x5c: never fetched or trusted (attacker keys → 401), the attacker's host sees 0 requests", async () => {
    attacker.setJwks({ keys: [evil.publicJwk] });
    const jku = attacker.url("/jwks.json");
    const x5u = attacker.url("/cert.pem");
    const cases = [
      ["attacker key + own kid + jku", await mint(evil, claims({ iss: ISS_EC }), { kid: "evil-1", jku })],
      ["attacker key + configured kid + jku", await mint(evil, claims({ iss: ISS_EC }), { kid: ec.kid, jku })],
      ["attacker key + configured kid + x5u", await mint(evil, claims({ iss: ISS_EC }), { kid: ec.kid, x5u })],
      ["attacker key + embedded jwk, no kid", await mint(evil, claims({ iss: ISS_EC }), { kid: undefined, jwk: evil.publicJwk })],
      ["attacker key + embedded jwk + configured kid", await mint(evil, claims({ iss: ISS_EC }), { kid: ec.kid, jwk: evil.publicJwk })],
      ["attacker key + x5c junk", await mint(evil, claims({ iss: ISS_EC }), { kid: undefined, x5c: ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"] })],
      ["fetched issuer, attacker key + jku", await mint(evil, claims({ iss: ISS_REMOTE }), { kid: "evil-1", jku })],
      ["fetched issuer, attacker key + configured kid + jku", await mint(evil, claims({ iss: ISS_REMOTE }), { kid: remote.kid, jku })],
      ["HS256 signed with the jku URL text as the secret", rawJws(JSON.stringify({ alg: "HS256", kid: "hs-1", jku }), JSON.stringify(claims()), { sig: createHmac("sha256", jku).update(`${b64(JSON.stringify({ alg: "HS256", kid: "hs-1", jku }))}.${b64(JSON.stringify(claims()))}`).digest("base64url") })],
    ];
    for (const [what, token] of cases) await assertTokenRefused(token, what);
    // A token that is valid by the configured key and merely names a jku/x5u: the URLs are ignored
    // (accepted by the configured key, or refused; either way nothing is fetched).
    for (const header of [{ jku }, { x5u }, { jku, x5u }]) {
      const token = await mint(ec, claims({ iss: ISS_EC }), header);
      const { res } = await call("/mcp", { token });
      assert.ok([200, 401].includes(res.status), `valid token with ${Object.keys(header)}: ${show(res)}`);
    }
    assert.deepEqual(attacker.requests, [], "the jku/x5u host was contacted");
  });

  T("crit headers: 401 (any crit, including an empty list and a wrong type)", async () => {
    const cases = [
      [{ alg: "HS256", kid: "hs-1", crit: ["exp"], exp: 1 }, /critical/],
      [{ alg: "HS256", kid: "hs-1", crit: ["b64"], b64: false }, /critical/],
      [{ alg: "HS256", kid: "hs-1", crit: ["urn:example:unknown"], "urn:example:unknown": true }, /critical/],
      [{ alg: "HS256", kid: "hs-1", crit: [] }, undefined],
      [{ alg: "HS256", kid: "hs-1", crit: "exp" }, undefined],
      [{ alg: "HS256", kid: "hs-1", crit: [1, 2] }, undefined],
    ];
    for (const [header, description] of cases) await assertTokenRefused(hsJws(header, claims()), `crit ${JSON.stringify(header.crit)}`, description);
  });

  T("exp as a string, huge (1e30, 2^64), negative, null, boolean, fractional past: 401, no crash", async () => {
    const t = now();
    const payloads = {
      'exp "9999999999" (string)': { ...claims(), exp: "9999999999" },
      "exp 1e30": `{"iss":"${ISS_HS}","aud":"${RESOURCE}","sub":"u","scope":"${SCOPE}","iat":${t},"exp":1e30}`,
      "exp 18446744073709551616 (2^64)": `{"iss":"${ISS_HS}","aud":"${RESOURCE}","sub":"u","scope":"${SCOPE}","iat":${t},"exp":18446744073709551616}`,
      "exp 1e400 (overflows f64)": `{"iss":"${ISS_HS}","aud":"${RESOURCE}","sub":"u","scope":"${SCOPE}","iat":${t},"exp":1e400}`,
      "exp -1": { ...claims(), exp: -1 },
      "exp null": { ...claims(), exp: null },
      "exp true": { ...claims(), exp: true },
      "exp [] ": { ...claims(), exp: [] },
      "exp 1.5e9 (past, fractional form)": { ...claims(), exp: 1.5e9 },
      "no exp": { ...claims(), exp: undefined },
      "nbf 1e30": `{"iss":"${ISS_HS}","aud":"${RESOURCE}","sub":"u","scope":"${SCOPE}","iat":${t},"exp":${t + 300},"nbf":1e30}`,
      'iat "now" (string)': { ...claims(), iat: "now" },
    };
    const observed = [];
    for (const [what, payload] of Object.entries(payloads)) {
      const text = typeof payload === "string" ? payload : JSON.stringify(payload);
      const token = hsJws({ alg: "HS256", typ: "JWT", kid: "hs-1" }, text);
      const mark = recorder.mark();
      const { res } = await call("/mcp", { token });
      const forwarded = recorder.since(mark).requests.length > 0;
      observed.push({ what, status: res.status, description: res.json?.error_description, forwarded });
    }
    const wrong = observed.filter((o) => o.status !== 401 || o.forwarded);
    assert.deepEqual(
      wrong.map((o) => o.what),
      [],
      `expected 401 for every case; observed:\n${observed.map((o) => `${o.what}: ${o.status}${o.forwarded ? " (FORWARDED to the backend)" : ""} ${o.description ?? ""}`).join("\n")}`,
    );
  });

  T("alg variants (None, nOnE, none, NONE, empty, missing, lower-case, padded, wrong types): 401", async () => {
    const unsigned = (alg) => rawJws(JSON.stringify(alg === undefined ? { typ: "JWT" } : { alg, typ: "JWT" }), JSON.stringify(claims()), { sig: "" });
    const signed = (alg) => hsJws(alg === undefined ? { kid: "hs-1" } : { alg, kid: "hs-1" }, claims());
    for (const alg of ["none", "None", "nOnE", "NONE", "", undefined, "hs256", "HS256 ", " HS256", "HS256\u0000", "HS 256", ["HS256"], null, 256]) {
      await assertTokenRefused(unsigned(alg), `unsigned, alg ${JSON.stringify(alg)}`);
      await assertTokenRefused(signed(alg), `HMAC-signed, alg ${JSON.stringify(alg)}`);
    }
    // "none" with a signature part that is not empty, and with the trailing dot missing.
    const noneHeader = b64(JSON.stringify({ alg: "none" }));
    await assertTokenRefused(`${noneHeader}.${b64(JSON.stringify(claims()))}.c2ln`, "alg none with a signature");
    await assertTokenRefused(`${noneHeader}.${b64(JSON.stringify(claims()))}`, "alg none, two parts");
  });

  T("deeply nested JSON in the JWT payload and header (10k '['): 401", async () => {
    const deep = "[".repeat(10000);
    const head0 = JSON.stringify({ alg: "HS256", kid: "hs-1" });
    const base = JSON.stringify(claims()).slice(0, -1);
    const cases = {
      "payload with 10k '[' (unclosed)": `${base},"deep":${deep}}`,
      "payload with 5k '[' closed": `${base},"deep":${"[".repeat(5000)}${"]".repeat(5000)}}`,
      "payload with 3k nested objects": `${base},"deep":${'{"a":'.repeat(3000)}1${"}".repeat(3000)}}`,
      "payload that is 10k '[' only": deep,
      "scope claim 4k deep": `${base.replace(/"scope":"[^"]*",?/, "")},"scope":${"[".repeat(4000)}"x"${"]".repeat(4000)}}`,
    };
    for (const [what, payload] of Object.entries(cases)) await assertTokenRefused(rawJws(head0, payload), what);
    await assertTokenRefused(rawJws(`{"alg":"HS256","kid":"hs-1","x":${"[".repeat(5000)}${"]".repeat(5000)}}`, JSON.stringify(claims())), "header with 5k '[' closed");
    await assertTokenRefused(rawJws(`{"alg":"HS256","x":${deep}`, JSON.stringify(claims())), "header with 10k '[' unclosed");
    // 10k '[' and 10k ']' in the payload is over max_token_bytes anyway.
    await assertTokenRefused(rawJws(head0, `${base},"deep":${deep}${"]".repeat(10000)}}`), "payload with 10k '[' closed (too long)", "The access token is too long");
  });
});

group("MCP bodies", () => {
  T("deeply nested JSON in an MCP body (10k and 200k levels): 400 -32700/-32600, never forwarded", async () => {
    const token = await mint(hs, claims());
    const bodies = {
      "10k '[' ']'": `${"[".repeat(10000)}${"]".repeat(10000)}`,
      "200k '[' unclosed": "[".repeat(200000),
      "10k nested objects": `${'{"a":'.repeat(10000)}1${"}".repeat(10000)}`,
      "tools/call with 10k-deep arguments": `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":${"[".repeat(10000)}${"]".repeat(10000)}}}`,
      "batch of one 10k-deep message": `[{"jsonrpc":"2.0","id":1,"method":"ping","params":${'{"a":'.repeat(10000)}1${"}".repeat(10000)}}]`,
      "10k '[' then garbage": `${"[".repeat(10000)}x`,
    };
    for (const [what, body] of Object.entries(bodies)) {
      const { res } = await nothingReachesBackend(what, () => call("/mcp", { method: "POST", token, headers: mcpHeaders(), body }));
      assert.equal(res.status, 400, `${what}: ${show(res)}`);
      assert.equal(res.json?.jsonrpc, "2.0", `${what}: ${res.body}`);
      assert.ok([-32700, -32600].includes(res.json?.error?.code), `${what}: ${res.body}`);
    }
  });

  T("a deeply nested body without a token is refused at the headers (401), the body never matters", async () => {
    const { res } = await nothingReachesBackend("deep body, no token", () => call("/mcp", { method: "POST", headers: mcpHeaders(), body: "[".repeat(100000) }));
    assert.equal(res.status, 401, show(res));
  });

  T("POST /mcp cut off mid-body (Content-Length 1000, 10 bytes, then close or half-close): never forwarded, Envoy keeps serving", async () => {
    const token = await mint(hs, claims());
    const headLines = [`authorization: Bearer ${token}`, "content-type: application/json", "accept: application/json, text/event-stream", "content-length: 1000"];
    await nothingReachesBackend("cut-off /mcp bodies", async () => {
      await raw([head("POST", "/mcp", headLines), '{"jsonrpc'], { then: "destroy" });
      const halfClosed = await raw([head("POST", "/mcp", headLines), '{"jsonrpc'], { then: "end", timeoutMs: 1500 });
      assert.ok(halfClosed.status === 0 || (halfClosed.status >= 400 && halfClosed.status !== 500), `half-closed: ${show(halfClosed)}`);
      // A held request, then a valid one on another connection while it waits.
      const held = raw([head("POST", "/mcp", headLines), '{"jsonrpc', { pauseMs: 400 }], { then: "destroy" });
      await sleep(100);
      const other = await h2("/health", {});
      assert.equal(other.status, 200, "Envoy serves others while a body is held");
      await held;
      // Chunked, cut inside a chunk.
      const chunkedLines = [`authorization: Bearer ${token}`, "content-type: application/json", "transfer-encoding: chunked"];
      await raw([head("POST", "/mcp", chunkedLines), "3e8\r\n", '{"jsonrpc":"2.0"'], { then: "destroy" });
      // Many at once.
      await Promise.all(Array.from({ length: 20 }, () => raw([head("POST", "/mcp", headLines), "[[[[[[[[[["], { then: "destroy" })));
    });
  });

  T("an MCP body over max_body_bytes (1 MiB, nested or not): 413, never forwarded", async () => {
    const token = await mint(hs, claims());
    const { res } = await nothingReachesBackend("1.1 MB body", () =>
      call("/mcp", { method: "POST", token, headers: mcpHeaders(), body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"p":"${"x".repeat(1100 * 1024)}"}}` }),
    );
    assert.equal(res.status, 413, show(res));
  });
});

group("authorization server", () => {
  T("a token request with a repeated parameter (grant_type twice, also encoded differently): 400 invalid_request", async () => {
    const basic = { authorization: `Basic ${Buffer.from(`${robot.id}:${robot.secret}`).toString("base64")}`, "content-type": "application/x-www-form-urlencoded" };
    for (const body of [
      "grant_type=client_credentials&grant_type=client_credentials",
      "grant_type=client_credentials&grant_type=authorization_code",
      "grant_type=client_credentials&grant%5Ftype=refresh_token",
      "grant_type=client_credentials&scope=mcp%3Aread&scope=mcp%3Aread",
      `grant_type=client_credentials&client_id=${robot.id}&client_id=cli`,
    ]) {
      const res = await nothingReachesBackend(body, () => request(`${origin}/oauth/token`, { method: "POST", headers: basic, body }));
      assertOAuthError(res, 400, "invalid_request", /repeated/, body);
    }
  });

  T("POST /oauth/token cut off mid-body (Content-Length 1000, 10 bytes, then close or half-close): Envoy keeps serving", async () => {
    const lines = ["content-type: application/x-www-form-urlencoded", "content-length: 1000"];
    await nothingReachesBackend("cut-off token bodies", async () => {
      await raw([head("POST", "/oauth/token", lines), "grant_type"], { then: "destroy" });
      const half = await raw([head("POST", "/oauth/token", lines), "grant_type"], { then: "end", timeoutMs: 1500 });
      assert.ok(half.status === 0 || (half.status >= 400 && half.status !== 500), `half-closed: ${show(half)}`);
      await raw([head("POST", "/oauth/register", ["content-type: application/json", "content-length: 1000"]), '{"client_'], { then: "destroy" });
      await Promise.all(Array.from({ length: 20 }, () => raw([head("POST", "/oauth/token", lines), "grant_type"], { then: "destroy" })));
    });
    const res = await tokenRequest(origin, { grant_type: "client_credentials", scope: SCOPE }, { basic: [robot.id, robot.secret] });
    assert.equal(res.status, 200, `a token request right after: ${show(res)}`);
  });

  T("a registration over 64 KB: 413 (with Content-Length, chunked, and 2 MB); 60 KB still registers", async () => {
    const meta = (pad) => JSON.stringify({ client_name: "Big", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none", padding: "x".repeat(pad) });
    const over = meta(70 * 1024);
    const r1 = await nothingReachesBackend("70 KB DCR", () => request(`${origin}/oauth/register`, { method: "POST", headers: { "content-type": "application/json" }, body: over }));
    assertOAuthError(r1, 413, "invalid_request", undefined, "70 KB DCR");
    const r2 = await nothingReachesBackend("70 KB DCR chunked", () =>
      raw([head("POST", "/oauth/register", ["content-type: application/json", "transfer-encoding: chunked"]), `${Buffer.byteLength(over).toString(16)}\r\n${over}\r\n0\r\n\r\n`]),
    );
    assert.equal(r2.status, 413, `chunked 70 KB DCR: ${show(r2)}`);
    const r3 = await nothingReachesBackend("2 MB DCR", () => request(`${origin}/oauth/register`, { method: "POST", headers: { "content-type": "application/json" }, body: meta(2 * 1024 * 1024) }).catch((e) => ({ status: 0, body: e.message })));
    assert.ok(r3.status === 413 || r3.status === 0, `2 MB DCR: ${show(r3)}`);
    const ok = await register(origin, { client_name: "Big but fine", redirect_uris: [REDIRECT], token_endpoint_auth_method: "none", padding: "x".repeat(60 * 1024) });
    assert.equal(ok.status, 201, `60 KB DCR: ${show(ok)}`);
  });

  T("client_name with control characters: 400 invalid_client_metadata; plain Unicode is kept as sent", async () => {
    const base = { redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" };
    for (const name of ["nul\u0000byte", "new\nline", "carriage\rreturn", "bell\u0007", "esc \u001b[31mred", "del\u007f", "c1\u0085next", "c1\u009b", "tab\there"]) {
      const res = await register(origin, { ...base, client_name: name });
      assertOAuthError(res, 400, "invalid_client_metadata", undefined, `client_name ${JSON.stringify(name)}`);
    }
    for (const name of ["Ünïcödé App", "日本語のクライアント", "Emoji 🚀 client", "Ελληνικά"]) {
      const res = await register(origin, { ...base, client_name: name });
      assert.equal(res.status, 201, `client_name ${name}: ${show(res)}`);
      assert.equal(res.json.client_name, name);
    }
    // Not valid JSON text: a lone surrogate escape, raw bytes that are not UTF-8, a 10k-deep name.
    const bad = [
      ["lone surrogate", Buffer.from(`{"client_name":"\\ud800","redirect_uris":["${REDIRECT}"],"token_endpoint_auth_method":"none"}`)],
      ["non-UTF-8 bytes", Buffer.concat([Buffer.from('{"client_name":"'), Buffer.from([0xff, 0xfe, 0xc3, 0x28]), Buffer.from(`","redirect_uris":["${REDIRECT}"],"token_endpoint_auth_method":"none"}`)])],
      ["10k-deep client_name", Buffer.from(`{"client_name":${"[".repeat(10000)}${"]".repeat(10000)},"redirect_uris":["${REDIRECT}"]}`)],
      ["201 characters", Buffer.from(JSON.stringify({ ...base, client_name: "n".repeat(201) }))],
    ];
    for (const [what, body] of bad) {
      const res = await request(`${origin}/oauth/register`, { method: "POST", headers: { "content-type": "application/json" }, body });
      assertOAuthError(res, 400, "invalid_client_metadata", undefined, what);
    }
  });

  T("client_name with invisible or bidirectional-override characters (U+202E, U+200B, U+2066, U+FEFF): 400", async () => {
    // Not control characters (category Cf), but they let a name look like another on the consent page.
    const base = { redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" };
    const observed = [];
    for (const name of ["Good App\u202E\u2066evil", "Trusted\u200BApp", "\u2066isolate\u2069", "bom\uFEFF"]) {
      const res = await register(origin, { ...base, client_name: name });
      observed.push(`${JSON.stringify(name)} → ${res.status} ${res.json?.error ?? ""}`);
    }
    assert.ok(observed.every((o) => / → 400 invalid_client_metadata/.test(o)), `registrations with format characters:\n${observed.join("\n")}`);
  });
});

group("paths", () => {
  // The brief's cases and relatives: Envoy normalizes (normalize_path, merge_slashes,
  // UNESCAPE_AND_REDIRECT) and the filter refuses what is still ambiguous. None may reach the backend.
  const TRICKS = [
    "/health/../mcp",
    "/mcp%2f..",
    "/mcp%2F..%2F",
    "//mcp",
    "///mcp",
    "/./mcp",
    "/public/../mcp",
    "/public/..%2fmcp",
    "/public%2f..%2fmcp",
    "/public/%2e%2e/mcp",
    "/public/.%2e/mcp",
    "/health/%2e%2e/mcp",
    "/public/..\\mcp",
    "/public\\..\\mcp",
    "/health/..%5cmcp",
    "/%2e%2e/mcp",
    "/mcp/../mcp",
    "/health/./../mcp",
    "/public/x/../../mcp",
    "/.well-known/oauth-protected-resource/../../mcp",
    "/MCP",
    "/%6dcp",
    "/mcp%00",
    "/mcp;x",
  ];

  T("path tricks without a token never reach the backend (GET and POST)", async () => {
    for (const p of TRICKS) {
      for (const method of ["GET", "POST"]) {
        const { res } = await nothingReachesBackend(`${method} ${p}`, () =>
          call("/", { rawPath: p, method, headers: method === "POST" ? mcpHeaders() : {}, body: method === "POST" ? ping() : undefined }),
        );
        // Seen: 401 (Envoy normalized it to a protected path), 307 (UNESCAPE_AND_REDIRECT), 400.
        assert.ok([301, 302, 307, 308, 400, 401, 404].includes(res.status), `${method} ${p}: ${show(res)}`);
      }
    }
  });

  T("the same tricks with a redirect followed by hand: the target needs a token too", async () => {
    for (const p of ["/mcp%2f..", "/public/..%2fmcp", "/public%2f..%2fmcp"]) {
      const { res } = await nothingReachesBackend(p, () => call("/", { rawPath: p }));
      if (res.status >= 300 && res.status < 400 && res.headers.location) {
        const target = new URL(res.headers.location, origin);
        const followed = await nothingReachesBackend(`${p} → ${target.pathname}`, () => call("/", { rawPath: target.pathname + target.search }));
        assert.ok(followed.res.status !== 200, `${p} redirected to ${target.pathname}, which answered ${show(followed.res)}`);
      }
    }
  });

  /** Requests the backend got for `rawPath` (sent without a token), with the answer's status. */
  async function forwardedFor(rawPath) {
    const mark = recorder.mark();
    const { res } = await call("/", { rawPath });
    await sleep(20);
    return { status: res.status, urls: recorder.since(mark).requests.map((g) => g.url) };
  }
  const resolvesToMcp = (p) => p === "/mcp" || p.startsWith("/mcp/");

  T("a public path stays public; ';' path parameters under it never resolve to /mcp (servlet containers drop them)", async () => {
    const { res, seen } = await call("/public/x");
    assert.equal(res.status, 200, show(res));
    assert.ok(seen);
    // Tomcat, Jetty and Spring drop ';…' path parameters before resolving dot segments, so
    // '/health/..;/mcp' is '/mcp' to them. What the filter forwards as public must not be.
    const offenders = [];
    for (const p of ["/health/..;/mcp", "/public/..;/mcp", "/public/..;x=y/mcp", "/health;/../mcp", "/public/.;/../mcp"]) {
      const { status, urls } = await forwardedFor(p);
      for (const u of urls) {
        const servlet = new URL(u.replace(/;[^/?]*/g, ""), "http://x").pathname;
        const rfc = new URL(decodeURIComponent(u), "http://x").pathname;
        if (resolvesToMcp(servlet) || resolvesToMcp(rfc)) offenders.push(`${p} → ${status}, backend got ${u}`);
      }
    }
    assert.deepEqual(offenders, [], `forwarded without a token, but /mcp to some backends:\n${offenders.join("\n")}`);
  });

  T("double-encoded dot segments under a public path ('/public/%252e%252e/mcp'): 400, never forwarded", async () => {
    // A backend that decodes twice would see '/public/../mcp'; the filter refuses any '%25'.
    for (const p of ["/public/%252e%252e/mcp", "/health/%252e%252e%252fmcp", "/public/%252E%252E%252Fmcp", "/public/%25%32%65%25%32%65/mcp"]) {
      const { res } = await nothingReachesBackend(p, () => call("/", { rawPath: p }));
      assert.equal(res.status, 400, `${p}: ${show(res)}`);
      assert.equal(res.json?.error, "invalid_request", `${p}: ${res.body}`);
    }
  });
});

group("upstream answers", () => {
  T("a client metadata document whose Cache-Control header is not UTF-8: a normal answer, no crash", async () => {
    const { challenge } = pkce();
    const url = (client_id) =>
      authorizeUrl(origin, {
        response_type: "code",
        client_id,
        redirect_uri: REDIRECT,
        code_challenge: challenge,
        code_challenge_method: "S256",
        state: "s",
        scope: SCOPE,
        resource: RESOURCE,
      });
    const offset = envoy.log().length;
    const res = await nothingReachesBackend("authorize with a Latin-1 Cache-Control document", () =>
      request(url(docs.url("/clients/latin1-cache-control.json")), { headers: { accept: "text/html" }, timeoutMs: 3000 }).catch((e) => ({ status: 0, headers: {}, body: `no answer: ${e.message}` })),
    );
    assert.equal(docs.count("/clients/latin1-cache-control.json"), 1, "the document was fetched once");
    const bad = badLogLines(offset);
    assert.deepEqual(bad, [], `the filter crashed on a fetched header (answer: ${show(res)}):\n${bad.join("\n")}`);
    assert.ok([200, 302, 400].includes(res.status), `authorize with that document: ${show(res)}`);
    const good = await request(url(docs.url("/clients/good.json")), { headers: { accept: "text/html" } });
    assert.ok([200, 302].includes(good.status), `authorize with a good document right after: ${show(good)}`);
  });
});
