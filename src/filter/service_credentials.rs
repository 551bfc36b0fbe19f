//! Keeps the service credentials fresh: on the root timer, the VM that takes the lease fetches a
//! new token shortly before the current one expires; the others read it from shared data.

use std::time::Duration;

use proxy_wasm::hostcalls;

use crate::upstream::service_credential::ServiceCredential;

use super::shared_store::SharedStore;

/// Retry delays after failures: 1 s, 2 s, 4 s … up to this.
const MAX_RETRY_MS: u64 = 30_000;

pub struct CredentialFetcher {
    pub credential: ServiceCredential,
    in_flight: Option<u32>,
    in_flight_since_ms: u64,
    next_try_ms: u64,
    failures: u32,
}

impl CredentialFetcher {
    pub fn new(credential: ServiceCredential) -> Self {
        CredentialFetcher {
            credential,
            in_flight: None,
            in_flight_since_ms: 0,
            next_try_ms: 0,
            failures: 0,
        }
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight == Some(token)
    }

    /// Starts a fetch if the token needs refreshing and this VM gets the lease.
    pub fn tick(&mut self, now_ms: u64) {
        if self.in_flight.is_some() {
            if now_ms.saturating_sub(self.in_flight_since_ms) <= self.credential.timeout_ms + 2000 {
                return;
            }
            self.in_flight = None;
        }
        if now_ms < self.next_try_ms || !self.credential.needs_refresh(&SharedStore, now_ms / 1000)
        {
            return;
        }
        if !self.credential.take_lease(&mut SharedStore, now_ms) {
            return;
        }
        let (headers, body) = self.credential.request();
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let timeout = Duration::from_millis(self.credential.timeout_ms);
        match hostcalls::dispatch_http_call(
            &self.credential.cluster,
            refs,
            Some(&body),
            vec![],
            timeout,
        ) {
            Ok(token) => {
                self.in_flight = Some(token);
                self.in_flight_since_ms = now_ms;
            }
            Err(status) => {
                log::warn!(
                    "mcp-oauth: cannot fetch backend credential {} through cluster {}: {status:?}",
                    self.credential.name,
                    self.credential.cluster
                );
                self.credential.release_lease(&mut SharedStore);
                self.back_off(now_ms);
            }
        }
    }

    /// The token endpoint answered.
    pub fn finish(&mut self, now_ms: u64, status: Option<&str>, body: &[u8]) -> bool {
        self.in_flight = None;
        let result = self
            .credential
            .accept(&mut SharedStore, status, body, now_ms / 1000);
        self.credential.release_lease(&mut SharedStore);
        match result {
            Ok(exp) => {
                self.failures = 0;
                self.next_try_ms = 0;
                log::info!(
                    "mcp-oauth: backend credential {} refreshed, valid until {exp}",
                    self.credential.name
                );
                true
            }
            Err(reason) => {
                log::warn!(
                    "mcp-oauth: backend credential {} refresh failed: {reason}; keeping the current token while it is valid",
                    self.credential.name
                );
                self.back_off(now_ms);
                false
            }
        }
    }

    fn back_off(&mut self, now_ms: u64) {
        self.failures = self.failures.saturating_add(1);
        let delay = 1000u64.saturating_mul(1 << self.failures.min(10).saturating_sub(1));
        self.next_try_ms = now_ms + delay.min(MAX_RETRY_MS);
    }
}
