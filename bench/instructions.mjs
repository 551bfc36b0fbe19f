// Instructions per request, counted by valgrind's callgrind in a real Envoy (one worker).
//
// Wall-clock numbers on these shared 2-core machines swing by a third between runs; an
// instruction count is the same run after run (within 0.1% here), so two builds, or the no-op
// filter and ours, can be told apart by a percent. It counts the whole Envoy process: the
// HTTP codec, the router, the Wasm runtime and the filter. It is not time (a cache miss costs
// more than an add), but for the same Envoy and the same requests the ratio of counts tracks
// the ratio of CPU per request.
//
// Each configuration is its own Envoy under valgrind (about 10-20 s to start); INSTR_WARMUP
// requests run uninstrumented (V8 tiers the hot functions up), then INSTR_REQUESTS requests on
// one keep-alive connection are counted, each checked to answer 200 (and, before that, the
// filter configurations to answer 401 without a token).
//
// Environment: ENVOY_BIN, MCP_OAUTH_WASM, NOOP_WASM (bench/bench-instructions.sh sets them);
// BENCH_COMPARE_WASM (optional): another build of our filter, counted alongside; INSTR_SET
// (cached, uncached or all) picks the cases.
// Usage: node bench/instructions.mjs
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import { ISSUER, RESOURCE, SCOPE, wasmFilter, pluginConfig, jwtAuthnFilter, renderBenchConfig } from './config.mjs';

const need = (name) => process.env[name] || (() => { throw new Error(`set ${name}`); })();
const ENVOY_BIN = need('ENVOY_BIN');
const OURS = need('MCP_OAUTH_WASM');
const NOOP = need('NOOP_WASM');
const CANDIDATE = process.env.BENCH_COMPARE_WASM;
const REQUESTS = Number(process.env.INSTR_REQUESTS ?? 1000);
const WARMUP = Number(process.env.INSTR_WARMUP ?? 2000);
const START_TIMEOUT_MS = 300_000;
const TMP = mkdtempSync(join(tmpdir(), 'mcp-oauth-instructions-'));

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function get(port, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/mcp', headers, agent, timeout: 30_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function requests(port, count, headers) {
  for (let i = 0; i < count; i++) {
    const status = await get(port, headers);
    if (status !== 200) throw new Error(`request ${i} answered ${status}`);
  }
}

