//! `lake janitor`: remove expired environments and the tables nothing uses any more.

use std::process::ExitCode;

use crate::cli::args::{Cli, JanitorArgs};
use crate::cli::printer::Printer;
use crate::error::{LakeError, Result};
use crate::ops;

pub(super) fn run(args: &JanitorArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let report = ctx.janitor(
        ops::execution_time(None)?,
        args.ignore_ttl,
        args.environment.as_deref(),
    )?;
    print_report(printer, &report, args.json)
}

/// What the janitor removed, and what it could not (exit 1 then).
pub(super) fn print_report(
    printer: &mut Printer,
    report: &crate::ops::janitor::JanitorReport,
    json: bool,
) -> Result<ExitCode> {
    if json {
        let doc = serde_json::to_value(report).map_err(|e| LakeError::Output(e.to_string()))?;
        printer.json(&doc)?;
    } else {
        for env in &report.environments_removed {
            printer.line(format_args!("Removed environment `{env}`"))?;
        }
        for table in &report.tables_dropped {
            printer.line(format_args!("Dropped table {table}"))?;
        }
        if report.environments_removed.is_empty() && report.tables_dropped.is_empty() {
            printer.line("Nothing to clean up.")?;
        }
        for failure in &report.failures {
            printer.error(failure);
        }
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
