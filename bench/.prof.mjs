import { readFileSync, openSync } from 'node:fs';
import { WASI } from 'node:wasi';
import { randomBytes } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
const now = Math.floor(Date.now()/1000);
const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
const pub = { ...(await exportJWK(publicKey)), kid: 'es', alg: 'ES256', use: 'sig' };
const token = await new SignJWT({ sub: 'bench-user', client_id: 'bench-client', scope: 'mcp:tools', jti: randomBytes(12).toString('base64url') })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'es' }).setIssuer('https://issuer.bench.example').setAudience('https://mcp.bench.example/mcp').setIssuedAt(now).setNotBefore(now).setExpirationTime(now + 3600).sign(privateKey);
const config = JSON.stringify({resource:'https://mcp.bench.example/mcp', authorization_servers:['https://issuer.bench.example'], issuers:[{issuer:'https://issuer.bench.example', algorithms:['ES256'], jwks:{keys:[pub]}}], routes:[{prefix:'/mcp', scopes:['mcp:tools']}]});
const module = await WebAssembly.compile(readFileSync(process.argv[2]));
const env = Object.fromEntries(WebAssembly.Module.imports(module).filter(i=>i.module==='env').map(i=>[i.name,()=>{throw new Error(i.name)}]));
const wasi = new WASI({ version: 'preview1', args: ['core', config, token, '300000', '3', String(now), 'cache'], env: {}, returnOnExit: true });
const instance = await WebAssembly.instantiate(module, { ...wasi.getImportObject(), env });
const { memory, _start } = instance.exports;
wasi.start({ exports: { memory, _start } });
