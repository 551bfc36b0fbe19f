// The MCP Python SDK (`mcp` from requirements.txt, run with .venv/bin/python) does the OAuth flow
// against the built-in authorization server through Envoy: discovery, Dynamic Client Registration,
// sign-in + consent (form posts with httpx2 inside its redirect handler), code + PKCE, MCP calls to
// the unchanged server-everything, then a refresh once the 3 s access token expired.
// The script (python/oauth_client.py) prints one JSON object that this file asserts.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { startEnvoy, withLog } from "./lib/envoy.mjs";
import { startEverything } from "./lib/backends.mjs";
import { spawnTracked } from "./lib/procs.mjs";
import { CERT_DIR, REPO_ROOT, TESTS_DIR } from "./lib/paths.mjs";
import { authServerMaterial, jwtParts, keysSection } from "./lib/authz.mjs";

const PYTHON = join(REPO_ROOT, ".venv", "bin", "python");
const SCRIPT = join(TESTS_DIR, "python", "oauth_client.py");
const REDIRECT = "http://127.0.0.1:43222/python/callback";
const ACCESS_TTL = 3;

let envoy, everything, m, origin;

before(async () => {
  m = await authServerMaterial();
  everything = await startEverything("streamableHttp");
  envoy = await startEnvoy({
    backendPort: everything.port,
    envKeyValues: m.envKeyValues,
    pluginConfig: ({ origin }) => ({
      resource: `${origin}/mcp`,
      leeway_seconds: 0,
      routes: [{ prefix: "/mcp", scopes: ["mcp:tools"] }],
      authorization_server: {
        ...keysSection(m),
        display_name: "Python e2e gateway",
        access_token_ttl_seconds: ACCESS_TTL,
        users: [m.userEntry()],
      },
    }),
  });
  origin = envoy.origin;
});

after(async () => {
  await envoy?.stop();
  await everything?.stop();
});

function runPython(args, timeoutMs = 60000) {
  const proc = spawnTracked(PYTHON, [SCRIPT, ...args], { cwd: REPO_ROOT, env: { ...process.env, PYTHONUNBUFFERED: "1" } });
  let stdout = "";
  let stderr = "";
  proc.child.stdout.on("data", (d) => (stdout += d));
  proc.child.stderr.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => proc.child.kill("SIGKILL"), timeoutMs);
  return proc.exited.then((exit) => {
    clearTimeout(timer);
    let json;
    const last = stdout.trim().split("\n").at(-1);
    try {
      json = JSON.parse(last);
    } catch {
      json = undefined;
    }
    return { exit, stdout, stderr, json };
  });
}

test("Python SDK: discovery, DCR, sign-in + consent, code + PKCE, MCP calls, refresh after expiry", () => {
  let run;
  return withLog(
    envoy,
    async () => {
      assert.ok(existsSync(PYTHON), `${PYTHON} missing (make setup)`);
      run = await runPython([
        "--url",
        `${origin}/mcp`,
        "--ca",
        join(CERT_DIR, "ca.pem"),
        "--username",
        m.user.username,
        "--password",
        m.user.password,
        "--redirect",
        REDIRECT,
        "--expiry-wait",
        String(ACCESS_TTL + 0.5),
      ]);
      const r = run.json;
      assert.ok(r, `no JSON from the script (exit ${JSON.stringify(run.exit)})`);
      assert.equal(r.ok, true, `python: ${r.error}\n${r.traceback}`);

      // Discovery and registration, in order, without 5xx.
      const idx = (re) => r.wire.findIndex((w) => re.test(w));
      const order = [
        idx(/^POST \/mcp 401$/),
        idx(/^GET \/\.well-known\/oauth-protected-resource(\/mcp)? 200$/),
        idx(/^GET \/\.well-known\/(oauth-authorization-server|openid-configuration) 200$/),
        idx(/^POST \/oauth\/register 201$/),
        idx(/^POST \/oauth\/token 200$/),
      ];
      assert.ok(order.every((i) => i >= 0) && order.every((v, i) => i === 0 || v > order[i - 1]), `order: ${r.wire.join(", ")}`);
      assert.ok(!r.wire.some((w) => / 5\d\d$/.test(w)), r.wire.join(", "));

      assert.equal(r.registrations.length, 1, JSON.stringify(r.registrations));
      const reg = r.registrations[0];
      assert.deepEqual(reg.redirect_uris, [REDIRECT]);
      assert.equal(reg.token_endpoint_auth_method, "none");

      // The authorization request and the person's pages.
      assert.equal(r.authorization_urls.length, 1);
      const u = new URL(r.authorization_urls[0]);
      assert.equal(`${u.origin}${u.pathname}`, `${origin}/oauth/authorize`);
      assert.equal(u.searchParams.get("client_id"), reg.client_id);
      assert.equal(u.searchParams.get("code_challenge_method"), "S256");
      assert.equal(u.searchParams.get("resource"), `${origin}/mcp`);
      assert.equal(u.searchParams.get("scope"), "mcp:tools");
      assert.deepEqual(r.pages.map((p) => p.kind), ["signin", "consent"]);
      assert.ok(r.pages[1].text.includes("Python SDK e2e client"), r.pages[1].text);
      assert.ok(r.pages[1].text.includes("127.0.0.1:43222"), r.pages[1].text);
      assert.equal(r.callback.status, 302);
      assert.ok(r.callback.location.startsWith(`${REDIRECT}?`), r.callback.location);
      assert.equal(r.callback.state, u.searchParams.get("state"));
      assert.equal(r.callback.iss, origin);

      // MCP through Envoy.
      assert.equal(r.server_name, "mcp-servers/everything");
      assert.ok(r.tools.includes("echo"), r.tools.join());
      assert.deepEqual(r.echo1, ["Echo: hello from python"]);

      // Tokens: one from the code, one from the refresh after expiry; rotated.
      assert.equal(r.tokens_before_wait, 1);
      assert.equal(r.tokens.length, 2, JSON.stringify(r.wire_after_wait));
      const [t1, t2] = r.tokens;
      assert.equal(t1.token_type, "Bearer");
      assert.equal(t1.expires_in, ACCESS_TTL);
      assert.equal(t1.scope, "mcp:tools");
      assert.ok(t1.refresh_token && t2.refresh_token && t1.refresh_token !== t2.refresh_token, "rotated refresh token");
      assert.notEqual(t1.access_token, t2.access_token);
      const { header, claims } = jwtParts(t2.access_token);
      assert.equal(header.typ, "at+jwt");
      assert.equal(claims.client_id, reg.client_id);
      assert.equal(claims.sub, m.user.subject);
      assert.equal(claims.aud, `${origin}/mcp`);
      assert.ok(r.wire_after_wait.includes("POST /oauth/token 200"), r.wire_after_wait.join(", "));
      assert.ok(!r.wire_after_wait.some((w) => /authorize|register/.test(w)), r.wire_after_wait.join(", "));
      assert.deepEqual(r.echo2, ["Echo: after expiry"]);
    },
    () => `python exit ${JSON.stringify(run?.exit)}\nstdout:\n${run?.stdout.slice(-3000)}\nstderr:\n${run?.stderr.slice(-4000)}`,
  );
});
