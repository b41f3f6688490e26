//! `lake plan`: the plan shown (tree, Markdown or JSON), the categories asked on a terminal, then applied (and
//! with --run, followed by a run).

use std::io::IsTerminal;
use std::process::ExitCode;

use crate::cli::args::{Cli, PlanArgs, PlanFormat};
use crate::cli::output::{self, Progress};
use crate::cli::printer::{Printer, plural};
use crate::cli::prompt;
use crate::error::{LakeError, Result};
use crate::ops::{self, Context, PlanCheckFindings, PlanRequest, PlanSettings};
use crate::plan::Plan;
use crate::scheduler::ApplyReport;

pub(super) fn run(args: &PlanArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let mut settings = ctx.plan_settings(&request(args))?;
    let json = args.format == PlanFormat::Json;
    let interactive = !json
        && std::io::stdin().is_terminal()
        && printer.audience() == output::Audience::Terminal
        && !settings.no_prompts;
    let mut plan = plan_with_findings(&ctx, &settings)?;
    if args.explain {
        printer.print(crate::cli::explain::render(&plan))?;
        return Ok(ExitCode::SUCCESS);
    }
    let must_choose = args.no_auto_categorization && !prompt::uncategorised(&plan).is_empty();
    if must_choose && !interactive {
        return Err(LakeError::Usage(
            "--no-auto-categorization: every directly modified model needs a category chosen on a terminal".into(),
            Some("run the plan in a terminal without --no-prompts, or leave out --no-auto-categorization".into()),
        ));
    }
    if interactive && (!settings.auto_apply || must_choose) {
        plan = show_and_recategorise(&ctx, &mut settings, plan, printer, must_choose)?;
    } else if !json {
        let audience = printer.audience();
        printer.print(output::render_plan(&plan, audience))?;
    }
    if !json {
        printer.flush()?;
        if let Some(batches) = ops::large_backfill(&plan) {
            printer.note(format_args!(
                "this plan runs {batches} batches; that can take a long time. Set `batch_size` on incremental kinds, or limit a dev plan with --start/--end."
            ));
        }
    }
    let report = if should_apply(&plan, &settings, interactive, json, printer)? {
        match apply(&ctx, &plan, printer) {
            Ok(report) => Some(report),
            Err(e) if json => {
                printer.json(&output::plan_json(&plan, None, Some(&e)))?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    // `--run` follows a plan that was applied or had nothing to apply: prod then holds this project.
    let ran = match &settings.then_run {
        Some(options) if report.is_some() || !plan.has_work() => {
            let built = super::run::run_with_progress(
                &ctx,
                &plan.environment,
                plan.suffix_target,
                plan.execution_time,
                options,
                printer,
            )?
            .built;
            if !json {
                super::run::report_run(printer, &built, &plan.environment);
            }
            Some(built)
        }
        _ => None,
    };
    if json {
        let mut doc = output::plan_json(&plan, report.as_ref(), None);
        if let (Some(built), Some(fields)) = (ran, doc.as_object_mut()) {
            let names: Vec<String> = built.iter().map(ToString::to_string).collect();
            fields.insert("run".into(), serde_json::json!({ "built": names }));
        }
        printer.json(&doc)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn request(args: &PlanArgs) -> PlanRequest {
    PlanRequest {
        environment: args.environment.clone(),
        auto_apply: args.auto_apply,
        no_prompts: args.no_prompts,
        include_unmodified: args.include_unmodified,
        forward_only: args.forward_only,
        no_diff: args.no_diff,
        execution_time: args.execution_time.clone(),
        start: args.start.clone(),
        end: args.end.clone(),
        restate: args.restate_model.clone(),
        skip_tests: args.skip_tests,
        skip_linter: args.skip_linter,
        allow_destructive: args.allow_destructive_model.clone(),
        allow_additive: args.allow_additive_model.clone(),
        create_from: args.create_from.clone(),
        run: args.run,
        ignore_cron: args.ignore_cron,
        skip_backfill: args.skip_backfill,
        empty_backfill: args.empty_backfill,
        backfill_models: args.backfill_model.clone(),
        diff_rendered: args.diff_rendered,
        min_intervals: args.min_intervals,
        no_gaps: args.no_gaps,
        enable_preview: args.enable_preview,
        select: args.select_model.clone(),
        effective_from: args.effective_from.clone(),
    }
}

/// The plan, with what the linter and the unit tests found before it printed on stderr.
fn plan_with_findings(ctx: &Context, settings: &PlanSettings) -> Result<Plan> {
    let mut findings_output = Ok(());
    let planned = ctx.plan_reporting(&settings.options, &mut |findings| {
        let mut stderr = std::io::stderr();
        findings_output = match findings {
            PlanCheckFindings::Lint(violations) => output::write_lint(&mut stderr, violations),
            PlanCheckFindings::FailedTests(results) => {
                output::write_test_results(&mut stderr, results, true)
            }
        };
    });
    findings_output?;
    planned
}

/// As SQLMesh does on a terminal: the summary and the diff first, then the questions about the categories,
/// then what the (possibly re-categorised) plan builds.
fn show_and_recategorise(
    ctx: &Context,
    settings: &mut PlanSettings,
    mut plan: Plan,
    printer: &mut Printer,
    must_choose: bool,
) -> Result<Plan> {
    let audience = printer.audience();
    printer.print(output::render_changes(&plan, audience))?;
    printer.flush()?;
    let overrides = prompt::choose_categories(&plan, must_choose)?;
    if !overrides.is_empty() {
        settings.options.overrides = overrides;
        // The checks passed a moment ago on the same files.
        settings.options.skip_linter = true;
        settings.options.skip_tests = true;
        plan = ctx.plan(&settings.options)?;
        // The children's categories follow the chosen ones: show the changes as they now stand (the diffs
        // were shown above).
        let mut categorised = plan.clone();
        categorised.drop_diffs();
        printer.print(format!(
            "\nWith your choices:\n\n{}",
            output::render_changes(&categorised, audience)
        ))?;
    }
    printer.print(output::render_backfills(&plan, audience))?;
    Ok(plan)
}

/// Applied without asking with --auto-apply, after a yes on a terminal, never otherwise.
fn should_apply(
    plan: &Plan,
    settings: &PlanSettings,
    interactive: bool,
    json: bool,
    printer: &Printer,
) -> Result<bool> {
    if !plan.has_work() {
        return Ok(false);
    }
    if settings.auto_apply {
        return Ok(true);
    }
    if interactive {
        let confirmed = prompt::confirm(&plan.environment)?;
        if !confirmed {
            printer.status(format_args!(
                "Not applied: `{}` is unchanged.",
                plan.environment
            ));
        }
        return Ok(confirmed);
    }
    if !json {
        printer.status("Not applied: pass --auto-apply to apply this plan without a prompt.");
    }
    Ok(false)
}

fn apply(ctx: &Context, plan: &Plan, printer: &Printer) -> Result<ApplyReport> {
    let progress = Progress::new(
        &plan.environment,
        plan.suffix_target,
        std::io::stderr().is_terminal(),
    );
    let result = ctx.apply(plan, &progress, || {
        super::announce_wait(printer, "applying ")
    });
    progress.finish();
    let report = result?;
    printer.done(format_args!(
        "{} built, {} virtual name(s) updated in `{}`",
        plural(report.built.len(), "model"),
        report.virtual_changes,
        plan.environment
    ));
    Ok(report)
}
