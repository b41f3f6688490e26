//! `lake table-diff`: one model compared between two environments.

use std::process::ExitCode;

use crate::checks::table_diff::DiffOptions;
use crate::cli::args::{Cli, TableDiffArgs};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::{LakeError, Result};

pub(super) fn run(args: &TableDiffArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let Some((source, target)) = args.environments.split_once(':') else {
        return Err(LakeError::Usage(
            format!("expected SOURCE:TARGET, got `{}`", args.environments),
            Some("e.g. `lake table-diff prod:dev demo.full_model`".into()),
        ));
    };
    let ctx = super::load(cli, printer)?;
    let options = DiffOptions {
        keys: args.on.clone(),
        skip_columns: args.skip_columns.clone(),
        sample_rows: if args.show_sample { args.limit } else { 0 },
    };
    let diff = ctx.table_diff(
        (source, target),
        &args.model,
        &options,
        args.filter.as_deref(),
    )?;
    if args.json {
        // Through a `Value`, as every JSON document lake prints: its keys come out in one (sorted) order.
        let doc = serde_json::to_value(&diff).map_err(|e| LakeError::Output(e.to_string()))?;
        printer.json(&doc)?;
    } else {
        printer.print(output::render_table_diff(&diff, source, target))?;
    }
    Ok(ExitCode::SUCCESS)
}
