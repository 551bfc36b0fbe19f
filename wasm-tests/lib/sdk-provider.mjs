// An OAuthClientProvider for the @modelcontextprotocol/sdk client that keeps in memory exactly
// what the SDK hands it, and whose "browser" is a person signing in and approving with real form
// posts (lib/authz.mjs). Tests extend it with what they need to observe.
import { randomBytes } from "node:crypto";
import { Agent, authorizeFlow } from "./authz.mjs";

export class FormPostingProvider {
  /**
   * `origin`: the gateway; `redirect`: the client's redirect URI; `user`: {username, password};
   * `client`: pre-registered client information, or undefined to register dynamically.
   */
  constructor({ origin, redirect, clientName, grantTypes = ["authorization_code", "refresh_token"], user, client }) {
    this.origin = origin;
    this.redirect = redirect;
    this.clientName = clientName;
    this.grantTypes = grantTypes;
    this.user = user;
    this.client = client;
    this.savedTokens = [];
    this.verifier = undefined;
    this.states = [];
    this.authorizations = []; // {url, flow}
    this.registrations = [];
    this.agent = new Agent(origin);
  }
  get redirectUrl() {
    return this.redirect;
  }
  get clientMetadata() {
    return {
      client_name: this.clientName,
      redirect_uris: [this.redirect],
      grant_types: this.grantTypes,
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  state() {
    const s = randomBytes(16).toString("base64url");
    this.states.push(s);
    return s;
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.client = info;
    this.registrations.push(info);
  }
  tokens() {
    return this.savedTokens.at(-1);
  }
  saveTokens(t) {
    this.savedTokens.push(t);
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
  async redirectToAuthorization(url) {
    const flow = await authorizeFlow(this.agent, url.href, { username: this.user.username, password: this.user.password });
    this.authorizations.push({ url: new URL(url.href), flow });
  }
}
