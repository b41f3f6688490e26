//! `lake run`: building what an environment's crons and missing intervals make due, without a new plan.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chrono::NaiveDateTime;

use super::hooks::Moment;
use super::{Context, existing_environment};
use crate::error::{LakeError, Result};
use crate::plan;
use crate::plan::backfill::BuiltIntervals;
use crate::project::ModelId;
use crate::scheduler::{self, Observer};
use crate::snapshot::EnvironmentName;
use crate::sql::ModelName;
use crate::state::StateStore;

/// What `lake run` builds: everything due, or a selection and a time window.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Rebuild FULL models even if their cron is not due.
    pub ignore_cron: bool,
    /// Only the models these selectors pick (see `Project::select`), and their upstream unless
    /// `no_auto_upstream`.
    pub select: Vec<String>,
    pub no_auto_upstream: bool,
    pub window: plan::backfill::Window,
    /// Build nothing when a plan changed the environment while this run waited for it
    /// (`--exit-on-env-update`).
    pub stop_if_updated: bool,
    /// After the run, the janitor's pass (on the wall clock), still under the run's lock and with its
    /// engine: as SQLMesh's `run` does unless `--skip-janitor`.
    pub janitor: bool,
}

/// What `lake run` did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub built: Vec<ModelName>,
    /// A plan updated the environment while the run waited, and `stop_if_updated` asked to stop.
    pub stopped_for_update: bool,
    /// What the janitor did after the run, when asked; its failure does not fail the run.
    pub janitor: Option<Result<super::janitor::JanitorReport>>,
}

impl Context {
    /// The models `--select-model` picks, with their upstream (SQLMesh's default) unless `--no-auto-upstream`;
    /// `None` runs every model.
    fn selected_for_run(&self, options: &RunOptions) -> Result<Option<HashSet<ModelId>>> {
        if options.select.is_empty() {
            return Ok(None);
        }
        let chosen = self.project.select(&options.select)?;
        let mut selected: HashSet<ModelId> = chosen.iter().copied().collect();
        if !options.no_auto_upstream {
            for &id in &chosen {
                selected.extend(self.project.dag.upstream(id));
            }
        }
        Ok(Some(selected))
    }

    /// Rebuilds the models of `environment` whose cron is due, and any version missing its data.
    pub fn run(
        &self,
        environment: &str,
        execution_time: NaiveDateTime,
        options: &RunOptions,
        observer: &dyn Observer,
        on_wait: impl FnOnce(),
    ) -> Result<RunReport> {
        let selected = self.selected_for_run(options)?;
        let env_name = EnvironmentName::parse(environment)?;
        let seen = self
            .open_state()?
            .environment(&env_name)?
            .map(|e| e.plan_id);
        let _lock = self.lock(&env_name, on_wait)?;
        let mut state = self.open_state()?;
        let env = existing_environment(state.as_ref(), &env_name)?;
        if options.stop_if_updated && seen.as_deref() != Some(env.plan_id.as_str()) {
            return Ok(RunReport {
                built: Vec::new(),
                stopped_for_update: true,
                janitor: None,
            });
        }
        let mut snapshots = crate::plan::fingerprint::compute(&self.project)?;
        let env_versions: HashMap<&ModelName, &crate::state::EnvSnapshot> =
            env.snapshots.iter().map(|s| (&s.name, s)).collect();
        let differs = snapshots.len() != env.snapshots.len()
            || snapshots
                .iter()
                .any(|s| env_versions.get(&s.name).map(|v| v.id.as_str()) != Some(s.id.as_str()));
        if differs {
            return Err(LakeError::Usage(
                format!("the project's files differ from environment `{env_name}`"),
                Some(format!(
                    "`lake run` builds what an environment already contains; apply your changes with `lake plan {env_name}` first"
                )),
            ));
        }
        // Versions come from the environment: earlier plans decided which changes kept their tables, and
        // where those tables live.
        for s in &mut snapshots {
            if let Some(planned) = env_versions.get(&s.name) {
                s.version = planned.version.clone();
                s.physical_schema = planned.physical_schema.clone();
            }
        }
        let versions: Vec<(ModelName, String)> = snapshots
            .iter()
            .map(|s| (s.name.clone(), s.version.clone()))
            .collect();
        let built = BuiltIntervals::load(state.as_ref(), &versions)?;
        let backfills = plan::backfill::due_for_run(
            &self.project,
            &snapshots,
            &built,
            selected.as_ref(),
            execution_time,
            options.window,
            options.ignore_cron,
        )?
        .into_iter()
        // A dev environment shows prod's in-place tables; only prod's runs write them.
        .filter(|b| env_name == crate::PROD || !crate::snapshot::is_in_place(&b.version))
        .collect::<Vec<_>>();
        let engine = self.open_engine()?;
        let ctx = self.build_context(&snapshots, execution_time, options.window.end)?;
        let environment = env_name.to_string();
        let before_all = self.environment_statements(
            Moment::BeforeAll,
            &environment,
            env.suffix_target,
            &env.promoted,
            execution_time,
        )?;
        let after_all = self.environment_statements(
            Moment::AfterAll,
            &environment,
            env.suffix_target,
            &env.promoted,
            execution_time,
        )?;
        before_all.run(&engine)?;
        let state: &mut dyn StateStore = state.as_mut();
        let built = scheduler::build_all(&ctx, &engine, &backfills, &Mutex::new(state), observer)
            .map_err(|e| match e {
            LakeError::ApplyFailed {
                failed,
                total,
                errors,
                ..
            } => LakeError::ApplyFailed {
                environment: env_name.to_string(),
                failed,
                total,
                errors,
            },
            other => other,
        })?;
        after_all.run(&engine)?;
        let janitor = options.janitor.then(|| {
            let _janitor = self.state_backend().lock_within("_janitor")?;
            let session = engine.session()?;
            let now = chrono::Utc::now().naive_utc();
            self.janitor_with(&mut *state, &session, now, false, None)
        });
        Ok(RunReport {
            built,
            stopped_for_update: false,
            janitor,
        })
    }
}
