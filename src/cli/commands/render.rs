//! `lake render`: the SQL a model runs, in DuckDB's or Spark's dialect.

use std::process::ExitCode;

use crate::cli::args::{Cli, IntervalArgs, RenderArgs, RenderDialect};
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops::{self, RenderRequest};

pub(super) fn run(args: &RenderArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let request = request(&args.model, &args.interval, args.expand.clone())?;
    let sql = match args.dialect {
        RenderDialect::Duckdb => ctx.render(&request)?,
        RenderDialect::Spark => ctx.render_spark(&args.model, request.execution_time)?,
    };
    printer.line(sql)?;
    Ok(ExitCode::SUCCESS)
}

/// What `render` and `evaluate` ask for: `model` over the interval the flags give.
pub(super) fn request(
    model: &str,
    interval: &IntervalArgs,
    expand: Option<Vec<String>>,
) -> Result<RenderRequest> {
    let now = ops::execution_time(interval.execution_time.as_deref())?;
    Ok(RenderRequest {
        window: ops::window(interval.start.as_deref(), interval.end.as_deref(), now)?,
        expand,
        ..RenderRequest::new(model, now)
    })
}
