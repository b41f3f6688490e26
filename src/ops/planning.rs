//! Planning and applying: the checks every plan runs first, the diff against an environment, and the apply.

use chrono::{NaiveDateTime, Utc};

use super::Context;
use super::hooks::Moment;
use crate::checks::lint::Violation;
use crate::checks::unit_test::TestResult;
use crate::config::linter::Severity;
use crate::error::{LakeError, Result};
use crate::plan::{self, Plan, PlanOptions};
use crate::scheduler::{self, ApplyReport, Observer};

/// What the checks every plan runs first found, for the caller to show.
pub enum PlanCheckFindings<'a> {
    /// The linter's findings (errors stop the plan; warnings only inform).
    Lint(&'a [Violation]),
    /// The unit tests' results, some of which failed.
    FailedTests(&'a [TestResult]),
}

/// `LintFailed` when any finding is an error (warnings only print).
pub fn fail_on_lint_errors(violations: &[Violation]) -> Result<()> {
    let errors = violations
        .iter()
        .filter(|v| v.severity == Severity::Error)
        .count();
    match errors {
        0 => Ok(()),
        errors => Err(LakeError::LintFailed { errors }),
    }
}

/// `--start` / `--end` as a window, each a date, a timestamp or a time relative to `now` (`yesterday`,
/// `3 days ago`) as MODEL `start` accepts; an end naming a day includes that whole day.
pub fn window(
    start: Option<&str>,
    end: Option<&str>,
    now: NaiveDateTime,
) -> Result<plan::backfill::Window> {
    let parse = |text: &str, flag: &str| {
        crate::intervals::bound::TimeBound::parse(text).map_err(|_| {
            LakeError::Usage(
                format!("invalid {flag} `{text}`"),
                Some(
                    "use YYYY-MM-DD, `YYYY-MM-DD HH:MM:SS`, or a relative time such as `yesterday` or \
                     `3 days ago`"
                        .into(),
                ),
            )
        })
    };
    let start = start
        .map(|s| parse(s, "--start").map(|bound| bound.resolve(now)))
        .transpose()?;
    let end = match end {
        None => None,
        Some(text) => {
            let bound = parse(text, "--end")?;
            let at = bound.resolve(now);
            Some(if bound.is_whole_day() {
                at + chrono::Duration::days(1)
            } else {
                at
            })
        }
    };
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        return Err(LakeError::Usage(
            "--start must be before --end".into(),
            None,
        ));
    }
    Ok(plan::backfill::Window { start, end })
}

/// "Now", or the pinned `--execution-time`.
pub fn execution_time(pinned: Option<&str>) -> Result<NaiveDateTime> {
    match pinned {
        None => Ok(Utc::now().naive_utc()),
        Some(text) => crate::intervals::parse_datetime(text).ok_or_else(|| {
            LakeError::Usage(
                format!("invalid execution time `{text}`"),
                Some("use YYYY-MM-DD or `YYYY-MM-DD HH:MM:SS`".into()),
            )
        }),
    }
}

/// What a caller asks of `lake plan`, as typed: a flag left false takes config.yaml's `plan:` default, and
/// times and dates are text still to be checked.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    pub environment: Option<String>,
    pub auto_apply: bool,
    pub no_prompts: bool,
    pub include_unmodified: bool,
    pub forward_only: bool,
    pub no_diff: bool,
    pub execution_time: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub restate: Vec<String>,
    pub skip_tests: bool,
    pub skip_linter: bool,
    pub allow_destructive: Vec<String>,
    pub allow_additive: Vec<String>,
    pub create_from: Option<String>,
    /// Prod only: after applying, build what `lake run` would.
    pub run: bool,
    pub ignore_cron: bool,
    /// `--skip-backfill` / `--dry-run`.
    pub skip_backfill: bool,
    pub empty_backfill: bool,
    /// `--backfill-model`: only these selections (and their upstream) are backfilled.
    pub backfill_models: Vec<String>,
    pub diff_rendered: bool,
    pub min_intervals: u32,
    pub no_gaps: bool,
    pub enable_preview: bool,
    /// `--select-model`: only these models' changes.
    pub select: Vec<String>,
    /// `--effective-from`, as typed.
    pub effective_from: Option<String>,
}

/// A plan request with config.yaml's defaults applied and checked.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub options: PlanOptions,
    pub auto_apply: bool,
    pub no_prompts: bool,
    /// What to run once prod holds the project (`--run`).
    pub then_run: Option<super::RunOptions>,
}

