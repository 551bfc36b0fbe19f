// Child processes and servers started by the suite; all are torn down by pid even when tests fail
// or the test process exits abnormally.
import { spawn } from "node:child_process";
import net from "node:net";

const live = new Set(); // child processes still running

function killAllSync() {
  for (const child of live) {
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  live.clear();
}
process.on("exit", killAllSync);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(sig, () => {
    killAllSync();
    process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGTERM" ? 15 : 1));
  });
}

/** spawn() that registers the child for cleanup. Returns {child, exited} where exited resolves to {code, signal}. */
export function spawnTracked(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
  live.add(child);
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
    child.once("error", (err) => {
      live.delete(child);
      resolve({ code: null, signal: null, error: err });
    });
  });
  return { child, exited };
}

/** Stop a tracked child by pid: SIGTERM, then SIGKILL after graceMs. */
export async function stopTracked({ child, exited }, graceMs = 2000) {
  if (child.exitCode !== null || child.signalCode !== null) return exited;
  try {
    process.kill(child.pid, "SIGTERM");
  } catch {
    return exited;
  }
  let timer;
  const killer = new Promise((resolve) => {
    timer = setTimeout(() => {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        /* gone */
      }
      resolve();
    }, graceMs);
  });
  await Promise.race([exited, killer]);
  clearTimeout(timer);
  return exited;
}

const handedOut = new Set();
/** A free TCP port on 127.0.0.1 (bind :0, close). Never hands out the same port twice in one process. */
export async function freePort() {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.once("error", reject);
      srv.listen(0, "127.0.0.1", () => {
        const { port } = srv.address();
        srv.close(() => resolve(port));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("could not find a free port");
}

/** True when something accepts TCP connections on host:port. */
export function canConnect(port, host = "127.0.0.1", timeoutMs = 500) {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export { sleep };

/**
 * Poll `check` (async, returns truthy when done) every `intervalMs` until `timeoutMs`.
 * `abort` (optional) is a function returning an Error to stop early (e.g. the process exited).
 */
export async function waitFor(check, { timeoutMs = 10000, intervalMs = 50, what = "condition", abort } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  while (Date.now() < deadline) {
    const stop = abort && abort();
    if (stop) throw stop;
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr.message})` : ""}`);
}
