//! Rendering for the terminal and for scripts: plans, tables of rows (aligned, CSV, JSON), progress.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use arrow::array::Array;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use console::{Style, style};
use indicatif::{ProgressBar, ProgressStyle};

use super::args::{DagFormat, RowFormat};
use crate::engine::QueryResult;
use crate::error::LakeError;
use crate::plan::{Backfill, Category, ChangeKind, Plan};
use crate::project::ModelId;
use crate::scheduler::Observer;
use crate::snapshot::{SuffixTarget, VirtualName};
use crate::sql::ModelName;
use crate::storage::WriteStats;

/// Whether output goes to a person (tree and colour) or to a pipe (Markdown).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Terminal,
    Pipe,
}

fn shown_name(name: &ModelName, environment: &str, suffix: SuffixTarget) -> String {
    VirtualName::new(name, environment, suffix).to_string()
}

/// The plan as SQLMesh prints it: a tree on a terminal, Markdown otherwise.
pub fn render_plan(plan: &Plan, audience: Audience) -> String {
    render_changes(plan, audience) + &render_backfills(plan, audience)
}

/// "restating N model(s) and rebuilding M downstream" for a plan whose backfills restate data; `None`
/// when nothing is restated.
fn restatement_summary(plan: &Plan) -> Option<String> {
    let restated = plan.backfills.iter().filter(|b| b.restatement).count();
    if restated == 0 {
        return None;
    }
    let others = plan.backfills.len() - restated;
    Some(match others {
        0 => format!("restating {restated} model(s)"),
        n => format!("restating {restated} model(s) and rebuilding {n} downstream"),
    })
}

/// The header and the differences of a plan, without what it builds.
pub fn render_changes(plan: &Plan, audience: Audience) -> String {
    let mut out = String::new();
    let env = &plan.environment;
    let suffix = plan.suffix_target;
    let bold = Style::new().bold();
    let heading = |text: &str| match audience {
        Audience::Terminal => format!("{}\n", bold.apply_to(text)),
        Audience::Pipe => format!("**{text}**\n"),
    };
    if plan.is_new_environment {
        match &plan.created_from {
            Some(from) => out.push_str(&heading(&format!(
                "New environment `{env}` will be created from `{from}`"
            ))),
            None => out.push_str(&heading(&format!(
                "`{env}` environment will be initialized"
            ))),
        }
        out.push('\n');
    }
    let compared = plan.created_from.as_deref().unwrap_or(env);
    if plan.changes.is_empty() {
        if !plan.virtual_changes.is_empty() {
            out.push_str(&format!(
                "No model changes; {} virtual name(s) of `{env}` will be repointed\n",
                plan.virtual_changes.len()
            ));
        } else if let Some(restated) = restatement_summary(plan) {
            out.push_str(&format!(
                "No model changes: project files match the `{compared}` environment; {restated}\n"
            ));
        } else {
            out.push_str(&format!(
                "No changes to plan: project files match the `{compared}` environment\n"
            ));
        }
        // Missing intervals of incremental models still follow, as the backfill section.
        if !plan.backfills.is_empty() {
            out.push('\n');
        }
        return out;
    }
    if !plan.changes.is_empty() {
        out.push_str(&heading(&format!(
            "Summary of differences from `{compared}`:"
        )));
        out.push('\n');
    }
    let sections: [(&str, ChangeKind, Style); 4] = [
        ("Added Models:", ChangeKind::Added, Style::new().green()),
        ("Removed Models:", ChangeKind::Removed, Style::new().red()),
        (
            "Directly Modified:",
            ChangeKind::DirectlyModified,
            Style::new().yellow(),
        ),
        (
            "Indirectly Modified:",
            ChangeKind::IndirectlyModified,
            Style::new().yellow(),
        ),
    ];
    for (title, kind, colour) in sections {
        let changes: Vec<_> = plan.changes.iter().filter(|c| c.kind == kind).collect();
        if changes.is_empty() {
            continue;
        }
        out.push_str(&heading(title));
        for (n, change) in changes.iter().enumerate() {
            let name = shown_name(&change.name, env, suffix);
            let mut line = match audience {
                Audience::Terminal => {
                    let branch = if n + 1 == changes.len() {
                        "└──"
                    } else {
                        "├──"
                    };
                    format!("{branch} {}", colour.apply_to(&name))
                }
                Audience::Pipe => format!("- `{name}`"),
            };
            if let Some(category) = change.category.filter(|_| kind != ChangeKind::Added) {
                match &change.reason {
                    Some(reason) => line.push_str(&format!(" ({}: {reason})", category.label())),
                    None => line.push_str(&format!(" ({})", category.label())),
                }
            }
            if !change.because_of.is_empty() && category_is_indirect(change.category) {
                let parents: Vec<String> = change
                    .because_of
                    .iter()
                    .map(|p| shown_name(p, env, suffix))
                    .collect();
                line.push_str(&format!(" because of {}", parents.join(", ")));
            }
            out.push_str(&line);
            out.push('\n');
            // Under a tree branch that continues below, what follows keeps the trunk line.
            let indent = if n + 1 == changes.len() {
                "    "
            } else {
                "│   "
            };
            if let Some(columns) = &change.columns {
                out.push_str(&render_columns(columns, audience, indent));
            }
            if let Some(diff) = &change.diff {
                out.push_str(&render_diff(diff, audience, indent));
            }
        }
        out.push('\n');
    }
    out
}