/** Counts the instructions Envoy runs for REQUESTS requests through `filter`. */
async function count(name, filter, token, { checkUnauthorized }) {
  const listenerPort = await freePort();
  const adminPort = await freePort();
  const dir = join(TMP, name.replace(/[^A-Za-z0-9_.-]+/g, '_'));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'envoy.yaml'), renderBenchConfig({ listenerPort, adminPort, filter }));
  const child = spawn('valgrind', ['--tool=callgrind', '--smc-check=all-non-file', '--instr-atstart=no',
    `--callgrind-out-file=${join(dir, 'callgrind.out')}`,
    ENVOY_BIN, '-c', join(dir, 'envoy.yaml'), '--concurrency', '1', '--disable-hot-restart', '-l', 'warn', '--log-path', join(dir, 'envoy.log')],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => { stderr = (stderr + c).slice(-4000); });
  const control = (...args) => execFileSync('callgrind_control', [...args, String(child.pid)], { stdio: 'ignore' });
  const auth = { authorization: `Bearer ${token}` };
  try {
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${name}: Envoy exited\n${stderr}`);
      if (Date.now() > deadline) throw new Error(`${name}: not ready in ${START_TIMEOUT_MS / 1000} s\n${stderr}`);
      const status = await get(listenerPort, auth).catch(() => 0);
      if (status === 200) break;
      await sleep(250);
    }
    if (checkUnauthorized) {
      const status = await get(listenerPort);
      if (status !== 401) throw new Error(`${name}: a request without a token answered ${status}`);
    }
    await requests(listenerPort, WARMUP, auth);
    control('-i', 'on');
    await requests(listenerPort, REQUESTS, auth);
    control('-i', 'off');
    control('-d');
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.on('exit', resolve)));
  }
  // The dump made by `-d` holds the instrumented window (the one at exit holds nothing more).
  let total = 0;
  for (const file of readdirSync(dir).filter((f) => f.startsWith('callgrind.out'))) {
    const m = readFileSync(join(dir, file), 'utf8').match(/^totals: (\d+)/m);
    if (m) total = Math.max(total, Number(m[1]));
  }
  if (!total) throw new Error(`${name}: no callgrind totals in ${dir}`);
  return total / REQUESTS;
}

const t = Math.floor(Date.now() / 1000);
const claims = { sub: 'bench-user', client_id: 'bench-client', scope: SCOPE, jti: 'instructions' };
const mint = (alg, kid, key) => new SignJWT(claims)
  .setProtectedHeader({ alg, typ: 'at+jwt', kid }).setIssuer(ISSUER).setAudience(RESOURCE)
  .setIssuedAt(t).setNotBefore(t).setExpirationTime(t + 7200).sign(key);

const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
const pub = { ...(await exportJWK(publicKey)), kid: 'bench-es256', alg: 'ES256', use: 'sig' };
const es256 = { token: await mint('ES256', pub.kid, privateKey), ours: { algorithms: ['ES256'], jwks: { keys: [pub] } }, jwks: { keys: [pub] } };
const hsText = 'instructions-hs256-secret-0123456789abcdef0123';
const hs256 = {
  token: await mint('HS256', 'bench-hs', new TextEncoder().encode(hsText)),
  ours: { algorithms: ['HS256'], secrets: [{ kid: 'bench-hs', value: hsText }] },
  jwks: { keys: [{ kty: 'oct', kid: 'bench-hs', alg: 'HS256', k: Buffer.from(hsText, 'utf8').toString('base64url') }] },
};

const ours = (wasmPath, key, extra) => wasmFilter({ name: 'mcp_oauth', wasmPath, configuration: pluginConfig(key.ours, extra) });
const noIdentity = { identity_headers: { subject: null, client_id: null, scopes: null, issuer: null } };
const noCache = { token_cache_entries: 0 };
// INSTR_SET: `cached` (the default: ES256, token caches on), `uncached` (HS256, every token
// verified), or `all`.
const SET = process.env.INSTR_SET ?? 'cached';
const cases = [
  { id: 'none', label: '(1) no auth filter', filter: null, key: es256 },
  { id: 'noop', label: '(2) no-op Wasm filter (reads, removes Authorization)', filter: wasmFilter({ name: 'bench_noop', wasmPath: NOOP }), key: es256 },
];
const variants = (label, wasm) => [
  ...(SET !== 'uncached' ? [
    { id: `${label}ours`, label: `${label ? "(4') candidate build" : '(4) mcp-oauth'}, ES256, token cache on (default): strips Authorization, sets 4 identity headers`, filter: ours(wasm, es256), auth: true, key: es256 },
    { id: `${label}ours_noid`, label: `${label ? 'candidate build' : 'mcp-oauth'}, ES256, token cache on, \`identity_headers\` all null: strips Authorization only`, filter: ours(wasm, es256, noIdentity), auth: true, key: es256 },
  ] : []),
  ...(SET !== 'cached' ? [
    { id: `${label}ours_hs256_nocache`, label: `${label ? "(5') candidate build" : '(5) mcp-oauth'}, HS256, \`token_cache_entries: 0\``, filter: ours(wasm, hs256, noCache), auth: true, key: hs256 },
  ] : []),
];
if (SET !== 'uncached') cases.push({ id: 'jwt_authn', label: '(3b) Envoy jwt_authn + jwt_cache_config, ES256, 4 claims to headers', filter: jwtAuthnFilter({ jwks: es256.jwks, cache: true }), auth: true, key: es256 });
if (SET !== 'cached') cases.push({ id: 'jwt_authn_hs256', label: '(3a) Envoy jwt_authn, HS256, no cache, 4 claims to headers', filter: jwtAuthnFilter({ jwks: hs256.jwks, cache: false }), auth: true, key: hs256 });
cases.push(...variants('', OURS));
if (CANDIDATE) cases.push(...variants('cand_', CANDIDATE));

const started = Date.now();
const results = new Map();
for (const c of cases) {
  results.set(c.id, await count(c.id, c.filter, c.key.token, { checkUnauthorized: Boolean(c.auth) }));
  process.stderr.write(`[instructions] ${c.id}: ${Math.round(results.get(c.id))} per request\n`);
}
const k = (n) => `${(n / 1000).toFixed(1)}k`;
const none = results.get('none');
const noop = results.get('noop');
const rows = cases.map((c) => {
  const n = results.get(c.id);
  return `| ${c.label} | ${k(n)} | ${c.id === 'none' ? '–' : `+${k(n - none)}`} | ${(noop / n).toFixed(2)} | ${c.id === 'noop' || c.id === 'none' ? '–' : `${n >= noop ? '+' : ''}${k(n - noop)}`} |`;
});
console.log(`Instructions per request (valgrind callgrind, whole Envoy process, \`--concurrency 1\`), ${REQUESTS} requests
counted after ${WARMUP} uncounted ones, one keep-alive connection, \`GET /mcp\` answered by a \`direct_response\`; ${((Date.now() - started) / 60000).toFixed(1)} min.
*× (2)* is the no-op filter's count over this one: the throughput ratio the counts predict when Envoy's core is the limit.

| configuration | instructions/request | vs (1) | × (2) | vs (2) |
|---|---:|---:|---:|---:|
${rows.join('\n')}`);
rmSync(TMP, { recursive: true, force: true });
