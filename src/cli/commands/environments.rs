//! `lake environments`: every environment, when it was last updated and when it expires.

use std::process::ExitCode;

use crate::cli::args::{Cli, EnvironmentsArgs};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::Result;

pub(super) fn run(args: &EnvironmentsArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let environments = ctx.environments()?;
    if args.json {
        let doc: Vec<serde_json::Value> = environments
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name,
                    "updated": output::timestamp(Some(e.updated_ts)),
                    "expires": e.expiration_ts.map(|t| output::timestamp(Some(t))),
                    "models": e.snapshots.len(),
                })
            })
            .collect();
        printer.json(&doc)?;
    } else if environments.is_empty() {
        printer.line("No environments yet: `lake plan` creates prod.")?;
    } else {
        let rows: Vec<[String; 3]> = environments
            .iter()
            .map(|e| {
                [
                    e.name.clone(),
                    output::timestamp(Some(e.updated_ts)),
                    e.expiration_ts
                        .map_or_else(|| "never".to_string(), |t| output::timestamp(Some(t))),
                ]
            })
            .collect();
        printer.print(output::aligned(
            &["environment", "updated (UTC)", "expires (UTC)"],
            &rows,
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