/// One line under a change naming the columns it touches: those its own change adds, removes, retypes or
/// computes anew, and those that read columns changed upstream.
fn render_columns(
    columns: &crate::plan::columns::ColumnImpact,
    audience: Audience,
    indent: &str,
) -> String {
    let quoted = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let own = &columns.own;
    let mut parts: Vec<String> = [
        ("added", &own.added),
        ("removed", &own.removed),
        ("retyped", &own.retyped),
        ("changed", &own.changed),
    ]
    .into_iter()
    .filter(|(_, names)| !names.is_empty())
    .map(|(what, names)| format!("{what} {}", quoted(names)))
    .collect();
    parts.extend(
        columns
            .reads_changed
            .iter()
            .map(|r| format!("`{}` reads changed {}", r.column, quoted(&r.upstream))),
    );
    let text = format!("columns: {}", parts.join("; "));
    match audience {
        Audience::Terminal => format!("{indent}{}\n", Style::new().dim().apply_to(text)),
        Audience::Pipe => format!("  - {text}\n"),
    }
}

/// What `lake diff` prints: the differences only, with no build section.
pub fn render_diff_summary(plan: &Plan, audience: Audience) -> String {
    let compared = plan.created_from.as_deref().unwrap_or(&plan.environment);
    if plan.changes.is_empty() {
        return format!("No differences: project files match the `{compared}` environment\n");
    }
    render_changes(plan, audience).trim_end().to_string() + "\n"
}

fn backfill_heading(audience: Audience) -> String {
    match audience {
        Audience::Terminal => format!(
            "{}\n",
            Style::new().bold().apply_to("Models needing backfill:")
        ),
        Audience::Pipe => "**Models needing backfill:**\n".to_string(),
    }
}

/// What a plan builds: the models needing backfill, each with its intervals.
pub fn render_backfills(plan: &Plan, audience: Audience) -> String {
    let env = &plan.environment;
    let suffix = plan.suffix_target;
    let mut out = String::new();
    if !plan.backfills.is_empty() {
        out.push_str(&backfill_heading(audience));
        for (n, b) in plan.backfills.iter().enumerate() {
            let name = shown_name(&b.name, env, suffix);
            match audience {
                Audience::Terminal => {
                    let branch = if n + 1 == plan.backfills.len() {
                        "└──"
                    } else {
                        "├──"
                    };
                    out.push_str(&format!("{branch} {name}: [{}]\n", b.label()));
                }
                Audience::Pipe => out.push_str(&format!("* `{name}`: [{}]\n", b.label())),
            }
        }
    }
    out
}