/// Which of a plan's builds write rows, from `--skip-backfill`, `--empty-backfill` and `--backfill-model`
/// (one of them at most).
fn fill_request(request: &PlanRequest) -> Result<crate::plan::FillRequest> {
    use crate::plan::FillRequest;
    let chosen = [
        request.skip_backfill,
        request.empty_backfill,
        !request.backfill_models.is_empty(),
    ];
    if chosen.iter().filter(|c| **c).count() > 1 {
        return Err(LakeError::Usage(
            "--skip-backfill, --empty-backfill and --backfill-model each decide what is backfilled"
                .into(),
            Some("give one of them".into()),
        ));
    }
    Ok(if request.skip_backfill {
        FillRequest::Skip
    } else if request.empty_backfill {
        FillRequest::Empty
    } else if !request.backfill_models.is_empty() {
        FillRequest::Only(request.backfill_models.clone())
    } else {
        FillRequest::All
    })
}

/// Above this many batches, a plan warns before it starts (SQLMesh users see hours of silence instead).
const LARGE_BACKFILL: usize = 500;

/// The number of batches `plan` runs when it is large enough to warn about before starting.
pub fn large_backfill(plan: &Plan) -> Option<usize> {
    let batches: usize = plan.backfills.iter().map(|b| b.batches.len().max(1)).sum();
    (batches > LARGE_BACKFILL).then_some(batches)
}

impl Context {
    /// `request` with config.yaml's `plan:` defaults (`auto_apply`, `no_prompts`, `include_unmodified`,
    /// `forward_only`, `no_diff`) filling what it leaves unset; `--run` is refused outside prod.
    pub fn plan_settings(&self, request: &PlanRequest) -> Result<PlanSettings> {
        let defaults = &self.project.config.config.plan;
        let environment = self.target_environment(request.environment.as_deref());
        if request.run && environment != crate::PROD {
            return Err(LakeError::Usage(
                format!("--run builds prod's due models; `{environment}` is a dev environment"),
                Some(format!(
                    "plan `{environment}` without --run, then `lake run {environment}` builds what is due there"
                )),
            ));
        }
        let or_default = |flag: bool, default: Option<bool>| flag || default == Some(true);
        let now = execution_time(request.execution_time.as_deref())?;
        let mut options = PlanOptions::new(environment, now);
        options.include_unmodified =
            or_default(request.include_unmodified, defaults.include_unmodified);
        options.forward_only = or_default(request.forward_only, defaults.forward_only);
        options.no_diff = or_default(request.no_diff, defaults.no_diff);
        options.window = window(request.start.as_deref(), request.end.as_deref(), now)?;
        options.restate = request.restate.clone();
        options.skip_linter = request.skip_linter;
        options.skip_tests = request.skip_tests;
        options.allow_destructive = request.allow_destructive.clone();
        options.allow_additive = request.allow_additive.clone();
        options.create_from = request.create_from.clone();
        options.diff_rendered = request.diff_rendered;
        options.min_intervals = request.min_intervals;
        options.select = request.select.clone();
        options.enable_preview = request.enable_preview
            || defaults
                .enable_preview
                .as_ref()
                .and_then(serde_norway::Value::as_bool)
                .unwrap_or(true);
        options.column_aware = defaults.column_aware.unwrap_or(true);
        options.no_gaps = request.no_gaps;
        options.effective_from = request
            .effective_from
            .as_deref()
            .map(|text| {
                crate::intervals::bound::TimeBound::parse(text)
                    .map(|bound| bound.resolve(options.execution_time))
                    .map_err(|e| LakeError::Usage(format!("--effective-from `{text}`: {e}"), None))
            })
            .transpose()?;
        options.fill = fill_request(request)?;
        Ok(PlanSettings {
            options,
            auto_apply: or_default(request.auto_apply, defaults.auto_apply),
            no_prompts: or_default(request.no_prompts, defaults.no_prompts),
            then_run: request.run.then(|| super::RunOptions {
                ignore_cron: request.ignore_cron,
                ..Default::default()
            }),
        })
    }

    /// The environment `plan` and `run` act on: the one named, else config.yaml's
    /// `default_target_environment`, else prod (as in SQLMesh).
    pub fn target_environment(&self, named: Option<&str>) -> String {
        named
            .map(str::to_string)
            .or_else(|| {
                self.project
                    .config
                    .config
                    .default_target_environment
                    .clone()
            })
            .unwrap_or_else(|| crate::PROD.to_string())
    }

