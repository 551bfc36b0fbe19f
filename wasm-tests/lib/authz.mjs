// Helpers for the built-in authorization server's end-to-end tests: key material and hashes in the
// formats the plugin config wants, PKCE, a cookie jar, an HTML form reader, and a "person at a
// browser" that signs in and answers the consent page with plain HTTP form posts.
import assert from "node:assert/strict";
import { createHash, pbkdf2Sync, randomBytes } from "node:crypto";
import { generateKeyPair, exportJWK, decodeJwt, decodeProtectedHeader } from "jose";
import { request } from "./http.mjs";

export const b64u = (bytes) => Buffer.from(bytes).toString("base64url");
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64url, no padding; 32-byte PBKDF2-HMAC-SHA256). */
export function pbkdf2Hash(password, iterations = 10000, salt = randomBytes(16)) {
  const hash = pbkdf2Sync(Buffer.from(password, "utf8"), salt, iterations, 32, "sha256");
  return `pbkdf2-sha256$${iterations}$${b64u(salt)}$${b64u(hash)}`;
}

/** `sha256$<base64url(sha256(secret))>`: how client secrets are stored in config. */
export const sha256Hash = (secret) => `sha256$${createHash("sha256").update(secret, "utf8").digest("base64url")}`;

/** An EC P-256 private JWK with `kid`, as `signing_keys[].jwk` / `jwk_env` want it. */
export async function es256PrivateJwk(kid) {
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  return { ...(await exportJWK(privateKey)), kid };
}

/** 32 random bytes, base64url: a sealing key. */
export const sealingKeyValue = () => b64u(randomBytes(32));

/** A random secret (client secret, password). */
export const randomSecret = (n = 24) => b64u(randomBytes(n));

/** PKCE S256 pair. */
export function pkce() {
  const verifier = b64u(randomBytes(32)); // 43 chars
  const challenge = createHash("sha256").update(verifier, "ascii").digest("base64url");
  return { verifier, challenge };
}

/**
 * Everything an `authorization_server` section needs, generated fresh: signing JWK (given to the VM
 * through `envKeyValues[jwkEnv]`), sealing key, one user (`userEntry()`), and the secret of a
 * confidential client_credentials client (`robotEntry()`).
 */
export async function authServerMaterial({ jwkEnv = "MCP_OAUTH_E2E_AS_JWK", kid = `as-${randomSecret(6)}` } = {}) {
  const jwk = await es256PrivateJwk(kid);
  const user = { username: "alice", password: `pw-${randomSecret(12)}`, subject: "user-alice" };
  const robot = { client_id: "svc-robot", secret: randomSecret(32) };
  return {
    jwk,
    kid,
    jwkEnv,
    sealing: sealingKeyValue(),
    user,
    robot,
    envKeyValues: { [jwkEnv]: JSON.stringify(jwk) },
    userEntry: () => ({ username: user.username, password_hash: pbkdf2Hash(user.password), subject: user.subject }),
    robotEntry: (extra = {}) => ({
      client_id: robot.client_id,
      client_secret_hash: sha256Hash(robot.secret),
      client_name: "Robot service",
      grant_types: ["client_credentials"],
      ...extra,
    }),
  };
}

/** Key fields of an `authorization_server` section for this material: the JWK by env var, the sealing key inline. */
export const keysSection = (m) => ({
  signing_keys: [{ jwk_env: m.jwkEnv }],
  sealing_keys: [{ kid: "s1", value_base64url: m.sealing }],
});

/**
 * A whole `authorization_server` section for this material: scope `mcp:tools`, the user, the robot
 * (client_credentials) and one public code-flow client, with rate limits out of the way.
 */
export const authServerSection = (m, { clientId, redirectUri, ...extra }) => ({
  ...keysSection(m),
  scopes: [{ name: "mcp:tools", description: "Use the tools" }],
  default_scopes: ["mcp:tools"],
  users: [m.userEntry()],
  clients: [m.robotEntry({ scopes: ["mcp:tools"] }), { client_id: clientId, redirect_uris: [redirectUri] }],
  rate_limits: { token_per_minute_per_client: 1e6, token_per_minute_per_address: 1e6, register_per_minute_per_address: 1e6 },
  ...extra,
});

// ---------- cookies ----------

/** A cookie jar for one origin: keeps name=value, and the attributes of the last Set-Cookie per name. */
export class CookieJar {
  constructor() {
    this.cookies = new Map(); // name -> {value, attrs}
    this.log = []; // every Set-Cookie line seen
  }

