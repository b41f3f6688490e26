//! `lake create-external-models`: external_models.yaml written from the tables models read.

use std::process::ExitCode;

use crate::cli::args::Cli;
use crate::cli::printer::{Printer, plural};
use crate::error::Result;
use crate::ops::Context;

pub(super) fn run(cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    // Lenient: the tables this command declares are exactly the ones a strict load would refuse.
    let ctx = Context::load_configured(&cli.path, &super::configured(cli), true)?;
    let report = ctx.create_external_models()?;
    printer.line(format_args!(
        "Wrote external_models.yaml: {} declared.",
        plural(report.declared.len(), "table")
    ))?;
    for name in &report.not_found {
        printer.warning(format_args!(
            "`{name}` is not in the warehouse; its previous declaration (if any) is kept"
        ));
    }
    Ok(ExitCode::SUCCESS)
}
