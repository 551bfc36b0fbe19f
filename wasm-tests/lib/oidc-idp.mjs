// A real upstream OpenID provider for the federated sign-in tests: `oidc-provider` (panva, the
// certified Node implementation, pinned in package.json) served over HTTPS on 127.0.0.1 with the
// test certificate envoy/certs/server.pem (SAN localhost and 127.0.0.1, CA envoy/certs/ca.pem), on
// a free port, issuer `https://localhost:<port>`. Envoy reaches it through a STATIC TLS cluster
// (`clusterFor(name)`, i.e. `metadataCluster` from metadata-server.mjs). Everything lives in this
// process (no child process); `stop()` closes the listener and every connection.
//
//   const idp = await startIdp({ redirectUris: [`https://localhost:${envoyPort}/oauth/callback`] });
//   idp.issuer                       // https://localhost:<port>
//   idp.client                       // { client_id, client_secret, redirect_uris }  (client_secret_basic)
//   idp.clusterFor("upstream_idp")   // for renderEnvoyConfig({ extraClusters: [...] })
//   idp.setTokenMode({ tamper: (c) => ({ ...c, nonce: "wrong" }) });   // a correctly signed bad id_token
//   idp.requests.filter((r) => r.path === "/token")[0].form             // what the gateway sent
//   await idp.stop();
//
// Endpoints (fixed paths, also in the discovery document; `IDP_PATHS`):
//   /.well-known/openid-configuration  /authorize  /token  /userinfo  /jwks  /revoke
//   /interaction/<uid>  (+ /login, /confirm, /abort): the harness's own sign-in and consent pages.
//
// Options of startIdp (all optional):
//   redirectUris      redirect_uris of the default client ([])
//   clientId          "mcp-gateway";  clientSecret: random (read it from `idp.client`)
//   clients           full oidc-provider client metadata list; replaces the default client. The
//                     default is { client_id, client_secret, client_name, redirect_uris,
//                     response_types: ["code"], grant_types: ["authorization_code","refresh_token"],
//                     token_endpoint_auth_method: "client_secret_basic" }.
//                     The handle's `client` is clients[0].
//   accounts          { id: claims } (DEFAULT_ACCOUNTS: alice = alice@example.com, verified,
//                     "Alice Example", groups ["mcp-users"]; bob = bob@other.org, verified,
//                     "Bob Other", no groups claim at all). Sign in with the id or the
//                     email (case-insensitive) and `password`. `sub` defaults to the id. Live:
//                     `idp.setAccount(id, claims)` changes what the next token/userinfo carries.
//   password          the one password of every account (IDP_PASSWORD)
//   signingKey        a private RSA JWK to sign with (kid kept if present); default: a new
//                     RSA-2048 key (generateSigningKey())
//   accessTokenTtl    seconds (3600); 2 or 5 work: the token is gone from the harness's storage
//                     exactly that long after it was issued (/userinfo: 401 invalid_token).
//                     oidc-provider itself would accept it clockTolerance (15 s) longer: its own
//                     memory adapter keeps entries ttl + 15 s and its expiry check allows 15 s.
//   idTokenTtl        seconds (3600)
//   refreshTokenTtl   seconds (86400); grants and sessions live at least as long
//   rotateRefreshToken  false: the refresh token stays the same on refresh; true: every refresh
//                     returns a new one and consumes the old (reusing a consumed one is
//                     invalid_grant AND revokes the whole grant, oidc-provider's reuse detection)
//   refreshWithoutOfflineAccess  true: a refresh token is issued for every code exchange of a
//                     client allowed the refresh_token grant, with or without `offline_access`;
//                     false: oidc-provider's default rule (only when the grant has offline_access)
//   requirePkce       true: PKCE (S256, the only method) required for every client, confidential
//                     too (oidc-provider's default requires it for public clients only)
//   strictClientAuth  true: at /token and /revoke, a client registered client_secret_basic that
//                     sends client_secret_post (or the reverse) gets 401 invalid_client from the
//                     harness (oidc-provider itself accepts either for both)
//   autoConsent       false: after sign-in the consent page is shown whenever the grant misses a
//                     requested scope; true: consent is granted silently (first-party style)
//   conformIdTokenClaims  false: the id_token carries the scope claims (email, email_verified,
//                     name, groups) like Google/Entra/Okta do; true: oidc-provider's default, where
//                     with an access token issued they are only available from userinfo
//   scopes            ["openid","offline_access","email","profile","groups"]
//   claims            scope → claims: openid [sub], email [email, email_verified], profile [name],
//                     groups [groups]
//   features          merged over { devInteractions: off, revocation: on, userinfo: on,
//                     rpInitiatedLogout: off, resourceIndicators: off }
//   config            merged last into the oidc-provider configuration (escape hatch)
//
// Handle: { port, origin, issuer, url(path), discoveryUrl, paths, client, clients, accounts (Map),
//   password, jwks (public), privateJwk, kid, provider (current oidc-provider instance), requests,
//   count(path), clearRequests(), errors (server_error events; expect []), setMode(endpoint, mode,
//   {times, grantType}), setTokenMode(mode, opts), setUserinfoMode(mode, opts), setJwksMode(mode,
//   opts), signJwt(claims, {header, key}), setAccount(id, claims), revokeRefreshTokens(),
//   rotateKey({keepOld, key}), clusterFor(name, {sni, connectTimeout}), running, stop(),
//   restart({wipe}) }.
//
// Fault modes (`setMode(endpoint, mode, { times, grantType })`, endpoint one of token, userinfo,
// jwks, discovery, authorization, revocation; `times`: only the next n matching requests, then
// "normal"; `grantType`: only token requests with that grant_type, e.g. "refresh_token"):
//   "normal"        oidc-provider answers
//   "error500"      500 {"error":"server_error"} without reaching oidc-provider
//   "hang"          the request body is read and logged, then no answer until stop()/restart()
//   "invalid_grant" 400 {"error":"invalid_grant"} (the token stays valid at the provider)
//   { status, json?, body?, headers? }   a canned answer
//   { tamper(claims, {header, body}) → claims, header?(h) → h, key?: privateJwk }
//                   token (code and refresh answers): the id_token of the real answer is decoded,
//                   its claims passed through `tamper` and re-signed with the provider's private
//                   key under the same header (alg RS256, same kid), so it verifies against the
//                   JWKS but carries e.g. a wrong nonce or aud; `key` signs with another key (kid
//                   still the original unless `header` changes it); userinfo: `tamper` rewrites the
//                   JSON claims
//   { body(json) → json }   rewrites the provider's real JSON answer (e.g. drop the id_token)
//
// Request log: `requests` holds, for every request, { method, path, query, host (as sent: the
// harness rewrites Host to localhost:<port> before oidc-provider sees it), headers (authorization
// and cookie removed), authScheme ("basic"|"bearer"|…|null), endpoint, at, status (once
// answered; undefined while hanging), mode ("normal" or the fault applied) }, and for token and
// revocation POSTs `form` (every field except client_secret), `clientAuth` ("client_secret_basic"
// | "client_secret_post" | "none"), `basicClientId`, and `refused` when strictClientAuth refused it.
// `count(path)` counts requests by path (without the query).
//
// Sign-in and consent pages (plain HTML, no script, no external resources):
//   every page:  <body data-idp-page="login" | "consent" | "error">
//   login:       form#idp-login  input#idp-username[name=username]  input#idp-password[name=password]
//                button#idp-signin ("Sign in")  button#idp-cancel ("Cancel" → access_denied)
//                p#idp-error (only after a wrong username/password; the form again, status 200)
//   consent:     p#idp-account (who is signed in), ul#idp-scopes (li per scope),
//                button#idp-approve ("Authorize")  button#idp-deny ("Deny" → access_denied)
//   `IDP_SELECTORS` has these; lib/idp-browser.mjs drives them with Playwright.
//
// Quirks of oidc-provider 9.13.3 found while building this:
//   - It prints "Unsupported runtime. Use Node.js v22.x LTS" once on import under Node 20 (the
//     first startIdp); it works on Node 20.20. Its package.json declares no `engines`.
//   - URLs in discovery and redirects are built from the request's Host header (ctx.href), not
//     from the issuer. Envoy sends the cluster's authority, so the harness rewrites Host to
//     `localhost:<port>` on every request (the original is in `requests[].host`).
//   - No proxy setting is needed: TLS terminates in this process, so ctx.secure is true and the
//     cookies are `secure`. Cookies are not port-scoped, so the names carry the port
//     (`idp<port>_session`, `idp<port>_interaction`, ...) to keep two providers (or the gateway's
//     own cookies) apart in one browser.
//   - The built-in devInteractions (features.devInteractions, on by default, still in 9.x) accept
//     any login without checking the password, log a warning, show a "Continue" button and a
//     "[ Cancel ]" link, and their pages @import Google Fonts (an outside request from the test
//     browser), so they are off; the pages here replace them (the interactions.url setting).
//   - `offline_access` is silently dropped from an authorization request unless it also has
//     prompt=consent (OIDC Core); with refreshWithoutOfflineAccess a refresh token is issued anyway.
//   - With conformIdTokenClaims (oidc-provider default true) the id_token of a code flow has only
//     sub, nonce, iss, aud, iat, exp (the scope claims only at userinfo); here it defaults to false.
//   - Resource indicators (RFC 8707) are ON by default in 9.x, with a default
//     getResourceServerInfo that refuses every `resource` (/authorize redirects back with
//     error=invalid_target "resource indicator is missing, or unknown", and warns "you MUST
//     change it"). The harness turns the feature off, so a `resource` parameter is ignored, as
//     most providers do (it is still in `requests[].query`). Access tokens are opaque (not JWTs),
//     only meaningful to /userinfo.
//   - PKCE: only S256 exists; the harness requires it for every client (requirePkce).
//   - Client authentication: client_secret_basic and client_secret_post are interchangeable in
//     oidc-provider (either works for a client registered with one); see strictClientAuth.
//     token_endpoint_auth_methods_supported lists every method it knows (basic, post, jwt, none).
//   - Refreshed id_tokens repeat the `nonce` of the original authorization request.
//   - Expiry of opaque tokens is checked with clockTolerance (default 15 s) and the bundled
//     memory adapter keeps them ttl + 15 s: a 2 s access token works ~17 s. The harness's own
//     storage (a Map per provider, so restart() can keep or wipe it) drops entries at ttl.
//   - The authorization response carries `iss` (RFC 9207).
import http from "node:http";
import https from "node:https";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { generateKeyPair, exportJWK, importJWK, SignJWT, decodeJwt, decodeProtectedHeader } from "jose";
import { CERT_DIR, ensureCerts } from "./paths.mjs";
import { metadataCluster } from "./metadata-server.mjs";

