// The core's per-request decision timed inside V8 without Envoy (bench/core-decide/): for each
// algorithm, a valid token on a protected route, with the token cache and without it.
// Usage: node bench/core-decide.mjs A.wasm [B.wasm ...]  (built from bench/core-decide; several
// builds are run interleaved, ROUNDS times, and the table shows each one's best round).
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WASI } from 'node:wasi';
import { randomBytes } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { ISSUER, RESOURCE, SCOPE, pluginConfig } from './config.mjs';

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const wasms = process.argv.slice(2);
if (!wasms.length) throw new Error('usage: node bench/core-decide.mjs A.wasm [B.wasm ...]');
const now = Math.floor(Date.now() / 1000);

async function keyFor(alg) {
  if (alg === 'HS256') {
    const secret = randomBytes(32).toString('base64url');
    return { signWith: new TextEncoder().encode(secret), kid: 'hs', issuer: { algorithms: [alg], secrets: [{ kid: 'hs', value: secret }] } };
  }
  const { privateKey, publicKey } = await generateKeyPair(alg, { modulusLength: 2048, extractable: true });
  const pub = { ...(await exportJWK(publicKey)), kid: alg.toLowerCase(), alg, use: 'sig' };
  return { signWith: privateKey, kid: pub.kid, issuer: { algorithms: [alg], jwks: { keys: [pub] } } };
}

const cases = [];
for (const alg of ['HS256', 'ES256', 'RS256']) {
  const key = await keyFor(alg);
  const token = await new SignJWT({ sub: 'bench-user', client_id: 'bench-client', scope: SCOPE, jti: randomBytes(12).toString('base64url') })
    .setProtectedHeader({ alg, typ: 'at+jwt', kid: key.kid })
    .setIssuer(ISSUER).setAudience(RESOURCE).setIssuedAt(now).setNotBefore(now).setExpirationTime(now + 3600)
    .sign(key.signWith);
  cases.push({ alg, token, config: JSON.stringify(pluginConfig(key.issuer)) });
}

const modules = await Promise.all(wasms.map(async (w) => WebAssembly.compile(readFileSync(w))));

/** One run of a build on a case: {cache, no_cache} in ns per decision (best batch). */
async function run(module, c) {
  const path = join(tmp, 'out');
  const fd = openSync(path, 'w');
  const wasi = new WASI({ version: 'preview1', args: ['core', c.config, c.token, '2000', '7', String(now)], env: {}, returnOnExit: true, stdout: fd });
  // The filter's proxy-wasm imports are linked in but never called by the core.
  const env = Object.fromEntries(
    WebAssembly.Module.imports(module)
      .filter((i) => i.module === 'env')
      .map((i) => [i.name, () => { throw new Error(`host call ${i.name} in the core bench`); }]),
  );
  const instance = await WebAssembly.instantiate(module, { ...wasi.getImportObject(), env });
  // The filter library exports `_initialize` too, which WASI.start refuses next to `_start`.
  const { memory, _start } = instance.exports;
  const code = wasi.start({ exports: { memory, _start } });
  closeSync(fd);
  const text = readFileSync(path, 'utf8');
  if (code !== 0) throw new Error(`the core bench exited with ${code}: ${text}`);
  const out = {};
  for (const line of text.trim().split('\n')) {
    const r = JSON.parse(line);
    out[r.case] = r.min_ns;
  }
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'core-decide-'));
const best = wasms.map(() => Object.fromEntries(cases.map((c) => [c.alg, { cache: Infinity, no_cache: Infinity }])));
for (let round = 0; round < ROUNDS; round++) {
  for (const c of cases) {
    for (const [i, module] of modules.entries()) {
      const r = await run(module, c);
      const b = best[i][c.alg];
      b.cache = Math.min(b.cache, r.cache);
      b.no_cache = Math.min(b.no_cache, r.no_cache);
    }
  }
  console.error(`[core-decide] round ${round + 1}/${ROUNDS} done`);
}
rmSync(tmp, { recursive: true, force: true });
const us = (ns) => (ns / 1000).toFixed(2);
console.log(`| build | ${cases.map((c) => `${c.alg} cached µs | ${c.alg} uncached µs`).join(' | ')} |`);
console.log(`|---|${cases.map(() => '---:|---:').join('|')}|`);
for (const [i, w] of wasms.entries()) {
  console.log(`| ${w} | ${cases.map((c) => `${us(best[i][c.alg].cache)} | ${us(best[i][c.alg].no_cache)}`).join(' | ')} |`);
}
