// Keys and tokens for the tests, minted with jose: HS256, ES256, RS256, plus deliberately bad tokens.
import { SignJWT, generateKeyPair, exportJWK, exportSPKI, base64url } from "jose";
import { createHmac, randomBytes } from "node:crypto";

export const now = () => Math.floor(Date.now() / 1000);

/** An HMAC secret (text, >= 32 bytes) with its kid. */
export function hsKey(kid = "hs-1") {
  const value = randomBytes(24).toString("base64url"); // 32 ASCII chars
  return { alg: "HS256", kid, value, secret: new TextEncoder().encode(value) };
}

/** An asymmetric key pair: { alg, kid, privateKey, publicKey, publicJwk (with kid, alg, use), spki (PEM) }. */
export async function keyPair(alg, kid) {
  const opts = alg === "RS256" ? { modulusLength: 2048, extractable: true } : { extractable: true };
  const { privateKey, publicKey } = await generateKeyPair(alg, opts);
  const jwk = await exportJWK(publicKey);
  const publicJwk = { ...jwk, kid, alg, use: "sig" };
  const spki = await exportSPKI(publicKey);
  return { alg, kid, privateKey, publicKey, publicJwk, spki };
}

/**
 * Sign a JWT. `key` is from hsKey() or keyPair(). `claims` are merged over sensible defaults
 * (iat now, exp now+300). `header` overrides protected header fields (kid defaults to key.kid; pass kid: undefined to omit).
 */
export async function mint(key, claims = {}, header = {}) {
  const t = now();
  const payload = { iat: t, exp: t + 300, ...claims };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  const prot = { alg: key.alg, typ: "JWT", kid: key.kid, ...header };
  for (const k of Object.keys(prot)) if (prot[k] === undefined) delete prot[k];
  const signingKey = key.secret ?? key.privateKey;
  return new SignJWT(payload).setProtectedHeader(prot).sign(signingKey);
}

const b64json = (obj) => base64url.encode(JSON.stringify(obj));

/** Build a compact JWS by hand with an HMAC-SHA256 signature over arbitrary secret bytes. */
export function hmacJws(header, payload, secretBytes) {
  const input = `${b64json(header)}.${b64json(payload)}`;
  const sig = createHmac("sha256", secretBytes).update(input).digest("base64url");
  return `${input}.${sig}`;
}

/** Flip one character in the middle of the signature (still valid base64url, wrong signature). */
export function tamperSignature(jwt) {
  const [h, p, s] = jwt.split(".");
  const i = Math.floor(s.length / 2);
  const c = s[i] === "A" ? "B" : "A";
  return `${h}.${p}.${s.slice(0, i)}${c}${s.slice(i + 1)}`;
}

/** Change the payload (e.g. elevate scope) but keep the original signature. */
export function tamperPayload(jwt, change) {
  const [h, p, s] = jwt.split(".");
  const claims = JSON.parse(new TextDecoder().decode(base64url.decode(p)));
  return `${h}.${b64json({ ...claims, ...change })}.${s}`;
}

/** alg "none": unsigned token, empty signature part. */
export function algNone(claims, header = {}) {
  const t = now();
  return `${b64json({ alg: "none", typ: "JWT", ...header })}.${b64json({ iat: t, exp: t + 300, ...claims })}.`;
}

/** The classic key-confusion attack: HS256 signed with the RSA/EC public key's PEM text (or JWK JSON) as the secret. */
export function confusedHs256(pubKey, claims, { as = "pem", kid = pubKey.kid } = {}) {
  const t = now();
  const secret = as === "pem" ? Buffer.from(pubKey.spki) : Buffer.from(JSON.stringify(pubKey.publicJwk));
  return hmacJws({ alg: "HS256", typ: "JWT", kid }, { iat: t, exp: t + 300, ...claims }, secret);
}
