//! `lake destroy`: delete every table, view and state record of the project, after a confirmation.

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::args::{Cli, DestroyArgs};
use crate::cli::printer::{Printer, plural};
use crate::cli::prompt;
use crate::error::{LakeError, Result};

pub(super) fn run(args: &DestroyArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(LakeError::Usage(
                "`lake destroy` deletes every table, view and state record of the project".into(),
                Some("pass --yes to confirm without a terminal".into()),
            ));
        }
        let question = format!(
            "Delete every table, view and state record of the project at {}?",
            ctx.project.root.display()
        );
        if !prompt::yes(&question)? {
            printer.status("Nothing was deleted.");
            return Ok(ExitCode::from(1));
        }
    }
    let report = ctx.destroy()?;
    printer.done(format_args!(
        "destroyed {} and {}; the state holds nothing of them",
        plural(report.environments_removed.len(), "environment"),
        plural(report.tables_dropped.len(), "table")
    ));
    Ok(ExitCode::SUCCESS)
}
