//! The integration tests: one binary, a module per feature, sharing the
//! harness in [`common`]. One binary links the crate once instead of once
//! per file, and lets the harness be used in full without `dead_code`
//! allowances.

mod common;

mod auth;
mod backup;
mod bad_input;
mod cli_errors;
mod clients;
mod connections;
mod container;
mod dashboard;
mod data_dir;
mod dedup;
mod disk_full;
mod durability;
mod export;
mod formats;
mod headers;
mod metrics;
mod openapi;
#[cfg(feature = "postgres")]
mod postgres;
mod publisher;
#[cfg(feature = "postgres")]
mod query_plans;
mod reading_cli;
mod reads;
#[cfg(feature = "postgres")]
mod replicas;
mod retention;
mod search;
mod store_contract;
mod subscribe;
mod tls;
