// Assertion helpers shared by the test files.
import assert from "node:assert/strict";

/**
 * Parse `WWW-Authenticate: Bearer a="b", c="d"` into {scheme, params (object), order (names)}.
 * Strict: quoted-string or token values, comma separated; throws on anything else.
 */
export function parseChallenge(header) {
  assert.equal(typeof header, "string", "WWW-Authenticate header missing");
  const m = /^(\S+)(?:\s+(.*))?$/s.exec(header);
  assert.ok(m, `unparseable WWW-Authenticate: ${header}`);
  const scheme = m[1];
  const rest = m[2] ?? "";
  const params = {};
  const order = [];
  const re = /\s*([A-Za-z0-9_-]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*(,|$)/gy;
  let pos = 0;
  while (pos < rest.length) {
    re.lastIndex = pos;
    const p = re.exec(rest);
    assert.ok(p, `unparseable WWW-Authenticate parameters at ${JSON.stringify(rest.slice(pos))} in ${header}`);
    const name = p[1];
    assert.ok(!(name in params), `duplicate parameter ${name} in ${header}`);
    params[name] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3];
    order.push(name);
    pos = re.lastIndex;
    if (p[4] === "") break;
  }
  return { scheme, params, order };
}

/**
 * Assert a challenge exactly: scheme Bearer (case-sensitive as we emit it), exactly the parameter names of
 * `expected`, each value equal (a RegExp value must match instead).
 */
export function assertChallenge(header, expected, note = "") {
  const { scheme, params } = parseChallenge(header);
  assert.equal(scheme, "Bearer", `scheme of ${header} ${note}`);
  assert.deepEqual(Object.keys(params).sort(), Object.keys(expected).sort(), `parameters of ${header} ${note}`);
  for (const [k, v] of Object.entries(expected)) {
    if (v instanceof RegExp) assert.match(params[k], v, `${k} in ${header} ${note}`);
    else assert.equal(params[k], v, `${k} in ${header} ${note}`);
  }
  return params;
}

/** Assert an OAuth error JSON response: status, content-type, no-store, body exactly {error, error_description}. */
export function assertOAuthError(res, status, error, description, note = "") {
  const ctx = `${note} (got ${res.status} ${res.body})`;
  assert.equal(res.status, status, `status ${ctx}`);
  assert.match(res.headers["content-type"] ?? "", /^application\/json\b/, `content-type ${ctx}`);
  assert.equal(res.headers["cache-control"], "no-store", `cache-control ${ctx}`);
  assert.ok(res.json && typeof res.json === "object", `JSON body ${ctx}`);
  assert.deepEqual(Object.keys(res.json).sort(), ["error", "error_description"], `body keys ${ctx}`);
  assert.equal(res.json.error, error, `error ${ctx}`);
  if (description instanceof RegExp) assert.match(res.json.error_description, description, `error_description ${ctx}`);
  else if (description !== undefined) assert.equal(res.json.error_description, description, `error_description ${ctx}`);
  else assert.ok(typeof res.json.error_description === "string" && res.json.error_description.length > 0, `error_description ${ctx}`);
}