  static parse(line) {
    const [pair, ...rest] = line.split(";");
    const eq = pair.indexOf("=");
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const attrs = {};
    for (const a of rest) {
      const i = a.indexOf("=");
      const k = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
      if (k) attrs[k] = i < 0 ? true : a.slice(i + 1).trim();
    }
    return { name, value, attrs, line };
  }

  store(res) {
    let lines = res.headers["set-cookie"] ?? [];
    if (!Array.isArray(lines)) lines = [lines];
    for (const line of lines) {
      const c = CookieJar.parse(line);
      this.log.push(c);
      const expired =
        (c.attrs["max-age"] !== undefined && Number(c.attrs["max-age"]) <= 0) ||
        (typeof c.attrs.expires === "string" && Date.parse(c.attrs.expires) < Date.now()) ||
        c.value === "";
      if (expired) this.cookies.delete(c.name);
      else this.cookies.set(c.name, { value: c.value, attrs: c.attrs });
    }
  }

  header() {
    return [...this.cookies].map(([n, c]) => `${n}=${c.value}`).join("; ");
  }

  get size() {
    return this.cookies.size;
  }
}

/** Assert one Set-Cookie is a proper `__Host-` cookie: Secure, HttpOnly, SameSite=Lax, Path=/, no Domain. */
export function assertHostCookie(c, note = "") {
  const ctx = `${c.line} ${note}`;
  assert.match(c.name, /^__Host-/, `cookie name ${ctx}`);
  assert.equal(c.attrs.secure, true, `Secure ${ctx}`);
  assert.equal(c.attrs.httponly, true, `HttpOnly ${ctx}`);
  assert.equal(String(c.attrs.samesite).toLowerCase(), "lax", `SameSite=Lax ${ctx}`);
  assert.equal(c.attrs.path, "/", `Path=/ ${ctx}`);
  assert.equal(c.attrs.domain, undefined, `no Domain ${ctx}`);
}