/** The password of every account unless `password` is given. */
export const IDP_PASSWORD = "idp-test-password";

/** alice: groups ["mcp-users"]; bob: another domain, no `groups` claim at all. */
export const DEFAULT_ACCOUNTS = Object.freeze({
  alice: { sub: "alice", email: "alice@example.com", email_verified: true, name: "Alice Example", groups: ["mcp-users"] },
  bob: { sub: "bob", email: "bob@other.org", email_verified: true, name: "Bob Other" },
});

export const IDP_PATHS = Object.freeze({
  discovery: "/.well-known/openid-configuration",
  authorization: "/authorize",
  token: "/token",
  userinfo: "/userinfo",
  jwks: "/jwks",
  revocation: "/revoke",
  interaction: "/interaction",
});

export const IDP_SELECTORS = Object.freeze({
  page: "body[data-idp-page]",
  loginPage: 'body[data-idp-page="login"]',
  consentPage: 'body[data-idp-page="consent"]',
  errorPage: 'body[data-idp-page="error"]',
  loginForm: "form#idp-login",
  username: "#idp-username",
  password: "#idp-password",
  signIn: "#idp-signin",
  cancel: "#idp-cancel",
  loginError: "#idp-error",
  account: "#idp-account",
  scopes: "#idp-scopes",
  approve: "#idp-approve",
  deny: "#idp-deny",
});

