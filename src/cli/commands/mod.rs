//! One module per command: each turns its arguments into calls of the library (`ops`, `serve`) and prints what
//! they return through the `Printer`; none decides anything a library caller would not get too.

mod audit;
mod check_intervals;
mod clean;
mod create_external_models;
mod create_test;
mod dag;
mod destroy;
mod diff;
mod environments;
mod evaluate;
mod fetchdf;
mod format;
mod info;
mod init;
mod invalidate;
mod janitor;
mod lineage;
mod lint;
mod migrate;
mod plan;
mod render;
mod rollback;
mod run;
mod serve;
mod state;
mod table_diff;
mod table_name;
mod test;

use std::process::ExitCode;

use super::args::{Cli, Command};
use super::printer::Printer;
use crate::error::Result;
use crate::ops::Configured;
use crate::ops::Context;

/// Runs the command `cli` names.
pub(super) fn run(cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    match &cli.command {
        Command::Init(args) => init::run(args, cli, printer),
        Command::Plan(args) => plan::run(args, cli, printer),
        Command::CreateTest(args) => create_test::run(args, cli, printer),
        Command::Test(args) => test::run(args, cli, printer),
        Command::Lint(args) => lint::run(args, cli, printer),
        Command::Format(args) => format::run(args, cli, printer),
        Command::Migrate => migrate::run(cli, printer),
        Command::Rollback => rollback::run(cli, printer),
        Command::State(command) => state::run(command, cli, printer),
        Command::CreateExternalModels => create_external_models::run(cli, printer),
        Command::CheckIntervals(args) => check_intervals::run(args, cli, printer),
        Command::Diff(args) => diff::run(args, cli, printer),
        Command::Environments(args) => environments::run(args, cli, printer),
        Command::Invalidate(args) => invalidate::run(args, cli, printer),
        Command::Janitor(args) => janitor::run(args, cli, printer),
        Command::Audit(args) => audit::run(args, cli, printer),
        Command::TableName(args) => table_name::run(args, cli, printer),
        Command::Clean => clean::run(cli, printer),
        Command::Destroy(args) => destroy::run(args, cli, printer),
        Command::TableDiff(args) => table_diff::run(args, cli, printer),
        Command::Run(args) => run::run(args, cli, printer),
        Command::Render(args) => render::run(args, cli, printer),
        Command::Evaluate(args) => evaluate::run(args, cli, printer),
        Command::Fetchdf(args) => fetchdf::run(args, cli, printer),
        Command::Dag(args) => dag::run(args, cli, printer),
        Command::Lineage(args) => lineage::run(args, cli, printer),
        Command::Info(args) => info::run(args, cli, printer),
        Command::Serve(args) => serve::run(args, cli, printer),
    }
}

/// The project at `--path` on `--gateway`, with config.yaml's unknown keys warned about (and, with -v, the
/// rest of its warnings).
fn load(cli: &Cli, printer: &Printer) -> Result<Context> {
    let ctx = Context::load_configured(&cli.path, &configured(cli), false)?;
    warn_about_config(&ctx, cli, printer);
    Ok(ctx)
}

/// The configuration `--config` and `--gateway` choose.
fn configured(cli: &Cli) -> Configured<'_> {
    Configured {
        gateway: cli.gateway.as_deref(),
        file: cli.config.as_deref(),
    }
}

fn warn_about_config(ctx: &Context, cli: &Cli, printer: &Printer) {
    let config = &ctx.project.config;
    for key in &config.unknown_keys {
        printer.warning(format_args!("{key} is ignored"));
    }
    if cli.verbose > 0 || cli.debug {
        for warning in &config.warnings {
            printer.warning(warning);
        }
    }
}

/// Waits for another process's lock are announced, so a pause has a reason.
fn announce_wait(printer: &Printer, what: &str) {
    printer.status(format_args!(
        "Waiting for another lake process to finish {what}in this project…"
    ));
}