/// The plan (and what applying it did) as one JSON document with a stable shape, for CI.
pub fn plan_json(
    plan: &Plan,
    applied: Option<&crate::scheduler::ApplyReport>,
    error: Option<&LakeError>,
) -> serde_json::Value {
    let env = &plan.environment;
    let suffix = plan.suffix_target;
    let changes: Vec<serde_json::Value> = plan
        .changes
        .iter()
        .map(|c| {
            serde_json::json!({
                "model": c.name.to_string(),
                "name_in_environment": shown_name(&c.name, env, suffix),
                "change": c.kind,
                "category": c.category,
                "reason": c.reason,
                "because_of": c.because_of.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                "columns": c.columns,
                "diff": c.diff,
            })
        })
        .collect();
    let backfills: Vec<serde_json::Value> = plan
        .backfills
        .iter()
        .map(|b| {
            serde_json::json!({
                "model": b.name.to_string(),
                "name_in_environment": shown_name(&b.name, env, suffix),
                "physical_table": b.table.to_string(),
                "action": b.action,
            })
        })
        .collect();
    let virtual_updates: Vec<serde_json::Value> = plan
        .virtual_changes
        .iter()
        .map(|v| match v {
            crate::storage::VirtualChange::Point { name, target } => {
                serde_json::json!({"name": name.to_string(), "target": target.to_string()})
            }
            crate::storage::VirtualChange::Drop { name } => {
                serde_json::json!({"name": name.to_string(), "target": null})
            }
        })
        .collect();
    serde_json::json!({
        "environment": env,
        "new_environment": plan.is_new_environment,
        "created_from": plan.created_from,
        "execution_time": plan.execution_time.format("%Y-%m-%d %H:%M:%S").to_string(),
        "has_changes": plan.has_work(),
        "changes": changes,
        "backfills": backfills,
        "virtual_updates": virtual_updates,
        "applied": applied.is_some(),
        "built": applied.map(|r| r.built.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
        "error": error.map(|e| e.to_string()),
    })
}

fn category_is_indirect(category: Option<Category>) -> bool {
    matches!(
        category,
        Some(Category::IndirectBreaking | Category::IndirectNonBreaking | Category::Metadata)
    )
}

fn render_diff(diff: &str, audience: Audience, indent: &str) -> String {
    match audience {
        Audience::Pipe => format!("```diff\n{}```\n", ensure_newline(diff)),
        Audience::Terminal => {
            let mut out = String::new();
            for line in diff.lines() {
                let styled = if line.starts_with("+++") || line.starts_with("---") {
                    style(line).bold().to_string()
                } else if line.starts_with('+') {
                    style(line).green().to_string()
                } else if line.starts_with('-') {
                    style(line).red().to_string()
                } else if line.starts_with("@@") {
                    style(line).cyan().to_string()
                } else {
                    line.to_string()
                };
                out.push_str(indent);
                out.push_str(&styled);
                out.push('\n');
            }
            out
        }
    }
}

fn ensure_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

/// Progress of model builds: a bar on a terminal, one line per model in logs.
pub struct Progress {
    bar: ProgressBar,
    terminal: bool,
    environment: String,
    suffix: SuffixTarget,
    done: Mutex<usize>,
}

impl Progress {
    pub fn new(environment: &str, suffix: SuffixTarget, terminal: bool) -> Self {
        let bar = if terminal {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:<24} {bar:40.green/dim} {percent:>3}% • {pos}/{len} • {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            terminal,
            environment: environment.to_string(),
            suffix,
            done: Mutex::new(0),
        }
    }

    fn line(&self, text: String) {
        if self.terminal {
            self.bar.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn backfill_started(&self, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(0);
        self.bar.set_message("Executing model batches");
        if let Ok(mut done) = self.done.lock() {
            *done = 0;
        }
    }

    fn model_finished(
        &self,
        backfill: &Backfill,
        elapsed: Duration,
        outcome: Result<WriteStats, &LakeError>,
    ) {
        self.bar.inc(1);
        let n = self.done.lock().map(|mut d| {
            *d += 1;
            *d
        });
        let total = self.bar.length().unwrap_or(0);
        let name = shown_name(&backfill.name, &self.environment, self.suffix);
        let what = if backfill.batches.is_empty() {
            backfill.label()
        } else {
            format!("insert {}", backfill.label())
        };
        let status = match outcome {
            Ok(stats) => {
                let rows = stats
                    .rows
                    .map(|r| format!(", {r} rows"))
                    .unwrap_or_default();
                let audits = match stats.audits_passed {
                    0 => String::new(),
                    n => format!(", audits passed {n}"),
                };
                format!("[{what}{rows}{audits}]")
            }
            Err(_) => style("[failed]").red().to_string(),
        };
        self.line(format!(
            "[{}/{total}] {name:<40} {status:<44} {:.2}s",
            n.unwrap_or(0),
            elapsed.as_secs_f64()
        ));
    }

    fn audit_warning(&self, backfill: &Backfill, audit: &str, rows: u64) {
        self.line(format!(
            "{} audit `{audit}` of {} found {rows} bad row(s) (non-blocking)",
            style("warning:").yellow(),
            shown_name(&backfill.name, &self.environment, self.suffix)
        ));
    }

    fn schema_change_warning(&self, backfill: &Backfill, change: &str) {
        self.line(format!(
            "{} {} {change} in the table it keeps",
            style("warning:").yellow(),
            shown_name(&backfill.name, &self.environment, self.suffix)
        ));
    }

    fn model_skipped(&self, backfill: &Backfill, failed_parent: &ModelName) {
        self.bar.inc(1);
        self.line(format!(
            "{} {} (upstream {failed_parent} failed)",
            style("skipped").yellow(),
            shown_name(&backfill.name, &self.environment, self.suffix)
        ));
    }

    fn virtual_layer_started(&self, changes: usize) {
        if changes > 0 && self.terminal {
            self.bar.set_length(changes as u64);
            self.bar.set_position(0);
            self.bar.set_message("Updating virtual layer");
        }
    }

    fn virtual_layer_finished(&self) {
        if let Some(len) = self.bar.length() {
            self.bar.set_position(len);
        }
    }
}

/// Timestamps as DuckDB and SQLMesh print them (`2024-01-01 10:00:00`, fractions only when there are some),
/// not ISO 8601's `T` form.
const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";
const TIMESTAMP_TZ_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f%:z";

/// Writes rows as they arrive: CSV and JSON stream batch by batch; the aligned table needs every row first.
pub struct RowSink<'a> {
    format: RowFormat,
    out: &'a mut dyn Write,
    rows: usize,
    table: Vec<RecordBatch>,
}

impl<'a> RowSink<'a> {
    pub fn new(format: RowFormat, out: &'a mut dyn Write) -> Self {
        RowSink {
            format,
            out,
            rows: 0,
            table: Vec::new(),
        }
    }

    pub fn batch(&mut self, batch: RecordBatch) -> Result<(), LakeError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let first = self.rows == 0;
        self.rows += batch.num_rows();
        match self.format {
            RowFormat::Table => self.table.push(batch),
            RowFormat::Csv => {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(first)
                    .with_timestamp_format(TIMESTAMP_FORMAT.into())
                    .with_datetime_format(TIMESTAMP_FORMAT.into())
                    .with_timestamp_tz_format(TIMESTAMP_TZ_FORMAT.into())
                    .build(&mut *self.out);
                writer.write(&batch).map_err(arrow_error)?;
            }
            RowFormat::Json => {
                // One JSON array across batches: open it on the first row, separate batches with commas.
                let mut buffer = Vec::new();
                {
                    let mut writer = arrow::json::ArrayWriter::new(&mut buffer);
                    writer.write(&batch).map_err(arrow_error)?;
                    writer.finish().map_err(arrow_error)?;
                }
                let objects = buffer
                    .strip_prefix(b"[")
                    .and_then(|b| b.strip_suffix(b"]"))
                    .unwrap_or(&buffer);
                self.out
                    .write_all(if first { b"[" } else { b"," })
                    .map_err(io_error)?;
                self.out.write_all(objects).map_err(io_error)?;
            }
        }
        Ok(())
    }

    pub fn finish(self, schema: &SchemaRef) -> Result<(), LakeError> {
        match self.format {
            RowFormat::Table => write_table(self.out, schema, &self.table).map_err(io_error),
            RowFormat::Csv if self.rows == 0 => {
                let header: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                writeln!(self.out, "{}", header.join(",")).map_err(io_error)
            }
            RowFormat::Csv => Ok(()),
            RowFormat::Json if self.rows == 0 => writeln!(self.out, "[]").map_err(io_error),
            RowFormat::Json => writeln!(self.out, "]").map_err(io_error),
        }
    }
}

/// Writes a whole query result to `out` in the requested format.
pub fn write_rows(
    out: &mut dyn Write,
    result: &QueryResult,
    format: RowFormat,
) -> Result<(), LakeError> {
    let mut sink = RowSink::new(format, out);
    for batch in &result.batches {
        sink.batch(batch.clone())?;
    }
    sink.finish(&result.schema)
}

fn io_error(e: std::io::Error) -> LakeError {
    LakeError::io("<stdout>", e)
}

fn arrow_error(e: arrow::error::ArrowError) -> LakeError {
    LakeError::Output(e.to_string())
}

fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_numeric()
}

