//! Command-line interface: argument parsing and output only; every operation lives in the library.

mod output;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use console::style;

use crate::context::{self, Context};
use crate::error::{LakeError, Result};
use crate::plan::PlanOptions;
use crate::{PROD, template};
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
        } => {
            let ctx = load(cli)?;
            let mut options = PlanOptions::new(
                environment.clone(),
                context::execution_time(execution_time.as_deref())?,
            );
            options.include_unmodified = *include_unmodified;
            let plan = ctx.plan(&options)?;
            let audience = if stdout_tty {
                Audience::Terminal
            } else {
                Audience::Pipe
            };
            write!(stdout, "{}", output::render_plan(&plan, audience)).map_err(io)?;
            stdout.flush().map_err(io)?;
            if !plan.has_work() {
                return Ok(ExitCode::SUCCESS);
            }
            let interactive = std::io::stdin().is_terminal() && stdout_tty && !no_prompts;
            let apply = if *auto_apply {
                true
            } else if interactive {
                confirm(&plan.environment)?
            } else {
                eprintln!("Not applied: pass --auto-apply to apply this plan without a prompt.");
                false
            };
            if !apply {
                return Ok(ExitCode::SUCCESS);
            }
            let progress = Progress::new(&plan.environment, std::io::stderr().is_terminal());
            let result = ctx.apply(&plan, &progress, || {
                eprintln!("Waiting for another lake process to finish applying in this project…")
            });
            progress.finish();
            let report = result?;
            eprintln!(
                "{} {} built, {} virtual name(s) updated in `{}`",
                style("✔").green(),
                plural(report.built.len(), "model"),
                report.virtual_changes,
                plan.environment
            );
        }
        Command::Run {
            environment,
            ignore_cron,
            execution_time,
        } => {
            let ctx = load(cli)?;
            let now = context::execution_time(execution_time.as_deref())?;
            let progress = Progress::new(environment, std::io::stderr().is_terminal());
            let result = ctx.run(environment, now, *ignore_cron, &progress, || {
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
            let sql = ctx.render(model, context::execution_time(execution_time.as_deref())?)?;
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
                context::execution_time(execution_time.as_deref())?,
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
                if !info.engine_ok || !info.storage_ok {
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
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
