//! Command-line interface: argument parsing and output only; every operation lives in the library.

pub mod output;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use console::style;

use crate::error::{LakeError, Result};
use crate::ops::{self, Context, PlanCheckFindings};
use crate::plan::{Category, PlanOptions};
use crate::sql::ModelName;
use crate::{PROD, project::template};
use output::{Audience, Progress, RowFormat};

const ABOUT: &str = "Plan and apply SQL models on DuckDB, SQLMesh-style: every model version gets its own \
physical table, environments are views over them, and nothing is rebuilt that has not changed.";

const AFTER_HELP: &str = "\
Getting started:
  lake init demo && cd demo
  lake plan --auto-apply                          # build prod
  lake fetchdf \"select * from demo.full_model\"    # query it
  lake plan dev_alice                             # try a change in an isolated environment

Exit codes: 0 success, 1 failure, 2 usage error.";

#[derive(Parser)]
#[command(name = "lake", version, about = ABOUT, after_help = AFTER_HELP, propagate_version = true)]
struct Cli {
    /// Project directory (holds config.yaml).
    #[arg(
        short = 'p',
        long = "path",
        visible_alias = "paths",
        global = true,
        default_value = "."
    )]
    path: PathBuf,

    /// Gateway from config.yaml to use (default: `default_gateway`).
    #[arg(long, global = true)]
    gateway: Option<String>,

    /// More detail on stderr: -v shows configuration warnings in full.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// When to use colour. `auto` colours only a terminal and honours NO_COLOR.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new project: config.yaml, SEED, FULL and VIEW models, a seed CSV, tests and audits.
    Init {
        /// Directory to create the project in (default: --path).
        dir: Option<PathBuf>,
        /// Write the template even if the directory is not empty (overwrites template files).
        #[arg(long)]
        force: bool,
    },
    /// Show how the project differs from an environment, then build and promote the changes.
    ///
    /// Without --auto-apply, a terminal is asked to confirm; anything else only prints the plan.
    /// A dev environment reuses prod's tables for every model it does not change (zero copy).
    Plan {
        /// Environment to plan for.
        #[arg(default_value = PROD)]
        environment: String,
        /// Apply without asking.
        #[arg(long)]
        auto_apply: bool,
        /// Never ask; print the plan and apply only with --auto-apply.
        #[arg(long)]
        no_prompts: bool,
        /// Give a dev environment names for every model, not only the changed ones.
        #[arg(long)]
        include_unmodified: bool,
        /// Pin "now" (YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS", UTC) for reproducible runs.
        #[arg(long)]
        execution_time: Option<String>,
        /// Keep every changed model's physical table: the change applies to data built from now on
        /// (prod only). Nothing is rebuilt; the next `lake run` uses the new logic.
        #[arg(long)]
        forward_only: bool,
        /// `text`: a tree on a terminal, Markdown in a pipe. `json`: one document for CI (never prompts).
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Dev plans: build incremental intervals from this date on (YYYY-MM-DD).
        #[arg(short, long)]
        start: Option<String>,
        /// Dev plans: build incremental intervals up to this date, inclusive.
        #[arg(short, long)]
        end: Option<String>,
        /// Rebuild this model (its intervals within --start/--end) and everything downstream; repeatable.
        #[arg(short, long = "restate-model", value_name = "MODEL")]
        restate_model: Vec<String>,
        /// Plan without running the unit tests in tests/*.yaml first.
        #[arg(long)]
        skip_tests: bool,
        /// Plan without running the linter first (when `linter.enabled` is true).
        #[arg(long)]
        skip_linter: bool,
    },
    /// Write a unit test for MODEL from live data: each --query gives an upstream model's input rows, and the
    /// expected output is what the model's query makes of them now.
    ///
    /// `lake create-test demo.full_model --query demo.incremental_model "SELECT * FROM demo.incremental_model LIMIT 5"`
    CreateTest {
        model: String,
        /// `UPSTREAM_MODEL SQL`; repeatable.
        #[arg(long = "query", num_args = 2, value_names = ["UPSTREAM", "SQL"], required = true)]
        queries: Vec<String>,
        /// Where to write it, relative to the project (default tests/test_<model>.yaml).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        overwrite: bool,
    },
    /// Run the unit tests in tests/*.yaml on in-memory DuckDB; exit 1 if any fails.
    ///
    /// Select tests as `tests/file.yaml`, `tests/file.yaml::test_name` or `test_name`:
    /// `lake test tests/test_full_model.yaml::test_full_model`.
    Test { tests: Vec<String> },
    /// Check the models against the rules chosen under `linter:` in config.yaml; exit 1 on an error.
    ///
    /// Rules: ambiguousorinvalidcolumn, invalidselectstarexpansion (both checked by DuckDB's binder on
    /// empty tables), noselectstar, noambiguousprojections, nomissingaudits, nomissingowner,
    /// nomissingunittest. Turn them on with `linter: {enabled: true, rules: ALL}`; `warn_rules` only warn,
    /// `ignored_rules` (also a MODEL property) skip. Every plan lints first unless --skip-linter.
    Lint {
        /// Only these models (repeatable); default: every model.
        #[arg(long = "model", value_name = "MODEL")]
        models: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite models/*.sql and audits/*.sql in one canonical style (`--check` in CI)
    ///
    /// MODEL properties one per line, SQL keywords upper-case at the start of clauses, one select item per
    /// line. Names keep their case and comments stay; a statement lake cannot re-lay without changing its
    /// meaning is kept as written and listed. In CI, `lake format --check` changes nothing and exits 1 when
    /// a file would change.
    Format {
        /// Only report the files that would change; exit 1 if any would.
        #[arg(long)]
        check: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Upgrade the state written by an older lake to this lake's schema (one transaction).
    Migrate,
    /// Write external_models.yaml: every table models read that lake does not build, with its columns.
    CreateExternalModels,
    /// Show each incremental model's complete and missing intervals in an environment.
    CheckIntervals {
        #[arg(default_value = PROD)]
        environment: String,
        /// Pin "now" (UTC).
        #[arg(long)]
        execution_time: Option<String>,
    },
    /// Show how the project differs from an environment; exit 1 if it does, 0 if it matches.
    Diff {
        #[arg(default_value = PROD)]
        environment: String,
    },
    /// List environments: when each was last updated and when it expires.
    Environments {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Expire an environment now; the janitor then removes its names (prod cannot be invalidated).
    Invalidate {
        environment: String,
        /// Run the janitor for this environment at once.
        #[arg(short, long)]
        sync: bool,
    },
    /// Remove expired environments, then drop the tables no environment uses once their TTL has passed.
    ///
    /// Best-effort: a failure is reported and the rest still runs (exit 1 if anything failed).
    Janitor {
        /// Drop unused tables even if their snapshot TTL has not passed yet.
        #[arg(long)]
        ignore_ttl: bool,
        /// Only this environment, and the tables only it used.
        #[arg(short, long)]
        environment: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run the models' audits on an environment's data; exit 1 if a blocking audit finds bad rows.
    ///
    /// Each failing audit prints its query and a sample of the bad rows:
    /// `lake audit --model demo.full_model`.
    Audit {
        /// Only these models (repeatable); default: every model with audits.
        #[arg(long = "model", value_name = "MODEL")]
        models: Vec<String>,
        #[arg(short, long, default_value = PROD)]
        environment: String,
        /// Pin "now" (UTC) for time macros in audit queries.
        #[arg(long)]
        execution_time: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the physical table that holds a model's data in an environment.
    TableName {
        model: String,
        #[arg(short, long, default_value = PROD)]
        environment: String,
    },
    /// Compare a model between two environments: schema, row counts and per-column match rates.
    ///
    /// Rows are joined on --on, or on the model's `grain`: `lake table-diff prod:dev demo.full_model`.
    TableDiff {
        /// `SOURCE:TARGET` environments.
        environments: String,
        model: String,
        /// Columns identifying a row (comma-separated); default: the model's grain.
        #[arg(long, value_delimiter = ',')]
        on: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the models of an environment whose cron is due (and any missing data).
    Run {
        #[arg(default_value = PROD)]
        environment: String,
        /// Rebuild FULL models even if their cron is not due.
        #[arg(long)]
        ignore_cron: bool,
        /// Pin "now" (UTC).
        #[arg(long)]
        execution_time: Option<String>,
        /// Only these models; repeatable.
        #[arg(long = "select-model", value_name = "MODEL")]
        select_model: Vec<String>,
        /// Only intervals from this date on.
        #[arg(short, long)]
        start: Option<String>,
        /// Only intervals up to this date, inclusive.
        #[arg(short, long)]
        end: Option<String>,
    },
    /// Print the SQL a model would run, with macros rendered and physical table names.
    Render {
        model: String,
        #[arg(long)]
        execution_time: Option<String>,
    },
    /// Run a model's query and print its rows, writing nothing.
    Evaluate {
        model: String,
        /// Rows to show at most.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = RowFormat::Table)]
        format: RowFormat,
        #[arg(long)]
        execution_time: Option<String>,
    },
    /// Run SQL against the warehouse and print the result (environments resolve, e.g. demo__dev.model).
    Fetchdf {
        sql: String,
        /// `table` for people, `csv` (with a header row) or `json` for scripts.
        #[arg(long, value_enum, default_value_t = RowFormat::Table)]
        format: RowFormat,
    },
    /// Print the model dependency graph.
    Dag {
        #[arg(long, value_enum, default_value_t = DagFormat::Text)]
        format: DagFormat,
        /// Write to a file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Show the project's models, macros, environments and whether the engine answers.
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum DagFormat {
    Text,
    Dot,
    Mermaid,
}

/// Entry point of the `lake` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let stderr_tty = std::io::stderr().is_terminal();
    let stdout_tty = std::io::stdout().is_terminal();
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let (out_color, err_color) = match cli.color {
        ColorChoice::Always => (true, true),
        ColorChoice::Never => (false, false),
        ColorChoice::Auto => (stdout_tty && !no_color_env, stderr_tty && !no_color_env),
    };
    console::set_colors_enabled(out_color);
    console::set_colors_enabled_stderr(err_color);
    let _ = miette::set_hook(Box::new(move |_| {
        let opts = miette::MietteHandlerOpts::new()
            .color(err_color)
            .unicode(true)
            .terminal_links(false)
            .context_lines(2);
        // Logs and snapshots need a stable width; a terminal uses its own.
        let opts = if stderr_tty { opts } else { opts.width(100) };
        Box::new(opts.build())
    }));
    match run(&cli, stdout_tty) {
        Ok(code) => code,
        Err(e) => {
            let usage = e.is_usage();
            eprintln!("{:?}", miette::Report::new(e));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn load(cli: &Cli) -> Result<Context> {
    let ctx = Context::load(&cli.path, cli.gateway.as_deref())?;
    let config = &ctx.project.config;
    for key in &config.unknown_keys {
        eprintln!(
            "{} unknown key `{key}` in config.yaml is ignored",
            style("warning:").yellow().bold()
        );
    }
    if cli.verbose > 0 {
        for warning in &config.warnings {
            eprintln!("{} {warning}", style("warning:").yellow().bold());
        }
    }
    Ok(ctx)
}

fn run(cli: &Cli, stdout_tty: bool) -> Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let io = |e: std::io::Error| LakeError::io("<stdout>", e);
    match &cli.command {
        Command::Init { dir, force } => {
            let dir = dir.clone().unwrap_or_else(|| cli.path.clone());
            let files = template::init(&dir, *force)?;
            writeln!(
                stdout,
                "Created a lake project in {} ({} files).",
                dir.display(),
                files.len()
            )
            .map_err(io)?;
            writeln!(
                stdout,
                "Next: cd {} && lake plan --auto-apply",
                dir.display()
            )
            .map_err(io)?;
        }
        Command::Plan {
            environment,
            auto_apply,
            no_prompts,
            include_unmodified,
            execution_time,
            forward_only,
            format,
            start,
            end,
            restate_model,
            skip_tests,
            skip_linter,
        } => {
            let ctx = load(cli)?;
            let mut options = PlanOptions::new(
                environment.clone(),
                ops::execution_time(execution_time.as_deref())?,
            );
            options.include_unmodified = *include_unmodified;
            options.forward_only = *forward_only;
            options.window = ops::window(start.as_deref(), end.as_deref())?;
            options.restate = restate_model.clone();
            options.skip_linter = *skip_linter;
            options.skip_tests = *skip_tests;
            let json = *format == PlanFormat::Json;
            let interactive = !json && std::io::stdin().is_terminal() && stdout_tty && !no_prompts;
            let mut findings_output = Ok(());
            let planned = ctx.plan_reporting(&options, &mut |findings| {
                let mut stderr = std::io::stderr();
                findings_output = match findings {
                    PlanCheckFindings::Lint(violations) => {
                        output::write_lint(&mut stderr, violations)
                    }
                    PlanCheckFindings::FailedTests(results) => {
                        output::write_test_results(&mut stderr, results, true)
                    }
                };
            });
            findings_output?;
            let mut plan = planned?;
            if interactive && !auto_apply {
                let overrides = choose_categories(&plan)?;
                if !overrides.is_empty() {
                    options.overrides = overrides;
                    // The checks passed a moment ago on the same files.
                    options.skip_linter = true;
                    options.skip_tests = true;
                    plan = ctx.plan(&options)?;
                }
            }
            if !json {
                let audience = if stdout_tty {
                    Audience::Terminal
                } else {
                    Audience::Pipe
                };
                write!(stdout, "{}", output::render_plan(&plan, audience)).map_err(io)?;
                stdout.flush().map_err(io)?;
                let batches: usize = plan.backfills.iter().map(|b| b.batches.len().max(1)).sum();
                if batches > LARGE_BACKFILL {
                    eprintln!(
                        "{} this plan runs {batches} batches; that can take a long time. Set `batch_size` on incremental kinds, or limit a dev plan with --start/--end.",
                        style("note:").yellow().bold()
                    );
                }
            }
            let apply = plan.has_work()
                && if *auto_apply {
                    true
                } else if interactive {
                    confirm(&plan.environment)?
                } else {
                    if !json {
                        eprintln!(
                            "Not applied: pass --auto-apply to apply this plan without a prompt."
                        );
                    }
                    false
                };
            let mut report = None;
            if apply {
                let progress = Progress::new(&plan.environment, std::io::stderr().is_terminal());
                let result = ctx.apply(&plan, &progress, || {
                    eprintln!(
                        "Waiting for another lake process to finish applying in this project…"
                    )
                });
                progress.finish();
                match result {
                    Ok(r) => {
                        eprintln!(
                            "{} {} built, {} virtual name(s) updated in `{}`",
                            style("✔").green(),
                            plural(r.built.len(), "model"),
                            r.virtual_changes,
                            plan.environment
                        );
                        report = Some(r);
                    }
                    Err(e) if json => {
                        let doc = output::plan_json(&plan, None, Some(&e));
                        writeln!(stdout, "{doc:#}").map_err(io)?;
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            if json {
                let doc = output::plan_json(&plan, report.as_ref(), None);
                writeln!(stdout, "{doc:#}").map_err(io)?;
            }
        }
        Command::Diff { environment } => {
            let ctx = load(cli)?;
            let mut options = PlanOptions::new(environment.clone(), ops::execution_time(None)?);
            // A diff only compares; the checks that guard applying a plan do not apply.
            options.skip_linter = true;
            options.skip_tests = true;
            let plan = ctx.plan(&options)?;
            let audience = if stdout_tty {
                Audience::Terminal
            } else {
                Audience::Pipe
            };
            write!(stdout, "{}", output::render_diff_summary(&plan, audience)).map_err(io)?;
            if !plan.changes.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Environments { json } => {
            let ctx = load(cli)?;
            let environments = ctx.environments()?;
            if *json {
                let doc: Vec<serde_json::Value> = environments
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "name": e.name,
                            "updated": timestamp(Some(e.updated_ts)),
                            "expires": e.expiration_ts.map(|t| timestamp(Some(t))),
                            "models": e.snapshots.len(),
                        })
                    })
                    .collect();
                writeln!(stdout, "{:#}", serde_json::Value::Array(doc)).map_err(io)?;
            } else if environments.is_empty() {
                writeln!(stdout, "No environments yet: `lake plan` creates prod.").map_err(io)?;
            } else {
                let rows: Vec<[String; 3]> = environments
                    .iter()
                    .map(|e| {
                        [
                            e.name.clone(),
                            timestamp(Some(e.updated_ts)),
                            e.expiration_ts
                                .map_or_else(|| "never".to_string(), |t| timestamp(Some(t))),
                        ]
                    })
                    .collect();
                write!(
                    stdout,
                    "{}",
                    output::aligned(&["environment", "updated (UTC)", "expires (UTC)"], &rows)
                )
                .map_err(io)?;
            }
        }
        Command::Invalidate { environment, sync } => {
            let ctx = load(cli)?;
            let report = ctx.invalidate(environment, *sync, ops::execution_time(None)?)?;
            eprintln!(
                "{} environment `{environment}` is invalidated",
                style("✔").green()
            );
            if let Some(report) = report {
                return janitor_output(&mut stdout, &report, false);
            }
        }
        Command::Janitor {
            ignore_ttl,
            environment,
            json,
        } => {
            let ctx = load(cli)?;
            let report = ctx.janitor(
                ops::execution_time(None)?,
                *ignore_ttl,
                environment.as_deref(),
            )?;
            return janitor_output(&mut stdout, &report, *json);
        }
        Command::CreateTest {
            model,
            queries,
            file,
            overwrite,
        } => {
            let ctx = load(cli)?;
            let pairs: Vec<(String, String)> = queries
                .chunks(2)
                .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
                .collect();
            let file = ctx.create_test(
                model,
                &pairs,
                file.as_deref(),
                *overwrite,
                ops::execution_time(None)?,
            )?;
            writeln!(stdout, "Wrote {}", file.display()).map_err(io)?;
        }
        Command::Test { tests } => {
            let ctx = load(cli)?;
            let results = ctx.test(tests, ops::execution_time(None)?)?;
            output::write_test_results(&mut stdout, &results, false)?;
            if results.iter().any(|r| !r.passed()) {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Lint { models, json } => {
            let ctx = load(cli)?;
            let Some(violations) = ctx.lint(models)? else {
                eprintln!(
                    "The linter is off: turn it on with `linter: {{enabled: true, rules: ALL}}` in config.yaml."
                );
                return Ok(ExitCode::SUCCESS);
            };
            if *json {
                let doc =
                    serde_json::to_string_pretty(&serde_json::json!({ "violations": violations }))
                        .map_err(|e| LakeError::Output(e.to_string()))?;
                writeln!(stdout, "{doc}").map_err(io)?;
            } else {
                output::write_lint(&mut stdout, &violations)?;
            }
            ops::fail_on_lint_errors(&violations)?;
        }
        Command::Format { check, json } => {
            let files = crate::format::format_project(&cli.path, *check)?;
            if *json {
                let doc = serde_json::to_string_pretty(&serde_json::json!({ "files": files }))
                    .map_err(|e| LakeError::Output(e.to_string()))?;
                writeln!(stdout, "{doc}").map_err(io)?;
            } else {
                output::write_format_report(&mut stdout, &files, *check)?;
            }
            if *check && files.iter().any(|f| f.changed) {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Audit {
            models,
            environment,
            execution_time,
            json,
        } => {
            let ctx = load(cli)?;
            let results = ctx.audit(
                environment,
                models,
                ops::execution_time(execution_time.as_deref())?,
            )?;
            if *json {
                let doc = output::audits_json(&results)?;
                writeln!(stdout, "{doc}").map_err(io)?;
            } else {
                output::write_audits(&mut stdout, &results)?;
            }
            if results.iter().any(|r| r.blocking && r.rows > 0) {
                return Ok(ExitCode::from(1));
            }
        }
        Command::TableName { model, environment } => {
            let ctx = load(cli)?;
            writeln!(stdout, "{}", ctx.table_name(model, environment)?).map_err(io)?;
        }
        Command::TableDiff {
            environments,
            model,
            on,
            json,
        } => {
            let Some((source, target)) = environments.split_once(':') else {
                return Err(LakeError::Usage(
                    format!("expected SOURCE:TARGET, got `{environments}`"),
                    Some("e.g. `lake table-diff prod:dev demo.full_model`".into()),
                ));
            };
            let ctx = load(cli)?;
            let diff = ctx.table_diff(source, target, model, on)?;
            if *json {
                let doc =
                    serde_json::to_value(&diff).map_err(|e| LakeError::Output(e.to_string()))?;
                writeln!(stdout, "{doc:#}").map_err(io)?;
            } else {
                write!(
                    stdout,
                    "{}",
                    output::render_table_diff(&diff, source, target)
                )
                .map_err(io)?;
            }
        }
        Command::Migrate => {
            let ctx = load(cli)?;
            let version = ctx.migrate()?;
            writeln!(stdout, "State is at schema version {version}.").map_err(io)?;
        }
        Command::CreateExternalModels => {
            let ctx = Context::load_lenient(&cli.path, cli.gateway.as_deref())?;
            let report = ctx.create_external_models()?;
            writeln!(
                stdout,
                "Wrote external_models.yaml: {} declared.",
                plural(report.declared.len(), "table")
            )
            .map_err(io)?;
            for name in &report.not_found {
                eprintln!(
                    "{} `{name}` is not in the warehouse; its previous declaration (if any) is kept",
                    style("warning:").yellow().bold()
                );
            }
        }
        Command::CheckIntervals {
            environment,
            execution_time,
        } => {
            let ctx = load(cli)?;
            let report =
                ctx.check_intervals(environment, ops::execution_time(execution_time.as_deref())?)?;
            write!(stdout, "{}", output::render_intervals(&report)).map_err(io)?;
        }
        Command::Run {
            environment,
            ignore_cron,
            execution_time,
            select_model,
            start,
            end,
        } => {
            let ctx = load(cli)?;
            let now = ops::execution_time(execution_time.as_deref())?;
            let options = ops::RunOptions {
                ignore_cron: *ignore_cron,
                select: select_model.clone(),
                window: ops::window(start.as_deref(), end.as_deref())?,
            };
            let progress = Progress::new(environment, std::io::stderr().is_terminal());
            let result = ctx.run(environment, now, &options, &progress, || {
                eprintln!("Waiting for another lake process to finish in this project…")
            });
            progress.finish();
            let report = result?;
            if report.built.is_empty() {
                eprintln!("Nothing to run: every model of `{environment}` is up to date.");
            } else {
                eprintln!(
                    "{} {} built in `{environment}`",
                    style("✔").green(),
                    plural(report.built.len(), "model")
                );
            }
        }
        Command::Render {
            model,
            execution_time,
        } => {
            let ctx = load(cli)?;
            let sql = ctx.render(model, ops::execution_time(execution_time.as_deref())?)?;
            writeln!(stdout, "{sql}").map_err(io)?;
        }
        Command::Evaluate {
            model,
            limit,
            format,
            execution_time,
        } => {
            let ctx = load(cli)?;
            let result = ctx.evaluate(
                model,
                ops::execution_time(execution_time.as_deref())?,
                *limit,
            )?;
            output::write_rows(&mut stdout, &result, *format)?;
        }
        Command::Fetchdf { sql, format } => {
            let ctx = load(cli)?;
            let mut sink = output::RowSink::new(*format, &mut stdout);
            let schema = ctx.fetch_each(sql, &mut |_, batch| sink.batch(batch))?;
            sink.finish(&schema)?;
        }
        Command::Dag { format, output } => {
            let ctx = load(cli)?;
            let text = render_dag(&ctx, *format);
            match output {
                Some(path) => std::fs::write(path, text).map_err(|e| LakeError::io(path, e))?,
                None => write!(stdout, "{text}").map_err(io)?,
            }
        }
        Command::Info { json } => {
            let ctx = load(cli)?;
            let info = ctx.info()?;
            if *json {
                let text = serde_json::to_string_pretty(&info)
                    .map_err(|e| LakeError::config(e.to_string()))?;
                writeln!(stdout, "{text}").map_err(io)?;
            } else {
                writeln!(stdout, "Project: {}", info.project.display()).map_err(io)?;
                writeln!(stdout, "Models: {}", info.models).map_err(io)?;
                writeln!(stdout, "Macros: {}", info.macros).map_err(io)?;
                writeln!(stdout, "External models: {}", info.external_models).map_err(io)?;
                writeln!(
                    stdout,
                    "Environments: {}",
                    if info.environments.is_empty() {
                        "(none)".to_string()
                    } else {
                        info.environments.join(", ")
                    }
                )
                .map_err(io)?;
                writeln!(stdout, "Gateway: {} — {}", info.gateway, info.engine).map_err(io)?;
                writeln!(
                    stdout,
                    "Data warehouse connection {}",
                    if info.engine_ok {
                        "succeeded"
                    } else {
                        "failed"
                    }
                )
                .map_err(io)?;
                writeln!(
                    stdout,
                    "Storage: {} — {}",
                    info.storage,
                    if info.storage_ok {
                        "reachable"
                    } else {
                        "cannot be opened"
                    }
                )
                .map_err(io)?;
                writeln!(stdout, "State: {}", info.state).map_err(io)?;
                if !info.engine_ok || !info.storage_ok {
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Above this many batches, a plan warns before it starts (SQLMesh users see hours of silence instead).
const LARGE_BACKFILL: usize = 500;

fn timestamp(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn janitor_output(
    stdout: &mut dyn Write,
    report: &crate::ops::janitor::JanitorReport,
    json: bool,
) -> Result<ExitCode> {
    let io = |e: std::io::Error| LakeError::io("<stdout>", e);
    if json {
        let doc = serde_json::to_value(report).map_err(|e| LakeError::Output(e.to_string()))?;
        writeln!(stdout, "{doc:#}").map_err(io)?;
    } else {
        for env in &report.environments_removed {
            writeln!(stdout, "Removed environment `{env}`").map_err(io)?;
        }
        for table in &report.tables_dropped {
            writeln!(stdout, "Dropped table {table}").map_err(io)?;
        }
        if report.environments_removed.is_empty() && report.tables_dropped.is_empty() {
            writeln!(stdout, "Nothing to clean up.").map_err(io)?;
        }
        for failure in &report.failures {
            eprintln!("{} {failure}", style("error:").red().bold());
        }
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Asks, for each model whose own data-affecting definition changed, whether to keep the automatic category.
fn choose_categories(plan: &crate::plan::Plan) -> Result<HashMap<ModelName, Category>> {
    let mut chosen = HashMap::new();
    let candidates: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| {
            c.kind == crate::plan::ChangeKind::DirectlyModified
                && matches!(
                    c.category,
                    Some(Category::Breaking | Category::NonBreaking | Category::ForwardOnly)
                )
        })
        .collect();
    for change in candidates {
        let Some(current) = change.category else {
            continue;
        };
        eprint!(
            "{} is {}{}. Keep it, or choose [b]reaking, [n]on-breaking, [f]orward-only? [Enter keeps]: ",
            style(&change.name).bold(),
            current.label(),
            change
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| LakeError::io("<stdin>", e))?;
        let category = match answer.trim().to_ascii_lowercase().as_str() {
            "b" | "breaking" => Category::Breaking,
            "n" | "non-breaking" => Category::NonBreaking,
            "f" | "forward-only" => Category::ForwardOnly,
            _ => continue,
        };
        if category != current {
            chosen.insert(change.name.clone(), category);
        }
    }
    Ok(chosen)
}

fn confirm(environment: &str) -> Result<bool> {
    eprint!("Apply this plan to `{environment}`? [y/n]: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| LakeError::io("<stdin>", e))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn render_dag(ctx: &Context, format: DagFormat) -> String {
    let project = &ctx.project;
    let name = |i: usize| project.models[i].meta.name.to_string();
    let mut out = String::new();
    match format {
        DagFormat::Text => {
            for &i in &project.order {
                let mut parents: Vec<String> = project.dag.parents(i).map(name).collect();
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
            for &i in &project.order {
                out.push_str(&format!(
                    "  \"{}\" [label=\"{}\\n{}\"];\n",
                    name(i),
                    name(i),
                    project.models[i].meta.kind.name()
                ));
                for p in project.dag.parents(i) {
                    out.push_str(&format!("  \"{}\" -> \"{}\";\n", name(p), name(i)));
                }
            }
            out.push_str("}\n");
        }
        DagFormat::Mermaid => {
            out.push_str("graph LR\n");
            for &i in &project.order {
                out.push_str(&format!("  m{i}[\"{}\"]\n", name(i)));
                for p in project.dag.parents(i) {
                    out.push_str(&format!("  m{p} --> m{i}\n"));
                }
            }
        }
    }
    out
}
