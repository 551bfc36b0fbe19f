// A real browser for the tests: Debian's Chromium (`/usr/bin/chromium`, package `chromium`, or
// CHROMIUM_PATH) driven by playwright-core (Playwright's own browser download is not used), and
// helpers that act as a person on the upstream provider's pages (lib/oidc-idp.mjs).
//
//   const browser = await openBrowser();
//   const context = await newContext(browser);           // ignoreHTTPSErrors: the test CA
//   const page = await context.newPage();
//   await page.goto(authorizeUrl);                       // lands on the provider's sign-in page
//   const r = await signInAtIdp(page, { username: "alice" });   // sign in + Authorize
//   r.url                                                // where the browser went (the redirect URI)
//   await browser.close();
//
// Exports: CHROMIUM, CHROMIUM_ARGS, openBrowser({args, ...launchOptions}), newContext(browser, opts),
// idpPageKind(page, idpOrigin) → "login"|"consent"|"error"|"left"|"other",
// submitIdpLogin(page, {username, password, timeoutMs}) → next page kind,
// answerIdpConsent(page, "approve"|"deny", {timeoutMs}) → URL landed on,
// signInAtIdp(page, {username, password, consent, timeoutMs}) → {url, consentShown} (page must show
// the sign-in form), throughIdp(page, idpOrigin, {username, password, consent, timeoutMs}) →
// {url, signedIn, consentShown} (any of: sign-in, consent, already redirected back).
// `password` defaults to IDP_PASSWORD; `consent` to "approve".
//
// The test CA (envoy/certs/ca.pem) is accepted with `ignoreHTTPSErrors: true` on every context
// made by `newContext` (Chromium has no flag to add one CA; --ignore-certificate-errors would
// accept anything too, so the per-context setting is used, as browser-consent.test.mjs always did).
//
// Page helpers work by the selectors in IDP_SELECTORS (oidc-idp.mjs): every provider page has
// body[data-idp-page="login"|"consent"|"error"]; sign-in is #idp-username, #idp-password,
// #idp-signin (wrong credentials: the login page again with #idp-error); consent is #idp-approve /
// #idp-deny. A step is over when the main frame has committed a new document and it has loaded
// (DOMContentLoaded); "left" means the page is no longer on the provider's origin.
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";
import { IDP_PASSWORD, IDP_SELECTORS as S } from "./oidc-idp.mjs";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const CHROMIUM_ARGS = Object.freeze([
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]);

/** Launch headless Chromium (CHROMIUM); `args` are added to CHROMIUM_ARGS. Close it with browser.close(). */
export async function openBrowser({ args = [], ...launch } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...args], ...launch });
}

/** A fresh context (own cookies) that accepts the test certificates. */
export function newContext(browser, options = {}) {
  return browser.newContext({ ignoreHTTPSErrors: true, ...options });
}

/** Which provider page `page` shows: "login" | "consent" | "error" | "left" (not on `idpOrigin`) | "other". */
export async function idpPageKind(page, idpOrigin) {
  let origin;
  try {
    origin = new URL(page.url()).origin;
  } catch {
    origin = "null";
  }
  if (idpOrigin && origin !== idpOrigin) return "left";
  const kind = await page.locator(S.page).getAttribute("data-idp-page", { timeout: 1000 }).catch(() => null);
  return kind ?? "other";
}

/** Run `act` (which submits something), wait for the next document in the main frame, say what it is. */
async function step(page, idpOrigin, act, timeoutMs) {
  const navigated = page.waitForEvent("framenavigated", { predicate: (f) => f === page.mainFrame(), timeout: timeoutMs });
  await act();
  await navigated;
  await page.waitForLoadState("domcontentloaded", { timeout: timeoutMs });
  return idpPageKind(page, idpOrigin);
}

const originOf = (page) => new URL(page.url()).origin;

/**
 * On the provider's sign-in page: fill username and password and submit. Returns the next page's
 * kind: "consent", "left" (consent not needed: already redirected to the client), "login"
 * (refused: the form again with #idp-error) or "error".
 */
export async function submitIdpLogin(page, { username, password = IDP_PASSWORD, timeoutMs = 10000 } = {}) {
  const idpOrigin = originOf(page);
  await page.locator(S.password).waitFor({ state: "visible", timeout: timeoutMs });
  await page.locator(S.username).fill(username);
  await page.locator(S.password).fill(password);
  return step(page, idpOrigin, () => page.locator(S.signIn).click(), timeoutMs);
}

/**
 * On the consent page: click Authorize ("approve") or Deny ("deny") and wait until the browser has
 * left the provider (the client's redirect URI). Returns the URL it landed on.
 */
export async function answerIdpConsent(page, decision = "approve", { timeoutMs = 10000 } = {}) {
  const idpOrigin = originOf(page);
  const button = page.locator(decision === "approve" ? S.approve : S.deny);
  await button.waitFor({ state: "visible", timeout: timeoutMs });
  await button.click();
  await page.waitForURL((u) => u.origin !== idpOrigin, { timeout: timeoutMs, waitUntil: "domcontentloaded" });
  return page.url();
}

/**
 * On a page showing the provider's sign-in form: sign in as `username` (an account id or email),
 * then answer the consent page if one comes ("approve" | "deny"), and return once the browser has
 * navigated away from the provider: { url, consentShown }. Throws if the sign-in is refused or the
 * provider shows an error page (message included).
 */
export async function signInAtIdp(page, { username, password = IDP_PASSWORD, consent = "approve", timeoutMs = 10000 } = {}) {
  const kind = await submitIdpLogin(page, { username, password, timeoutMs });
  if (kind === "left") return { url: page.url(), consentShown: false };
  if (kind === "consent") return { url: await answerIdpConsent(page, consent, { timeoutMs }), consentShown: true };
  const text = await page.locator("body").innerText().catch(() => "");
  throw new Error(`sign-in at the provider as ${username} did not succeed (${kind} page at ${page.url()}): ${text.slice(0, 500)}`);
}

/**
 * Whatever the provider shows next, get through it: sign in as `username` if the sign-in page
 * comes, answer consent if it comes, and return once the browser is off `idpOrigin` (which may
 * already be the case: a signed-in browser with an existing grant is redirected straight back).
 * Waits up to `timeoutMs` for the page to settle first. Returns { url, signedIn, consentShown }.
 */
export async function throughIdp(page, idpOrigin, { username, password = IDP_PASSWORD, consent = "approve", timeoutMs = 10000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  const out = { url: undefined, signedIn: false, consentShown: false };
  for (;;) {
    await page.waitForLoadState("domcontentloaded", { timeout: timeoutMs });
    const kind = await idpPageKind(page, idpOrigin);
    if (kind === "left") return { ...out, url: page.url() };
    if (kind === "login" && !out.signedIn) {
      if (username === undefined) throw new Error(`the provider asks for a sign-in and no username was given (${page.url()})`);
      out.signedIn = true;
      if ((await submitIdpLogin(page, { username, password, timeoutMs })) === "login") {
        throw new Error(`sign-in at the provider as ${username} refused: ${await page.locator(S.loginError).innerText().catch(() => "")}`);
      }
    } else if (kind === "consent" && !out.consentShown) {
      out.consentShown = true;
      return { ...out, url: await answerIdpConsent(page, consent, { timeoutMs }) };
    } else if (kind === "other" && Date.now() < deadline) {
      await page.waitForTimeout(50); // between documents
    } else {
      const text = await page.locator("body").innerText().catch(() => "");
      throw new Error(`unexpected ${kind} page at the provider (${page.url()}): ${text.slice(0, 500)}`);
    }
  }
}
