//! `lake diff`: how the project differs from an environment; exit 1 when it does.

use std::process::ExitCode;

use crate::cli::args::{Cli, DiffArgs};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops;
use crate::plan::PlanOptions;

pub(super) fn run(args: &DiffArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    ctx.require_environment(&args.environment)?;
    let mut options = PlanOptions::new(args.environment.clone(), ops::execution_time(None)?);
    // A diff only compares; the checks that guard applying a plan do not apply.
    options.skip_linter = true;
    options.skip_tests = true;
    let plan = ctx.plan(&options)?;
    let audience = printer.audience();
    printer.print(output::render_diff_summary(&plan, audience))?;
    Ok(if plan.changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
