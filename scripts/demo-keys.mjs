#!/usr/bin/env node
// Key material of the demo's built-in authorization server (`make run`, docker compose), made
// once and kept (reruns change nothing that exists):
//   .demo/signing-key.jwk   private ES256 JWK with kid: signs the access tokens
//                           (Envoy gets it as MCP_OAUTH_SIGNING_JWK)
//   .demo/sealing-key       32 random bytes, base64url: seals codes, refresh tokens, registered
//                           clients and sign-in sessions (Envoy gets it as MCP_OAUTH_SEALING_KEY)
//   .demo/jwks.json         the public JWK Set of the signing key, for reference (the filter
//                           publishes the same at https://localhost:8443/oauth/jwks)
// Keeping them means tokens, registered clients and sign-ins survive a restart of the demo.
// Prints the public JWK Set.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

const dir = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), '.demo');
const keyFile = join(dir, 'signing-key.jwk');
const sealingFile = join(dir, 'sealing-key');
const jwksFile = join(dir, 'jwks.json');

// Write to a temporary file and rename, so a reader never sees half a file.
function writeAtomic(file, text, mode) {
  writeFileSync(`${file}.tmp`, text, { mode });
  renameSync(`${file}.tmp`, file);
}

mkdirSync(dir, { recursive: true });
if (!existsSync(keyFile)) {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk); // RFC 7638 thumbprint of the public part
  jwk.alg = 'ES256';
  jwk.use = 'sig';
  writeAtomic(keyFile, JSON.stringify(jwk, null, 2) + '\n', 0o600);
  console.error(`demo-keys: created ${keyFile}`);
}

if (!existsSync(sealingFile)) {
  writeAtomic(sealingFile, randomBytes(32).toString('base64url') + '\n', 0o600);
  console.error(`demo-keys: created ${sealingFile}`);
}

const { d, ...publicJwk } = JSON.parse(readFileSync(keyFile, 'utf8'));
const jwks = JSON.stringify({ keys: [publicJwk] });
writeAtomic(jwksFile, jwks + '\n', 0o644);
console.log(jwks);