/// An aligned table: numbers right-aligned, everything else left-aligned.
fn write_table(
    out: &mut dyn Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> std::io::Result<()> {
    let fields = schema.fields();
    let mut columns: Vec<Vec<String>> = fields.iter().map(|f| vec![f.name().clone()]).collect();
    let options = FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_format(Some(TIMESTAMP_FORMAT))
        .with_datetime_format(Some(TIMESTAMP_FORMAT))
        .with_timestamp_tz_format(Some(TIMESTAMP_TZ_FORMAT));
    for batch in batches {
        for (c, column) in batch.columns().iter().enumerate() {
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options);
            for row in 0..column.len() {
                let text = match &formatter {
                    Ok(f) => f.value(row).to_string(),
                    Err(_) => "?".into(),
                };
                columns[c].push(text);
            }
        }
    }
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| c.iter().map(|v| v.chars().count()).max().unwrap_or(0))
        .collect();
    let rows = columns.first().map_or(0, Vec::len);
    for r in 0..rows {
        let cells: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(c, values)| {
                let width = widths[c];
                if is_numeric(fields[c].data_type()) {
                    format!("{:>width$}", values[r])
                } else {
                    format!("{:<width$}", values[r])
                }
            })
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}

/// `lake check-intervals`: per model, the built and the missing ranges.
pub fn render_intervals(models: &[crate::ops::ModelIntervals]) -> String {
    if models.is_empty() {
        return "No incremental or FULL models in this environment.\n".to_string();
    }
    let ranges = |list: &[crate::intervals::Range]| {
        if list.is_empty() {
            return "none".to_string();
        }
        list.iter()
            .map(|r| crate::intervals::describe(*r))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    for m in models {
        out.push_str(&format!(
            "{}\n  complete: {}\n  missing:  {}\n",
            m.model,
            ranges(&m.complete),
            ranges(&m.missing)
        ));
    }
    out
}

/// Left-aligned text columns under a header row.
pub fn aligned<R: AsRef<[String]>>(headers: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.as_ref().iter().map(String::as_str).collect()));
    }
    out
}

