#!/usr/bin/env node
// The side-by-side benchmark behind `make bench` (started by bench/bench.sh): Envoy with no
// auth filter, a no-op Wasm filter, Envoy's native jwt_authn (with and without its JWT cache)
// and our filter (verified-token cache on and off), for HS256, ES256 and RS256 tokens, plus two
// reduced variants of our filter that show where its time goes; the cost of MCP body inspection
// (the `mcp` section: a JSON-RPC `tools/call` POST, small and 16 KiB, without and with it); then
// the authorization server's token endpoint, the protected-resource metadata, memory, .wasm size
// and start-up time (--concurrency 2). Prints a markdown report and writes it to BENCHMARKS.md.
//
// Method:
//  - One Envoy per configuration, `--concurrency 1`, plain HTTP on 127.0.0.1, the only route a
//    direct_response (bench/envoy-bench.yaml). With taskset: Envoys on core 0, wrk on core 1.
//  - wrk with BENCH_CONNECTIONS (8) connections, one thread each (latency is timed in wrk.lua),
//    BENCH_DURATION s (5) per measurement after a BENCH_WARMUP s (1) warm-up; every Envoy also
//    gets BENCH_INITIAL_WARMUP s (2) of warm-up before the first round.
//  - Rounds interleaved: every measurement once per round (order rotated each round),
//    BENCH_ROUNDS (3) rounds; the report gives medians over rounds.
//  - Envoy CPU per request: utime+stime of the Envoy process (/proc/<pid>/stat) over the
//    measurement, divided by the requests wrk completed.
//  - The machine may be shared: before starting, before each round and before the start-up
//    measurements the script waits (at most BENCH_QUIET_WAIT s, 30) for other processes to go
//    quiet, and every measurement records how busy Envoy's and wrk's cores were with other
//    work; the report shows it.
//  - Every loop is bounded; every process is stopped on exit (and bench.sh kills the pids in
//    $BENCH_TMP/pids if this script dies).
//
// Environment: ENVOY_BIN, MCP_OAUTH_WASM, NOOP_WASM, BENCH_TMP (all set by bench.sh); optional
// BENCH_ROUNDS, BENCH_DURATION, BENCH_WARMUP, BENCH_INITIAL_WARMUP, BENCH_CONNECTIONS,
// BENCH_STARTS, BENCH_QUIET_WAIT, BENCH_OUT (default BENCHMARKS.md at the repository root; "-" for none),
// BENCH_COMMAND (the command named in the report).
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import {
  bufferFilter,
  ISSUER,
  REPO_ROOT,
  RESOURCE,
  SCOPE,
  jwtAuthnFilter,
  pluginConfig,
  renderBenchConfig,
  wasmFilter,
} from './config.mjs';

// ---------------------------------------------------------------- settings
const env = process.env;
const need = (name) => {
  if (!env[name]) throw new Error(`${name} is not set (run this through bench/bench.sh or make bench)`);
  return env[name];
};
const ENVOY_BIN = need('ENVOY_BIN');
// The .wasm files as built (named in the report), and the copies every Envoy loads: a rebuild
// during the run cannot change what is measured.
const OUR_WASM_BUILT = need('MCP_OAUTH_WASM');
const NOOP_WASM_BUILT = need('NOOP_WASM');
const TMP = need('BENCH_TMP');
const num = (name, dflt) => {
  const v = env[name] === undefined || env[name] === '' ? dflt : Number(env[name]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
};
const ROUNDS = Math.round(num('BENCH_ROUNDS', 3));
const DURATION = num('BENCH_DURATION', 5);
const WARMUP = num('BENCH_WARMUP', 1);
const INITIAL_WARMUP = num('BENCH_INITIAL_WARMUP', 2);
const CONNECTIONS = Math.round(num('BENCH_CONNECTIONS', 8));
const STARTS = Math.round(num('BENCH_STARTS', 5));
// Before starting and before each round: wait (at most this many seconds) until other
// processes leave the machine mostly idle (under QUIET_BELOW of all CPUs busy).
const QUIET_WAIT = num('BENCH_QUIET_WAIT', 30);
const QUIET_BELOW = 0.15;
const OUT = env.BENCH_OUT ?? join(REPO_ROOT, 'BENCHMARKS.md');
const COMMAND = env.BENCH_COMMAND ?? 'make bench';
const WRK_LUA = join(REPO_ROOT, 'bench', 'wrk.lua');
const OUR_WASM = join(TMP, 'mcp_oauth_wasm.wasm');
const NOOP_WASM = join(TMP, 'bench_noop_filter.wasm');
const PIDS_FILE = join(TMP, 'pids');
const NPROC = os.availableParallelism();
const TASKSET = NPROC >= 2 && hasCommand('taskset');
const ENVOY_CORE = '0';
const WRK_CORE = '1';
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const ALGS = ['HS256', 'ES256', 'RS256'];
// Compare mode (`make bench-compare`): a second build of our filter measured next to this one,
// on the token-checking cases only, with a table on stdout and no BENCHMARKS.md.
const COMPARE_WASM_BUILT = env.BENCH_COMPARE_WASM || '';
const COMPARE_WASM = join(TMP, 'candidate.wasm');
const COMPARE_ALGS = (env.BENCH_ALGS || 'ES256,RS256').split(',').filter((a) => ALGS.includes(a));

function hasCommand(cmd) {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const log = (...a) => console.error('[bench]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

// ---------------------------------------------------------------- processes
const live = new Map(); // pid -> child

function killAllSync() {
  for (const pid of live.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  live.clear();
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    log(`got ${sig}, stopping`);
    killAllSync();
    process.exit(130);
  });
}

// $BENCH_TMP/pids always lists the children still running, for bench.sh's trap.
const writePids = () => writeFileSync(PIDS_FILE, [...live.keys()].map((p) => `${p}\n`).join(''));

function spawnTracked(cmd, args, opts) {
  const child = spawn(cmd, args, opts);
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  live.set(child.pid, child);
  writePids();
  child.done = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child.pid);
      writePids();
      resolve({ code, signal });
    });
  });
  return child;
}

async function stopChild(child, graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, graceMs);
  await child.done;
  clearTimeout(timer);
}

const pinned = (core, cmd, args) => (TASKSET ? ['taskset', ['-c', core, cmd, ...args]] : [cmd, args]);

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** One HTTP/1.1 request to 127.0.0.1; resolves {status, body} or {status: 0, error}. */
function request(port, path, { method = 'GET', headers = {}, body, timeoutMs = 2000 } = {}) {
  return new Promise((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method, headers: body ? { ...headers, 'content-length': Buffer.byteLength(body) } : headers, agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (error) => resolve({ status: 0, error }));
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ status: 0, error }));
    if (body) req.write(body);
    req.end();
  });
}

