// Preload for backends started by the suite (node --import): a server that listens on a bare port,
// like server-everything's `app.listen(PORT)`, listens on 127.0.0.1 only. The MCP server has no
// authentication of its own; in tests it must be reachable through Envoy only.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const barePort = typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0]));
  if (barePort && typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  return listen.apply(this, args);
};
