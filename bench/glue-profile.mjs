// Where one request's instructions go, function by function: bench/glue-profile runs the
// filter (the same Rust as the .wasm: glue and core) natively against a simulated host,
// under valgrind's callgrind. Native x86 code is not V8's, so the counts differ from Envoy's;
// the shares show what to work on (bench/instructions.mjs then measures the change in Envoy).
// Host-side work of the simulation (its header map, its allocations for our calls) is in the
// totals but belongs to Envoy in real life: look at our functions' inclusive counts.
// Usage: node bench/glue-profile.mjs BINARY [default|public|noidentity|nocache|hs256-nocache] [REQUESTS]
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import { ISSUER, RESOURCE, SCOPE, pluginConfig } from './config.mjs';

const [binary, variant = 'default', requestsText = '2000'] = process.argv.slice(2);
if (!binary) throw new Error('usage: node bench/glue-profile.mjs BINARY [default|public|noidentity|nocache|hs256-nocache] [REQUESTS]');
const requests = Number(requestsText);
// `*-nocache` variants turn the token cache off, so every request verifies its token.
const hs = variant.startsWith('hs256');
const secret = 'glue-profile-secret-0123456789abcdef0123456789';
let signWith;
let issuer;
if (hs) {
  signWith = new TextEncoder().encode(secret);
  issuer = { algorithms: ['HS256'], secrets: [{ kid: 'k', value: secret }] };
} else {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const pub = { ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256', use: 'sig' };
  signWith = privateKey;
  issuer = { algorithms: ['ES256'], jwks: { keys: [pub] } };
}
const t = Math.floor(Date.now() / 1000);
const token = await new SignJWT({ sub: 'bench-user', client_id: 'bench-client', scope: SCOPE, jti: 'x' })
  .setProtectedHeader({ alg: hs ? 'HS256' : 'ES256', typ: 'at+jwt', kid: 'k' }).setIssuer(ISSUER).setAudience(RESOURCE)
  .setIssuedAt(t).setNotBefore(t).setExpirationTime(t + 7200).sign(signWith);
const extra = {
  default: {},
  public: { public_paths: ['/mcp'] },
  noidentity: { identity_headers: { subject: null, client_id: null, scopes: null, issuer: null } },
  nocache: { token_cache_entries: 0 },
  'hs256-nocache': { token_cache_entries: 0 },
}[variant];
if (!extra) throw new Error(`unknown config variant ${variant}`);
const config = JSON.stringify(pluginConfig(issuer, extra));
const out = join(mkdtempSync(join(tmpdir(), 'glue-profile-')), 'callgrind.out');
execFileSync('valgrind', ['--tool=callgrind', '--quiet', `--callgrind-out-file=${out}`, '--toggle-collect=*measured_requests*', binary, config, token, String(requests)], { stdio: ['ignore', 'inherit', 'inherit'] });
const annotated = execFileSync('callgrind_annotate', ['--inclusive=yes', '--auto=no', '--threshold=100', out], { maxBuffer: 1 << 26 }).toString();
console.log(`Instructions per request by function, inclusive (config: ${variant}; ${requests} requests after a warm-up):`);
let shown = 0;
for (const line of annotated.split('\n')) {
  if (shown >= 60) break;
  const m = line.match(/^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/);
  if (!m || !/mcp_oauth_wasm|proxy_on_|proxy_wasm/.test(m[2])) continue;
  const perRequest = Number(m[1].replace(/,/g, '')) / requests;
  const where = m[2].replace(/\/rustc\/[0-9a-f]+\/library\//, '').replace(/\/root\/\.cargo\/registry\/src\/[^/]+\//, '').replace(/ \[[^\]]*\]$/, '');
  console.log(`${perRequest.toFixed(0).padStart(8)}  ${where}`);
  shown += 1;
}
console.log(`\nprofile: ${out} (callgrind_annotate --inclusive=no for self cost)`);
