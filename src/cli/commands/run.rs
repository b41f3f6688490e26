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
        no_auto_upstream: args.no_auto_upstream,
        window: ops::window(args.start.as_deref(), args.end.as_deref(), now)?,
        stop_if_updated: args.exit_on_env_update.is_some(),
        janitor: !args.skip_janitor,
    };
    let suffix_target = ctx.suffix_target_of(&environment)?;
    let report = run_with_progress(&ctx, &environment, suffix_target, now, &options, printer)?;
    if report.stopped_for_update {
        printer.status(format_args!(
            "A plan updated `{environment}` while this run waited; nothing was run (--exit-on-env-update)."
        ));
        return Ok(ExitCode::from(args.exit_on_env_update.unwrap_or(1)));
    }
    report_run(printer, &report.built, &environment);
    if let Some(janitor) = report.janitor {
        report_janitor(janitor, printer);
    }
    Ok(ExitCode::SUCCESS)
}

/// What the janitor's pass after the run did (as SQLMesh's `run`); what it could not remove is a warning, not
/// a failed run.
fn report_janitor(janitor: Result<ops::janitor::JanitorReport>, printer: &Printer) {
    match janitor {
        Ok(report) => {
            if !report.environments_removed.is_empty() || !report.tables_dropped.is_empty() {
                printer.status(format_args!(
                    "Janitor: removed {} and dropped {} no environment uses",
                    plural(report.environments_removed.len(), "expired environment"),
                    plural(report.tables_dropped.len(), "table")
                ));
            }
            for failure in report.failures {
                printer.warning(format_args!("janitor: {failure}"));
            }
        }
        Err(e) => printer.warning(format_args!(
            "janitor: {e} (the run itself succeeded; `lake janitor` retries)"
        )),
    }
}

/// Runs `environment` with a progress bar on a terminal; what it did.
pub(super) fn run_with_progress(
    ctx: &Context,
    environment: &str,
    suffix_target: crate::snapshot::SuffixTarget,
    now: chrono::NaiveDateTime,
    options: &RunOptions,
    printer: &Printer,
) -> Result<ops::RunReport> {
    let progress = Progress::new(
        environment,
        suffix_target,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let result = ctx.run(environment, now, options, &progress, || {
        super::announce_wait(printer, "")
    });
    progress.finish();
    result
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
