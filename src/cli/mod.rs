//! Command-line interface: argument parsing and output only; every operation lives in the library.

mod args;
pub mod output;
mod prompt;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use console::style;

use crate::error::{LakeError, Result};
use crate::ops::{self, Context, PlanCheckFindings};
use crate::plan::PlanOptions;
use crate::profile;
use crate::project::template;
use args::{Cli, ColorChoice, Command, PlanFormat, StateCommand};
use output::{Audience, Progress};

/// The command line, or the exit code after clap printed help, the version or a usage error.
fn parse() -> std::result::Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// Entry point of the `lake-engine` binary: runs the command.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
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
    let started = std::time::Instant::now();
    if cli.profile {
        profile::enable();
    }
    let outcome = profile::timed(profile::Phase::Command, || run(&cli, stdout_tty));
    if cli.profile {
        output::print_profile(started.elapsed());
    }
    match outcome {
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
            allow_destructive_model,
            allow_additive_model,
            no_diff,
            create_from,
            run,
            ignore_cron,
        } => {
            let ctx = load(cli)?;
            let defaults = &ctx.project.config.config.plan;
            let auto_apply = *auto_apply || defaults.auto_apply == Some(true);
            let no_prompts = *no_prompts || defaults.no_prompts == Some(true);
            let no_diff = *no_diff || defaults.no_diff == Some(true);
            let environment = ctx.target_environment(environment.as_deref());
            if *run && environment != crate::PROD {
                return Err(LakeError::Usage(
                    format!("--run builds prod's due models; `{environment}` is a dev environment"),
                    Some(format!(
                        "plan `{environment}` without --run, then `lake run {environment}` builds what is due there"
                    )),
                ));
            }
            let mut options = PlanOptions::new(
                environment.clone(),
                ops::execution_time(execution_time.as_deref())?,
            );
            options.include_unmodified =
                *include_unmodified || defaults.include_unmodified == Some(true);
            options.forward_only = *forward_only || defaults.forward_only == Some(true);
            options.window = ops::window(start.as_deref(), end.as_deref())?;
            options.restate = restate_model.clone();
            options.skip_linter = *skip_linter;
            options.skip_tests = *skip_tests;
            options.allow_destructive = allow_destructive_model.clone();
            options.allow_additive = allow_additive_model.clone();
            options.create_from = create_from.clone();
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
            if no_diff {
                hide_diffs(&mut plan);
            }
            let audience = if stdout_tty {
                Audience::Terminal
            } else {
                Audience::Pipe
            };
            if interactive && !auto_apply {
                // As SQLMesh does: the summary and the diff first, then the questions about them, then
                // what the (possibly re-categorised) plan builds.
                write!(stdout, "{}", output::render_changes(&plan, audience)).map_err(io)?;
                stdout.flush().map_err(io)?;
                let overrides = prompt::choose_categories(&plan)?;
                if !overrides.is_empty() {
                    options.overrides = overrides;
                    // The checks passed a moment ago on the same files.
                    options.skip_linter = true;
                    options.skip_tests = true;
                    plan = ctx.plan(&options)?;
                    if no_diff {
                        hide_diffs(&mut plan);
                    }
                }
                write!(stdout, "{}", output::render_backfills(&plan, audience)).map_err(io)?;
            } else if !json {
                write!(stdout, "{}", output::render_plan(&plan, audience)).map_err(io)?;
            }
            if !json {
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
                && if auto_apply {
                    true
                } else if interactive {
                    prompt::confirm(&plan.environment)?
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
                let progress = Progress::new(
                    &plan.environment,
                    plan.suffix_target,
                    std::io::stderr().is_terminal(),
                );
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
            // `--run` follows a plan that was applied or had nothing to apply: prod then holds this project.
            let ran = if *run && (report.is_some() || !plan.has_work()) {
                let options = ops::RunOptions {
                    ignore_cron: *ignore_cron,
                    ..Default::default()
                };
                let progress = Progress::new(
                    &plan.environment,
                    plan.suffix_target,
                    std::io::stderr().is_terminal(),
                );
                let result = ctx.run(
                    &plan.environment,
                    plan.execution_time,
                    &options,
                    &progress,
                    || eprintln!("Waiting for another lake process to finish in this project…"),
                );
                progress.finish();
                let built = result?.built;
                if !json {
                    report_run(&built, &plan.environment);
                }
                Some(built)
            } else {
                None
            };
            if json {
                let mut doc = output::plan_json(&plan, report.as_ref(), None);
                if let (Some(built), Some(fields)) = (ran, doc.as_object_mut()) {
                    let names: Vec<String> = built.iter().map(ToString::to_string).collect();
                    fields.insert("run".into(), serde_json::json!({ "built": names }));
                }
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
                            "updated": output::timestamp(Some(e.updated_ts)),
                            "expires": e.expiration_ts.map(|t| output::timestamp(Some(t))),
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
                            output::timestamp(Some(e.updated_ts)),
                            e.expiration_ts.map_or_else(
                                || "never".to_string(),
                                |t| output::timestamp(Some(t)),
                            ),
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
                return output::janitor_output(&mut stdout, &report, false);
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
            return output::janitor_output(&mut stdout, &report, *json);
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
            start,
            end,
            json,
        } => {
            let ctx = load(cli)?;
            let results = ctx.audit(
                environment,
                models,
                ops::execution_time(execution_time.as_deref())?,
                ops::window(start.as_deref(), end.as_deref())?,
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
        Command::Serve {
            host,
            port,
            json,
            token_env,
            allow_writes,
            pg_port,
            no_rest,
            statement_timeout,
            max_connections,
            max_concurrent_queries,
            memory_limit,
            pg_users_env,
            pg_auth,
            tls_cert,
            tls_key,
        } => {
            let ctx = load(cli)?;
            let token = match token_env {
                None => None,
                Some(name) => match std::env::var(name) {
                    Ok(value) if !value.is_empty() => Some(crate::config::Secret::new(value)),
                    _ => {
                        return Err(LakeError::Usage(
                            format!(
                                "--token-env {name}: the environment variable `{name}` is not set"
                            ),
                            Some(format!(
                                "export {name}=… with the token clients must present"
                            )),
                        ));
                    }
                },
            };
            let authenticated = token.is_some();
            let users = match pg_users_env {
                None => None,
                Some(name) => match std::env::var(name) {
                    Ok(value) if !value.is_empty() => Some(crate::serve::pg::auth::Users::parse(
                        &value,
                        &format!("--pg-users-env {name}"),
                    )?),
                    _ => {
                        return Err(LakeError::Usage(
                            format!(
                                "--pg-users-env {name}: the environment variable `{name}` is not set"
                            ),
                            Some(format!("export {name}=user:password")),
                        ));
                    }
                },
            };
            let method = match (pg_auth.as_deref(), &users) {
                (Some(text), _) => crate::serve::pg::auth::Method::parse(text)?,
                (None, Some(_)) => crate::serve::pg::auth::Method::ScramSha256,
                (None, None) => crate::serve::pg::auth::Method::Trust,
            };
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(crate::serve::pg::tls_acceptor(cert, key)?),
                _ => None,
            };
            if method == crate::serve::pg::auth::Method::Cleartext && tls.is_none() {
                return Err(LakeError::Usage(
                    "--pg-auth password sends passwords in clear text, which needs TLS".into(),
                    Some("add --tls-cert and --tls-key, or use --pg-auth scram-sha-256".into()),
                ));
            }
            if method != crate::serve::pg::auth::Method::Trust && users.is_none() {
                return Err(LakeError::Usage(
                    "--pg-auth asks for passwords, but no users are configured".into(),
                    Some("add --pg-users-env NAME with NAME=user:password".into()),
                ));
            }
            let auth_label = match method {
                crate::serve::pg::auth::Method::Trust => "no authentication",
                crate::serve::pg::auth::Method::ScramSha256 => "SCRAM-SHA-256 passwords",
                crate::serve::pg::auth::Method::Md5 => "MD5 passwords",
                crate::serve::pg::auth::Method::Cleartext => "passwords over TLS",
            };
            let tls_label = if tls.is_some() { ", TLS offered" } else { "" };
            let pg = pg_port.map(|port| crate::serve::pg::PgOptions {
                auth: method,
                users: users.clone(),
                tls: tls.clone(),
                port,
                allow_writes: *allow_writes,
                statement_timeout: *statement_timeout,
                max_connections: *max_connections,
                limits: crate::serve::pg::EngineLimits {
                    concurrent_queries: (*max_concurrent_queries).max(1),
                    memory_limit: memory_limit.clone(),
                },
            });
            let options = crate::serve::ServeOptions {
                host: host.clone(),
                port: (!*no_rest).then_some(*port),
                token,
                allow_writes: *allow_writes,
                pg,
            };
            let json = *json;
            crate::serve::serve(&ctx, &options, |bound| {
                if json {
                    // Scripts wait for this line: write it whole and flush before the first request.
                    let mut line = serde_json::Map::new();
                    if let Some(address) = bound.rest {
                        line.insert("rest".into(), format!("http://{address}").into());
                    }
                    if let Some(address) = bound.pg {
                        line.insert("pg".into(), address.to_string().into());
                    }
                    let mut out = std::io::stdout();
                    let _ = writeln!(out, "{}", serde_json::Value::Object(line));
                    let _ = out.flush();
                }
                let auth = if authenticated {
                    "bearer token required"
                } else {
                    "no authentication"
                };
                let access = if options.allow_writes {
                    "writes allowed; names in lake's namespaces change only through `lake plan`"
                } else {
                    "read-only"
                };
                if let Some(address) = bound.rest {
                    eprintln!(
                        "Serving the Iceberg REST catalog at http://{address} ({access}, {auth}); Ctrl-C stops it."
                    );
                }
                if let Some(address) = bound.pg {
                    let access = if options.allow_writes {
                        "writes run in memory only"
                    } else {
                        "read-only"
                    };
                    eprintln!(
                        "Serving PostgreSQL at {address} ({access}, {auth_label}{tls_label}): psql -h {} -p {} -d prod",
                        address.ip(),
                        address.port()
                    );
                }
            })?;
        }
        Command::Migrate => {
            let ctx = load(cli)?;
            let version = ctx.migrate()?;
            writeln!(stdout, "State is at schema version {version}.").map_err(io)?;
        }
        Command::State(StateCommand::Export { output }) => {
            let ctx = load(cli)?;
            let export = ctx.export_state()?;
            // Serialising plain data (strings, numbers, JSON values) cannot fail.
            let text = serde_json::to_string_pretty(&export).unwrap_or_default();
            match output {
                Some(path) => {
                    std::fs::write(path, format!("{text}\n"))
                        .map_err(|e| LakeError::io(path, e))?;
                    eprintln!(
                        "Exported {}, {} and {} from {} to {}",
                        plural(export.environments.len(), "environment"),
                        plural(export.snapshots.len(), "snapshot"),
                        plural(export.intervals.len(), "interval"),
                        ctx.describe_state(),
                        path.display()
                    );
                }
                None => writeln!(stdout, "{text}").map_err(io)?,
            }
        }
        Command::State(StateCommand::Import { input }) => {
            let ctx = load(cli)?;
            let (text, source) = if input.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| LakeError::io("standard input", e))?;
                (text, "standard input".to_string())
            } else {
                let text = std::fs::read_to_string(input).map_err(|e| LakeError::io(input, e))?;
                (text, input.display().to_string())
            };
            let export = crate::state::transfer::parse(&text, &source)?;
            let report = ctx.import_state(&export)?;
            writeln!(
                stdout,
                "Imported {}, {} and {} into {}.",
                plural(report.environments, "environment"),
                plural(report.snapshots, "snapshot"),
                plural(report.intervals, "interval"),
                ctx.describe_state()
            )
            .map_err(io)?;
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
            let environment = &ctx.target_environment(environment.as_deref());
            let now = ops::execution_time(execution_time.as_deref())?;
            let options = ops::RunOptions {
                ignore_cron: *ignore_cron,
                select: select_model.clone(),
                window: ops::window(start.as_deref(), end.as_deref())?,
            };
            let progress = Progress::new(
                environment,
                ctx.suffix_target_of(environment)?,
                std::io::stderr().is_terminal(),
            );
            let result = ctx.run(environment, now, &options, &progress, || {
                eprintln!("Waiting for another lake process to finish in this project…")
            });
            progress.finish();
            report_run(&result?.built, environment);
        }
        Command::Render {
            model,
            execution_time,
            dialect,
        } => {
            let ctx = load(cli)?;
            let execution_time = ops::execution_time(execution_time.as_deref())?;
            let sql = match dialect {
                args::RenderDialect::Duckdb => ctx.render(model, execution_time)?,
                args::RenderDialect::Spark => ctx.render_spark(model, execution_time)?,
            };
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
            let text = output::render_dag(&ctx.project, *format);
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

/// What a run built, on stderr.
fn report_run(built: &[crate::sql::ModelName], environment: &str) {
    if built.is_empty() {
        eprintln!("Nothing to run: every model of `{environment}` is up to date.");
    } else {
        eprintln!(
            "{} {} built in `{environment}`",
            style("✔").green(),
            plural(built.len(), "model")
        );
    }
}

/// `--no-diff`: the plan says what changed, without the text of the changes.
fn hide_diffs(plan: &mut crate::plan::Plan) {
    for change in &mut plan.changes {
        change.diff = None;
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
