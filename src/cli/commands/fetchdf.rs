//! `lake fetchdf`: any SQL against the warehouse, rows streamed to stdout.

use std::process::ExitCode;

use crate::cli::args::{Cli, FetchdfArgs};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::Result;

pub(super) fn run(args: &FetchdfArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let mut sink = output::RowSink::new(args.format, printer.out());
    let schema = ctx.fetch_each(&args.sql, &mut |_, batch| sink.batch(batch))?;
    sink.finish(&schema)?;
    Ok(ExitCode::SUCCESS)
}
