//! `lake run`: the models whose cron is due, and any missing intervals.

use std::process::ExitCode;

use crate::cli::args::{Cli, RunArgs};
use crate::cli::output::Progress;
use crate::cli::printer::{Printer, plural};
use crate::error::Result;
use crate::ops::{self, Context, RunOptions};
use crate::sql::ModelName;

pub(super) fn run(args: &RunArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let environment = ctx.target_environment(args.environment.as_deref());
    let now = ops::execution_time(args.execution_time.as_deref())?;
    let options = RunOptions {
        ignore_cron: args.ignore_cron,
        select: args.select_model.clone(),
        window: ops::window(args.start.as_deref(), args.end.as_deref())?,
    };
    let suffix_target = ctx.suffix_target_of(&environment)?;
    let built = run_with_progress(&ctx, &environment, suffix_target, now, &options, printer)?;
    report_run(printer, &built, &environment);
    Ok(ExitCode::SUCCESS)
}

/// Runs `environment` with a progress bar on a terminal; what it built.
pub(super) fn run_with_progress(
    ctx: &Context,
    environment: &str,
    suffix_target: crate::snapshot::SuffixTarget,
    now: chrono::NaiveDateTime,
    options: &RunOptions,
    printer: &Printer,
) -> Result<Vec<ModelName>> {
    let progress = Progress::new(
        environment,
        suffix_target,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let result = ctx.run(environment, now, options, &progress, || {
        super::announce_wait(printer, "")
    });
    progress.finish();
    Ok(result?.built)
}

/// What a run built, on stderr.
pub(super) fn report_run(printer: &Printer, built: &[ModelName], environment: &str) {
    if built.is_empty() {
        printer.status(format_args!(
            "Nothing to run: every model of `{environment}` is up to date."
        ));
    } else {
        printer.done(format_args!(
            "{} built in `{environment}`",
            plural(built.len(), "model")
        ));
    }
}