    /// Where `environment`'s names put its suffix: as it was last planned, or as config.yaml says for an
    /// environment not planned yet.
    pub fn suffix_target_of(&self, environment: &str) -> Result<crate::snapshot::SuffixTarget> {
        Ok(self
            .open_state()?
            .environment(environment)?
            .map_or(self.project.config.suffix_target, |env| env.suffix_target))
    }

    pub fn plan(&self, options: &PlanOptions) -> Result<Plan> {
        self.plan_reporting(options, &mut |_| {})
    }

    /// [`Context::plan`], handing what the checks before it found to `report` (the CLI prints it). Every plan
    /// first runs the linter (when config.yaml enables it) and the unit tests, as SQLMesh does: a lint error or a
    /// failing test stops the plan (`LintFailed`, `TestsFailed`) unless `options` skips that check.
    pub fn plan_reporting(
        &self,
        options: &PlanOptions,
        report: &mut dyn FnMut(PlanCheckFindings<'_>),
    ) -> Result<Plan> {
        let checks = crate::profile::time(crate::profile::Phase::Checks);
        if !options.skip_linter
            && let Some(violations) = self.lint(&[])?
        {
            if !violations.is_empty() {
                report(PlanCheckFindings::Lint(&violations));
            }
            fail_on_lint_errors(&violations)?;
        }
        if !options.skip_tests {
            let results = self.test(&[], options.execution_time)?;
            let failed = results.iter().filter(|r| !r.passed()).count();
            if failed > 0 {
                report(PlanCheckFindings::FailedTests(&results));
                return Err(LakeError::TestsFailed {
                    failed,
                    total: results.len(),
                });
            }
        }
        drop(checks);
        let mut plan = self.diff_against_state(options)?;
        if options.no_diff {
            plan.drop_diffs();
        }
        // before_all / after_all render now, so one that cannot is reported by every plan, not only by the
        // first that has something to apply.
        for moment in [Moment::BeforeAll, Moment::AfterAll] {
            self.environment_statements(
                moment,
                &plan.environment,
                plan.suffix_target,
                &plan.promoted,
                plan.execution_time,
            )?;
        }
        // What Spark gateways will run is translated now, so what cannot run there stops the plan.
        if !self.project.config.spark_gateways.is_empty() {
            let ctx = self.build_context(&plan.snapshots, plan.execution_time, None)?;
            scheduler::spark::check_translatable(&ctx, &plan.backfills)?;
        }
        Ok(plan)
    }

    /// The plan itself, without the checks that guard it.
    pub(super) fn diff_against_state(&self, options: &PlanOptions) -> Result<Plan> {
        let _timer = crate::profile::time(crate::profile::Phase::Plan);
        let state = self.open_state()?;
        plan::build(&self.project, state.as_ref(), options)
    }

    /// Applies a plan under the project's apply lock. `on_wait` is called if another process holds it.
    pub fn apply(
        &self,
        plan: &Plan,
        observer: &dyn Observer,
        on_wait: impl FnOnce(),
    ) -> Result<ApplyReport> {
        let _lock = self.lock(&plan.environment, on_wait)?;
        let mut state = self.open_state()?;
        let engine = self.open_engine()?;
        let mut ctx = self.build_context(&plan.snapshots, plan.execution_time, None)?;
        ctx.allowed_schema_changes = plan.allowed_schema_changes.clone();
        let environment = plan.environment.to_string();
        let before_all = self.environment_statements(
            Moment::BeforeAll,
            &environment,
            plan.suffix_target,
            &plan.promoted,
            plan.execution_time,
        )?;
        let after_all = self.environment_statements(
            Moment::AfterAll,
            &environment,
            plan.suffix_target,
            &plan.promoted,
            plan.execution_time,
        )?;
        before_all.run(&engine)?;
        let report = scheduler::apply(&ctx, &engine, plan, state.as_mut(), observer).map_err(
            |e| match e {
                LakeError::ApplyFailed {
                    failed,
                    total,
                    errors,
                    ..
                } => LakeError::ApplyFailed {
                    environment: plan.environment.to_string(),
                    failed,
                    total,
                    errors,
                },
                other => other,
            },
        )?;
        after_all.run(&engine)?;
        Ok(report)
    }
}
