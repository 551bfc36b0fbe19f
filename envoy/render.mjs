#!/usr/bin/env node
// Renders a variant of envoy/envoy.yaml: the one way tests (and deployments that need other
// ports or another plugin config) derive an Envoy config from the real one.
//
// It loads envoy/envoy.yaml, changes only what is asked for, and makes every relative file
// path (certificates, .wasm, access log) absolute against the repository root, so the result
// works from any working directory. Comments of the original are not kept.
//
// Library:
//   import { renderEnvoyConfig } from './envoy/render.mjs';
//   const yamlText = renderEnvoyConfig({ listenerPort: 18443, adminPort: 19901,
//     pluginConfig: { resource: 'https://localhost:18443/mcp', ... },
//     envKeyValues: { MCP_OAUTH_SIGNING_JWK: JSON.stringify(privateJwk) },
//     accessLogPath: '/tmp/x/access.log' });
//
// CLI (prints the YAML; options are the same names in kebab case):
//   node envoy/render.mjs --listener-port 18443 --plugin-config cfg.json \
//     --env MCP_OAUTH_SIGNING_JWK="$(cat .demo/signing-key.jwk)" --access-log-path /tmp/access.log
//
// Options (all optional):
//   listenerPort, listenerAddress   the https listener `mcp_https` (default 127.0.0.1:8443)
//   adminPort                       admin interface (default 9901)
//   backendPort                     cluster `mcp_backend` (streamable HTTP server, default 3001)
//   sseBackendPort                  cluster `mcp_sse_backend` (legacy SSE server, default 3002)
//   jwksPort                        cluster `jwks` (default 8081)
//   pluginConfig                    object (serialized to JSON) or string: the filter's configuration
//   wasmPath                        the filter's .wasm file
//   certDir                         directory holding server.pem and server-key.pem
//   envKeyValues                    object: vm_config.environment_variables.key_values (a key
//                                   given here is dropped from host_env_keys)
//   accessLogPath                   replaces the stdout access log by a JSON-lines file log with
//                                   request headers as the backend sees them (see ACCESS_LOG_FORMAT)
//   extraClusters                   array of Envoy cluster objects, appended
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import YAML from 'yaml';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const BASE_CONFIG = join(REPO_ROOT, 'envoy', 'envoy.yaml');

// One JSON object per request. %REQ(...)% is read when the request ends, so it shows the
// request headers after the filter ran: what the backend received (identity headers added,
// Authorization removed). Absent headers are logged as null.
// Envoy writes access-log files every 10 s by default (only the first line comes at once);
// to read lines right after a request, start Envoy with `--file-flush-interval-msec 50`.
export const ACCESS_LOG_FORMAT = {
  start_time: '%START_TIME%',
  method: '%REQ(:METHOD)%',
  path: '%REQ(:PATH)%',
  protocol: '%PROTOCOL%',
  status: '%RESPONSE_CODE%',
  response_code_details: '%RESPONSE_CODE_DETAILS%',
  response_flags: '%RESPONSE_FLAGS%',
  upstream_cluster: '%UPSTREAM_CLUSTER%',
  duration_ms: '%DURATION%',
  authorization: '%REQ(authorization)%',
  x_mcp_subject: '%REQ(x-mcp-subject)%',
  x_mcp_client_id: '%REQ(x-mcp-client-id)%',
  x_mcp_scopes: '%REQ(x-mcp-scopes)%',
  x_mcp_issuer: '%REQ(x-mcp-issuer)%',
  mcp_session_id: '%REQ(mcp-session-id)%',
  www_authenticate: '%RESP(www-authenticate)%',
};

const abs = (p) => (isAbsolute(p) ? p : join(REPO_ROOT, p));

function setPort(socketAddressHolder, port) {
  if (port !== undefined) socketAddressHolder.socket_address.port_value = Number(port);
}

function cluster(cfg, name) {
  const c = cfg.static_resources.clusters.find((x) => x.name === name);
  if (!c) throw new Error(`envoy.yaml has no cluster ${name}`);
  return c;
}

function setClusterPort(cfg, name, port) {
  if (port === undefined) return;
  for (const group of cluster(cfg, name).load_assignment.endpoints) {
    for (const ep of group.lb_endpoints) setPort(ep.endpoint.address, port);
  }
}