function procStat(pid) {
  // Fields after the ")" of comm: state is field 3; utime 14, stime 15 (1-based).
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { cpuSeconds: (Number(rest[11]) + Number(rest[12])) / CLK_TCK };
}

/** Per-CPU busy and total jiffies from /proc/stat (busy includes steal). */
function cpuTimes() {
  const out = {};
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const [user, nice, system, idle, iowait, irq, softirq, steal] = m[2].split(/\s+/).map(Number);
    const busy = user + nice + system + irq + softirq + (steal || 0);
    out[m[1]] = { busy, total: busy + idle + (iowait || 0) };
  }
  return out;
}

/** CPU seconds of this process's reaped children (wrk, once it has exited). */
function childrenCpuSeconds() {
  const text = readFileSync('/proc/self/stat', 'utf8');
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[13]) + Number(rest[14])) / CLK_TCK;
}

/** Share (0..1) of the whole machine's CPU busy over `ms`. */
async function machineBusy(ms) {
  const a = cpuTimes();
  await sleep(ms);
  const b = cpuTimes();
  let busy = 0;
  let total = 0;
  for (const cpu of Object.keys(b)) {
    busy += b[cpu].busy - (a[cpu]?.busy ?? 0);
    total += b[cpu].total - (a[cpu]?.total ?? 0);
  }
  return total > 0 ? busy / total : 0;
}

