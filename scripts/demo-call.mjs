#!/usr/bin/env node
// Calls the demo MCP server through Envoy the way a service would: gets an access token from the
// filter's built-in authorization server with the client credentials grant (the demo's public
// client demo-service / demo-service-secret), then uses the official MCP TypeScript SDK client
// with that token to list the tools and call `echo`.
//
//   NODE_EXTRA_CA_CERTS=envoy/certs/ca.pem node scripts/demo-call.mjs [URL]
//
// URL defaults to $MCP_URL or https://localhost:8443/mcp; the token endpoint is read from the
// authorization server metadata of its origin. `make demo-call` sets the CA.
// Environment: DEMO_CLIENT_ID, DEMO_CLIENT_SECRET (default: the demo's client).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const url = new URL(process.argv[2] || process.env.MCP_URL || 'https://localhost:8443/mcp');
const clientId = process.env.DEMO_CLIENT_ID || 'demo-service';
const clientSecret = process.env.DEMO_CLIENT_SECRET || 'demo-service-secret';

async function fetchJson(what, input, init) {
  let res;
  try {
    res = await fetch(input, init);
  } catch (e) {
    throw new Error(`${what}: ${e.cause?.message ?? e.message} (is \`make run\` running?)`);
  }
  const text = await res.text();
  if (!res.ok) throw new Error(`${what}: HTTP ${res.status} ${text}`);
  return JSON.parse(text);
}

// Client credentials grant (RFC 6749 §4.4) with client_secret_basic.
async function getToken() {
  const meta = await fetchJson(
    'authorization server metadata',
    new URL('/.well-known/oauth-authorization-server', url.origin),
  );
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
  const token = await fetchJson(`token request to ${meta.token_endpoint}`, meta.token_endpoint, {
    method: 'POST',
    headers: { Authorization: `Basic ${basic}`, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials' }),
  });
  return { meta, token };
}

const client = new Client({ name: 'mcp-oauth-wasm-demo-call', version: '0.1.0' });
try {
  const { meta, token } = await getToken();
  console.log(
    `token: ${token.token_type} access token from ${meta.issuer} for client ${clientId}, ` +
      `scope "${token.scope}", expires in ${token.expires_in} s`,
  );
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { Authorization: `Bearer ${token.access_token}` } },
  });
  await client.connect(transport);
  const { tools } = await client.listTools();
  console.log(`tools/list: ${tools.map((t) => t.name).join(', ')}`);
  const result = await client.callTool({ name: 'echo', arguments: { message: 'hello through Envoy' } });
  console.log(`tools/call echo: ${result.content.map((c) => c.text ?? JSON.stringify(c)).join(' ')}`);
} catch (e) {
  console.error(`demo-call failed against ${url}: ${e.message}`);
  process.exitCode = 1;
} finally {
  await client.close().catch(() => {});
}
