// A backend that records what reaches it at the earliest point: every TCP connection and every byte
// on it, and every request as soon as its headers are parsed (before, and whether or not, its body
// ends). Used to prove that a request the filter refused left no trace at all at the backend.
import http from "node:http";

/**
 * Starts the recorder on 127.0.0.1 (random port). Answers 200 `{"ok":true}` to every request.
 * Returns {port, requests, bytes, connections, mark(), since(mark), stop()}:
 *  - requests: [{method, url, headers, rawHeaders, body (string once ended, else undefined), ended, at}]
 *  - bytes: raw bytes received on all connections so far
 *  - connections: TCP connections accepted so far
 *  - mark(): a snapshot {requests, bytes, connections}; since(mark) the differences since it
 */
export async function startRecorder() {
  const requests = [];
  const state = { bytes: 0, connections: 0 };
  const server = http.createServer((req, res) => {
    const rec = {
      method: req.method,
      url: req.url,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: undefined,
      ended: false,
      at: Date.now(),
    };
    requests.push(rec); // recorded at the headers, before any body
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      rec.body = Buffer.concat(chunks).toString("utf8");
      rec.ended = true;
      const payload = JSON.stringify({ ok: true });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(payload) });
      res.end(payload);
    });
  });
  server.on("connection", (socket) => {
    state.connections++;
    socket.on("data", (d) => {
      state.bytes += d.length;
    });
  });
  const port = await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address().port));
  });
  return {
    port,
    requests,
    get bytes() {
      return state.bytes;
    },
    get connections() {
      return state.connections;
    },
    mark() {
      return { requests: requests.length, bytes: state.bytes, connections: state.connections };
    },
    since(mark) {
      return {
        requests: requests.slice(mark.requests),
        bytes: state.bytes - mark.bytes,
        connections: state.connections - mark.connections,
      };
    },
    stop: () =>
      new Promise((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}
