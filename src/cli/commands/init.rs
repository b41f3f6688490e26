//! `lake init`: a new project from the template.

use std::process::ExitCode;

use crate::cli::args::{Cli, InitArgs};
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::project::template;

pub(super) fn run(args: &InitArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let dir = args.dir.clone().unwrap_or_else(|| cli.path.clone());
    let files = template::init(&dir, args.force)?;
    printer.line(format_args!(
        "Created a lake project in {} ({} files).",
        dir.display(),
        files.len()
    ))?;
    printer.line(format_args!(
        "Next: cd {} && lake plan --auto-apply",
        dir.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}
