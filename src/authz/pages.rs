//! The HTML a person sees: sign-in, consent and error pages. Plain forms with labels, no
//! scripts, every value escaped, and headers that keep the pages out of frames and caches.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use crate::http::Response;

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}\
main{max-width:26rem;margin:8vh auto;background:#fff;padding:2rem;border-radius:12px;box-shadow:0 2px 10px #0002}\
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .3rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;border:1px solid #99a;border-radius:6px;font-size:1rem}\
button{font-size:1rem;padding:.6rem 1.2rem;border-radius:6px;border:1px solid #2456c8;margin:1.2rem .5rem 0 0;cursor:pointer}\
.primary{background:#2456c8;color:#fff}.secondary{background:#fff;color:#2456c8}\
.error{background:#fde8e8;color:#8a1111;padding:.6rem;border-radius:6px}.note{color:#555;font-size:.9rem}\
ul{padding-left:1.2rem}li{margin:.4rem 0}code{background:#eef;padding:0 .2rem;border-radius:3px}";

fn page(status: u16, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        text(title)
    );
    Response {
        status,
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("cache-control".into(), "no-store".into()),
            ("x-frame-options".into(), "DENY".into()),
            (
                "content-security-policy".into(),
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'".into(),
            ),
            ("referrer-policy".into(), "no-referrer".into()),
        ],
        body: html.into_bytes(),
    }
}

/// An error that must not go back to the client (unknown client, bad redirect URI, a stale
/// form): the person is told what happened, and nothing redirects.
pub fn error_page(status: u16, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<h1>{}</h1><p role=\"alert\">{}</p>",
            text(title),
            text(message)
        ),
    )
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        attr(name),
        attr(value)
    )
}

/// The fields every form posts back: the sealed pending request and the CSRF token.
pub struct FormState<'a> {
    pub action: &'a str,
    pub request: &'a str,
    pub csrf: &'a str,
}

impl FormState<'_> {
    fn open(&self) -> String {
        format!(
            "<form method=\"post\" action=\"{}\">{}{}",
            attr(self.action),
            hidden("request", self.request),
            hidden("csrf", self.csrf)
        )
    }
}

/// The built-in users' sign-in form; with an upstream provider, also its button.
pub fn sign_in(
    server_name: &str,
    client_name: &str,
    form: &FormState,
    upstream: Option<&str>,
    error: Option<&str>,
) -> Response {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", text(e)))
        .unwrap_or_default();
    let upstream = upstream
        .map(|name| {
            format!(
                "<p class=\"note\">Or:</p><button class=\"secondary\" type=\"submit\" name=\"action\" value=\"upstream\" formnovalidate>Continue with {}</button>",
                text(name)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in to {server}</h1>\
         <p><strong>{client}</strong> wants to use {server} on your behalf.</p>{error}{open}\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button class=\"primary\" type=\"submit\" name=\"action\" value=\"sign_in\">Sign in</button>{upstream}</form>",
        server = text(server_name),
        client = text(client_name),
        open = form.open(),
    );
    page(
        if error.is_empty() { 200 } else { 401 },
        &format!("Sign in to {server_name}"),
        &body,
    )
}

/// Who approves: a signed-in person, or one who signs in at the named provider next.
pub enum SignedIn<'a> {
    As(&'a str),
    Next(&'a str),
}

/// What the consent page shows about the request.
pub struct ConsentView<'a> {
    pub server_name: &'a str,
    pub client_name: &'a str,
    pub client_is_dynamic: bool,
    pub redirect_host: &'a str,
    pub signed_in: SignedIn<'a>,
    /// (scope, description)
    pub scopes: Vec<(&'a str, &'a str)>,
}

pub fn consent(view: &ConsentView, form: &FormState) -> Response {
    let scopes: String = view
        .scopes
        .iter()
        .map(|(name, description)| {
            format!(
                "<li>{} <span class=\"note\">(<code>{}</code>)</span></li>",
                text(description),
                text(name)
            )
        })
        .collect();
    let unverified = if view.client_is_dynamic {
        "<p class=\"note\">This application registered itself; its name is not verified. Approve only if you started this sign-in.</p>"
    } else {
        ""
    };
    let (who, approve) = match view.signed_in {
        SignedIn::As(user) => (
            format!("<p>Signed in as <strong>{}</strong>.</p>", text(user)),
            "<button class=\"primary\" type=\"submit\" name=\"action\" value=\"approve\">Approve</button>".to_string(),
        ),
        SignedIn::Next(provider) => (
            format!(
                "<p>If you approve, you sign in with <strong>{}</strong> next.</p>",
                text(provider)
            ),
            "<button class=\"primary\" type=\"submit\" name=\"action\" value=\"continue_upstream\">Approve and sign in</button>".to_string(),
        ),
    };
    let body = format!(
        "<h1>Allow {client} to use {server}?</h1>{who}\
         <p><strong>{client}</strong> will be able to:</p><ul>{scopes}</ul>\
         <p>After you answer, you go back to <strong>{host}</strong>.</p>{unverified}{open}\
         {approve}\
         <button class=\"secondary\" type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form>",
        client = text(view.client_name),
        server = text(view.server_name),
        host = text(view.redirect_host),
        open = form.open(),
    );
    page(200, &format!("Allow {}?", view.client_name), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let form = FormState {
            action: "/oauth/authorize",
            request: "r\"><script>",
            csrf: "c",
        };
        let r = sign_in("Srv", "<img src=x>", &form, None, Some("<b>bad</b>"));
        let html = String::from_utf8(r.body).unwrap();
        assert!(!html.contains("<img src=x>"));
        assert!(!html.contains("<b>bad</b>"));
        assert!(!html.contains("r\"><script>"));
        assert!(html.contains("&lt;img src=x&gt;"));
    }

    #[test]
    fn pages_cannot_be_framed_or_cached() {
        let r = error_page(400, "Unknown client", "x");
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(r
            .header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'"));
    }
}
