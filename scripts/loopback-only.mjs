// Preload (node --import ./scripts/loopback-only.mjs ...) that makes a server which listens
// on a bare port, like server-everything's `app.listen(PORT)`, listen on 127.0.0.1 only
// (or $MCP_BACKEND_HOST). The demo MCP server has no authentication of its own: it must be
// reachable through Envoy only, not on every interface of the machine.
import net from 'node:net';

const host = process.env.MCP_BACKEND_HOST || '127.0.0.1';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const barePort = typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]));
  if (barePort && typeof args[1] !== 'string') args.splice(1, 0, host);
  return listen.apply(this, args);
};