/** Returns the YAML text of envoy/envoy.yaml with the given overrides. */
export function renderEnvoyConfig(opts = {}) {
  const cfg = YAML.parse(readFileSync(BASE_CONFIG, 'utf8'));

  setPort(cfg.admin.address, opts.adminPort);

  const listener = cfg.static_resources.listeners.find((l) => l.name === 'mcp_https');
  setPort(listener.address, opts.listenerPort);
  if (opts.listenerAddress !== undefined) listener.address.socket_address.address = opts.listenerAddress;
  const chain = listener.filter_chains[0];

  for (const cert of chain.transport_socket.typed_config.common_tls_context.tls_certificates) {
    for (const key of ['certificate_chain', 'private_key']) {
      const file = cert[key].filename;
      cert[key].filename = opts.certDir !== undefined ? join(resolve(opts.certDir), file.split('/').pop()) : abs(file);
    }
  }

  const hcm = chain.filters.find((f) => f.name === 'envoy.filters.network.http_connection_manager').typed_config;
  const wasm = hcm.http_filters.find((f) => f.name === 'mcp_oauth').typed_config.config;
  const local = wasm.vm_config.code.local;
  local.filename = opts.wasmPath !== undefined ? resolve(opts.wasmPath) : abs(local.filename);
  if (opts.pluginConfig !== undefined) {
    wasm.configuration.value =
      typeof opts.pluginConfig === 'string' ? opts.pluginConfig : JSON.stringify(opts.pluginConfig);
  }
  if (opts.envKeyValues !== undefined) {
    const env = (wasm.vm_config.environment_variables ??= {});
    env.key_values = Object.fromEntries(Object.entries(opts.envKeyValues).map(([k, v]) => [k, String(v)]));
    // Envoy refuses a key that is both in key_values and host_env_keys: the given value wins.
    env.host_env_keys = (env.host_env_keys ?? []).filter((k) => !(k in env.key_values));
    if (env.host_env_keys.length === 0) delete env.host_env_keys;
  }

  if (opts.accessLogPath !== undefined) {
    hcm.access_log = [
      {
        name: 'envoy.access_loggers.file',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog',
          path: resolve(opts.accessLogPath),
          log_format: { json_format: ACCESS_LOG_FORMAT },
        },
      },
    ];
  }

  setClusterPort(cfg, 'mcp_backend', opts.backendPort);
  setClusterPort(cfg, 'mcp_sse_backend', opts.sseBackendPort);
  setClusterPort(cfg, 'jwks', opts.jwksPort);
  if (opts.extraClusters?.length) cfg.static_resources.clusters.push(...opts.extraClusters);

  return YAML.stringify(cfg, { lineWidth: 0 });
}

// ---- CLI ----
function splitKeyValue(kv) {
  const i = kv.indexOf('=');
  if (i <= 0) throw new Error(`--env wants KEY=VALUE, got ${kv}`);
  return [kv.slice(0, i), kv.slice(i + 1)];
}

function main(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      'listener-port': { type: 'string' },
      'listener-address': { type: 'string' },
      'admin-port': { type: 'string' },
      'backend-port': { type: 'string' },
      'sse-backend-port': { type: 'string' },
      'jwks-port': { type: 'string' },
      'plugin-config': { type: 'string' }, // a JSON file, or inline JSON text starting with '{'
      'wasm-path': { type: 'string' },
      'cert-dir': { type: 'string' },
      env: { type: 'string', multiple: true }, // KEY=VALUE, repeatable
      'access-log-path': { type: 'string' },
      'extra-clusters': { type: 'string' }, // a YAML or JSON file holding an array of clusters
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\nimport ')[0]);
    return;
  }
  const pc = values['plugin-config'];
  const opts = {
    listenerPort: values['listener-port'],
    listenerAddress: values['listener-address'],
    adminPort: values['admin-port'],
    backendPort: values['backend-port'],
    sseBackendPort: values['sse-backend-port'],
    jwksPort: values['jwks-port'],
    // Passed on as text, unparsed: a deliberately broken config can be rendered too.
    pluginConfig: pc === undefined || pc.trimStart().startsWith('{') ? pc : readFileSync(pc, 'utf8'),
    wasmPath: values['wasm-path'],
    certDir: values['cert-dir'],
    envKeyValues: values.env && Object.fromEntries(values.env.map(splitKeyValue)),
    accessLogPath: values['access-log-path'],
    extraClusters: values['extra-clusters'] && YAML.parse(readFileSync(values['extra-clusters'], 'utf8')),
  };
  const text = renderEnvoyConfig(opts);
  if (values.output) writeFileSync(values.output, text);
  else process.stdout.write(text);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