// ---------- HTML ----------

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: " " };
export function decodeEntities(s) {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e) => {
    if (e[0] === "#") return String.fromCodePoint(e[1].toLowerCase() === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

function attrsOf(tagText) {
  const attrs = {};
  const re = /([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  const inner = tagText.replace(/^<\s*[a-z0-9]+/i, "").replace(/\/?>$/, "");
  let m;
  while ((m = re.exec(inner))) attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? "");
  return attrs;
}

/** Visible text of a page: no tags, scripts or styles; entities decoded; whitespace collapsed. */
export function pageText(html) {
  return decodeEntities(
    html
      .replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, " ")
      .replace(/<[^>]+>/g, " "),
  )
    .replace(/\s+/g, " ")
    .trim();
}

/**
 * The forms of a page: [{action, method, attrs, fields: [{tag, type, name, value}], submits: [{name, value, label}]}].
 * `fields` are the successful controls without submitters (input, select's first/selected option, textarea).
 */
export function parseForms(html) {
  const forms = [];
  const formRe = /<form\b[^>]*>[\s\S]*?<\/form\s*>/gi;
  let fm;
  while ((fm = formRe.exec(html))) {
    const text = fm[0];
    const open = /^<form\b[^>]*>/i.exec(text)[0];
    const fattrs = attrsOf(open);
    const fields = [];
    const submits = [];
    const ctrlRe = /<input\b[^>]*>|<button\b[^>]*>([\s\S]*?)<\/button\s*>|<textarea\b[^>]*>([\s\S]*?)<\/textarea\s*>/gi;
    let cm;
    while ((cm = ctrlRe.exec(text))) {
      const tag = /^<\s*([a-z]+)/i.exec(cm[0])[1].toLowerCase();
      const a = attrsOf(/^<[^>]*>/.exec(cm[0])[0]);
      if (tag === "input") {
        const type = (a.type ?? "text").toLowerCase();
        if (type === "submit" || type === "image") submits.push({ name: a.name, value: a.value ?? "", label: (a.value ?? "").trim() });
        else if (type === "checkbox" || type === "radio") {
          if ("checked" in a) fields.push({ tag, type, name: a.name, value: a.value ?? "on" });
        } else fields.push({ tag, type, name: a.name, value: a.value ?? "" });
      } else if (tag === "button") {
        const type = (a.type ?? "submit").toLowerCase();
        if (type === "submit") submits.push({ name: a.name, value: a.value ?? "", label: pageText(cm[1] ?? "") || (a.value ?? "") });
      } else {
        fields.push({ tag, type: "textarea", name: a.name, value: decodeEntities(cm[2] ?? "") });
      }
    }
    forms.push({ action: fattrs.action, method: (fattrs.method ?? "get").toLowerCase(), attrs: fattrs, fields, submits, html: text });
  }
  return forms;
}

export const APPROVE = /^(approve|allow|accept|authori[sz]e|grant|yes|continue|consent)\b/i;
export const DENY = /^(deny|cancel|reject|decline|refuse|no)\b/i;

/** The sign-in form (the one with a password field), or undefined. */
export const signInForm = (forms) => forms.find((f) => f.fields.some((x) => x.type === "password"));

/** [form, submitter] of the button whose label (or value) matches `re`, or []. */
export function findSubmit(forms, re) {
  for (const f of forms) for (const s of f.submits) if (re.test(s.label) || re.test(s.value ?? "")) return [f, s];
  return [];
}

// ---------- a person at a browser, with plain HTTP ----------

/**
 * One user agent for one origin: a cookie jar, same-origin redirects followed by the caller, and
 * form submission the way a browser does it (Origin header, urlencoded body, submitter's name=value).
 */
export class Agent {
  constructor(origin, { jar = new CookieJar() } = {}) {
    this.origin = origin;
    this.jar = jar;
    this.history = []; // {method, url, status, location}
  }

  async send(url, { method = "GET", body, headers = {} } = {}) {
    const h = { accept: "text/html,application/xhtml+xml", "user-agent": "mcp-oauth-e2e", ...headers };
    if (this.jar.size && h.cookie === undefined) h.cookie = this.jar.header();
    if (h.cookie === null) delete h.cookie;
    const t0 = Date.now();
    const res = await request(url, { method, headers: h, body });
    this.jar.store(res);
    this.history.push({ method, url, status: res.status, location: res.headers.location, ms: Date.now() - t0 });
    res.url = url;
    return res;
  }

  get(url, opts = {}) {
    return this.send(url, { ...opts, method: "GET" });
  }

  /**
   * Submit `form` from the page at `pageUrl`: its fields, with `fill` ({name: value}) overriding, plus
   * the submitter's name=value. `withCookies: false` sends no cookies (a cross-site forged post).
   */
  submit(pageUrl, form, { fill = {}, submitter, withCookies = true, origin = this.origin } = {}) {
    const params = new URLSearchParams();
    for (const f of form.fields) if (f.name) params.append(f.name, f.name in fill ? fill[f.name] : f.value);
    for (const [k, v] of Object.entries(fill)) if (!form.fields.some((f) => f.name === k)) params.append(k, v);
    if (submitter?.name) params.append(submitter.name, submitter.value ?? "");
    const action = new URL(form.action || pageUrl, pageUrl).href;
    const headers = { "content-type": "application/x-www-form-urlencoded" };
    if (origin) headers.origin = origin;
    if (!withCookies) headers.cookie = null;
    if (form.method === "post") return this.send(action, { method: "POST", body: params.toString(), headers });
    const u = new URL(action);
    u.search = params.toString();
    return this.send(u.href, { method: "GET", headers });
  }
}

/** Fill the sign-in form: the password field gets the password, the first text-like field the username. */
export function credentialsFill(form, username, password) {
  const fill = {};
  const pw = form.fields.find((f) => f.type === "password");
  const user = form.fields.find((f) => ["text", "email", "username"].includes(f.type) && f.name);
  if (pw) fill[pw.name] = password;
  if (user) fill[user.name] = username;
  return fill;
}

/**
 * Drive /oauth/authorize like a person: sign in when asked, then press Approve (or Deny) on the
 * consent page. Same-origin redirects are followed; the first redirect elsewhere (the client's
 * redirect URI) ends it. `decision: "stop"` stops at the consent page (`atConsent: {res, url, forms}`).
 * Returns {location, params (URLSearchParams of the redirect), pages: [{kind, res, url, forms, text}], agent,
 *          stuck?: {reason, res}}.
 */
export async function authorizeFlow(agent, authorizeUrl, { username, password, decision = "approve", maxSteps = 8 } = {}) {
  const pages = [];
  let url = authorizeUrl;
  let res = await agent.get(url);
  let signedIn = false;
  for (let step = 0; step < maxSteps; step++) {
    if (res.status >= 300 && res.status < 400 && res.headers.location) {
      const loc = new URL(res.headers.location, url);
      if (loc.origin === agent.origin) {
        url = loc.href;
        res = await agent.get(url);
        continue;
      }
      return { location: loc.href, params: loc.searchParams, status: res.status, res, pages, agent };
    }
    const html = res.body ?? "";
    const forms = res.status === 200 ? parseForms(html) : [];
    const signin = signInForm(forms);
    if (signin) {
      pages.push({ kind: "signin", res, url, forms, text: pageText(html) });
      if (signedIn) return { stuck: { reason: "sign-in page shown again", res }, pages, agent };
      signedIn = true;
      res = await agent.submit(url, signin, { fill: credentialsFill(signin, username, password), submitter: signin.submits[0] });
      continue;
    }
    const [form, submitter] = findSubmit(forms, decision === "approve" ? APPROVE : DENY);
    if (form) {
      pages.push({ kind: "consent", res, url, forms, text: pageText(html) });
      if (decision === "stop") return { atConsent: { res, url, forms }, pages, agent };
      res = await agent.submit(url, form, { submitter });
      continue;
    }
    return { stuck: { reason: `no sign-in or consent form (status ${res.status})`, res }, pages, agent };
  }
  return { stuck: { reason: "too many steps", res }, pages, agent };
}

/** Describe a flow result for assertion messages. */
export function describeFlow(r) {
  const hist = r.agent?.history.map((h) => `${h.method} ${h.url} -> ${h.status}${h.location ? ` ${h.location}` : ""}`).join("\n  ");
  const stuck = r.stuck ? `\nstuck: ${r.stuck.reason}\nlast body: ${String(r.stuck.res?.body ?? "").slice(0, 1500)}` : "";
  return `history:\n  ${hist}${stuck}`;
}

/** The authorize URL for these parameters (undefined values are left out). */
export function authorizeUrl(origin, params, path = "/oauth/authorize") {
  const u = new URL(path, origin);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  return u.href;
}

// ---------- token endpoint and friends ----------

export const basicAuth = (id, secret) =>
  `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`;

/** POST a form to `path` on `origin`. `basic: [id, secret]` adds client_secret_basic. */
export function postForm(origin, path, params, { basic, headers = {} } = {}) {
  const h = { "content-type": "application/x-www-form-urlencoded", accept: "application/json", ...headers };
  if (basic) h.authorization = basicAuth(...basic);
  const body = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined)).toString();
  return request(`${origin}${path}`, { method: "POST", headers: h, body });
}

