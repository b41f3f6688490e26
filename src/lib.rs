//! `lake`: a SQLMesh-compatible transformation tool for SQL lakehouses. The CLI is a thin layer over this library.

// Located errors carry the file text they point into so they can render a snippet; they are built only on
// failure paths, so their size costs nothing where it matters.
#![allow(clippy::result_large_err)]

pub mod checks;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod format;
pub mod intervals;
pub mod ops;
pub mod plan;
pub mod profile;
pub mod project;
pub mod scheduler;
pub mod serve;
pub mod snapshot;
pub mod sql;
pub mod state;
pub mod storage;

/// The production environment's name.
pub const PROD: &str = "prod";
