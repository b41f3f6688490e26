//! `lake audit`: the models' audits on built data; exit 1 when a blocking audit finds rows.

use std::process::ExitCode;

use crate::cli::args::{AuditArgs, Cli};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops;

pub(super) fn run(args: &AuditArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    ctx.require_environment(&args.environment)?;
    let now = ops::execution_time(args.execution_time.as_deref())?;
    let results = ctx.audit(
        &args.environment,
        &args.models,
        now,
        ops::window(args.start.as_deref(), args.end.as_deref(), now)?,
    )?;
    if args.json {
        printer.line(output::audits_json(&results)?)?;
    } else {
        output::write_audits(printer.out(), &results)?;
    }
    Ok(if results.iter().any(|r| r.blocking && r.rows > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
