// Envoy configs of the benchmark: bench/envoy-bench.yaml with one auth filter (or none) put in
// front of the router, on the given loopback ports.
//
// The Wasm filter stanza (runtime, failure policy, allow_on_headers_stop_iteration) is taken
// from envoy/envoy.yaml, so the benchmark runs our filter the way the repository ships it;
// only the .wasm path, the VM id and the plugin configuration (docs/configuration.md) change.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(BENCH_DIR, '..');
const TEMPLATE = join(BENCH_DIR, 'envoy-bench.yaml');
const SHIPPED = join(REPO_ROOT, 'envoy', 'envoy.yaml');

// Claims of every benchmark token, and what the filters check.
export const ISSUER = 'https://issuer.bench.example';
export const RESOURCE = 'https://mcp.bench.example/mcp';
export const SCOPE = 'mcp:tools';

const clone = (x) => structuredClone(x);

/** The `typed_config` of the mcp_oauth Wasm filter in envoy/envoy.yaml. */
function shippedWasmFilter() {
  const cfg = YAML.parse(readFileSync(SHIPPED, 'utf8'));
  for (const listener of cfg.static_resources.listeners) {
    for (const chain of listener.filter_chains) {
      for (const f of chain.filters) {
        const found = f.typed_config?.http_filters?.find((h) => h.name === 'mcp_oauth');
        if (found) return found.typed_config;
      }
    }
  }
  throw new Error(`${SHIPPED} has no mcp_oauth http filter`);
}

/**
 * A Wasm http filter like the shipped one. `configuration` is the plugin config (object →
 * JSON text; undefined → none). No environment variables: the benchmark's keys are inline.
 */
export function wasmFilter({ name, wasmPath, configuration }) {
  const typed = clone(shippedWasmFilter());
  const c = typed.config;
  c.vm_config.code.local.filename = resolve(wasmPath);
  delete c.vm_config.environment_variables;
  if (name !== 'mcp_oauth') {
    c.name = name;
    c.root_id = name;
    c.vm_config.vm_id = name;
  }
  if (configuration === undefined) delete c.configuration;
  else c.configuration.value = typeof configuration === 'string' ? configuration : JSON.stringify(configuration);
  return { name, typed_config: typed };
}

/**
 * Envoy's native JWT filter with one provider that checks what our filter checks (signature
 * with a local JWKS, iss, aud, exp/nbf), removes the token (forward: false) and passes the
 * same identity claims on as headers. `cache` adds jwt_cache_config.
 */
export function jwtAuthnFilter({ jwks, cache }) {
  const provider = {
    issuer: ISSUER,
    audiences: [RESOURCE],
    local_jwks: { inline_string: JSON.stringify(jwks) },
    forward: false,
    claim_to_headers: [
      { header_name: 'x-mcp-subject', claim_name: 'sub' },
      { header_name: 'x-mcp-client-id', claim_name: 'client_id' },
      { header_name: 'x-mcp-scopes', claim_name: 'scope' },
      { header_name: 'x-mcp-issuer', claim_name: 'iss' },
    ],
  };
  if (cache) provider.jwt_cache_config = { jwt_cache_size: 100 };
  return {
    name: 'envoy.filters.http.jwt_authn',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
      providers: { bench: provider },
      rules: [{ match: { prefix: '/' }, requires: { provider_name: 'bench' } }],
    },
  };
}

/**
 * Our plugin config (docs/configuration.md) for one issuer: `issuer` is an issuer object
 * (`jwks` or `secrets`). `extra` is merged on top (token_cache_entries, authorization_server).
 */
export function pluginConfig(issuer, extra = {}) {
  return {
    resource: RESOURCE,
    resource_name: 'mcp-oauth benchmark',
    ...(issuer ? { authorization_servers: [ISSUER], issuers: [{ issuer: ISSUER, ...issuer }] } : {}),
    routes: [{ prefix: '/mcp', scopes: [SCOPE] }],
    ...extra,
  };
}

/**
 * Envoy's buffer filter: passes a request on only once its body is complete. The MCP POST
 * measurements put it before the router: a `direct_response` sent while the request body is
 * still arriving makes Envoy reset the stream, which on HTTP/1.1 closes the connection (one
 * connection per request); answered after the whole request, the connection stays open.
 */
export function bufferFilter(maxRequestBytes = 1048576) {
  return {
    name: 'envoy.filters.http.buffer',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer',
      max_request_bytes: maxRequestBytes,
    },
  };
}

/**
 * The YAML text of the benchmark config with `filter`: an http filter object, an array of them
 * (in order), or null; they go before the router.
 */
export function renderBenchConfig({ listenerPort, adminPort, filter }) {
  const cfg = YAML.parse(readFileSync(TEMPLATE, 'utf8'));
  cfg.admin.address.socket_address.port_value = adminPort;
  const listener = cfg.static_resources.listeners[0];
  listener.address.socket_address.port_value = listenerPort;
  const hcm = listener.filter_chains[0].filters[0].typed_config;
  const filters = filter == null ? [] : Array.isArray(filter) ? filter : [filter];
  hcm.http_filters.unshift(...filters);
  return YAML.stringify(cfg, { lineWidth: 0 });
}
