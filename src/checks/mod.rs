//! Checks of a project and its data beyond building it: lint rules, unit tests, and table diffs.

pub mod lint;
pub mod table_diff;
pub mod unit_test;
