//! minicloud's control plane and CLI (the `minicloud` binary).
//!
//! Where a request goes:
//! - [`routes`] builds the axum router (`app`); [`auth`] resolves the bearer
//!   token to a project (every resource is scoped to it); [`json`] parses
//!   bodies with field-naming errors; [`idempotency`] replays writes that
//!   carry an `Idempotency-Key`; [`error`] is the one error shape.
//! - [`compute`] runs instances: placement through the `scheduler` crate,
//!   one `minicloud-vmm` process per VM, supervision and reconciliation.
//! - [`store`] is the only module that speaks SQL (SQLite through sqlx).
//! - [`serve`] starts the daemon; [`cli`] is every other subcommand, a
//!   client of the REST API; [`openapi`] documents the API.

pub mod auth;
pub mod cli;
pub mod compute;
pub mod error;
pub mod guest;
pub mod idempotency;
pub mod json;
pub mod openapi;
pub mod routes;
pub mod s3_usage;
pub mod serve;
pub mod sinks;
pub mod state;
pub mod store;
pub mod streams_usage;
