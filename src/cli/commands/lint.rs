//! `lake lint`: the linter's findings; exit 1 on an error.

use std::process::ExitCode;

use crate::cli::args::{Cli, LintArgs};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops;

pub(super) fn run(args: &LintArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let Some(violations) = ctx.lint(&args.models)? else {
        printer.status(
            "The linter is off: turn it on with `linter: {enabled: true, rules: ALL}` in config.yaml.",
        );
        return Ok(ExitCode::SUCCESS);
    };
    if args.json {
        printer.json(&serde_json::json!({ "violations": violations }))?;
    } else {
        output::write_lint(printer.out(), &violations)?;
    }
    ops::fail_on_lint_errors(&violations)?;
    Ok(ExitCode::SUCCESS)
}
