//! `lake clean`: delete the caches.

use std::process::ExitCode;

use crate::cli::args::Cli;
use crate::cli::printer::Printer;
use crate::error::Result;

pub(super) fn run(cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let removed = ctx.clean()?;
    if removed.is_empty() {
        printer.status("Nothing to clean: no cache on disk");
    }
    for dir in removed {
        printer.done(format_args!("removed {}", dir.display()));
    }
    Ok(ExitCode::SUCCESS)
}
