//! A service credential: the gateway gets an access token from an upstream authorization
//! server with `client_credentials`, keeps it in the store (so every worker shares one token),
//! refreshes it from the root timer before it expires, and puts it on backend requests of the
//! routes that name it. A failed refresh keeps the old token while it is still valid.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::Store;

/// The checked `backend_credentials[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCredential {
    pub name: String,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub timeout_ms: u64,
    /// Refresh this long before `expires_in` runs out.
    pub refresh_before_seconds: u64,
    /// The request header the token goes in (`authorization` gets `Bearer <token>`).
    pub header: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(remote = "Self")]
struct Cached {
    token: String,
    exp: u64,
}
json_object!(Cached, Serialize);

fn key(name: &str) -> String {
    format!("mcp-oauth:service-credential:{name}")
}

fn lease_key(name: &str) -> String {
    format!("mcp-oauth:service-credential-lease:{name}")
}

impl ServiceCredential {
    /// The token request: `client_credentials`, authenticated with `client_secret_basic`.
    pub fn request(&self) -> (Vec<(String, String)>, Vec<u8>) {
        let credentials = format!(
            "{}:{}",
            urlencode(&self.client_id),
            urlencode(&self.client_secret)
        );
        let headers = vec![
            (":method".into(), "POST".into()),
            (":path".into(), self.path.clone()),
            (":authority".into(), self.authority.clone()),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
            ("accept".into(), "application/json".into()),
            (
                "authorization".into(),
                format!("Basic {}", STANDARD.encode(credentials)),
            ),
        ];
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        if let Some(resource) = &self.resource {
            form.push(("resource", resource));
        }
        (headers, crate::form::encode(&form).into_bytes())
    }

    /// The current token, if any and unexpired.
    pub fn current(&self, store: &dyn Store, now: u64) -> Option<String> {
        let (bytes, _) = store.get(&key(&self.name))?;
        let cached: Cached = serde_json::from_slice(&bytes).ok()?;
        (cached.exp > now).then_some(cached.token)
    }

    /// True when there is no token or it expires within `refresh_before_seconds`.
    pub fn needs_refresh(&self, store: &dyn Store, now: u64) -> bool {
        match store
            .get(&key(&self.name))
            .and_then(|(b, _)| serde_json::from_slice::<Cached>(&b).ok())
        {
            Some(cached) => cached.exp <= now + self.refresh_before_seconds,
            None => true,
        }
    }

    /// Takes the refresh lease, so one VM of this Envoy fetches while the others wait. A lease
    /// older than the fetch timeout is taken over.
    pub fn take_lease(&self, store: &mut dyn Store, now_ms: u64) -> bool {
        let stale_after = self.timeout_ms + 1000;
        crate::store::update(store, &lease_key(&self.name), |current| {
            let held_since = current
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|t| t.parse::<u64>().ok());
            match held_since {
                Some(t) if t != 0 && now_ms.saturating_sub(t) < stale_after => (None, false),
                _ => (Some(now_ms.to_string().into_bytes()), true),
            }
        })
        .unwrap_or(false)
    }

    pub fn release_lease(&self, store: &mut dyn Store) {
        let _ = store.set(&lease_key(&self.name), b"0", None);
    }

    /// Reads the token endpoint's answer; on success the new token replaces the old.
    pub fn accept(
        &self,
        store: &mut dyn Store,
        status: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<u64, String> {
        if status != Some("200") {
            return Err(format!(
                "token endpoint answered {}",
                status.unwrap_or("nothing")
            ));
        }
        let answer: Value =
            serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_string())?;
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or("the answer has no usable access_token")?;
        let expires_in = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(300)
            .clamp(1, 86_400);
        let cached = Cached {
            token: token.to_string(),
            exp: now + expires_in,
        };
        let bytes = serde_json::to_vec(&cached).map_err(|e| e.to_string())?;
        store
            .set(&key(&self.name), &bytes, None)
            .map_err(|_| "could not store the token".to_string())?;
        Ok(cached.exp)
    }

    /// The header to add to a backend request.
    pub fn header_for(&self, token: &str) -> (String, String) {
        if self.header == "authorization" {
            (self.header.clone(), format!("Bearer {token}"))
        } else {
            (self.header.clone(), token.to_string())
        }
    }
}

fn urlencode(text: &str) -> String {
    crate::form::encode(&[("", text)])
        .trim_start_matches('=')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn credential() -> ServiceCredential {
        ServiceCredential {
            name: "svc".into(),
            cluster: "idp".into(),
            authority: "idp.example".into(),
            path: "/token".into(),
            client_id: "gw".into(),
            client_secret: "s e".into(),
            scope: Some("api".into()),
            resource: None,
            timeout_ms: 2000,
            refresh_before_seconds: 30,
            header: "authorization".into(),
        }
    }

    #[test]
    fn a_token_is_used_until_it_expires_and_refreshed_before() {
        let c = credential();
        let mut s = MemoryStore::default();
        assert!(c.needs_refresh(&s, 1000));
        assert_eq!(
            c.accept(
                &mut s,
                Some("200"),
                br#"{"access_token":"t1","expires_in":100}"#,
                1000
            ),
            Ok(1100)
        );
        assert_eq!(c.current(&s, 1050).as_deref(), Some("t1"));
        assert!(!c.needs_refresh(&s, 1050));
        assert!(c.needs_refresh(&s, 1071));
        assert_eq!(c.current(&s, 1100), None);
    }

    #[test]
    fn a_failed_refresh_keeps_the_old_token() {
        let c = credential();
        let mut s = MemoryStore::default();
        c.accept(
            &mut s,
            Some("200"),
            br#"{"access_token":"t1","expires_in":100}"#,
            1000,
        )
        .unwrap();
        assert!(c.accept(&mut s, Some("503"), b"", 1080).is_err());
        assert!(c
            .accept(&mut s, Some("200"), br#"{"error":"x"}"#, 1080)
            .is_err());
        assert_eq!(c.current(&s, 1081).as_deref(), Some("t1"));
    }

    #[test]
    fn one_vm_holds_the_lease_at_a_time() {
        let c = credential();
        let mut s = MemoryStore::default();
        assert!(c.take_lease(&mut s, 10_000));
        assert!(!c.take_lease(&mut s, 10_500));
        assert!(c.take_lease(&mut s, 13_500), "stale leases are taken over");
        c.release_lease(&mut s);
        assert!(c.take_lease(&mut s, 13_600));
    }

    #[test]
    fn the_request_authenticates_with_basic() {
        let (headers, body) = credential().request();
        assert!(headers.contains(&(
            "authorization".into(),
            format!("Basic {}", STANDARD.encode("gw:s+e"))
        )));
        assert_eq!(body, b"grant_type=client_credentials&scope=api");
    }
}
