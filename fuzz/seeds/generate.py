#!/usr/bin/env python3
"""Writes the hand-made seed corpora under fuzz/seeds/<target>/ (run: python3 fuzz/seeds/generate.py).

Deterministic but for PS256 signatures (randomised by design); a seed that differs from the
file already there only in such a signature is left as it is, so a rerun changes nothing. Tokens are minted for the
fixture in fuzz/src/lib.rs: its fixed clock NOW, issuers, audience and keys. The RSA and Ed25519
private keys below are fuzz-only keys whose public halves are RSA_PUBLIC_JWK and ED_PUBLIC_JWK in
fuzz/src/lib.rs; like every key there they are public and must never be used anywhere else.
Needs the `cryptography` package (python3 -m pip install cryptography).
"""
import base64, hashlib, hmac, json, os
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = 1_800_000_000
ORIGIN = "https://mcp.example.com"
RESOURCE = ORIGIN + "/mcp"
HS_ISSUER = "https://hs.example.com"
KEYS_ISSUER = "https://keys.example.com"
HS_SECRET = b"fuzz-secret-fuzz-secret-fuzz-sec"
ES_D = "cmKNDIfYBTVMDSZg6E0gbFXys_ITazkmRJkHJbZa9bA"
RSA_PEM = b"""-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDK/WWYCCrY3mgb
u7ioq3+XtLJ+faUZOKofu8e4erP9AB9JkM6V36pYOVynVjn4343hr3nLuySefb8y
fg1Jzr1FYjewDqzVQyU8udl+z+nm2WpyBKg/MOwJ17ywNAMiM+M7rfAefP2wRFW4
dJEBTFmFATF5qQntbRhDRA91WNl/jLmnRplfF3kYVMSag+UR2bPBMP5K/+dn/yPs
CwQrR9KablOZFZVkLQ7c7ga9znJFGk8KSBmNNhbqYmPQblIZzRzCuSj4/4qtXhX3
hGVXGJ3NKACA+jS3C0NR0998rm0XXSsfswWleDC+oHURVlqNQC1qS+gPxR42wkS7
bSR7n8wXAgMBAAECggEABLcIdah2SvAiV5/M+zWvCzh6O4djrbFV1Q2PIhdFZHdi
/bx+1rS/3emXfXnc/RdTUhW5x/CP/xKalkk8axa81eQDpYKGD746QlBW+CjBepv3
OWudlLAFzCnOzZ/jWfnqLpC7dsHUj8VkugY6MvLd8F85dFHKMVuXUi8guFTz9jd+
B9ZN2BqDqsv7qykuoiK5h+A3H2XvOA07kNOT0/QEcEExKpA9rZq5zOvpG34FggJ2
Wid5PciLmL4FQfYOsjTYR2neSEsuP8RKmgkLejYZY6zXhbkb7Ic7Np8eD+k9nf3z
SIfOJyoHXVumVSLpzPCpe/ARcUogJ4x5CX+6wMn5kQKBgQDql3fhVdoe8/c7wZ3A
y37i4kUFNQdT8MmIyAZe1RmtRa0sNSkEh5bdBtSQ39ijRhC50Z0h0XAFpLuXI+PC
D9cC+NVvC5Pn6lhGO+9sqf0Ld9IiI2Q46Nv0WvDSXRUl3txtcWMAzjJtvO/iG6vI
NYPhEeIwabFgdfQSQMSu3dOyUQKBgQDdg6VttSIYa1plmrh5DoHjLzUZ8AAQ1rZT
rYtPpHUCRgzOCunAHHFZXsyRzLHSllZUmT8B2FwTbECzcEo2D/nps0c8raAklb7u
Nq1XSXXoQSEK/0+bCg8+j2twRjUfK4k2jZavIzdJrZU6MgRzIGal081Yi/KTbDAl
8uFwitVV5wKBgQDnuXbRPtyWdqZggIAzUM+ljZxf6GG0qMRqOCsSwaz7WzgT0u8R
al27NmQCNxrnLO6YnlV4ckkVSgOC6BCyQLNCXEl3xxfynalUtx9pVwB9s339+rek
/19FoA8BvLCHF/zknnwM76EghODvmCW3PiVmzSOAbuanQdw1q4SctsHGAQKBgQCj
q0yE5eveTRvKrOoWkBCKcuvyUTFLP8oRw82GOAY4etelOc0CpEFf/jp6k9rjtS7u
bRhv3ZQSyc54hsRec6l88nj1LXiA75/WVNH5B48130Fx5bjE3kbrO37vwwAnGrzU
cQNgPk3wg3AaQrCk+9C8P+WewjCmmq5sq6vEwt/kCwKBgBf6/QHwQSGMBv0QCyIl
dA/WvBzTaRcGAq4fvv+ZWIvsaMQzY1cORgG2c8vNqaYZACLiaciPAGOmd0f65dL3
BHcGHhQv/q4AdqHNdj5VgE10RiqUVXf+uq0M3mHouC1E+ykA9rETPtjnSk14EF2c
9PGgCN+4XZA/qidi3plYW7JV
-----END PRIVATE KEY-----"""
ED_PEM = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIIxD73jSlEfiDHwaYfhY9aOZNqrtWsShVlTqfRLsLNxG
-----END PRIVATE KEY-----"""
REDIRECT = "http://127.0.0.1:7777/callback"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
FORM = "application/x-www-form-urlencoded"
# The federation target's provider; its key (IDP_PRIVATE_JWK in fuzz/src/lib.rs) signs the
# id_tokens the harness mints from the seeds' claims ($ID_TOKEN), so none is minted here.
IDP = "https://idp.example.com"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def js(value):
    return json.dumps(value, separators=(",", ":"))


def sign(alg, header, claims):
    header = dict({"alg": alg, "typ": "at+jwt"}, **header)
    signing_input = (b64(js(header).encode()) + "." + b64(js(claims).encode())).encode()
    if alg.startswith("HS"):
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        signature = hmac.new(HS_SECRET, signing_input, digest).digest()
    elif alg == "ES256":
        key = ec.derive_private_key(int.from_bytes(base64.urlsafe_b64decode(ES_D + "="), "big"), ec.SECP256R1())
        r, s = utils.decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg in ("RS256", "PS256"):
        key = serialization.load_pem_private_key(RSA_PEM, None)
        pad = padding.PKCS1v15() if alg == "RS256" else padding.PSS(padding.MGF1(hashes.SHA256()), 32)
        signature = key.sign(signing_input, pad, hashes.SHA256())
    else:  # EdDSA
        signature = serialization.load_pem_private_key(ED_PEM, None).sign(signing_input)
    return signing_input.decode() + "." + b64(signature)


def claims(iss=HS_ISSUER, **extra):
    base = {"iss": iss, "aud": RESOURCE, "sub": "alice", "client_id": "cli", "scope": "mcp:tools",
            "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 900, "jti": "j-1"}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


WRITTEN = set()


def write(target, name, data):
    data = data if isinstance(data, bytes) else data.encode()
    path = os.path.join(HERE, target, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    WRITTEN.add(path)
    if os.path.exists(path):
        with open(path, "rb") as f:
            old = f.read()
        # Same up to a last (signature) part of the same length: a re-signed token, keep it.
        if old == data or (b"." in data and len(old) == len(data)
                           and old[:data.rindex(b".")] == data[:data.rindex(b".")]):
            return
    with open(path, "wb") as f:
        f.write(data)


def lines(*parts):
    return "\n".join(parts)


def main():
    generate()
    # Seeds no longer generated go away.
    for entry in os.listdir(HERE):
        folder = os.path.join(HERE, entry)
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if os.path.join(folder, name) not in WRITTEN:
                    os.remove(os.path.join(folder, name))


def generate():
    hs = sign("HS256", {"kid": "hs"}, claims())
    tokens = {
        "hs256": hs,
        "hs384-nokid": sign("HS384", {}, claims(scope="mcp:tools admin")),
        "hs512-scp": sign("HS512", {}, claims(scope=None, scp=["mcp:tools", "admin"], azp="app")),
        "es256-authz": sign("ES256", {"kid": "fuzz-es"}, claims(iss=ORIGIN)),
        "es256-keys": sign("ES256", {"kid": "fuzz-es"}, claims(iss=KEYS_ISSUER, aud=[RESOURCE, ORIGIN + "/sse"])),
        "rs256": sign("RS256", {"kid": "fuzz-rs"}, claims(iss=KEYS_ISSUER)),
        "ps256": sign("PS256", {"kid": "fuzz-rs"}, claims(iss=KEYS_ISSUER)),
        "eddsa": sign("EdDSA", {"kid": "fuzz-ed"}, claims(iss=KEYS_ISSUER)),
        "expired": sign("HS256", {}, claims(exp=NOW - 3600)),
        "future": sign("HS256", {}, claims(nbf=NOW + 3600, iat=NOW + 3600)),
        "crit": sign("HS256", {"crit": ["exp"]}, claims()),
        "unknown-kid": sign("HS256", {"kid": "nope"}, claims()),
        "wrong-aud": sign("HS256", {}, claims(aud="https://other.example/mcp")),
        "none": b64(b'{"alg":"none"}') + "." + b64(js(claims()).encode()) + ".",
    }
    # bearer: Authorization header values, one per line.
    for name, token in tokens.items():
        write("bearer", name, "Bearer " + token)
    write("bearer", "scheme-case", "bEaReR   " + hs)
    write("bearer", "basic", "Basic dXNlcjpwdw==")
    write("bearer", "two", "Bearer a.b.c\nBearer " + hs)
    write("bearer", "empty", "Bearer ")
    write("bearer", "joined", "Bearer a, Bearer b")
    write("bearer", "bad-chars", 'Bearer a"b')

    # jwt: mode 0 + token text, or mode 1 + header JSON \n payload JSON (signed HS256 by the harness).
    for name, token in tokens.items():
        write("jwt", name, b"\x00" + token.encode())
    signed = {
        "claims": ({"alg": "HS256", "typ": "at+jwt"}, claims()),
        "claims-kid": ({"alg": "HS256", "kid": "hs"}, claims(aud=[RESOURCE, "x"], scope="b a b")),
        "claims-scp": ({"alg": "HS256"}, claims(scope=None, scp=["mcp:tools"], client_id=None, azp="x")),
        "claims-no-exp": ({"alg": "HS256"}, claims(exp=None)),
        "claims-huge-exp": ({"alg": "HS256"}, claims(exp=1e30)),
        "claims-float-times": ({"alg": "HS256"}, claims(exp=NOW + 0.5, iat=NOW - 0.5)),
        "claims-bad-types": ({"alg": "HS256"}, claims(scope=7, client_id=["x"])),
        "claims-iss-keys": ({"alg": "HS256"}, claims(iss=KEYS_ISSUER)),
    }
    for name, (header, payload) in signed.items():
        write("jwt", name, b"\x01" + lines(js(header), js(payload)).encode())

    # jwks: JWK Sets as fetched or configured.
    es = {"kty": "EC", "crv": "P-256", "kid": "fuzz-es", "use": "sig", "alg": "ES256",
          "x": "eHoqxRui7Yw0JS2IZ--rQomXduiWa5Nw8lWe-hYiXaY", "y": "CZ6i_0YIfv-rcOyItOx0N36i47tSwY7nR8HEoAI3HdM"}
    rsa_pub = serialization.load_pem_private_key(RSA_PEM, None).public_key().public_numbers()
    rs = {"kty": "RSA", "kid": "fuzz-rs", "n": b64(rsa_pub.n.to_bytes(256, "big")), "e": "AQAB"}
    ed_raw = serialization.load_pem_private_key(ED_PEM, None).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ed = {"kty": "OKP", "crv": "Ed25519", "kid": "fuzz-ed", "x": b64(ed_raw)}
    oct_key = {"kty": "oct", "kid": "hs", "k": b64(HS_SECRET)}
    jwks = {
        "fixture": [es, rs, ed],
        "rsa-ps256": [dict(rs, alg="PS256", key_ops=["verify"])],
        "mixed-oct": [es, oct_key],
        "oct-only": [oct_key],
        "enc-and-sig": [dict(rs, use="enc"), es],
        "private": [dict(es, d=ES_D)],
        "p384-bad": [{"kty": "EC", "crv": "P-384", "x": es["x"], "y": es["y"]}],
        "x5c": [dict(rs, x5c=["MIIB"], x5t="abc")],
        "empty": [],
    }
    for name, keys in jwks.items():
        write("jwks", name, js({"keys": keys}))
    write("jwks", "not-a-set", js({"kty": "RSA"}))

    # form: bodies and query strings; also name TAB value lines for the round trip.
    write("form", "token-code", "grant_type=authorization_code&code=abc&code_verifier=" + VERIFIER
          + "&redirect_uri=http%3A%2F%2F127.0.0.1%3A7777%2Fcallback&client_id=app")
    write("form", "repeated", "a=1&b=2&a=3")
    write("form", "odd-escapes", "%zz=%&+=+&&=x&y&%E2%82%AC=%C3%28")
    write("form", "pairs", "scope\tmcp:tools mcp:write\nstate\ts&t=u\nempty\t\n\tno name")

    # token: Authorization \n Content-Type \n Code JSON \n Refresh JSON \n body.
    code = {"jti": "code-1", "client_id": "app", "redirect_uri": REDIRECT, "code_challenge": CHALLENGE,
            "scope": "mcp:tools", "resource": RESOURCE, "sub": "alice", "exp": NOW + 60}
    refresh = {"fam": "fam-1", "gen": 0, "client_id": "app", "scope": "mcp:tools mcp:write",
               "resource": RESOURCE, "sub": "alice", "exp": NOW + 3600}
    basic = "Basic " + base64.b64encode(b"svc:svc-secret").decode()
    write("token", "client-credentials-basic", lines(basic, FORM, "", "", "grant_type=client_credentials&scope=mcp%3Atools"))
    write("token", "client-credentials-post", lines("", FORM, "", "", "grant_type=client_credentials&client_id=svc&client_secret=svc-secret&resource=https%3A%2F%2Fmcp.example.com%2Fsse"))
    write("token", "authorization-code", lines("", FORM, js(code), "", "grant_type=authorization_code&code=$CODE&code_verifier=" + VERIFIER
          + "&redirect_uri=http%3A%2F%2F127.0.0.1%3A7777%2Fcallback&client_id=app&resource=https%3A%2F%2Fmcp.example.com%2Fmcp"))
    write("token", "refresh", lines("", FORM + "; charset=utf-8", "", js(refresh), "grant_type=refresh_token&refresh_token=$REFRESH&client_id=app&scope=mcp%3Atools"))
    write("token", "refresh-late-gen", lines("", FORM, "", js(dict(refresh, gen=41)), "grant_type=refresh_token&refresh_token=$REFRESH&client_id=app"))
    write("token", "refresh-last-gen", lines("", FORM, "", js(dict(refresh, gen=2**64 - 1)), "grant_type=refresh_token&refresh_token=$REFRESH&client_id=app"))
    # Found by the fuzzer: rotates into the last generation, which ends the grant.
    write("token", "refresh-next-to-last-gen", lines("", FORM, "", js(dict(refresh, gen=2**64 - 2)), "grant_type=refresh_token&refresh_token=$REFRESH&client_id=app"))
    write("token", "basic-bad", lines("Basic !!!", FORM, "", "", "grant_type=client_credentials"))
    write("token", "json-body", lines("", "application/json", "", "", js({"grant_type": "client_credentials"})))

    # register: Authorization \n Content-Type \n body.
    regs = {
        "public-loopback": {"redirect_uris": ["http://127.0.0.1:3000/cb"], "client_name": "Inspector",
                            "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
                            "response_types": ["code"], "scope": "mcp:tools"},
        "confidential-cc": {"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post",
                            "scope": "mcp:tools mcp:write"},
        "native-scheme": {"redirect_uris": ["com.example.app:/oauth/cb"], "application_type": "native"},
        "https-basic": {"redirect_uris": ["https://app.example.com/cb", "https://app.example.com/cb2"],
                        "client_name": "Web \u00e9 app", "logo_uri": "https://x/logo.png"},
        "bad-types": {"redirect_uris": "https://x/cb", "grant_types": [1]},
        # Upper case next to a non-ASCII host: reached a debug assertion in the ASCII-only
        # IDNA adapter (a fuzz-smoke run); now refused before the URL parser.
        "unicode-host-mixed-case": {"redirect_uris": ["https://app.exaMPLE.comDDD\ud29c/cb"]},
        # The same through a percent-encoded byte in an ASCII host (a later fuzz-smoke run).
        "encoded-host-mixed-case": {"redirect_uris": ["https://ap.e0X%cb2/cb"]},
    }
    for name, meta in regs.items():
        write("register", name, lines("", "application/json", js(meta)))
    write("register", "with-bearer", lines("Bearer iat-123", "application/json; charset=utf-8", "{}"))

    # jsonrpc: caller byte + body.
    def rpc(method, params=None, id=1):
        m = {"jsonrpc": "2.0", "method": method}
        if id is not None:
            m["id"] = id
        if params is not None:
            m["params"] = params
        return m
    bodies = {
        "tools-call": rpc("tools/call", {"name": "echo", "arguments": {"message": "hi"}}),
        "tools-delete": rpc("tools/call", {"name": "delete_file", "arguments": {}}, id="x"),
        "tools-forbidden": rpc("tools/call", {"name": "forbidden"}),
        "resources-secret": rpc("resources/read", {"uri": "file:///secret/key"}),
        "prompts-get": rpc("prompts/get", {"name": "p1"}),
        "initialize": rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "f", "version": "1"}}),
        "notification": rpc("notifications/initialized", id=None),
        "batch": [rpc("tools/list", id=1), rpc("tools/call", {"name": "get_x"}, id=2), {"jsonrpc": "2.0", "id": 9, "result": {}}],
        "response": {"jsonrpc": "2.0", "id": 5, "error": {"code": 1, "message": "no"}},
    }
    for i, (name, body) in enumerate(bodies.items()):
        write("jsonrpc", name, bytes([i % 3]) + js(body).encode())
    # The caller with every scope and a list request in a batch (found a harness bug: scopes unsorted).
    write("jsonrpc", "batch-all-scopes", bytes([2]) + js(bodies["batch"]).encode())
    write("jsonrpc", "not-json", b"\x01{\"jsonrpc\":\"2.0\",")

    # listing: caller byte + chunk-size byte + the backend's answer (JSON or SSE).
    tools = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [
        {"name": "echo", "annotations": {"readOnlyHint": True}},
        {"name": "delete_file", "annotations": {"destructiveHint": True}},
        {"name": "forbidden"}, {"name": "get_x"}, {"name": "search", "annotations": {"readOnlyHint": False}}]}}
    prompts = {"jsonrpc": "2.0", "id": "p", "result": {"prompts": [{"name": "p1"}, {"name": "long"}]}}
    resources = {"jsonrpc": "2.0", "id": 3, "result": {"resources": [{"uri": "file:///secret/a"}, {"uri": "file:///pub"}]}}
    write("listing", "tools-json", b"\x00\x07" + js(tools).encode())
    write("listing", "batch-json", b"\x01\x03" + js([tools, prompts, resources]).encode())
    sse = "event: message\nid: 1\ndata: " + js(tools) + "\n\n: keepalive\n\ndata: " + js(prompts) + "\n\n"
    write("listing", "tools-sse", b"\x02\x05" + sse.encode())
    crlf = "event: message\r\ndata: " + js(resources) + "\r\n\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{\"tools\":[]}}\r\n\r\n"
    write("listing", "resources-sse-crlf", b"\x00\x01" + crlf.encode())

    # answers: case byte + status \n Cache-Control \n body (introspection, client metadata
    # document, backend token endpoint).
    active = {"active": True, "sub": "alice", "client_id": "c", "scope": "mcp:tools other", "exp": NOW + 300,
              "iat": NOW - 10, "iss": "https://idp.example.com", "aud": RESOURCE, "jti": "op-1"}
    write("answers", "introspection-active-post", b"\x00" + lines("200", "", js(active)).encode())
    write("answers", "introspection-active-get", b"\x01" + lines("200", "", js(dict(active, aud=[RESOURCE, "x"], scope="mcp:tools"))).encode())
    write("answers", "introspection-expiring", b"\x00" + lines("200", "", js({"active": True, "exp": NOW + 1})).encode())
    write("answers", "introspection-expired", b"\x01" + lines("200", "", js({"active": True, "exp": NOW - 1})).encode())
    # What the fuzzer found (exp == now was cached as active until now, so the filter called out again).
    write("answers", "introspection-exp-now", b"\x01" + lines("200", "", js({"active": True, "exp": NOW})).encode())
    write("answers", "introspection-inactive", b"\x00" + lines("200", "", js({"active": False})).encode())
    write("answers", "introspection-failed", b"\x01" + lines("", "", "").encode())
    document = {"client_id": "https://app.example.com/client.json", "client_name": "App",
                "redirect_uris": ["https://app.example.com/cb", "http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}
    write("answers", "document", b"\x02" + lines("200", "public, max-age=600", js(document)).encode())
    write("answers", "document-no-store", b"\x02" + lines("200", "no-store", js(dict(document, client_secret="x"))).encode())
    write("answers", "document-404", b"\x02" + lines("404", "", "").encode())
    write("answers", "backend-token", b"\x03" + lines("200", "", js({"access_token": "backend-token", "token_type": "Bearer", "expires_in": 300})).encode())
    write("answers", "backend-token-odd", b"\x03" + lines("200", "", js({"access_token": "a b", "expires_in": -1})).encode())

    # federation: case byte (provider variant; bit 2: keys cached 120 s earlier), then the
    # callback's query, discovery status and body, token status and body, id_token header and
    # claims, key set status and body, userinfo status and body.
    def fed(case, query="code=upstream-code", discovery=None, token=None, header="", claims=None,
            keys=None, userinfo=None, statuses=("200", "200", "200", "200")):
        discovery = {"issuer": IDP, "authorization_endpoint": IDP + "/auth", "token_endpoint": IDP + "/token",
                     "jwks_uri": IDP + "/jwks", "userinfo_endpoint": IDP + "/userinfo"} if discovery is None else discovery
        token = {"access_token": "up-at", "token_type": "Bearer", "expires_in": 300, "refresh_token": "up-rt",
                 "id_token": "$ID_TOKEN"} if token is None else token
        claims = {"iss": IDP, "aud": "gateway", "sub": "u-1", "nonce": "$NONCE", "iat": NOW, "exp": NOW + 300,
                  "email": "alice@example.com", "email_verified": True, "groups": ["admins"],
                  "roles": ["staff", "admin"]} if claims is None else claims
        keys = {"keys": ["$KEY"]} if keys is None else keys
        userinfo = {"sub": "u-1", "email": "alice@example.com", "roles": ["staff"]} if userinfo is None else userinfo
        body = lambda v: v if isinstance(v, str) else js(v).replace('"$KEY"', "$KEY")
        return bytes([case]) + lines(query, statuses[0], body(discovery), statuses[1], body(token), header,
                                     body(claims), statuses[2], body(keys), statuses[3], body(userinfo)).encode()
    github = {"id": 424242, "login": "octo", "email": "octo@example.com"}
    plain_token = {"access_token": "gho_x", "token_type": "bearer"}
    feds = {
        "oidc-discovery": fed(0),
        "oidc-discovery-keys-cached": fed(4),
        "oidc-unknown-kid": fed(4, header=js({"alg": "ES256", "kid": "rotated"})),
        "oidc-no-kid": fed(0, header=js({"alg": "ES256"})),
        "oidc-hs256-header": fed(0, header=js({"alg": "HS256", "kid": "fuzz-idp"})),
        "oidc-wrong-nonce": fed(0, claims={"iss": IDP, "aud": "gateway", "sub": "u-1", "nonce": "other", "exp": NOW + 300}),
        "oidc-two-audiences": fed(0, claims={"iss": IDP, "aud": ["gateway", "other"], "azp": "gateway", "sub": "u-1",
                                              "nonce": "$NONCE", "exp": NOW + 300, "email": "a@example.com", "email_verified": "true"}),
        "oidc-expired": fed(0, claims={"iss": IDP, "aud": "gateway", "sub": "u-1", "nonce": "$NONCE", "exp": NOW - 61}),
        "oidc-outsider": fed(0, claims={"iss": IDP, "aud": "gateway", "sub": "u-3", "nonce": "$NONCE", "exp": NOW + 300,
                                         "email": "eve@other.org", "email_verified": True}),
        "oidc-other-issuer-document": fed(0, discovery={"issuer": "https://evil.example", "authorization_endpoint": "https://evil.example/a",
                                                        "token_endpoint": "https://evil.example/t", "jwks_uri": "https://evil.example/k"}),
        "oidc-discovery-failed": fed(0, statuses=("", "200", "200", "200")),
        "oidc-exchange-refused": fed(0, token={"error": "invalid_grant"}, statuses=("200", "400", "200", "200")),
        "oidc-keys-404": fed(0, statuses=("200", "200", "404", "200")),
        "oidc-raw-id-token": fed(0, token={"access_token": "up-at", "id_token": "a.b.c"}),
        "oidc-provider-refused": fed(0, query="error=access_denied&error_description=no"),
        "oidc-no-code": fed(0, query=""),
        "endpoints-userinfo": fed(1),
        "endpoints-userinfo-other-account": fed(1, userinfo={"sub": "u-2", "roles": ["staff"]}),
        "endpoints-not-staff": fed(1, claims={"iss": IDP, "aud": "gateway", "sub": "u-1", "nonce": "$NONCE", "exp": NOW + 300, "roles": "guest"},
                                  userinfo={"sub": "u-1", "roles": ["guest"]}),
        "endpoints-refresh-soon": fed(1, token={"access_token": "up-at", "refresh_token": "up-rt", "expires_in": 30, "id_token": "$ID_TOKEN"}),
        "plain-oauth": fed(2, token=plain_token, userinfo=github),
        "plain-oauth-email": fed(2, token=dict(plain_token, expires_in="3600"), userinfo={"id": "7", "login": "other", "email": "OCTO@example.com", "email_verified": True}),
        "plain-oauth-not-listed": fed(2, token=plain_token, userinfo={"id": 7, "login": "octo"}),
        "plain-oauth-userinfo-401": fed(2, token=plain_token, userinfo={"message": "Bad credentials"}, statuses=("200", "200", "200", "401")),
        "discovery-userinfo": fed(3),
        "discovery-userinfo-no-endpoint": fed(3, discovery={"issuer": IDP, "authorization_endpoint": IDP + "/auth", "token_endpoint": IDP + "/token", "jwks_uri": IDP + "/jwks"}),
    }
    # Spotted while writing the target, then reproduced with it (its first 60 s run had not
    # found them): control characters in a discovered endpoint went into the Location of the
    # redirect to the provider; an access token with CR LF went into the Bearer header to
    # userinfo; a refresh answered with expires_in 0 was refreshed again, 10 calls for one request.
    crlf_doc = {"issuer": IDP, "authorization_endpoint": IDP + "/auth\r\nx-evil: 1", "token_endpoint": IDP + "/token",
                "jwks_uri": IDP + "/jwks"}
    feds["oidc-endpoint-crlf"] = fed(0, discovery=crlf_doc)
    feds["plain-oauth-token-crlf"] = fed(2, token=dict(plain_token, access_token="gho_x\r\nx-evil: 1"), userinfo=github)
    feds["endpoints-refresh-expires-at-once"] = fed(1, token={"access_token": "up-at", "refresh_token": "up-rt", "expires_in": 0,
                                                             "id_token": "$ID_TOKEN"})
    for name, seed in feds.items():
        write("federation", name, seed)

    # config: plugin configurations.
    configs = {
        "readme-idp": {"resource": "https://mcp.example.com/mcp", "authorization_servers": ["https://idp.example.com"],
                       "issuers": [{"issuer": "https://idp.example.com", "remote_jwks": {"uri": "https://idp.example.com/.well-known/jwks.json", "cluster": "jwks"}}],
                       "routes": [{"prefix": "/mcp", "scopes": ["mcp:tools"]}]},
        "authz-env": {"resource": "https://mcp.example.com/mcp", "routes": [{"prefix": "/mcp", "scopes": ["mcp:tools"]}],
                      "authorization_server": {"signing_keys": [{"jwk_env": "SIGNING_JWK"}], "sealing_keys": [{"kid": "s1", "value_env": "SEALING_KEY"}],
                                               "users": [{"username": "alice", "password_hash": "pbkdf2-sha256$10000$c2FsdHNhbHQ$" + b64(hashlib.pbkdf2_hmac("sha256", b"pw", b"saltsalt", 10000))}],
                                               "clients": [{"client_id": "svc", "client_secret_hash": "sha256$" + b64(hashlib.sha256(b"s").digest())}],
                                               "registration": {"enabled": True, "initial_access_token_hashes": ["sha256$" + b64(hashlib.sha256(b"iat").digest())]},
                                               "access_token_ttl_seconds": 900.0}},
        "issuers-mixed": {"resource": "https://mcp.example.com/mcp", "authorization_servers": [HS_ISSUER, KEYS_ISSUER], "leeway_seconds": 30, "max_token_bytes": 8192, "token_cache_entries": 100,
                          "issuers": [{"issuer": HS_ISSUER, "algorithms": ["HS256"], "secrets": [{"value_env": "HS_SECRET"}]},
                                      {"issuer": KEYS_ISSUER, "jwks": {"keys": [es, rs, ed]}},
                                      {"issuer": "https://env.example.com", "jwks_env": "JWKS"}],
                          "routes": [{"prefix": "/mcp", "methods": ["POST", "GET"], "scopes": ["a", "b"]}, {"prefix": "/sse", "resource": "https://mcp.example.com/sse"}],
                          "public_paths": ["/public"], "unmatched": "authenticate", "health_path": "/healthz",
                          "identity_headers": {"subject": "x-sub", "scopes": "x-scopes"},
                          "cors": {"allowed_origins": ["https://app.example.com"]}},
        "mcp-policy": {"resource": "https://mcp.example.com/mcp", "authorization_servers": [HS_ISSUER], "issuers": [{"issuer": HS_ISSUER, "secrets": [{"value": HS_SECRET.decode()}]}],
                       "mcp": {"endpoints": ["/mcp"], "max_body_bytes": 1024.0, "rules": [{"method": "tools/*", "name": "a?c*", "scopes": ["x"]}],
                               "clients": [{"client_id": "svc", "allow_tools": ["*"], "deny_tools": ["x"]}],
                               "annotation_scopes": {"read_only": "r", "write": "w"}, "stats_per_tool": True}},
        "introspection": {"resource": "https://mcp.example.com/mcp", "authorization_servers": ["https://idp.example.com"],
                          "introspection": {"endpoint": "https://idp.example.com/introspect", "cluster": "idp", "client_id": "gw",
                                            "client_secret_env": "CLIENT_SECRET", "max_cache_seconds": 60, "when_unavailable": "deny"},
                          "backend_credentials": [{"name": "backend", "token_endpoint": "https://idp.example.com/token", "cluster": "idp",
                                                   "client_id": "gw", "client_secret": "s", "scope": "backend"}],
                          "routes": [{"prefix": "/mcp", "backend_credential": "backend"}]},
    }
    no_cache = json.loads(js(configs["introspection"]))
    no_cache["introspection"]["max_cache_seconds"] = 0
    configs["introspection-no-cache"] = no_cache
    for name, config in configs.items():
        write("config", name, js(config))


main()
