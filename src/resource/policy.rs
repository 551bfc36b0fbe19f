//! Which rule applies to a request: public, or protected by a route (and which scopes).

use crate::config::{Config, Route, Unmatched};
use crate::http::{path_has_prefix, path_only};

/// The access rule for one request.
pub enum Access<'a> {
    /// Passed to the backend without a token check.
    Public,
    /// Needs a valid token for `route.resource` with every scope in `route.scopes`.
    Protected(&'a Route),
    /// Matched no route or public path and `unmatched` is `authenticate`: any valid token for
    /// the main resource.
    Authenticated,
}

/// First matching route wins; a route whose `methods` exclude the request's method is skipped.
pub fn access_for<'a>(config: &'a Config, method: &str, path: &str) -> Access<'a> {
    let path = path_only(path);
    if config.public_paths.iter().any(|p| path_has_prefix(path, p)) {
        return Access::Public;
    }
    let route = config.routes.iter().find(|route| {
        path_has_prefix(path, &route.prefix)
            && (route.methods.is_empty()
                || route.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
    });
    match (route, config.unmatched) {
        (Some(route), _) => Access::Protected(route),
        (None, Unmatched::Allow) => Access::Public,
        (None, Unmatched::Authenticate) => Access::Authenticated,
    }
}