function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Envoy admin counters whose names match `regex`, as {name: value} (empty if the admin fails). */
async function adminCounters(envoy, regex) {
  const r = await request(envoy.adminPort, `/stats?filter=${encodeURIComponent(regex)}`, { timeoutMs: 5000 });
  const out = {};
  if (r.status !== 200) return out;
  for (const line of r.body.split('\n')) {
    const m = /^(\S+): (\d+)$/.exec(line.trim());
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

// ---------------------------------------------------------------- Envoy
let envoySeq = 0;

/**
 * Starts Envoy with `filter` and waits (at most 30 s) until admin /ready says LIVE and `probe`
 * (a function of the listener port returning a promise of an HTTP status) gets 200.
 * Returns {pid, listenerPort, adminPort, liveMs, readyMs, probeStatuses (answers before the
 * first 200), stop(), logTail()}.
 */
async function startEnvoy(name, filter, { concurrency = 1, pin = true, probe }) {
  const listenerPort = await freePort();
  const adminPort = await freePort();
  const dir = join(TMP, `${String(++envoySeq).padStart(3, '0')}-${name.replace(/[^A-Za-z0-9_.-]+/g, '_')}`);
  mkdirSync(dir, { recursive: true });
  const configPath = join(dir, 'envoy.yaml');
  writeFileSync(configPath, renderBenchConfig({ listenerPort, adminPort, filter }));
  const logPath = join(dir, 'envoy.log');
  const args = ['-c', configPath, '--concurrency', String(concurrency), '--disable-hot-restart', '-l', 'warn', '--log-path', logPath];
  const [cmd, argv] = pin ? pinned(ENVOY_CORE, ENVOY_BIN, args) : [ENVOY_BIN, args];
  const t0 = performance.now();
  const child = spawnTracked(cmd, argv, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr = [];
  child.stderr.on('data', (c) => stderr.push(c));
  const logTail = () => {
    const text = (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '') + Buffer.concat(stderr).toString('utf8');
    return text.split('\n').slice(-30).join('\n');
  };
  const deadline = t0 + 30000;
  let liveMs = NaN;
  let ok = false;
  const probeStatuses = new Map(); // answers the probe got before the first good one
  while (performance.now() < deadline && child.exitCode === null && child.signalCode === null) {
    if (!(liveMs >= 0)) {
      // No short timeout: while the main thread compiles the Wasm module, the admin socket
      // accepts but answers only afterwards; the answer then comes at once.
      const r = await request(adminPort, '/ready', { timeoutMs: Math.max(100, deadline - performance.now()) });
      if (r.status === 200 && r.body.trim() === 'LIVE') liveMs = performance.now() - t0;
    }
    if (liveMs >= 0) {
      const status = await probe(listenerPort);
      ok = status === 200;
      if (ok) break;
      probeStatuses.set(status, (probeStatuses.get(status) ?? 0) + 1);
    }
    await sleep(5);
  }
  const readyMs = performance.now() - t0;
  if (!ok) {
    await stopChild(child);
    throw new Error(`Envoy ${name} did not get ready (LIVE after ${f0(liveMs)} ms; probe answers ${JSON.stringify([...probeStatuses])}) within 30 s:\n${logTail()}`);
  }
  return { name, pid: child.pid, listenerPort, adminPort, readyMs, liveMs, probeStatuses, dir, logTail, stop: () => stopChild(child) };
}

// ---------------------------------------------------------------- wrk
/** Runs wrk against the case for `seconds`; returns its numbers plus the Envoy CPU time used. */
async function runWrk(c, seconds) {
  // One thread per connection: wrk.lua times each request exactly (see there).
  const args = [`-t${CONNECTIONS}`, `-c${CONNECTIONS}`, `-d${seconds}s`, '--timeout', '5s', '-s', WRK_LUA];
  for (const h of c.headers ?? []) args.push('-H', h);
  args.push(`http://127.0.0.1:${c.envoy.listenerPort}${c.path}`);
  const [cmd, argv] = pinned(WRK_CORE, 'wrk', args);
  const before = procStat(c.envoy.pid);
  const cpusBefore = cpuTimes();
  const childrenBefore = childrenCpuSeconds();
  const child = spawnTracked(cmd, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BENCH_BODY: c.body ?? '', BENCH_CONTENT_TYPE: c.contentType ?? '' },
  });
  const out = [];
  child.stdout.on('data', (d) => out.push(d));
  child.stderr.on('data', (d) => out.push(d));
  const killer = setTimeout(() => {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, (seconds + 20) * 1000);
  const { code } = await child.done;
  clearTimeout(killer);
  const after = procStat(c.envoy.pid);
  const cpusAfter = cpuTimes();
  const wrkCpu = childrenCpuSeconds() - childrenBefore;
  const text = Buffer.concat(out).toString('utf8');
  const line = text.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (code !== 0 || !line) throw new Error(`wrk failed for ${c.id} (exit ${code}):\n${text}`);
  const r = JSON.parse(line.slice('BENCH_JSON '.length));
  c.envoy.completed = (c.envoy.completed ?? 0) + r.requests; // all runs, warm-ups included
  c.envoy.wrkRuns = (c.envoy.wrkRuns ?? 0) + 1;
  const errors = r.connect_errors + r.read_errors + r.write_errors + r.status_errors + r.timeouts;
  const envoyCpu = after.cpuSeconds - before.cpuSeconds;
  // CPU of other processes on Envoy's core and on wrk's core during the measurement (share of
  // that core): another workload on this machine shows up here.
  const share = (cpu, ownSeconds) => {
    const d = (x) => (cpusAfter[cpu]?.[x] ?? 0) - (cpusBefore[cpu]?.[x] ?? 0);
    const total = d('total');
    return total > 0 ? Math.max(0, (d('busy') - ownSeconds * CLK_TCK) / total) : NaN;
  };
  const rps = r.requests / (r.duration_us / 1e6);
  return {
    rps,
    // Little's law: with every connection always waiting for an answer this is close to 1.
    little: (r.mean_us / 1e6) * rps / CONNECTIONS,
    otherCore0: TASKSET ? share(ENVOY_CORE, envoyCpu) : NaN,
    otherCore1: TASKSET ? share(WRK_CORE, wrkCpu) : NaN,
    p50ms: r.p50_us / 1000,
    p99ms: r.p99_us / 1000,
    requests: r.requests,
    errors,
    cpuUsPerReq: (envoyCpu * 1e6) / Math.max(1, r.requests),
    cpuShare: envoyCpu / (r.duration_us / 1e6),
  };
}

/** Waits (bounded) until the machine is quiet; returns {waitedS, busy} (busy: last sample). */
async function waitQuiet(what) {
  const t0 = performance.now();
  let busy = await machineBusy(1000);
  while (busy >= QUIET_BELOW && performance.now() - t0 < QUIET_WAIT * 1000) {
    log(`${what}: machine ${Math.round(busy * 100)}% busy with other work, waiting (at most ${QUIET_WAIT}s in all)`);
    busy = await machineBusy(2000);
  }
  const waitedS = (performance.now() - t0) / 1000;
  if (busy >= QUIET_BELOW) log(`${what}: still ${Math.round(busy * 100)}% busy after ${Math.round(waitedS)}s; going on`);
  return { waitedS, busy };
}

// ---------------------------------------------------------------- keys and tokens
const now = () => Math.floor(Date.now() / 1000);

async function makeKeys() {
  const keys = {};
  const hsText = randomBytes(32).toString('base64url'); // 43 ASCII characters, used as UTF-8 text
  keys.HS256 = {
    alg: 'HS256',
    kid: 'bench-hs',
    signWith: new TextEncoder().encode(hsText),
    ours: { algorithms: ['HS256'], secrets: [{ kid: 'bench-hs', value: hsText }] },
    jwks: { keys: [{ kty: 'oct', kid: 'bench-hs', alg: 'HS256', k: Buffer.from(hsText, 'utf8').toString('base64url') }] },
  };
  for (const alg of ['ES256', 'RS256']) {
    const { privateKey, publicKey } = await generateKeyPair(alg, { modulusLength: 2048, extractable: true });
    const kid = `bench-${alg.toLowerCase()}`;
    const pub = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
    keys[alg] = { alg, kid, signWith: privateKey, ours: { algorithms: [alg], jwks: { keys: [pub] } }, jwks: { keys: [pub] } };
  }
  // The authorization server's signing key (ES256, private JWK) and a confidential client.
  const as = await generateKeyPair('ES256', { extractable: true });
  const asJwk = { ...(await exportJWK(as.privateKey)), kid: 'bench-as', alg: 'ES256', use: 'sig' };
  const clientSecret = randomBytes(32).toString('base64url');
  keys.as = {
    signingJwk: asJwk,
    sealingKey: randomBytes(32).toString('base64url'),
    clientId: 'bench-service',
    clientSecret,
    clientSecretHash: `sha256$${createHash('sha256').update(clientSecret).digest('base64url')}`,
  };
  return keys;
}

/** An access token like one our authorization server issues, valid for an hour. */
async function mint(key) {
  const t = now();
  return new SignJWT({ sub: 'bench-user', client_id: 'bench-client', scope: SCOPE, jti: randomBytes(12).toString('base64url') })
    .setProtectedHeader({ alg: key.alg, typ: 'at+jwt', kid: key.kid })
    .setIssuer(ISSUER)
    .setAudience(RESOURCE)
    .setIssuedAt(t)
    .setNotBefore(t)
    .setExpirationTime(t + 3600)
    .sign(key.signWith);
}

function tamper(jwt) {
  const [h, p, s] = jwt.split('.');
  const i = Math.floor(s.length / 2);
  return `${h}.${p}.${s.slice(0, i)}${s[i] === 'A' ? 'B' : 'A'}${s.slice(i + 1)}`;
}

// ---------------------------------------------------------------- the cases
function authorizationServerConfig(keys) {
  return pluginConfig(null, {
    authorization_server: {
      signing_keys: [{ jwk: keys.as.signingJwk }],
      sealing_keys: [{ kid: 'bench', value_base64url: keys.as.sealingKey }],
      access_token_ttl_seconds: 3600,
      scopes: [{ name: SCOPE, description: 'Benchmark scope' }],
      clients: [
        {
          client_id: keys.as.clientId,
          client_secret_hash: keys.as.clientSecretHash,
          grant_types: ['client_credentials'],
        },
      ],
      // The benchmark asks for tokens as fast as it can: lift the per-minute limits.
      rate_limits: { token_per_minute_per_client: 100000000, token_per_minute_per_address: 100000000 },
    },
  });
}

function basicAuth(keys) {
  return `Basic ${Buffer.from(`${keys.as.clientId}:${keys.as.clientSecret}`).toString('base64')}`;
}
const TOKEN_BODY = `grant_type=client_credentials&scope=${encodeURIComponent(SCOPE)}`;

// MCP body inspection (6): a JSON-RPC `tools/call` POSTed to the protected route, to our filter
// without and with an `mcp` section (docs/mcp-authorization.md) whose rule names that tool.
const MCP_ENDPOINT = '/mcp';
const MCP_TOOL = 'echo';
const MCP_SECTION = { endpoints: [MCP_ENDPOINT], rules: [{ method: 'tools/call', name: MCP_TOOL, scopes: [SCOPE] }] };
const MCP_LARGE_BYTES = 16384;
/** A `tools/call` of MCP_TOOL; with `bytes`, its arguments padded so the body is exactly that long. */
function mcpCallBody(bytes) {
  const call = (args) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: MCP_TOOL, arguments: args } });
  if (!bytes) return call({ message: 'hello' });
  const body = call({ message: 'hello', padding: 'x'.repeat(bytes - call({ message: 'hello', padding: '' }).length) });
  if (Buffer.byteLength(body) !== bytes) throw new Error(`MCP body is ${Buffer.byteLength(body)} bytes, not ${bytes}`);
  return body;
}
const MCP_BODIES = { small: mcpCallBody(), '16k': mcpCallBody(MCP_LARGE_BYTES) };
// Cut short: not JSON. Only an Envoy that inspects bodies refuses it (400).
const MCP_MALFORMED = MCP_BODIES.small.slice(0, 40);
const MCP_HEADERS = (token) => [`Authorization: Bearer ${token}`, 'Accept: application/json, text/event-stream'];

