//! `lake`: a SQLMesh-compatible transformation tool for SQL lakehouses. The CLI is a thin layer over this library.

// Located errors carry the file text they point into so they can render a snippet; they are built only on
// failure paths, so their size costs nothing where it matters.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod cli;
pub mod config;
pub mod context;
pub mod cron;
pub mod dag;
pub mod engine;
pub mod error;
pub mod externals;
pub mod failpoint;
pub mod format;
pub mod intervals;
pub mod lakehouse;
pub mod lifecycle;
pub mod lint;
pub mod macros;
pub mod model;
pub mod plan;
pub mod project;
pub mod scd;
pub mod scheduler;
pub mod schema;
pub mod snapshot;
pub mod sql;
pub mod sqltext;
pub mod state;
pub mod storage;
pub mod table_diff;
pub mod template;
pub mod unit_test;

/// The production environment's name.
pub const PROD: &str = "prod";
