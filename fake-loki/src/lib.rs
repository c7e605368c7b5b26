//! fake-loki: a multi-tenant Loki test double.

pub mod logql;
pub mod store;