export const tokenRequest = (origin, params, opts) => postForm(origin, "/oauth/token", params, opts);

/** POST JSON to /oauth/register. */
export function register(origin, metadata, { headers = {} } = {}) {
  return request(`${origin}/oauth/register`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json", ...headers },
    body: JSON.stringify(metadata),
  });
}

/** Assert a successful token response and return its JSON. */
export function assertTokenResponse(res, { refresh, scope, note = "" } = {}) {
  const ctx = `${note} (got ${res.status} ${res.body})`;
  assert.equal(res.status, 200, `status ${ctx}`);
  assert.match(res.headers["content-type"] ?? "", /^application\/json\b/, `content-type ${ctx}`);
  assert.match(res.headers["cache-control"] ?? "", /\bno-store\b/, `cache-control ${ctx}`);
  const j = res.json;
  assert.ok(j && typeof j.access_token === "string" && j.access_token.split(".").length === 3, `access_token is a JWT ${ctx}`);
  assert.equal(j.token_type, "Bearer", `token_type ${ctx}`);
  assert.ok(Number.isInteger(j.expires_in) && j.expires_in > 0, `expires_in ${ctx}`);
  if (scope !== undefined) assert.equal(j.scope, scope, `scope ${ctx}`);
  else assert.equal(typeof j.scope, "string", `scope ${ctx}`);
  if (refresh === true) assert.ok(typeof j.refresh_token === "string" && j.refresh_token.length > 20, `refresh_token ${ctx}`);
  if (refresh === false) assert.equal(j.refresh_token, undefined, `no refresh_token ${ctx}`);
  return j;
}

/**
 * The code flow as a person and a client do it: /oauth/authorize at `origin` (sign in when the jar
 * has no session, then Approve), then the code redeemed with PKCE S256 (as a public client, or with
 * `basic: [id, secret]`). Returns {tokens (the asserted token response), pages (kinds of the pages shown)}.
 */
