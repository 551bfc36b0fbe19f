//! The gateway's side of etcd (`state_store`): continuing a request whose grant is being
//! recorded, the health of the revocation snapshot, and refusing tokens while it is stale
//! when the config asks for that.

use super::{Decision, Gateway, Outcome, Request};
use crate::config::state_store::ValidationWhenUnavailable;
use crate::etcd::snapshot::{self, Health};
use crate::etcd::work::{self, Next, Pending};
use crate::http::Response;
use crate::store::Store;

impl Gateway {
    /// Continues a request with etcd's answer to its call (`status` is `None` when there was
    /// no answer): the next call, or the answer to send.
    #[allow(clippy::too_many_arguments)]
    pub fn resume_store(
        &self,
        request: &Request,
        pending: Pending,
        status: Option<&str>,
        body: &[u8],
        now: u64,
        store: &mut dyn Store,
    ) -> Decision {
        let outcome = self
            .authorization_server_endpoint(request)
            .map_or(Outcome::Served, |(_, endpoint)| {
                Outcome::Authz(endpoint.name())
            });
        let Some(etcd) = &self.config.state_store else {
            return Decision::respond(
                Response::oauth_error(500, "server_error", "No state store is configured"),
                outcome,
            );
        };
        let decision = match work::resume(etcd, store, pending, status, body, now) {
            Next::Call(call) => Decision {
                action: super::Action::Store(call),
                outcome: Outcome::Pending,
                detail: None,
                mcp: None,
            },
            Next::Respond { response, detail } => Decision {
                detail,
                ..Decision::respond(response, outcome)
            },
        };
        self.with_cors(decision, request)
    }

    /// The state store's part of /health: its label and the status it asks for.
    pub(super) fn state_store_health(
        &self,
        store: &dyn Store,
        now: u64,
    ) -> Option<(&'static str, u16)> {
        let etcd = self.config.state_store.as_ref()?;
        Some(
            match snapshot::health(etcd, store, now.saturating_mul(1000)) {
                Health::Fresh => ("ok", 200),
                Health::Starting => ("starting", 503),
                Health::Stale { .. } => ("unreachable", etcd.degraded_health_status),
            },
        )
    }

    /// With `validation: "refuse"`: 503 for a token while the revocation snapshot is stale.
    pub(super) fn stale_snapshot_refusal(&self, store: &dyn Store, now: u64) -> Option<Decision> {
        let etcd = self.config.state_store.as_ref()?;
        if etcd.validation_when_unavailable != ValidationWhenUnavailable::Refuse {
            return None;
        }
        match snapshot::health(etcd, store, now.saturating_mul(1000)) {
            Health::Fresh => None,
            Health::Starting | Health::Stale { .. } => Some(
                Decision::respond(
                    Response::retry_later(
                        "Token revocations cannot be checked right now; retry shortly",
                        1,
                    ),
                    Outcome::Denied("keys_unavailable"),
                )
                .with_detail("revocation snapshot is stale (etcd unreachable)".into()),
            ),
        }
    }
}