/// `lake table-diff` for people: schema differences, row counts, then match rates per column.
pub fn render_table_diff(
    diff: &crate::checks::table_diff::TableDiff,
    source: &str,
    target: &str,
) -> String {
    let mut out = String::new();
    let changed: Vec<_> = diff
        .columns
        .iter()
        .filter(|c| c.source_type != c.target_type)
        .collect();
    out.push_str("Schema:\n");
    if changed.is_empty() {
        out.push_str(&format!("  identical ({} columns)\n", diff.columns.len()));
    }
    for c in changed {
        let line = match (&c.source_type, &c.target_type) {
            (None, Some(t)) => format!("  + {} {t} (only in {target})", c.name),
            (Some(s), None) => format!("  - {} {s} (only in {source})", c.name),
            (Some(s), Some(t)) => format!("  ~ {} {s} -> {t}", c.name),
            (None, None) => continue,
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!(
        "\nRows: {source} {}, {target} {}\n",
        diff.source_rows, diff.target_rows
    ));
    match diff.joined_rows {
        None => out
            .push_str("(no grain: pass --on COLUMNS or set the model's grain to compare values)\n"),
        Some(joined) => {
            out.push_str(&format!(
                "Joined on {}: {joined} in both, {} only in {source}, {} only in {target}\n",
                diff.keys.join(", "),
                diff.source_only_rows.unwrap_or(0),
                diff.target_only_rows.unwrap_or(0)
            ));
            if !diff.matches.is_empty() {
                let rows: Vec<[String; 2]> = diff
                    .matches
                    .iter()
                    .map(|m| [m.name.clone(), format!("{:.1}%", m.match_pct)])
                    .collect();
                out.push('\n');
                out.push_str(&aligned(&["column", "match"], &rows));
            }
        }
    }
    if let Some(samples) = &diff.samples {
        let sections = [
            (format!("Rows only in {source}"), &samples.source_only),
            (format!("Rows only in {target}"), &samples.target_only),
            ("Rows whose values differ".to_string(), &samples.differing),
        ];
        for (title, sample) in sections {
            out.push_str(&format!("\n{title} (sample):\n"));
            if sample.rows.is_empty() {
                out.push_str("  none\n");
                continue;
            }
            let header: Vec<&str> = sample.columns.iter().map(String::as_str).collect();
            let rows: Vec<Vec<String>> = sample
                .rows
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
                        .collect()
                })
                .collect();
            out.push_str(&aligned(&header, &rows));
        }
    }
    out
}

