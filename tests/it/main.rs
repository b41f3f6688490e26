//! Integration tests: the real `lake` binary on real projects, in one test binary so DuckDB and iceberg link once.

mod common;

mod architecture;
mod audits;
mod column_aware;
mod commands;
mod compat;
mod corpus;
mod crash;
mod dev_only;
mod docs_examples;
mod environments;
mod errors;
mod format;
mod fuzz;
mod iceberg;
mod incremental;
mod lineage;
mod lint;
mod macros;
mod plan_apply;
mod plan_output;
mod schema_changes;
mod serve;
mod spark;
mod sqlmesh_flags;
mod state_contract;
mod state_postgres;
mod unit_tests;