const DEFAULT_SCOPES = ["openid", "offline_access", "email", "profile", "groups"];
const DEFAULT_CLAIMS = { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"], groups: ["groups"] };

const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

function page(kind, title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:28rem;margin:2rem auto}label,input,button{display:block;margin:.4rem 0}#idp-error{color:#b00}</style>
</head><body data-idp-page="${kind}"><h1>${esc(title)}</h1>
${body}
</body></html>`;
}

function readBuffer(req, limit = 64 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let n = 0;
    req.on("data", (c) => {
      n += c.length;
      if (n > limit) {
        reject(new Error("body too large"));
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

const formOf = (buf) => Object.fromEntries(new URLSearchParams(buf.toString("utf8")));

/**
 * The request again, as a fresh IncomingMessage on the same socket whose body is `buf`: the
 * harness reads token/revocation bodies itself (log, fault selection, client auth check) and
 * oidc-provider still gets a readable request (its `req.body` fallback would print a warning).
 */
function replay(req, buf) {
  const r = new http.IncomingMessage(req.socket);
  for (const k of ["method", "url", "headers", "rawHeaders", "httpVersion", "httpVersionMajor", "httpVersionMinor", "idpEntry"]) r[k] = req[k];
  r.complete = true;
  r.push(buf);
  r.push(null);
  return r;
}

/** A per-instance in-memory adapter (oidc-provider's storage interface) over one Map. */
function memoryStore() {
  const map = new Map(); // key -> { value, expiresAt }
  const get = (k) => {
    const e = map.get(k);
    if (!e) return undefined;
    if (e.expiresAt !== undefined && e.expiresAt <= Date.now()) {
      map.delete(k);
      return undefined;
    }
    return e.value;
  };
  const set = (k, value, expiresIn) =>
    map.set(k, { value, expiresAt: typeof expiresIn === "number" ? Date.now() + expiresIn * 1000 : undefined });
  class Adapter {
    constructor(model) {
      this.model = model;
    }
    key(id) {
      return `${this.model}:${id}`;
    }
    async upsert(id, payload, expiresIn) {
      set(this.key(id), payload, expiresIn);
      if (this.model === "Session" && payload.uid) set(`sessionUid:${payload.uid}`, id, expiresIn);
      if (payload.userCode) set(`userCode:${payload.userCode}`, id, expiresIn);
      if (payload.grantId) {
        const members = get(`grant:${payload.grantId}`) ?? new Set();
        members.add(this.key(id));
        set(`grant:${payload.grantId}`, members); // members expire with themselves
      }
    }
    async find(id) {
      return get(this.key(id));
    }
    async findByUid(uid) {
      const id = get(`sessionUid:${uid}`);
      return id === undefined ? undefined : this.find(id);
    }
    async findByUserCode(code) {
      const id = get(`userCode:${code}`);
      return id === undefined ? undefined : this.find(id);
    }
    async consume(id) {
      const p = get(this.key(id));
      if (p) p.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id) {
      map.delete(this.key(id));
    }
    async revokeByGrantId(grantId) {
      for (const k of get(`grant:${grantId}`) ?? []) map.delete(k);
      map.delete(`grant:${grantId}`);
    }
  }
  return {
    Adapter,
    clear: () => map.clear(),
    deleteModel(model) {
      let n = 0;
      for (const k of [...map.keys()]) if (k.startsWith(`${model}:`) && get(k) !== undefined) (map.delete(k), n++);
      return n;
    },
  };
}

/**
 * A private RS256 JWK { kty, n, e, d, p, q, dp, dq, qi, kid, alg: "RS256", use: "sig" }. RSA-2048
 * generation takes 0.2-0.9 s of CPU on a busy 2-core machine: tests that start several providers
 * can make the keys in parallel up front and pass them as `signingKey`.
 */
export async function generateSigningKey(kid = `idp-${randomBytes(6).toString("base64url")}`) {
  const { privateKey } = await generateKeyPair("RS256", { extractable: true, modulusLength: 2048 });
  return { ...(await exportJWK(privateKey)), kid, alg: "RS256", use: "sig" };
}

function asSigningKey(jwk) {
  if (jwk?.kty !== "RSA" || !jwk.d) throw new Error("signingKey: a private RSA JWK");
  return { ...jwk, kid: jwk.kid ?? `idp-${randomBytes(6).toString("base64url")}`, alg: "RS256", use: "sig" };
}

const publicOf = ({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use });

/**
 * Start the provider. See the top of this file for the options and the handle.
 */
export async function startIdp(options = {}) {
  const {
    redirectUris = [],
    clientId = "mcp-gateway",
    clientSecret = `idp-secret-${randomBytes(18).toString("base64url")}`,
    accounts: accountsOpt = DEFAULT_ACCOUNTS,
    password = IDP_PASSWORD,
    accessTokenTtl = 3600,
    idTokenTtl = 3600,
    refreshTokenTtl = 86400,
    rotateRefreshToken = false,
    refreshWithoutOfflineAccess = true,
    requirePkce = true,
    strictClientAuth = true,
    autoConsent = false,
    conformIdTokenClaims = false,
    scopes = DEFAULT_SCOPES,
    claims = DEFAULT_CLAIMS,
    features = {},
    config = {},
  } = options;
  ensureCerts();
  // Imported here, not at the top: lib/idp-browser.mjs needs only the constants of this file, and
  // oidc-provider prints a runtime warning on import under Node 20.
  const { default: Provider } = await import("oidc-provider");

  const clients = options.clients ?? [
    {
      client_id: clientId,
      client_secret: clientSecret,
      client_name: "MCP gateway (test)",
      redirect_uris: redirectUris,
      response_types: ["code"],
      grant_types: ["authorization_code", "refresh_token"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ];
  const accounts = new Map(Object.entries(accountsOpt).map(([id, c]) => [id, { sub: id, ...structuredClone(c) }]));
  const keys = [options.signingKey ? asSigningKey(options.signingKey) : await generateSigningKey()]; // keys[0] signs
  const cookieKeys = [randomBytes(32).toString("base64url")];
  const store = memoryStore();
  const requests = [];
  const errors = [];
  const modes = new Map(); // endpoint -> { mode, times }
  const hung = new Set(); // pending "hang" requests: { res, release }
  const sockets = new Set();

  let port;
  let origin;
  let provider;

  const findAccountId = (login) => {
    const l = String(login ?? "").trim().toLowerCase();
    if (accounts.has(l)) return l;
    for (const [id, c] of accounts) if (c.email && c.email.toLowerCase() === l) return id;
    return undefined;
  };

  function buildProvider() {
    const grantTtl = Math.max(refreshTokenTtl, 86400);
    const p = new Provider(origin, {
      adapter: store.Adapter,
      clients,
      jwks: { keys: keys.map((k) => ({ ...k })) },
      cookies: {
        keys: cookieKeys,
        names: { session: `idp${port}_session`, interaction: `idp${port}_interaction`, resume: `idp${port}_interaction_resume` },
      },
      scopes,
      claims,
      conformIdTokenClaims,
      responseTypes: ["code"],
      pkce: { required: () => requirePkce },
      routes: {
        authorization: IDP_PATHS.authorization,
        token: IDP_PATHS.token,
        userinfo: IDP_PATHS.userinfo,
        jwks: IDP_PATHS.jwks,
        revocation: IDP_PATHS.revocation,
      },
      features: {
        devInteractions: { enabled: false },
        revocation: { enabled: true },
        userinfo: { enabled: true },
        rpInitiatedLogout: { enabled: false },
        resourceIndicators: { enabled: false }, // on by default in 9.x, refusing every `resource`
        ...features,
      },
      interactions: { url: (ctx, interaction) => `${IDP_PATHS.interaction}/${interaction.uid}` },
      ttl: {
        AccessToken: accessTokenTtl,
        AuthorizationCode: 60,
        IdToken: idTokenTtl,
        RefreshToken: refreshTokenTtl,
        Interaction: 600,
        Session: grantTtl,
        Grant: grantTtl,
        ClientCredentials: 600,
      },
      issueRefreshToken: async (ctx, client, code) =>
        client.grantTypeAllowed("refresh_token") && (refreshWithoutOfflineAccess || code.scopes.has("offline_access")),
      rotateRefreshToken: () => rotateRefreshToken,
      expiresWithSession: async () => false,
      clientBasedCORS: () => false,
      async findAccount(ctx, id) {
        const c = accounts.get(id);
        if (!c) return undefined;
        return { accountId: id, claims: async () => structuredClone(c) };
      },
      async loadExistingGrant(ctx) {
        const { oidc } = ctx;
        const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
        let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
        if (!autoConsent) return grant;
        grant ??= new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
        grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(" "));
        if (oidc.requestParamClaims.size) grant.addOIDCClaims([...oidc.requestParamClaims]);
        await grant.save();
        return grant;
      },
      async renderError(ctx, out) {
        ctx.type = "html";
        ctx.body = page(
          "error",
          "Sign-in error",
          Object.entries(out)
            .map(([k, v]) => `<p class="idp-error-${esc(k)}"><strong>${esc(k)}</strong>: ${esc(v)}</p>`)
            .join("\n"),
        );
      },
      ...config,
    });
    p.on("server_error", (ctx, err) => errors.push({ at: Date.now(), path: ctx.path, error: err }));
    // Koa logs unexpected errors to stderr unless someone listens.
    p.on("error", (err) => errors.push({ at: Date.now(), error: err }));
    p.use(async (ctx, next) => {
      await next();
      const entry = ctx.req.idpEntry;
      if (!entry) return;
      if (ctx.status !== 200 || !ctx.body || typeof ctx.body !== "object" || Buffer.isBuffer(ctx.body)) return;
      const m = takeMode(entry, ["tamper", "body"]); // only real 200 JSON answers use up `times`
      if (!m) return;
      entry.mode = describeMode(m);
      if (m.body) {
        ctx.body = await m.body(structuredClone(ctx.body));
      } else if (m.tamper && entry.endpoint === "token" && typeof ctx.body.id_token === "string") {
        const header = decodeProtectedHeader(ctx.body.id_token);
        const claimsIn = decodeJwt(ctx.body.id_token);
        const claimsOut = (await m.tamper(structuredClone(claimsIn), { header, body: ctx.body })) ?? claimsIn;
        ctx.body = { ...ctx.body, id_token: await signJwt(claimsOut, { header: m.header ? m.header({ ...header }) : header, key: m.key }) };
      } else if (m.tamper && entry.endpoint !== "token") {
        ctx.body = (await m.tamper(structuredClone(ctx.body), { body: ctx.body })) ?? ctx.body;
      }
    });
    return p;
  }

  function noteForm(entry, form, authorization) {
    const { client_secret, ...rest } = form;
    entry.form = { ...rest };
    const basic = /^basic\s+(.+)$/i.exec(authorization ?? "");
    if (basic) {
      const raw = Buffer.from(basic[1], "base64").toString("utf8");
      const user = raw.slice(0, Math.max(raw.indexOf(":"), 0));
      try {
        entry.basicClientId = decodeURIComponent(user.replace(/\+/g, " "));
      } catch {
        entry.basicClientId = user;
      }
      entry.clientAuth = "client_secret_basic";
    } else if (client_secret !== undefined) entry.clientAuth = "client_secret_post";
    else entry.clientAuth = "none";
  }

  const endpointOf = (path) => Object.entries(IDP_PATHS).find(([, p]) => p === path)?.[0];

  /**
   * The active mode for this request's endpoint if its kind is in `kinds` and its `grantType`
   * (if set) is the request's; consumes one of `times`.
   */
  function takeMode(entry, kinds) {
    const m = modes.get(entry.endpoint);
    if (!m) return undefined;
    const kind = typeof m.mode === "string" ? m.mode : m.mode.tamper ? "tamper" : m.mode.body ? "body" : "canned";
    if (!kinds.includes(kind)) return undefined;
    if (m.grantType !== undefined && entry.form?.grant_type !== m.grantType) return undefined;
    if (m.times !== undefined && --m.times <= 0) modes.delete(entry.endpoint);
    return typeof m.mode === "string" ? { name: m.mode } : m.mode;
  }
  const describeMode = (m) => m.name ?? (m.tamper ? "tamper" : m.body ? "body" : `status ${m.status}`);

  async function signJwt(payload, { header = {}, key } = {}) {
    const jwk = key ?? keys[0];
    const h = { ...header, alg: header.alg ?? jwk.alg ?? "RS256", kid: header.kid ?? jwk.kid };
    return new SignJWT(payload).setProtectedHeader(h).sign(await importJWK(jwk, h.alg));
  }

  function sendJson(res, status, json, headers = {}) {
    const body = JSON.stringify(json);
    res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", "content-length": Buffer.byteLength(body), ...headers });
    res.end(body);
  }
  function sendHtml(res, status, html) {
    res.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", "content-length": Buffer.byteLength(html) });
    res.end(html);
  }

  // ---------- the sign-in and consent pages ----------

  function loginPage(uid, details, { error, username } = {}) {
    const client = clients.find((c) => c.client_id === details.params.client_id);
    return page(
      "login",
      "Test IdP: sign in",
      `<p id="idp-client">Sign in to continue to ${esc(client?.client_name ?? details.params.client_id)}</p>
${error ? `<p id="idp-error" role="alert">${esc(error)}</p>` : ""}
<form id="idp-login" method="post" action="${IDP_PATHS.interaction}/${esc(uid)}/login" autocomplete="off">
<label for="idp-username">Username or email</label>
<input id="idp-username" name="username" type="text" required value="${esc(username ?? details.params.login_hint ?? "")}">
<label for="idp-password">Password</label>
<input id="idp-password" name="password" type="password" required>
<button id="idp-signin" type="submit">Sign in</button>
</form>
<form method="post" action="${IDP_PATHS.interaction}/${esc(uid)}/abort"><button id="idp-cancel" type="submit">Cancel</button></form>`,
    );
  }

  function consentPage(uid, details) {
    const client = clients.find((c) => c.client_id === details.params.client_id);
    const account = accounts.get(details.session?.accountId);
    const missing = [...(details.prompt.details.missingOIDCScope ?? [])];
    const requested = String(details.params.scope ?? "").split(" ").filter(Boolean);
    return page(
      "consent",
      "Test IdP: authorize",
      `<p id="idp-account">Signed in as ${esc(account?.email ?? details.session?.accountId)}</p>
<p id="idp-client">${esc(client?.client_name ?? details.params.client_id)} asks for:</p>
<ul id="idp-scopes">${(missing.length ? missing : requested).map((s) => `<li>${esc(s)}</li>`).join("")}</ul>
<form id="idp-consent" method="post" action="${IDP_PATHS.interaction}/${esc(uid)}/confirm"><button id="idp-approve" type="submit">Authorize</button></form>
<form method="post" action="${IDP_PATHS.interaction}/${esc(uid)}/abort"><button id="idp-deny" type="submit">Deny</button></form>`,
    );
  }

  async function interaction(req, res, path) {
    const [, , uid, action] = path.split("/"); // /interaction/<uid>[/<action>]
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.uid !== uid) throw new Error("interaction mismatch");
      const { name } = details.prompt;
      if (req.method === "GET" && !action) {
        if (name === "login") return sendHtml(res, 200, loginPage(uid, details));
        if (name === "consent") return sendHtml(res, 200, consentPage(uid, details));
        return sendHtml(res, 501, page("error", "Not implemented", `<p>prompt ${esc(name)}</p>`));
      }
      if (req.method !== "POST") return sendHtml(res, 405, page("error", "Method not allowed", ""));
      const form = formOf(await readBuffer(req));
      if (action === "abort") {
        return await provider.interactionFinished(req, res, { error: "access_denied", error_description: "End-User aborted interaction" }, { mergeWithLastSubmission: false });
      }
      if (action === "login" && name === "login") {
        const id = findAccountId(form.username);
        if (!id || form.password !== password) {
          return sendHtml(res, 200, loginPage(uid, details, { error: "Invalid username or password.", username: form.username }));
        }
        return await provider.interactionFinished(req, res, { login: { accountId: id } }, { mergeWithLastSubmission: false });
      }
      if (action === "confirm" && name === "consent") {
        const { details: missing } = details.prompt;
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        if (missing.missingResourceScopes) {
          for (const [indicator, s] of Object.entries(missing.missingResourceScopes)) grant.addResourceScope(indicator, s.join(" "));
        }
        const grantId = await grant.save();
        return await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      }
      return sendHtml(res, 400, page("error", "Unexpected step", `<p>${esc(action)} during ${esc(name)}</p>`));
    } catch (e) {
      if (!res.headersSent) sendHtml(res, 400, page("error", "Sign-in error", `<p class="idp-error-message">${esc(e.message)}</p>`));
    }
  }

  // ---------- the front door: log, faults, interactions, then oidc-provider ----------

  async function handle(req, res) {
    const u = new URL(req.url, "https://localhost");
    const endpoint = endpointOf(u.pathname);
    const { authorization, cookie, ...headers } = req.headers;
    const entry = {
      method: req.method,
      path: u.pathname,
      query: Object.fromEntries(u.searchParams),
      host: req.headers.host,
      headers,
      authScheme: authorization ? authorization.split(" ")[0].toLowerCase() : null,
      endpoint,
      at: Date.now(),
      status: undefined,
      mode: "normal",
    };
    requests.push(entry);
    res.on("finish", () => (entry.status = res.statusCode));
    req.headers.host = `localhost:${port}`; // oidc-provider builds URLs from Host

    if (u.pathname.startsWith(`${IDP_PATHS.interaction}/`)) return interaction(req, res, u.pathname);

    let body; // token and revocation: read here, logged, replayed to oidc-provider
    if (req.method === "POST" && (endpoint === "token" || endpoint === "revocation")) {
      body = await readBuffer(req);
      if (/x-www-form-urlencoded/i.test(req.headers["content-type"] ?? "")) noteForm(entry, formOf(body), authorization);
    }

    const m = endpoint && takeMode(entry, ["error500", "hang", "invalid_grant", "canned"]);
    if (m) {
      entry.mode = describeMode(m);
      if (m.name === "hang") {
        await new Promise((release) => {
          const h = { res, release };
          hung.add(h);
          res.on("close", () => (hung.delete(h), release()));
        });
        return;
      }
      if (m.name === "error500") return sendJson(res, 500, { error: "server_error", error_description: "injected fault" });
      if (m.name === "invalid_grant") return sendJson(res, 400, { error: "invalid_grant", error_description: "grant request is invalid (injected)" });
      if (m.json !== undefined) return sendJson(res, m.status ?? 200, m.json, m.headers);
      res.writeHead(m.status ?? 200, { "content-type": "text/plain", ...(m.headers ?? {}) });
      return res.end(m.body ?? "");
    }

    // oidc-provider takes client_secret_post from a client_secret_basic client (and the reverse).
    if (strictClientAuth && (entry.clientAuth === "client_secret_basic" || entry.clientAuth === "client_secret_post")) {
      const client = clients.find((c) => c.client_id === (entry.basicClientId ?? entry.form.client_id));
      const registered = client?.token_endpoint_auth_method ?? "client_secret_basic";
      if (client && registered !== entry.clientAuth) {
        entry.refused = `client authenticated with ${entry.clientAuth}, registered ${registered}`;
        return sendJson(res, 401, { error: "invalid_client", error_description: "client authentication failed" }, entry.clientAuth === "client_secret_basic" ? { "www-authenticate": 'Basic realm="idp"' } : {});
      }
    }

    // Hand over to oidc-provider (Koa); its first middleware (buildProvider) finds the entry on req.
    req.idpEntry = entry;
    return callback(body ? replay(req, body) : req, res);
  }

  let server;
  async function listen(onPort) {
    server = https.createServer(
      { cert: readFileSync(join(CERT_DIR, "server.pem")), key: readFileSync(join(CERT_DIR, "server-key.pem")) },
      (req, res) => {
        handle(req, res).catch((e) => {
          errors.push({ at: Date.now(), path: req.url, error: e });
          if (!res.headersSent) sendJson(res, 500, { error: "server_error", error_description: "harness error" });
        });
      },
    );
    server.on("connection", (s) => (sockets.add(s), s.on("close", () => sockets.delete(s))));
    await new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(onPort, "127.0.0.1", () => (server.off("error", reject), resolve()));
    });
    return server.address().port;
  }

  let callback; // provider.callback() of the current instance
  function install(p) {
    provider = p;
    callback = p.callback();
  }

  port = await listen(0);
  origin = `https://localhost:${port}`;
  install(buildProvider());

  let running = true;
  async function stop() {
    if (!running) return;
    running = false;
    for (const h of hung) (h.release(), h.res.destroy());
    hung.clear();
    await new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections?.();
      for (const s of sockets) s.destroy();
    });
  }

  const handle_ = {
    port,
    origin,
    issuer: origin,
    url: (path) => `${origin}${path}`,
    discoveryUrl: `${origin}${IDP_PATHS.discovery}`,
    paths: IDP_PATHS,
    client: { client_id: clients[0].client_id, client_secret: clients[0].client_secret, redirect_uris: clients[0].redirect_uris },
    clients,
    accounts,
    password,
    /** Public JWKS as served at /jwks (keys[0] signs). */
    get jwks() {
      return { keys: keys.map(publicOf) };
    },
    /** The private JWK that signs id_tokens (RS256, with kid). */
    get privateJwk() {
      return { ...keys[0] };
    },
    get kid() {
      return keys[0].kid;
    },
    /** The current oidc-provider instance (a new one after restart/rotateKey). */
    get provider() {
      return provider;
    },
    requests,
    count: (path) => requests.filter((r) => r.path === path).length,
    clearRequests: () => void requests.splice(0),
    errors,
    setMode(endpoint, mode = "normal", { times, grantType } = {}) {
      if (!IDP_PATHS[endpoint] || endpoint === "interaction") throw new Error(`unknown endpoint ${endpoint}`);
      if (typeof mode === "string" && !["normal", "error500", "hang", "invalid_grant"].includes(mode)) throw new Error(`unknown mode ${mode}`);
      if (typeof mode !== "string" && (typeof mode !== "object" || mode === null)) throw new Error("mode: a name or an object");
      if (mode === "normal") modes.delete(endpoint);
      else modes.set(endpoint, { mode, times, grantType });
    },
    setTokenMode: (mode, opts) => handle_.setMode("token", mode, opts),
    setUserinfoMode: (mode, opts) => handle_.setMode("userinfo", mode, opts),
    setJwksMode: (mode, opts) => handle_.setMode("jwks", mode, opts),
    /** Sign any payload with the provider's key (or `key`), kid and alg filled in. */
    signJwt,
    /** Replace (or add) an account's claims; the next token/userinfo answer carries them. */
    setAccount(id, claims) {
      accounts.set(id, { sub: id, ...structuredClone(claims) });
    },
    /** Forget every refresh token the provider issued (they become invalid_grant). Returns how many. */
    revokeRefreshTokens: () => store.deleteModel("RefreshToken"),
    /**
     * A new signing key (`key`, a private RSA JWK, or a generated one): it signs from now on; the
     * old one stays in the JWKS unless `keepOld` is false. Sessions, grants and tokens survive.
     * Returns the new kid.
     */
    async rotateKey({ keepOld = true, key } = {}) {
      const k = key ? asSigningKey(key) : await generateSigningKey();
      if (keepOld) keys.unshift(k);
      else keys.splice(0, keys.length, k);
      install(buildProvider());
      return k.kid;
    },
    clusterFor: (name, opts) => metadataCluster(name, port, opts),
    get running() {
      return running;
    },
    stop,
    /**
     * Stop (if running) and listen again on the same port with a new oidc-provider instance over
     * the same keys, clients, accounts and storage (sessions, grants, refresh tokens survive, like
     * a provider restarting on its database); `wipe: true` forgets them all.
     */
    async restart({ wipe = false } = {}) {
      await stop();
      if (wipe) store.clear();
      await listen(port);
      running = true;
      install(buildProvider());
    },
  };
  return handle_;
}