/// `lake test`: a line per test, and for a failing one the rows it missed and the ones it did not expect.
/// `failures_only` is for the test run before a plan, which shows only what stops it.
pub fn write_test_results(
    out: &mut dyn Write,
    results: &[crate::checks::unit_test::TestResult],
    failures_only: bool,
) -> Result<(), LakeError> {
    use crate::checks::unit_test::Outcome;
    let indented = |out: &mut dyn Write, result: &QueryResult| -> Result<(), LakeError> {
        let mut table = Vec::new();
        write_rows(&mut table, result, RowFormat::Table)?;
        for line in String::from_utf8_lossy(&table).lines() {
            writeln!(out, "      {line}").map_err(io_error)?;
        }
        Ok(())
    };
    let rows = |r: &QueryResult| r.batches.iter().map(|b| b.num_rows()).sum::<usize>();
    for r in results {
        let id = r.test.id();
        match &r.outcome {
            Outcome::Passed if failures_only => {}
            Outcome::Passed => writeln!(out, "{} {id}", style("✔").green()).map_err(io_error)?,
            Outcome::Error(message) => writeln!(
                out,
                "{} {id} ({}): {message}",
                style("✘").red(),
                r.test.model
            )
            .map_err(io_error)?,
            Outcome::Failed(mismatches) => {
                writeln!(out, "{} {id} ({})", style("✘").red(), r.test.model).map_err(io_error)?;
                for m in mismatches {
                    writeln!(
                        out,
                        "  {}: {} expected row(s) missing, {} unexpected row(s)",
                        m.output,
                        rows(&m.missing),
                        rows(&m.unexpected)
                    )
                    .map_err(io_error)?;
                    if rows(&m.missing) > 0 {
                        writeln!(out, "    expected, not produced:").map_err(io_error)?;
                        indented(out, &m.missing)?;
                    }
                    if rows(&m.unexpected) > 0 {
                        writeln!(out, "    produced, not expected:").map_err(io_error)?;
                        indented(out, &m.unexpected)?;
                    }
                }
            }
        }
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    if !failures_only {
        writeln!(
            out,
            "Ran {} test(s): {} passed, {failed} failed",
            results.len(),
            results.len() - failed
        )
        .map_err(io_error)?;
    }
    Ok(())
}

/// `lake audit`: each audit's outcome under its model; a failing one with its query and sample rows.
pub fn write_audits(
    out: &mut dyn Write,
    results: &[crate::ops::AuditResult],
) -> Result<(), LakeError> {
    if results.is_empty() {
        writeln!(out, "No audits to run.").map_err(io_error)?;
        return Ok(());
    }
    let mut model = None;
    let (mut passed, mut failed, mut warned) = (0, 0, 0);
    for r in results {
        if model != Some(&r.model) {
            writeln!(out, "{}", r.model).map_err(io_error)?;
            model = Some(&r.model);
        }
        if r.rows == 0 {
            passed += 1;
            writeln!(out, "  {} {}", style("✔").green(), r.audit).map_err(io_error)?;
            continue;
        }
        let (mark, note) = if r.blocking {
            failed += 1;
            (style("✘").red(), "")
        } else {
            warned += 1;
            (style("⚠").yellow(), " (non-blocking)")
        };
        writeln!(out, "  {mark} {}: {} bad row(s){note}", r.audit, r.rows).map_err(io_error)?;
        writeln!(out, "    query: {}", r.query.replace('\n', "\n      ")).map_err(io_error)?;
        if let Some(sample) = &r.sample {
            let mut table = Vec::new();
            write_rows(&mut table, sample, RowFormat::Table)?;
            for line in String::from_utf8_lossy(&table).lines() {
                writeln!(out, "    {line}").map_err(io_error)?;
            }
        }
    }
    writeln!(
        out,
        "Audits: {passed} passed, {failed} failed, {warned} warning(s)"
    )
    .map_err(io_error)
}

/// `lake audit --json`: one object per audit, with up to `AUDIT_SAMPLE_ROWS` bad rows.
pub fn audits_json(results: &[crate::ops::AuditResult]) -> Result<String, LakeError> {
    let mut audits = Vec::new();
    for r in results {
        let sample = match &r.sample {
            Some(sample) => {
                let mut buffer = Vec::new();
                write_rows(&mut buffer, sample, RowFormat::Json)?;
                serde_json::from_slice(&buffer).map_err(|e| LakeError::Output(e.to_string()))?
            }
            None => serde_json::Value::Array(Vec::new()),
        };
        audits.push(serde_json::json!({
            "model": r.model.to_string(),
            "audit": r.audit,
            "blocking": r.blocking,
            "bad_rows": r.rows,
            "passed": r.rows == 0,
            "query": r.query,
            "sample": sample,
        }));
    }
    serde_json::to_string_pretty(&serde_json::json!({ "audits": audits }))
        .map_err(|e| LakeError::Output(e.to_string()))
}

/// Linter findings, grouped by file as SQLMesh prints them, errors before warnings; nothing when clean.
pub fn write_lint(
    out: &mut dyn Write,
    violations: &[crate::checks::lint::Violation],
) -> Result<(), LakeError> {
    use crate::config::linter::Severity;
    for severity in [Severity::Error, Severity::Warning] {
        let mut path = None;
        for v in violations.iter().filter(|v| v.severity == severity) {
            if path != Some(&v.path) {
                let (title, mark) = match severity {
                    Severity::Error => ("errors", style("✘").red()),
                    Severity::Warning => ("warnings", style("⚠").yellow()),
                };
                writeln!(out, "{mark} Linter {title} for {}:", v.path).map_err(io_error)?;
                path = Some(&v.path);
            }
            writeln!(
                out,
                " - {} ({}:{}:{}): {}",
                v.rule, v.path, v.line, v.column, v.message
            )
            .map_err(io_error)?;
        }
    }
    Ok(())
}

/// `lake format`: the files that changed (or would, with `--check`) and the statements kept as written.
pub fn write_format_report(
    out: &mut dyn Write,
    files: &[crate::format::FormattedFile],
    check: bool,
) -> Result<(), LakeError> {
    for file in files {
        if file.changed && check {
            writeln!(out, "{} needs reformatting.", file.path).map_err(io_error)?;
        } else if file.changed {
            writeln!(out, "Formatted {}", file.path).map_err(io_error)?;
        }
        for kept in &file.kept {
            writeln!(out, "  {} {}:{kept}", style("⚠").yellow(), file.path).map_err(io_error)?;
        }
    }
    let changed = files.iter().filter(|f| f.changed).count();
    match (check, changed) {
        (_, 0) => writeln!(out, "All {} file(s) are formatted.", files.len()),
        (true, n) => writeln!(out, "\n{n} file(s) need reformatting."),
        (false, n) => writeln!(out, "\n{n} file(s) reformatted."),
    }
    .map_err(io_error)
}

pub fn timestamp(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The dependency graph as text (`model <- parents`), Graphviz dot, or Mermaid.
pub(crate) fn render_dag(
    project: &crate::project::Project,
    format: DagFormat,
    selected: Option<&std::collections::BTreeSet<ModelId>>,
) -> String {
    let name = |i: ModelId| project.model(i).meta.name.to_string();
    let kept = |i: &ModelId| selected.is_none_or(|s| s.contains(i));
    let order: Vec<ModelId> = project.order.iter().copied().filter(kept).collect();
    let parents = |i: ModelId| project.dag.parents(i).filter(kept).collect::<Vec<_>>();
    let mut out = String::new();
    match format {
        DagFormat::Text | DagFormat::Html => {
            for &i in &order {
                let mut parents: Vec<String> = parents(i).into_iter().map(name).collect();
                parents.sort();
                if parents.is_empty() {
                    out.push_str(&format!("{}\n", name(i)));
                } else {
                    out.push_str(&format!("{} <- {}\n", name(i), parents.join(", ")));
                }
            }
        }
        DagFormat::Dot => {
            out.push_str("digraph lake {\n  rankdir=LR;\n");
            for &i in &order {
                out.push_str(&format!(
                    "  \"{}\" [label=\"{}\\n{}\"];\n",
                    name(i),
                    name(i),
                    project.model(i).meta.kind.name()
                ));
                for p in parents(i) {
                    out.push_str(&format!("  \"{}\" -> \"{}\";\n", name(p), name(i)));
                }
            }
            out.push_str("}\n");
        }
        DagFormat::Mermaid => {
            out.push_str("graph LR\n");
            for &i in &order {
                // Mermaid node ids are plain words: `m` and the model's index.
                let node = |id: ModelId| format!("m{}", id.index());
                out.push_str(&format!("  {}[\"{}\"]\n", node(i), name(i)));
                for p in parents(i) {
                    out.push_str(&format!("  {} --> {}\n", node(p), node(i)));
                }
            }
        }
    }
    out
}

/// `--profile`: on stderr, each phase's own time (summed over threads) and count, then wall and CPU time.
pub fn print_profile(wall: std::time::Duration) {
    eprint!("{}", render_profile(&crate::profile::report(), wall));
    if let Some((user, system)) = crate::profile::cpu_times() {
        eprintln!(
            "cpu: {} user, {} system",
            seconds(user.as_secs_f64()),
            seconds(system.as_secs_f64())
        );
    }
}

fn render_profile(totals: &[crate::profile::PhaseTotal], wall: std::time::Duration) -> String {
    let rows: Vec<[String; 3]> = totals
        .iter()
        .map(|t| {
            [
                t.phase.label().to_string(),
                seconds(t.time.as_secs_f64()),
                t.count.to_string(),
            ]
        })
        .collect();
    format!(
        "profile (own time per phase, summed over threads):\n{}wall: {}\n",
        aligned(&["phase", "time", "count"], &rows),
        seconds(wall.as_secs_f64())
    )
}

fn seconds(s: f64) -> String {
    format!("{s:.3} s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{BackfillAction, ModelChange};
    use crate::snapshot::PhysicalTable;

    fn plan() -> Plan {
        let full = ModelName::new("demo", "full_model");
        let view = ModelName::new("demo", "view_model");
        Plan {
            environment: crate::snapshot::EnvironmentName::parse("dev").unwrap(),
            expected_plan_id: None,
            created_from: Some("prod".into()),
            is_new_environment: true,
            snapshots: Vec::new().into(),
            new_snapshots: vec![],
            changes: vec![
                ModelChange {
                    name: full.clone(),
                    kind: ChangeKind::DirectlyModified,
                    category: Some(Category::Breaking),
                    reason: Some("changed the WHERE clause".into()),
                    diff: Some(
                        "--- a/m.sql\n+++ b/m.sql\n@@ -1 +1 @@\n-SELECT 1\n+SELECT 2\n".into(),
                    ),
                    because_of: vec![],
                    columns: None,
                },
                ModelChange {
                    name: view.clone(),
                    kind: ChangeKind::IndirectlyModified,
                    category: Some(Category::IndirectBreaking),
                    reason: None,
                    diff: None,
                    because_of: vec![full.clone()],
                    columns: None,
                },
            ],
            backfills: vec![Backfill {
                model: crate::project::ModelId::nth(0),
                name: full.clone(),
                version: "v".into(),
                table: PhysicalTable::for_version(&full, "v", None),
                action: BackfillAction::FullRefresh,
                batches: vec![],
                restatement: false,
                engine: None,
                recreate: false,
                fill: crate::plan::Fill::Rows,
            }],
            virtual_changes: vec![],
            promoted: vec![],
            execution_time: chrono::NaiveDateTime::default(),
            previous_environment: None,
            allowed_schema_changes: Default::default(),
            suffix_target: SuffixTarget::Schema,
            names_taken_over: vec![],
            in_place_dropped: vec![],
        }
    }

    #[test]
    fn terminal_plan_is_a_tree_and_pipe_plan_is_markdown() {
        console::set_colors_enabled(false);
        let tty = render_plan(&plan(), Audience::Terminal);
        assert_eq!(
            tty,
            "New environment `dev` will be created from `prod`\n\n\
             Summary of differences from `prod`:\n\n\
             Directly Modified:\n\
             └── demo__dev.full_model (Breaking: changed the WHERE clause)\n    --- a/m.sql\n    +++ b/m.sql\n    @@ -1 +1 @@\n    -SELECT 1\n    +SELECT 2\n\n\
             Indirectly Modified:\n\
             └── demo__dev.view_model (Indirect Breaking) because of demo__dev.full_model\n\n\
             Models needing backfill:\n\
             └── demo__dev.full_model: [full refresh]\n"
        );
        let pipe = render_plan(&plan(), Audience::Pipe);
        assert!(
            pipe.contains("- `demo__dev.full_model` (Breaking: changed the WHERE clause)\n```diff\n--- a/m.sql\n"),
            "{pipe}"
        );
        assert!(
            pipe.ends_with("* `demo__dev.full_model`: [full refresh]\n"),
            "{pipe}"
        );
    }
}