export async function codeFlow(origin, resource, { jar = new CookieJar(), client_id, redirect, scope, user, basic }) {
  const pk = pkce();
  const state = randomSecret(12);
  const url = authorizeUrl(origin, {
    response_type: "code",
    client_id,
    redirect_uri: redirect,
    scope,
    state,
    code_challenge: pk.challenge,
    code_challenge_method: "S256",
    resource,
  });
  const flow = await authorizeFlow(new Agent(origin, { jar }), url, { username: user.username, password: user.password });
  assert.ok(flow.location, `no redirect to the client\n${describeFlow(flow)}`);
  const code = flow.params.get("code");
  assert.ok(code, `no code: ${flow.location}`);
  assert.equal(flow.params.get("state"), state);
  const res = await tokenRequest(
    origin,
    { grant_type: "authorization_code", code, redirect_uri: redirect, code_verifier: pk.verifier, resource, ...(basic ? {} : { client_id }) },
    basic ? { basic } : undefined,
  );
  return { tokens: assertTokenResponse(res, { refresh: true, scope, note: "code exchange" }), pages: flow.pages.map((p) => p.kind) };
}

/** Header and claims of a JWT (not verified). */
export function jwtParts(token) {
  return { header: decodeProtectedHeader(token), claims: decodeJwt(token) };
}

// ---------- MCP over plain HTTP ----------

function parseMcpBody(res) {
  const ct = res.headers["content-type"] ?? "";
  if (ct.startsWith("application/json")) return [].concat(res.json ?? []);
  const out = [];
  for (const line of String(res.body).split(/\r?\n/)) {
    if (line.startsWith("data:")) {
      try {
        out.push(JSON.parse(line.slice(5).trim()));
      } catch {
        /* not JSON */
      }
    }
  }
  return out;
}

/**
 * A tiny streamable-HTTP MCP client over `request()`: initialize (+ notifications/initialized), then `call(method, params)`.
 * Returns {res, sessionId, result, call, close}. Throws with the response when a step is not 200.
 */
export async function mcpSession(origin, token, { path = "/mcp", protocolVersion = "2025-06-18" } = {}) {
  let id = 0;
  let sessionId;
  const headers = () => ({
    accept: "application/json, text/event-stream",
    "content-type": "application/json",
    authorization: `Bearer ${token}`,
    ...(sessionId ? { "mcp-session-id": sessionId, "mcp-protocol-version": protocolVersion } : {}),
  });
  const rpc = async (method, params, { notification = false } = {}) => {
    const msg = notification ? { jsonrpc: "2.0", method, params } : { jsonrpc: "2.0", id: ++id, method, params };
    const res = await request(`${origin}${path}`, { method: "POST", headers: headers(), body: JSON.stringify(msg), timeoutMs: 15000 });
    if (notification) return { res };
    const messages = parseMcpBody(res);
    const reply = messages.find((m) => m.id === msg.id);
    return { res, reply, result: reply?.result, error: reply?.error };
  };
  const init = await rpc("initialize", { protocolVersion, capabilities: {}, clientInfo: { name: "mcp-oauth-e2e", version: "1.0.0" } });
  if (init.res.status !== 200 || !init.result) {
    const e = new Error(`MCP initialize: ${init.res.status} ${init.res.body.slice(0, 500)} www-authenticate=${init.res.headers["www-authenticate"]}`);
    e.res = init.res;
    throw e;
  }
  sessionId = init.res.headers["mcp-session-id"];
  await rpc("notifications/initialized", undefined, { notification: true });
  return {
    res: init.res,
    sessionId,
    result: init.result,
    call: (method, params) => rpc(method, params),
    async close() {
      if (sessionId) await request(`${origin}${path}`, { method: "DELETE", headers: headers() }).catch(() => {});
    },
  };
}

/** One POST /mcp initialize with this token; returns the raw response (for 401/403 checks). */
export function mcpPost(origin, token, path = "/mcp") {
  const headers = { accept: "application/json, text/event-stream", "content-type": "application/json" };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  return request(`${origin}${path}`, {
    method: "POST",
    headers,
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "probe", version: "1" } },
    }),
  });
}

/** Wait, if needed, so that the next `need` seconds stay inside one wall-clock minute (fixed-window rate limits). */
export async function awayFromMinuteBoundary(need = 6) {
  const s = new Date().getUTCSeconds() + new Date().getUTCMilliseconds() / 1000;
  if (s > 60 - need) await sleep((60 - s) * 1000 + 250);
}
