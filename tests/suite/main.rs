//! The integration tests: one binary, a module per feature, sharing the
//! harness in [`common`]. One binary links the crate once instead of once
//! per file, and lets the harness be used in full without `dead_code`
//! allowances.

mod common;

mod backup;
mod bad_input;
mod clients;
mod container;
mod dashboard;
mod dedup;
mod disk_full;
mod durability;
mod export;
mod formats;
#[cfg(feature = "postgres")]
mod postgres;
mod publisher;
mod reads;
#[cfg(feature = "postgres")]
mod replicas;
mod retention;
mod store_contract;
mod subscribe;
