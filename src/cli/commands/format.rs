//! `lake format`: models and audits in one canonical style; with --check, exit 1 when a file would change.

use std::process::ExitCode;

use crate::cli::args::{Cli, FormatArgs};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::Result;

pub(super) fn run(args: &FormatArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let files = crate::format::format_project(&cli.path, args.check)?;
    if args.json {
        printer.json(&serde_json::json!({ "files": files }))?;
    } else {
        output::write_format_report(printer.out(), &files, args.check)?;
    }
    Ok(if args.check && files.iter().any(|f| f.changed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