/** Envoy configurations of the main comparison, as {id, label, group, alg, filter}. */
function comparisonConfigs(keys) {
  const ours = (alg, extra) => wasmFilter({ name: 'mcp_oauth', wasmPath: OUR_WASM, configuration: pluginConfig(keys[alg].ours, extra) });
  const list = [
    { id: 'none', group: '(1)', label: 'no auth filter', alg: 'ES256', filter: null },
    { id: 'noop', group: '(2)', label: 'no-op Wasm filter (reads, removes Authorization)', alg: 'ES256', filter: wasmFilter({ name: 'bench_noop', wasmPath: NOOP_WASM }) },
  ];
  for (const alg of ALGS) {
    list.push(
      { id: `jwt_authn-${alg}`, group: '(3a)', label: 'Envoy jwt_authn', alg, filter: jwtAuthnFilter({ jwks: keys[alg].jwks, cache: false }) },
      { id: `jwt_authn_cache-${alg}`, group: '(3b)', label: 'Envoy jwt_authn + jwt_cache_config', alg, filter: jwtAuthnFilter({ jwks: keys[alg].jwks, cache: true }) },
      { id: `ours-${alg}`, group: '(4)', label: 'mcp-oauth, token cache on (default)', alg, filter: ours(alg) },
      { id: `ours_nocache-${alg}`, group: '(5)', label: 'mcp-oauth, `token_cache_entries: 0`', alg, filter: ours(alg, { token_cache_entries: 0 }) },
    );
  }
  // Where (4)'s time goes, beyond the no-op filter: the same filter with less to do.
  list.push(
    { id: 'ours_public-ES256', breakdown: true, public: true, label: 'mcp-oauth, `/mcp` a public path: no token check; still strips `Authorization` and the 4 identity headers', alg: 'ES256', filter: ours('ES256', { public_paths: ['/mcp'] }) },
    { id: 'ours_noidentity-ES256', breakdown: true, label: 'mcp-oauth, token checked (cache on), `identity_headers` all null: strips only `Authorization`, sets nothing', alg: 'ES256', filter: ours('ES256', { identity_headers: { subject: null, client_id: null, scopes: null, issuer: null } }) },
  );
  if (COMPARE_WASM_BUILT) return compareConfigs(list, keys);
  return list;
}

/** Compare mode's configurations: the baselines, and both builds with and without the cache. */
function compareConfigs(list, keys) {
  const candidate = (alg, extra) =>
    wasmFilter({ name: 'mcp_oauth', wasmPath: COMPARE_WASM, configuration: pluginConfig(keys[alg].ours, extra) });
  const keep = (c) => ['none', 'noop'].includes(c.id) || (COMPARE_ALGS.includes(c.alg) && /^(jwt_authn_cache|ours|ours_nocache)-/.test(c.id));
  const out = list.filter(keep);
  for (const alg of COMPARE_ALGS) {
    out.push(
      { id: `candidate-${alg}`, group: "(4')", label: 'candidate build, token cache on', alg, filter: candidate(alg) },
      { id: `candidate_nocache-${alg}`, group: "(5')", label: 'candidate build, `token_cache_entries: 0`', alg, filter: candidate(alg, { token_cache_entries: 0 }) },
    );
  }
  return out;
}

/** Compare mode's report: medians over rounds, on stdout. */
function printComparison(cases, results, wasmSizes) {
  const med = (id, key) => median(results[id].map((r) => r[key]));
  const noopRps = med('noop', 'rps');
  const noopCpu = med('noop', 'cpuUsPerReq');
  const rows = cases.map((c) => [
    `${c.group} ${c.label}`,
    c.id === 'none' || c.id === 'noop' ? '–' : c.alg,
    f0(med(c.id, 'rps')),
    f2(med(c.id, 'rps') / noopRps),
    f1(med(c.id, 'cpuUsPerReq')),
    c.id === 'none' || c.id === 'noop' ? '–' : f1(med(c.id, 'cpuUsPerReq') - noopCpu),
    results[c.id].map((r) => f0(r.rps)).join(' / '),
  ]);
  console.log(`this build: ${OUR_WASM_BUILT} (${f0(wasmSizes.ours)} B)\ncandidate:  ${COMPARE_WASM_BUILT} (${f0(wasmSizes.candidate)} B)\n`);
  console.log(table(['configuration', 'alg', 'req/s', '× (2)', 'Envoy CPU µs/req', 'vs (2) µs/req', 'req/s by round'], rows));
}

const isAuth = (cfg) => cfg.id !== 'none' && cfg.id !== 'noop' && !cfg.public;

/** Functional checks before measuring: the filter lets the good token through and refuses others. */
async function checkCase(c, tokens) {
  const port = c.envoy.listenerPort;
  const fail = (what, r) => {
    throw new Error(`check failed for ${c.id}: ${what} (got ${r.status}${r.error ? ` ${r.error.message}` : ''} ${r.body ?? ''})\n${c.envoy.logTail()}`);
  };
  if (c.kind === 'token') {
    const r = await request(port, c.path, { method: 'POST', headers: { authorization: basicAuth(c.keys), 'content-type': 'application/x-www-form-urlencoded' }, body: TOKEN_BODY });
    if (r.status !== 200 || !JSON.parse(r.body).access_token) fail('token endpoint', r);
    const at = JSON.parse(r.body).access_token;
    const use = await request(port, '/mcp', { headers: { authorization: `Bearer ${at}` } });
    if (use.status !== 200) fail('the issued token on /mcp', use);
    tokens.issued = at;
    return;
  }
  if (c.kind === 'mcp') {
    const post = (body, token) =>
      request(port, c.path, { method: 'POST', headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body });
    const good = await post(c.body, tokens[c.alg]);
    if (good.status !== 200) fail(`tools/call POST with a valid ${c.alg} token`, good);
    const none = await post(c.body, null);
    if (none.status !== 401) fail('tools/call POST without a token must be 401', none);
    // Proves the body is (or is not) inspected: only the `mcp` section makes a non-JSON body a 400.
    const malformed = await post(MCP_MALFORMED, tokens[c.alg]);
    if (malformed.status !== (c.inspect ? 400 : 200)) fail(`a non-JSON body must be ${c.inspect ? '400 (inspected)' : '200 (not inspected)'}`, malformed);
    return;
  }
  if (c.kind === 'prm') {
    const r = await request(port, c.path);
    if (r.status !== 200 || JSON.parse(r.body).resource !== RESOURCE) fail('protected-resource metadata', r);
    return;
  }
  const good = await request(port, c.path, { headers: { authorization: `Bearer ${tokens[c.alg]}` } });
  if (good.status !== 200) fail(`valid ${c.alg} token`, good);
  if (isAuth(c)) {
    const none = await request(port, c.path);
    if (none.status !== 401) fail('no token must be 401', none);
    const bad = await request(port, c.path, { headers: { authorization: `Bearer ${tamper(tokens[c.alg])}` } });
    if (bad.status !== 401) fail('tampered token must be 401', bad);
  }
}

