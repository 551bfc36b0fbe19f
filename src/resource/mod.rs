//! The resource-server side: token extraction, route policy, challenges and metadata.

pub mod bearer;
pub mod challenge;
pub mod introspection;
pub mod metadata;
pub mod policy;
