//! `lake render`: the SQL a model runs, in DuckDB's or Spark's dialect.

use std::process::ExitCode;

use crate::cli::args::{Cli, RenderArgs, RenderDialect};
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops;

pub(super) fn run(args: &RenderArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let execution_time = ops::execution_time(args.execution_time.as_deref())?;
    let sql = match args.dialect {
        RenderDialect::Duckdb => ctx.render(&args.model, execution_time)?,
        RenderDialect::Spark => ctx.render_spark(&args.model, execution_time)?,
    };
    printer.line(sql)?;
    Ok(ExitCode::SUCCESS)
}