// ---------------------------------------------------------------- report helpers
const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–');
const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : '–');
const pct = (x) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : '–');
const kb = (bytes) => `${(bytes / 1024).toFixed(0)} KiB`;

function table(header, rows) {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((h, i) => (i === 0 || /^(configuration|alg|endpoint|file)$/.test(h) ? '---' : '---:')).join('|')}|`];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  return lines.join('\n');
}

function envoyVersion() {
  const text = execFileSync(ENVOY_BIN, ['--version'], { encoding: 'utf8' });
  const m = /version:\s*\S+?\/(\d+\.\d+\.\d+)\/\S*?\/(\w+)\/(\w+)/.exec(text);
  return m ? `${m[1]} (${m[2]}, ${m[3]})` : text.trim();
}

/** The commit, and whether the filter's sources differ from it. */
function sourceState() {
  const commit = firstLine('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']);
  const dirty = firstLine('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--', 'src', 'Cargo.toml', 'Cargo.lock']);
  return `commit ${commit}${dirty && dirty !== '?' ? ' with uncommitted changes in src/' : ''}`;
}

function firstLine(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0].trim();
  } catch (e) {
    return (e.stdout || e.stderr || '').toString().split('\n')[0].trim() || '?';
  }
}

// ---------------------------------------------------------------- main
async function main() {
  const startedAt = new Date();
  const t0 = performance.now();
  log(`rounds ${ROUNDS} × ${DURATION}s (+${WARMUP}s warm-up), ${CONNECTIONS} connections, taskset ${TASKSET ? 'on' : 'off'}, tmp ${TMP}`);
  copyFileSync(OUR_WASM_BUILT, OUR_WASM);
  copyFileSync(NOOP_WASM_BUILT, NOOP_WASM);
  if (COMPARE_WASM_BUILT) copyFileSync(COMPARE_WASM_BUILT, COMPARE_WASM);
  const source = sourceState();
  const quiet = [await waitQuiet('start')];
  const keys = await makeKeys();
  const tokens = {};
  for (const alg of ALGS) tokens[alg] = await mint(keys[alg]);

  // --- start one Envoy per configuration (concurrency 1, pinned), check, warm up
  const configs = comparisonConfigs(keys);
  const asConfig = { id: 'as', label: 'mcp-oauth + authorization_server', filter: wasmFilter({ name: 'mcp_oauth', wasmPath: OUR_WASM, configuration: authorizationServerConfig(keys) }) };
  const envoys = {};
  // Probes: the status of one request (200 = ready).
  const withToken = (token) => async (port) => (await request(port, '/mcp', { headers: { authorization: `Bearer ${token}` }, timeoutMs: 10000 })).status;
  for (const cfg of configs) {
    log(`starting Envoy: ${cfg.id}`);
    envoys[cfg.id] = await startEnvoy(cfg.id, cfg.filter, { probe: withToken(tokens[cfg.alg]) });
  }
  // (6): our filter (ES256, cache on) without and with the `mcp` section, for the JSON-RPC POSTs;
  // both followed by Envoy's buffer filter, so the direct_response comes after the whole request
  // and connections stay open (bufferFilter in config.mjs).
  const mcpConfigs = COMPARE_WASM_BUILT ? [] : [
    { id: 'ours_post-ES256', filter: [wasmFilter({ name: 'mcp_oauth', wasmPath: OUR_WASM, configuration: pluginConfig(keys.ES256.ours) }), bufferFilter()] },
    { id: 'ours_mcp-ES256', filter: [wasmFilter({ name: 'mcp_oauth', wasmPath: OUR_WASM, configuration: pluginConfig(keys.ES256.ours, { mcp: MCP_SECTION }) }), bufferFilter()] },
  ];
  for (const cfg of mcpConfigs) {
    log(`starting Envoy: ${cfg.id}`);
    envoys[cfg.id] = await startEnvoy(cfg.id, cfg.filter, { probe: withToken(tokens.ES256) });
  }
  if (!COMPARE_WASM_BUILT) log('starting Envoy: as');
  if (!COMPARE_WASM_BUILT) envoys.as = await startEnvoy('as', asConfig.filter, {
    probe: async (port) => (await request(port, '/.well-known/oauth-protected-resource/mcp', { timeoutMs: 10000 })).status,
  });
  const cases = configs.map((cfg) => ({
    ...cfg,
    kind: 'get',
    envoy: envoys[cfg.id],
    path: '/mcp',
    headers: [`Authorization: Bearer ${tokens[cfg.alg]}`],
  }));
  const extraCases = [
    { id: 'token', kind: 'token', label: 'token endpoint: `POST /oauth/token`, client_credentials (client_secret_basic), ES256-signed access token', envoy: envoys.as, keys, path: '/oauth/token', headers: [`Authorization: ${basicAuth(keys)}`], body: TOKEN_BODY },
    { id: 'prm', kind: 'prm', label: 'protected-resource metadata: `GET /.well-known/oauth-protected-resource/mcp`', envoy: envoys.as, path: '/.well-known/oauth-protected-resource/mcp', headers: [] },
  ];
  const mcpCases = [];
  for (const size of ['small', '16k']) {
    for (const inspect of [false, true]) {
      mcpCases.push({
        id: `mcp_${inspect ? 'on' : 'off'}-${size}`,
        kind: 'mcp',
        inspect,
        size,
        group: size === 'small' ? (inspect ? '(6b)' : '(6a)') : inspect ? '(6c-b)' : '(6c-a)',
        label: inspect ? 'mcp-oauth with the `mcp` section (body held and inspected)' : 'mcp-oauth without `mcp` (body not inspected)',
        alg: 'ES256',
        envoy: envoys[inspect ? 'ours_mcp-ES256' : 'ours_post-ES256'],
        path: MCP_ENDPOINT,
        headers: MCP_HEADERS(tokens.ES256),
        body: MCP_BODIES[size],
        contentType: 'application/json',
      });
    }
  }
  const all = COMPARE_WASM_BUILT ? cases : [...cases, ...mcpCases, ...extraCases];
  for (const c of all) await checkCase(c, tokens);
  log('all configurations answer as expected (200 with the token; 401 without it or with a bad signature)');
  for (const c of all) {
    log(`initial warm-up ${INITIAL_WARMUP}s: ${c.id}`);
    await runWrk(c, INITIAL_WARMUP);
  }
  const rss = {};
  for (const [id, e] of Object.entries(envoys)) rss[id] = rssMiB(e.pid);

  // --- interleaved rounds
  const results = Object.fromEntries(all.map((c) => [c.id, []]));
  for (let round = 0; round < ROUNDS; round++) {
    if (round > 0) quiet.push(await waitQuiet(`round ${round + 1}`));
    const order = all.map((_, i) => all[(i + round * Math.ceil(all.length / ROUNDS)) % all.length]);
    for (const c of order) {
      await runWrk(c, WARMUP);
      const r = await runWrk(c, DURATION);
      results[c.id].push(r);
      log(
        `round ${round + 1}/${ROUNDS} ${c.id.padEnd(22)} ${f0(r.rps).padStart(7)} req/s  p50 ${f3(r.p50ms)} ms  p99 ${f3(r.p99ms)} ms  ` +
          `Envoy ${f1(r.cpuUsPerReq)} µs/req, ${Math.round(r.cpuShare * 100)}% of a core; others on cores 0/1 ${pct(r.otherCore0)}/${pct(r.otherCore1)}; ` +
          `little ${f2(r.little)}${r.errors ? `  ERRORS ${r.errors}` : ''}`,
      );
    }
  }
  if (COMPARE_WASM_BUILT) {
    for (const e of Object.values(envoys)) await e.stop();
    printComparison(cases, results, { ours: statSync(OUR_WASM).size, candidate: statSync(COMPARE_WASM).size });
    return;
  }
  // What the two (6) Envoys counted: every inspected tools/call, and connections accepted (a
  // connection per request would mean the measurement is about connection set-up instead).
  const mcpCounters = {};
  for (const id of ['ours_post-ES256', 'ours_mcp-ES256']) {
    const counters = await adminCounters(envoys[id], 'tools_call\\.(allowed|denied)$|^http\\.bench_http\\.downstream_cx_total$');
    const pick = (suffix) => Object.entries(counters).filter(([k]) => k.endsWith(suffix)).reduce((sum, [, v]) => sum + v, 0);
    mcpCounters[id] = { allowed: pick('tools_call.allowed'), denied: pick('tools_call.denied'), connections: pick('downstream_cx_total'), completed: envoys[id].completed, wrkRuns: envoys[id].wrkRuns };
  }
  log('(6) Envoy counters:', JSON.stringify(mcpCounters));
  for (const e of Object.values(envoys)) await e.stop();

  // --- start-up time, concurrency 2, not pinned
  const startupConfigs = [
    { id: 'none', label: 'no auth filter', filter: null, token: tokens.ES256 },
    { id: 'noop', label: 'no-op Wasm filter', filter: configs.find((c) => c.id === 'noop').filter, token: tokens.ES256 },
    { id: 'jwt_authn-ES256', label: 'Envoy jwt_authn (ES256)', filter: jwtAuthnFilter({ jwks: keys.ES256.jwks, cache: false }), token: tokens.ES256 },
    { id: 'ours-ES256', label: 'mcp-oauth resource server (ES256 key)', filter: configs.find((c) => c.id === 'ours-ES256').filter, token: tokens.ES256 },
    { id: 'as', label: 'mcp-oauth + authorization_server', filter: asConfig.filter, token: tokens.issued },
  ];
  quiet.push({ ...(await waitQuiet('start-up measurements')), label: 'start-up measurements' });
  const startup = Object.fromEntries(startupConfigs.map((s) => [s.id, { ms: [], live: [], rss: [], early: new Map() }]));
  for (let i = 0; i < STARTS; i++) {
    for (const s of startupConfigs) {
      const e = await startEnvoy(`startup-${s.id}`, s.filter, { concurrency: 2, pin: false, probe: withToken(s.token) });
      startup[s.id].ms.push(e.readyMs);
      startup[s.id].live.push(e.liveMs);
      for (const [status, n] of e.probeStatuses) startup[s.id].early.set(status, (startup[s.id].early.get(status) ?? 0) + n);
      startup[s.id].rss.push(rssMiB(e.pid));
      await e.stop();
    }
  }
  log('start-up times:', Object.entries(startup).map(([k, v]) => `${k} ready ${v.ms.map((x) => Math.round(x)).join('/')} ms, LIVE ${v.live.map((x) => Math.round(x)).join('/')} ms, early answers ${JSON.stringify([...v.early])}`).join('; '));

  // --- report
  const med = (id, key) => median(results[id].map((r) => r[key]));
  const base = { rps: med('none', 'rps'), cpu: med('none', 'cpuUsPerReq') };
  const noop = { rps: med('noop', 'rps'), cpu: med('noop', 'cpuUsPerReq') };
  const errs = (id) => results[id].reduce((s, r) => s + r.errors, 0);
  const rounds = (id) => results[id].map((r) => f0(r.rps)).join(' / ');
  const mainRows = cases.filter((c) => !c.breakdown).map((c) => {
    const rps = med(c.id, 'rps');
    const cpu = med(c.id, 'cpuUsPerReq');
    return [
      `${c.group} ${c.label}`,
      c.id === 'none' || c.id === 'noop' ? '–' : c.alg,
      f0(rps),
      f3(med(c.id, 'p50ms')),
      f3(med(c.id, 'p99ms')),
      f2(rps / base.rps),
      f2(rps / noop.rps),
      f1(cpu),
      c.id === 'none' ? '–' : `${cpu - base.cpu >= 0 ? '+' : ''}${f1(cpu - base.cpu)}`,
      f0(rss[c.id]),
      pct(med(c.id, 'cpuShare')),
      rounds(c.id),
    ];
  });
  const breakdownIds = ['none', 'noop', 'jwt_authn_cache-ES256', 'ours_public-ES256', 'ours_noidentity-ES256', 'ours-ES256'];
  const breakdownRows = breakdownIds.map((id) => {
    const c = cases.find((x) => x.id === id);
    const cpu = med(id, 'cpuUsPerReq');
    return [`${c.group ?? ''} ${c.label}`.trim(), f0(med(id, 'rps')), f1(cpu), id === 'none' ? '–' : `+${f1(cpu - base.cpu)}`, id === 'none' || id === 'noop' ? '–' : `${cpu - noop.cpu >= 0 ? '+' : ''}${f1(cpu - noop.cpu)}`];
  });
  const mcpRows = mcpCases.map((c) => [
    `${c.group} ${c.label}`,
    f0(Buffer.byteLength(c.body)),
    f0(med(c.id, 'rps')),
    f3(med(c.id, 'p50ms')),
    f3(med(c.id, 'p99ms')),
    f1(med(c.id, 'cpuUsPerReq')),
    pct(med(c.id, 'cpuShare')),
    rounds(c.id),
  ]);
  const signed = (x, f) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${f(x)}` : '–');
  const mcpCostRows = ['small', '16k'].map((size) => {
    const off = `mcp_off-${size}`;
    const on = `mcp_on-${size}`;
    // Paired by round: both were measured in the same round, minutes apart at most.
    const perRound = results[on].map((r, i) => r.cpuUsPerReq - results[off][i].cpuUsPerReq);
    return [
      `${size === 'small' ? '(6b) vs (6a)' : '(6c-b) vs (6c-a)'}`,
      f0(Buffer.byteLength(MCP_BODIES[size])),
      f2(med(on, 'rps') / med(off, 'rps')),
      signed(med(on, 'p50ms') - med(off, 'p50ms'), f3),
      signed(med(on, 'p99ms') - med(off, 'p99ms'), f3),
      signed(med(on, 'cpuUsPerReq') - med(off, 'cpuUsPerReq'), f1),
      perRound.map((x) => signed(x, f1)).join(' / '),
    ];
  });
  const mcpCounterNote = (id, what) => {
    const k = mcpCounters[id];
    return `${what}: ${f0(k.connections)} connections accepted over its ${k.wrkRuns} wrk runs of ${CONNECTIONS} connections (plus the checks' own), ` +
      `\`tools_call\` counters ${f0(k.allowed)} allowed / ${f0(k.denied)} denied for ${f0(k.completed)} requests wrk completed`;
  };
  // Keep-alive held if an Envoy accepted about one connection per wrk connection (plus the checks').
  const reconnecting = Object.entries(mcpCounters).filter(([, k]) => k.connections > k.wrkRuns * CONNECTIONS + 100).map(([id]) => id);
  const mcpConnectionNote = reconnecting.length
    ? `**Warning:** ${reconnecting.join(', ')} accepted far more connections than wrk keeps open: connections were closed after answers, so these rows include connection set-up.`
    : 'Connections stayed open (keep-alive) throughout.';
  const extraRows = extraCases.map((c) => [c.label, f0(med(c.id, 'rps')), f3(med(c.id, 'p50ms')), f3(med(c.id, 'p99ms')), f1(med(c.id, 'cpuUsPerReq')), pct(med(c.id, 'cpuShare')), rounds(c.id)]);
  const withErrors = all.filter((c) => errs(c.id) > 0).map((c) => `${c.id}: ${errs(c.id)}`);
  const errorNote = withErrors.length
    ? `**Errors** (wrk socket errors, timeouts and non-2xx answers, all rounds): ${withErrors.join(', ')}.`
    : 'No measurement had a socket error, a timeout or a non-2xx answer.';
  const startupRows = startupConfigs.map((s) => {
    const ms = startup[s.id].ms;
    const early = [...startup[s.id].early].map(([status, n]) => `${n}× ${status || 'refused'}`).join(', ');
    return [s.label, f0(median(startup[s.id].live)), f0(median(ms)), `${f0(Math.min(...ms))}–${f0(Math.max(...ms))}`, early || '–', f0(median(startup[s.id].rss))];
  });
  const ourSize = statSync(OUR_WASM).size;
  const noopSize = statSync(NOOP_WASM).size;
  const sizeRows = [
    [`\`${relative(REPO_ROOT, OUR_WASM_BUILT)}\``, f0(ourSize), kb(ourSize), kb(gzipSync(readFileSync(OUR_WASM), { level: 9 }).length)],
    [`\`${relative(REPO_ROOT, NOOP_WASM_BUILT)}\` (no-op filter)`, f0(noopSize), kb(noopSize), kb(gzipSync(readFileSync(NOOP_WASM), { level: 9 }).length)],
  ];
  const rssRows = [
    ['no auth filter', f0(rss.none)],
    ['no-op Wasm filter', f0(rss.noop)],
    ['Envoy jwt_authn (ES256, cache)', f0(rss['jwt_authn_cache-ES256'])],
    ['mcp-oauth resource server (ES256, cache on)', f0(rss['ours-ES256'])],
    ['mcp-oauth resource server (ES256, cache on) with the `mcp` section, after the (6) warm-ups', f0(rss['ours_mcp-ES256'])],
    ['mcp-oauth + authorization_server', f0(rss.as)],
  ];
  const tokenLen = ALGS.map((a) => `${a} ${tokens[a].length} B`).join(', ');
  const every = Object.values(results).flat();
  const spread = (key) => {
    const xs = every.map((r) => r[key]).filter(Number.isFinite);
    return xs.length ? `median ${pct(median(xs))}, max ${pct(Math.max(...xs))}` : 'not measured (no pinning)';
  };
  const rowShares = all.map((c) => median(results[c.id].map((r) => r.cpuShare)));
  const littles = every.map((r) => r.little);
  const quietNote = quiet
    .map((q, i) => `${q.label ?? (i === 0 ? 'start' : `round ${i + 1}`)}: ${pct(q.busy)}${q.waitedS > 2 ? ` after waiting ${Math.round(q.waitedS)} s` : ''}`)
    .join('; ');
  const minutes = (performance.now() - t0) / 60000;

  const md = `# Benchmarks

Generated by \`${COMMAND}\` (bench/run.mjs) on ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC in ${minutes.toFixed(1)} min.
Every number below comes from that run; rerun the command to refresh this file.

**Machine:** ${NPROC} CPUs (\`nproc\`), ${firstLine('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"])}, ${f0(os.totalmem() / 2 ** 30)} GiB RAM, Linux ${os.release()}.
**Source:** ${source}; the .wasm measured has SHA-256 \`${createHash('sha256').update(readFileSync(OUR_WASM)).digest('hex').slice(0, 16)}…\`.
**Envoy:** ${envoyVersion()}, Wasm runtime V8. **Load:** ${firstLine('sh', ['-c', 'wrk -v 2>&1'])}. Node ${process.version}.

**Method.** Each configuration is its own Envoy, \`--concurrency 1\`, plain HTTP on 127.0.0.1 (no TLS), whose only
route is a \`direct_response\` (200, 3 bytes): no upstream. ${TASKSET ? `Envoy is pinned to core ${ENVOY_CORE} and wrk to core ${WRK_CORE} (taskset).` : 'No CPU pinning (taskset missing or one CPU).'}
wrk: ${CONNECTIONS} keep-alive connections, one wrk thread each, \`GET /mcp\` with \`Authorization: Bearer <token>\` (${tokenLen}), ${DURATION} s per
measurement after a ${WARMUP} s warm-up (every Envoy also had ${INITIAL_WARMUP} s of warm-up before the first round). ${ROUNDS} rounds, interleaved:
each round measures every configuration once (order rotated per round); the table shows **medians over rounds**.
Tokens are valid (signature, \`iss\`, \`aud\`, \`exp\`, scope \`${SCOPE}\`); the same token is sent on every request, which is
what caches are for. Before measuring, every auth configuration was checked to answer 200 with the token and 401
without it or with a tampered signature. jwt_authn checks signature, \`iss\`, \`aud\` and time and copies four claims to
headers (\`claim_to_headers\`, \`forward: false\`); our filter also checks the route's scope, removes \`Authorization\`
and sets four identity headers. *Envoy CPU µs/req* is the Envoy process's user+system CPU time over the measurement
divided by the requests served (all threads; with one worker saturated this is the cost of a request).
Latency is timed around each request in bench/wrk.lua (\`CLOCK_MONOTONIC\`, one connection per wrk thread): this wrk's own
latency statistics were inconsistent with its own throughput here (mean latency × req/s came out several times the
number of connections), so they are not used.

**Run conditions.** The machine may run other work. Whole-machine CPU busy before starting and before each round
and before the start-up measurements (the script waits up to ${QUIET_WAIT} s for it to drop under ${pct(QUIET_BELOW)}): ${quietNote}. During measurements, other
processes took ${spread('otherCore0')} of Envoy's core, and ${spread('otherCore1')} of wrk's core. Envoy used
${pct(Math.min(...rowShares))}–${pct(Math.max(...rowShares))} of its core (median per configuration). Little's law check (mean
latency × req/s ÷ connections, 1.00 when every connection always has a request in flight): ${f2(Math.min(...littles))}–${f2(Math.max(...littles))}.

## Requests through the filter (\`GET /mcp\` with a valid token)

${table(
  ['configuration', 'alg', 'req/s', 'p50 ms', 'p99 ms', '× (1)', '× (2)', 'Envoy CPU µs/req', 'vs (1) µs/req', 'RSS MiB', 'Envoy busy', 'req/s by round'],
  mainRows,
)}

*× (1)*, *× (2)*: throughput relative to (1) no filter and (2) the no-op Wasm filter. *RSS*: VmRSS of that
Envoy (\`--concurrency 1\`) after its warm-up. *Envoy busy*: share of its core Envoy used (median over rounds); well under
100% means the load generator, whose core other work may have shared, set the pace, and req/s understates what Envoy
could do (Envoy CPU µs/req is then the better measure). ${errorNote}

## Where our filter's time goes (ES256, token cache on)

The same measurement for two reduced variants of (4), next to (1), (2) and jwt_authn with its cache. (4) itself
strips \`Authorization\` and the 4 identity headers and sets the 4 identity headers.

${table(['configuration', 'req/s', 'Envoy CPU µs/req', 'vs (1) µs/req', 'vs (2) µs/req'], breakdownRows)}

## MCP body inspection (\`POST ${MCP_ENDPOINT}\`, JSON-RPC \`tools/call\`, ES256, token cache on)

The same Envoy set-up and token as (4), measured in the same interleaved rounds, but every request is a
\`POST ${MCP_ENDPOINT}\` with \`Content-Type: application/json\`, \`Accept: application/json, text/event-stream\` and the body
\`${MCP_BODIES.small}\` (${Buffer.byteLength(MCP_BODIES.small)} B), or for (6c) the same call with its
arguments padded (\`"padding":"xxx…"\`) to ${f0(MCP_LARGE_BYTES)} B. The \`direct_response\` route answers any method.
(6a)/(6c-a) are our filter without an \`mcp\` section: it decides on the headers and the body streams past it.
(6b)/(6c-b) add \`"mcp": ${JSON.stringify(MCP_SECTION)}\`: the filter holds the request (headers too) until it
has the whole body, parses the JSON-RPC message, applies the rule (the token has \`${SCOPE}\`), then forwards it.
Both (6) Envoys have Envoy's buffer filter (\`envoy.filters.http.buffer\`) between our filter and the router: a
\`direct_response\` sent while the request body is still arriving makes Envoy reset the stream, which closes the HTTP/1.1
connection, so without it (6a) would pay for a new connection per request. The buffer filter's cost is in both rows of
each pair; the difference is our filter holding, reading and checking the body.
Before measuring, each was checked to answer 200 with the token, 401 without it, and for a body that is not JSON
400 with the \`mcp\` section and 200 without (so the body is inspected exactly when it should be).

${table(['configuration', 'body B', 'req/s', 'p50 ms', 'p99 ms', 'Envoy CPU µs/req', 'Envoy busy', 'req/s by round'], mcpRows)}

**Cost of the inspection** (with \`mcp\` minus without; medians over rounds, and the CPU difference within each round):

${table(['comparison', 'body B', 'req/s ratio', 'Δ p50 ms', 'Δ p99 ms', 'Δ Envoy CPU µs/req', 'Δ µs/req by round'], mcpCostRows)}

Envoy counters at the end of the rounds. ${mcpCounterNote('ours_post-ES256', 'Without `mcp`')}; ${mcpCounterNote('ours_mcp-ES256', 'with `mcp`')}
(inspected calls are counted when the filter decides, so a few more than wrk saw completed, from requests in flight when a run stopped, are expected).
${mcpConnectionNote}

## Authorization server and metadata endpoints (our filter answers them itself)

${table(['endpoint', 'req/s', 'p50 ms', 'p99 ms', 'Envoy CPU µs/req', 'Envoy busy', 'req/s by round'], extraRows)}

The token endpoint's Envoy has an \`authorization_server\` section with one confidential client and an ES256
signing key (rate limits lifted for the benchmark); every request authenticates the client (SHA-256 of the
secret) and signs a new access token.

## Memory (VmRSS after warm-up, \`--concurrency 1\`)

${table(['configuration', 'RSS MiB'], rssRows)}

## Start-up with \`--concurrency 2\` (${STARTS} starts each, not pinned)

Time from spawning Envoy until admin \`/ready\` says \`LIVE\` and a request with a valid token gets 200.

${table(['configuration', 'LIVE ms (median)', 'ready ms (median)', 'ready range ms', 'answers before the first 200', 'RSS MiB at ready'], startupRows)}

## Wasm size

${table(['file', 'bytes', 'size', 'gzip -9'], sizeRows)}
`;
  process.stdout.write(`\n${md}`);
  if (OUT !== '-') {
    writeFileSync(OUT, md);
    log(`wrote ${OUT}`);
  }
}

main().then(
  () => {
    killAllSync();
    process.exit(0);
  },
  (e) => {
    console.error(e?.stack ?? e);
    killAllSync();
    process.exit(1);
  },
);
