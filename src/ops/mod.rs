//! The operations `lake` offers (plan, apply, run, render, evaluate, fetch, info) over a loaded project.

pub mod externals;
pub mod janitor;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{NaiveDateTime, Utc};
use serde::Serialize;

use crate::checks::lint::Violation;
use crate::checks::table_diff;
use crate::checks::unit_test::TestResult;
use crate::config::StorageChoice;
use crate::config::linter::Severity;
use crate::engine::{Engine, QueryResult};
use crate::error::{LakeError, Result};
use crate::plan::backfill::BuiltIntervals;
use crate::plan::{self, Plan, PlanOptions};
use crate::project::Project;
use crate::scheduler::{self, ApplyReport, BuildContext, Observer};
use crate::snapshot::{EnvironmentName, PhysicalTable, VirtualName};
use crate::sql::ModelName;
use crate::state::{Backend as StateBackend, Guard as StateGuard, StateStore};
use crate::storage::Storage;
use crate::storage::duckdb_file::DuckDbStorage;

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

pub struct Context {
    pub project: Project,
    /// Opened on first use: Iceberg storage starts a runtime and opens its catalog, which plans do not need.
    storage: std::sync::OnceLock<Box<dyn Storage>>,
}

/// Counts and checks shown by `lake info`.
#[derive(Debug, Serialize)]
pub struct Info {
    pub project: PathBuf,
    pub gateway: String,
    pub models: usize,
    pub macros: usize,
    pub external_models: usize,
    pub environments: Vec<String>,
    pub engine: String,
    pub engine_ok: bool,
    pub storage: String,
    /// Whether the storage opened (for Iceberg: the catalog database answered).
    pub storage_ok: bool,
    pub state: String,
}

/// Built and missing intervals of one incremental model, each list merged into contiguous ranges.
#[derive(Debug, Serialize)]
pub struct ModelIntervals {
    pub model: String,
    pub complete: Vec<crate::intervals::Range>,
    pub missing: Vec<crate::intervals::Range>,
}

/// What `lake run` builds: everything due, or a selection and a time window.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Rebuild FULL models even if their cron is not due.
    pub ignore_cron: bool,
    /// Only these models (names as written on the command line).
    pub select: Vec<String>,
    pub window: plan::backfill::Window,
}

/// What `lake run` did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub built: Vec<ModelName>,
}

impl Context {
    pub fn load(path: &Path, gateway: Option<&str>) -> Result<Context> {
        let project = Project::load(path, gateway)?;
        Ok(Context {
            project,
            storage: std::sync::OnceLock::new(),
        })
    }

    /// A project whose models may read tables that are not declared yet (for `create-external-models`).
    pub fn load_lenient(path: &Path, gateway: Option<&str>) -> Result<Context> {
        Ok(Context {
            project: Project::load_lenient(path, gateway)?,
            storage: std::sync::OnceLock::new(),
        })
    }

    /// Writes `external_models.yaml` from the tables models read and DuckDB's view of their columns.
    pub fn create_external_models(&self) -> Result<crate::ops::externals::ExternalsReport> {
        let engine = self.open_engine()?;
        let session = engine.session()?;
        crate::ops::externals::write(&self.project, &session)
    }

    fn storage(&self) -> Result<&dyn Storage> {
        if let Some(storage) = self.storage.get() {
            return Ok(storage.as_ref());
        }
        let catalog = self.project.default_catalog.clone();
        let opened: Box<dyn Storage> = match &self.project.config.storage {
            StorageChoice::DuckDb => Box::new(DuckDbStorage::new(catalog)),
            StorageChoice::Iceberg(settings) => Box::new(
                crate::storage::iceberg::IcebergStorage::open(settings, &catalog)?,
            ),
        };
        Ok(self.storage.get_or_init(|| opened).as_ref())
    }

    pub fn state_dir(&self) -> PathBuf {
        self.project.root.join(".lake")
    }

    fn state_backend(&self) -> StateBackend<'_> {
        StateBackend::new(&self.project.config.state, self.state_dir())
    }

    /// The state store `state_connection` selects: SQLite in `.lake/` by default, or PostgreSQL.
    pub fn open_state(&self) -> Result<Box<dyn StateStore>> {
        self.state_backend().open()
    }

    /// Serialises applies and runs of `environment` (see `state::Backend::lock`).
    fn lock(&self, environment: &str, on_wait: impl FnOnce()) -> Result<StateGuard> {
        self.state_backend().lock(environment, on_wait)
    }

    /// Upgrades state written by an older lake to this lake's schema, in one transaction.
    pub fn migrate(&self) -> Result<u32> {
        self.state_backend().migrate()
    }

    /// Where state is kept, for `lake info` (no credentials).
    pub fn describe_state(&self) -> String {
        self.state_backend().describe()
    }

    /// The DuckDB engine, readied to read the warehouse (S3 credentials and `httpfs` when it is remote) and
    /// brought in line with state: the DuckDB file is this machine's cache of the shared catalog and
    /// environments, so what other machines applied (or a deleted file held) is visible before anything runs.
    pub fn open_engine(&self) -> Result<Engine> {
        let engine = Engine::open(&self.project.config.connection)?;
        let session = engine.session()?;
        if let StorageChoice::Iceberg(settings) = &self.project.config.storage {
            crate::storage::iceberg::prepare_engine(settings, &session)?;
        }
        let state = self.open_state()?;
        let environments = state.environments()?;
        let storage = self.storage()?;
        let here: HashSet<PhysicalTable> = storage.physical_tables(&session)?.into_iter().collect();
        self.restore_views(&session, state.as_ref(), &environments, &here)?;
        let names: Vec<(VirtualName, PhysicalTable)> = environments
            .iter()
            .flat_map(|env| {
                promoted_snapshots(env).map(|s| {
                    (
                        VirtualName::new(&s.name, &env.name),
                        PhysicalTable::for_version(&s.name, &s.version),
                    )
                })
            })
            .collect();
        storage.sync_local(&session, &names)?;
        Ok(engine)
    }

    /// VIEW models exist only in the DuckDB file that created them. Those an environment shows but this file
    /// lacks are created from the query their snapshot stored when it was planned, so they need neither the
    /// machine that built them nor the same project files. One that cannot be created yet (it reads a
    /// table this machine lacks) is left to the next plan of its environment, which rebuilds what is missing.
    fn restore_views(
        &self,
        session: &crate::engine::Session,
        state: &dyn StateStore,
        environments: &[crate::state::Environment],
        here: &HashSet<PhysicalTable>,
    ) -> Result<()> {
        let mut seen = HashSet::new();
        let missing: Vec<&crate::state::EnvSnapshot> = environments
            .iter()
            .flat_map(promoted_snapshots)
            .filter(|s| {
                s.kind_name == "VIEW"
                    && !here.contains(&PhysicalTable::for_version(&s.name, &s.version))
                    && seen.insert(s.id.as_str())
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = missing.iter().map(|s| s.id.as_str()).collect();
        let mut pending: Vec<(PhysicalTable, String)> = state
            .snapshots(&ids)?
            .into_iter()
            .filter_map(|stored| {
                let query = stored.node.view_query?;
                let s = &stored.snapshot;
                Some((PhysicalTable::for_version(&s.name, &s.version), query))
            })
            .collect();
        let storage = self.storage()?;
        // A view reading another missing view can only be created after it: retry while that helps.
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|(table, query)| {
                let created = storage
                    .ensure_schema(session, &table.schema)
                    .and_then(|()| storage.create_view(session, table, query));
                created.is_err()
            });
            if pending.len() == before {
                break;
            }
        }
        Ok(())
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
        self.diff_against_state(options)
    }

    /// The plan itself, without the checks that guard it.
    fn diff_against_state(&self, options: &PlanOptions) -> Result<Plan> {
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
        let ctx = BuildContext {
            project: &self.project,
            snapshots: &plan.snapshots,
            storage: self.storage()?,
            execution_time: plan.execution_time,
        };
        scheduler::apply(&ctx, &engine, plan, state.as_mut(), observer).map_err(|e| match e {
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
        })
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
        let selected: Option<std::collections::HashSet<usize>> = if options.select.is_empty() {
            None
        } else {
            Some(
                options
                    .select
                    .iter()
                    .map(|m| self.project.find_model(m))
                    .collect::<Result<_>>()?,
            )
        };
        let env_name = EnvironmentName::parse(environment)?;
        let _lock = self.lock(&env_name, on_wait)?;
        let mut state = self.open_state()?;
        let env = existing_environment(state.as_ref(), &env_name)?;
        let mut snapshots = crate::plan::fingerprint::compute(&self.project)?;
        let env_versions: HashMap<&ModelName, (&str, &str)> = env
            .snapshots
            .iter()
            .map(|s| (&s.name, (s.id.as_str(), s.version.as_str())))
            .collect();
        let differs = snapshots.len() != env.snapshots.len()
            || snapshots
                .iter()
                .any(|s| env_versions.get(&s.name).map(|v| v.0) != Some(s.id.as_str()));
        if differs {
            return Err(LakeError::Usage(
                format!("the project's files differ from environment `{env_name}`"),
                Some(format!(
                    "`lake run` builds what an environment already contains; apply your changes with `lake plan {env_name}` first"
                )),
            ));
        }
        // Versions come from the environment: earlier plans decided which changes kept their tables.
        for s in &mut snapshots {
            if let Some((_, version)) = env_versions.get(&s.name) {
                s.version = version.to_string();
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
        )?;
        let engine = self.open_engine()?;
        let ctx = BuildContext {
            project: &self.project,
            snapshots: &snapshots,
            storage: self.storage()?,
            execution_time,
        };
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
        Ok(RunReport { built })
    }

    /// The linter's findings on `models` (all when empty); `None` when `linter.enabled` is not true.
    pub fn lint(&self, models: &[String]) -> Result<Option<Vec<crate::checks::lint::Violation>>> {
        let config = &self.project.config.linter;
        if !config.enabled {
            return Ok(None);
        }
        let indices = models
            .iter()
            .map(|m| self.project.find_model(m))
            .collect::<Result<Vec<_>>>()?;
        crate::checks::lint::lint(&self.project, config, &indices).map(Some)
    }

    /// The SQL that building `model` would run, with physical table names.
    pub fn render(&self, model: &str, execution_time: NaiveDateTime) -> Result<String> {
        let i = self.project.find_model(model)?;
        let snapshots = self.resolved_snapshots(execution_time)?;
        self.executable_query(i, &snapshots, execution_time, "rendering")
    }

    /// The local project's versions as a plan against prod would assign them (a changed model keeps its
    /// table when its change is non-breaking, forward-only or metadata-only).
    fn resolved_snapshots(
        &self,
        execution_time: NaiveDateTime,
    ) -> Result<Vec<crate::snapshot::Snapshot>> {
        Ok(self
            .diff_against_state(&PlanOptions::new(crate::PROD, execution_time))?
            .snapshots)
    }

    fn executable_query(
        &self,
        model: usize,
        snapshots: &[crate::snapshot::Snapshot],
        execution_time: NaiveDateTime,
        stage: &'static str,
    ) -> Result<String> {
        let ctx = BuildContext {
            project: &self.project,
            snapshots,
            storage: self.storage()?,
            execution_time,
        };
        let s = &snapshots[model];
        let table = PhysicalTable::for_version(&s.name, &s.version);
        let macro_ctx = scheduler::macro_context(&ctx, model, &table, stage);
        scheduler::executable_query(&ctx, model, &macro_ctx)
    }

    /// Runs `model`'s query against the built tables of its parents and returns up to `limit` rows.
    pub fn evaluate(
        &self,
        model: &str,
        execution_time: NaiveDateTime,
        limit: usize,
    ) -> Result<QueryResult> {
        let i = self.project.find_model(model)?;
        let snapshots = self.resolved_snapshots(execution_time)?;
        let engine = self.open_engine()?;
        let session = engine.session()?;
        let existing: std::collections::HashSet<PhysicalTable> = self
            .storage()?
            .physical_tables(&session)?
            .into_iter()
            .collect();
        for p in self.project.dag.parents(i) {
            if matches!(
                self.project.models[p].meta.kind,
                crate::project::model::ModelKind::Embedded
            ) {
                continue;
            }
            let s = &snapshots[p];
            let table = PhysicalTable::for_version(&s.name, &s.version);
            if !existing.contains(&table) {
                return Err(LakeError::Usage(
                    format!(
                        "`{}` reads `{}`, whose current version has not been built",
                        self.project.models[i].meta.name, s.name
                    ),
                    Some("build it first with `lake plan <env>`".into()),
                ));
            }
        }
        let query = self.executable_query(i, &snapshots, execution_time, "evaluating")?;
        session.query(
            &format!("SELECT * FROM ({query}) AS q LIMIT {limit}"),
            || format!("evaluating {}", self.project.models[i].meta.name),
        )
    }

    /// Runs arbitrary SQL on the engine, where environment names such as `demo.full_model` resolve.
    pub fn fetch(&self, sql: &str) -> Result<QueryResult> {
        let mut batches = Vec::new();
        let schema = self.fetch_each(sql, &mut |_, batch| {
            batches.push(batch);
            Ok(())
        })?;
        Ok(QueryResult { schema, batches })
    }

    /// Like `fetch`, one Arrow batch at a time.
    pub fn fetch_each(
        &self,
        sql: &str,
        on_batch: &mut dyn FnMut(
            &arrow::datatypes::SchemaRef,
            arrow::record_batch::RecordBatch,
        ) -> Result<()>,
    ) -> Result<arrow::datatypes::SchemaRef> {
        let engine = self.open_engine()?;
        let session = engine.session()?;
        session.query_each(
            &self.disambiguate(sql),
            || "running the query".into(),
            on_batch,
        )
    }

    /// `bench.orders` is ambiguous to DuckDB when the database file is `bench.db` and a schema is also
    /// `bench`; a reference to a schema the project owns is qualified with the catalog so it means the schema.
    fn disambiguate(&self, sql: &str) -> String {
        let catalog = &self.project.default_catalog;
        let owns_schema = |schema: &str| {
            self.project
                .models
                .iter()
                .any(|m| m.meta.name.schema == schema)
        };
        let Ok(statements) = crate::sql::parse(sql) else {
            return sql.to_string();
        };
        let edits = crate::sql::table_refs(sql, &statements)
            .into_iter()
            .filter(|r| r.parts.len() == 2 && r.parts[0].value.eq_ignore_ascii_case(catalog))
            .filter(|r| owns_schema(&r.parts[0].value.to_lowercase()))
            .map(|r| {
                (
                    r.offset,
                    0,
                    format!("{}.", crate::sql::quote_ident(catalog)),
                )
            })
            .collect();
        crate::sql::replace_spans(sql, edits)
    }

    /// Writes `tests/test_<model>.yaml` (or `file`): inputs from `queries` (upstream model, SQL over the
    /// names prod exposes), and the output the model makes of them. Returns the file written.
    pub fn create_test(
        &self,
        model: &str,
        queries: &[(String, String)],
        file: Option<&Path>,
        overwrite: bool,
        now: NaiveDateTime,
    ) -> Result<PathBuf> {
        let i = self.project.find_model(model)?;
        let name = &self.project.models[i].meta.name;
        let file = match file {
            Some(p) => self.project.root.join(p),
            None => self
                .project
                .root
                .join("tests")
                .join(format!("test_{}.yaml", name.name)),
        };
        if file.exists() && !overwrite {
            return Err(LakeError::Usage(
                format!("{} exists", file.display()),
                Some("pass --overwrite to replace it, or --file to write elsewhere".into()),
            ));
        }
        let engine = self.open_engine()?;
        let session = engine.session()?;
        let mut inputs = Vec::new();
        for (upstream, sql) in queries {
            let j = self.project.find_model(upstream)?;
            let result = session.query(sql, || format!("running the --query for {upstream}"))?;
            inputs.push((self.project.models[j].meta.name.to_string(), result));
        }
        let yaml = crate::checks::unit_test::create(
            &self.project,
            model,
            &format!("test_{}", name.name),
            inputs,
            now,
        )?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LakeError::io(dir, e))?;
        }
        std::fs::write(&file, yaml).map_err(|e| LakeError::io(&file, e))?;
        Ok(file)
    }

    /// Runs the unit tests (all, or those `selection` names) on in-memory DuckDB.
    pub fn test(
        &self,
        selection: &[String],
        now: NaiveDateTime,
    ) -> Result<Vec<crate::checks::unit_test::TestResult>> {
        let tests = crate::checks::unit_test::select(
            crate::checks::unit_test::load(&self.project.root)?,
            selection,
        )?;
        Ok(crate::checks::unit_test::run(&self.project, tests, now))
    }

    /// Runs the project's audits on an environment's tables (all models with audits, or `models`).
    pub fn audit(
        &self,
        environment: &str,
        models: &[String],
        execution_time: NaiveDateTime,
    ) -> Result<Vec<AuditResult>> {
        let env_name = EnvironmentName::parse(environment)?;
        let state = self.open_state()?;
        let env = existing_environment(state.as_ref(), &env_name)?;
        let selected: Option<HashSet<usize>> = if models.is_empty() {
            None
        } else {
            Some(
                models
                    .iter()
                    .map(|m| self.project.find_model(m))
                    .collect::<Result<_>>()?,
            )
        };
        // The environment's versions: audits check the data it serves.
        let versions: HashMap<&ModelName, &str> = env
            .snapshots
            .iter()
            .map(|s| (&s.name, s.version.as_str()))
            .collect();
        let mut snapshots = crate::plan::fingerprint::compute(&self.project)?;
        for s in &mut snapshots {
            if let Some(version) = versions.get(&s.name) {
                s.version = version.to_string();
            }
        }
        let engine = self.open_engine()?;
        let session = engine.session()?;
        let ctx = BuildContext {
            project: &self.project,
            snapshots: &snapshots,
            storage: self.storage()?,
            execution_time,
        };
        let mut results = Vec::new();
        for &i in &self.project.order {
            let name = &self.project.models[i].meta.name;
            let wanted = selected.as_ref().is_none_or(|s| s.contains(&i));
            if !wanted || !versions.contains_key(name) {
                continue;
            }
            let table = PhysicalTable::for_version(name, &snapshots[i].version);
            let macro_ctx = scheduler::macro_context(&ctx, i, &table, "auditing");
            for audit in &self.project.audits[i] {
                let (query, rows) =
                    scheduler::audit_rows(&ctx, &session, audit, &table.sql(), &macro_ctx, name)?;
                let sample = if rows > 0 {
                    Some(session.query(
                        &format!("SELECT * FROM ({query}) AS bad_rows LIMIT {AUDIT_SAMPLE_ROWS}"),
                        || format!("sampling the bad rows of audit `{}`", audit.name),
                    )?)
                } else {
                    None
                };
                results.push(AuditResult {
                    model: name.clone(),
                    audit: audit.name.clone(),
                    blocking: audit.blocking,
                    rows,
                    query,
                    sample,
                });
            }
        }
        Ok(results)
    }

    /// For each incremental model of `environment`: the intervals built and those missing up to `now`.
    pub fn check_intervals(
        &self,
        environment: &str,
        now: NaiveDateTime,
    ) -> Result<Vec<ModelIntervals>> {
        let env_name = EnvironmentName::parse(environment)?;
        let state = self.open_state()?;
        let env = existing_environment(state.as_ref(), &env_name)?;
        let versions: Vec<(ModelName, String)> = env
            .snapshots
            .iter()
            .map(|s| (s.name.clone(), s.version.clone()))
            .collect();
        let built = BuiltIntervals::load(state.as_ref(), &versions)?;
        let mut out = Vec::new();
        for &i in &self.project.order {
            let model = &self.project.models[i];
            if plan::backfill::action_for(&model.meta.kind) != Some(plan::BackfillAction::Insert) {
                continue;
            }
            let Some(version) = env.snapshots.iter().find(|s| s.name == model.meta.name) else {
                continue;
            };
            let complete = built.of(&model.meta.name, &version.version).to_vec();
            let missing = plan::backfill::missing_batches(
                &self.project,
                i,
                &complete,
                now,
                plan::backfill::Window::default(),
            )?;
            out.push(ModelIntervals {
                model: model.meta.name.to_string(),
                complete: crate::intervals::batches(&complete, None),
                missing: crate::intervals::batches(&missing, None),
            });
        }
        Ok(out)
    }

    pub fn environments(&self) -> Result<Vec<crate::state::Environment>> {
        self.open_state()?.environments()
    }

    /// Expires `environment` now; with `sync`, also runs the janitor for it at once.
    pub fn invalidate(
        &self,
        environment: &str,
        sync: bool,
        now: NaiveDateTime,
    ) -> Result<Option<janitor::JanitorReport>> {
        let env_name = EnvironmentName::parse(environment)?;
        {
            let _lock = self.lock(&env_name, || {})?;
            let mut state = self.open_state()?;
            janitor::invalidate(state.as_mut(), &env_name, now.and_utc().timestamp_millis())?;
        }
        if !sync {
            return Ok(None);
        }
        self.janitor(now, false, Some(&env_name)).map(Some)
    }

    /// Removes expired environments and the tables no environment uses (see `janitor::janitor`).
    pub fn janitor(
        &self,
        now: NaiveDateTime,
        ignore_ttl: bool,
        environment: Option<&str>,
    ) -> Result<janitor::JanitorReport> {
        // The janitor spans environments; a removal is still conditional on each one's plan id.
        let _lock = self.lock("_janitor", || {})?;
        let mut state = self.open_state()?;
        let engine = self.open_engine()?;
        let session = engine.session()?;
        let environment = environment.map(EnvironmentName::parse).transpose()?;
        janitor::janitor(
            state.as_mut(),
            self.storage()?,
            &session,
            &janitor::JanitorOptions {
                now_ms: now.and_utc().timestamp_millis(),
                ignore_ttl,
                environment: environment.as_deref(),
            },
        )
    }

    /// The physical table holding `model`'s data in `environment`.
    pub fn table_name(&self, model: &str, environment: &str) -> Result<PhysicalTable> {
        let i = self.project.find_model(model)?;
        let name = &self.project.models[i].meta.name;
        let env_name = EnvironmentName::parse(environment)?;
        let state = self.open_state()?;
        let env = existing_environment(state.as_ref(), &env_name)?;
        env.snapshots
            .iter()
            .find(|s| &s.name == name)
            .map(|s| PhysicalTable::for_version(&s.name, &s.version))
            .ok_or_else(|| {
                LakeError::Usage(
                    format!("`{name}` is not in environment `{env_name}`"),
                    Some(format!("apply it first with `lake plan {env_name}`")),
                )
            })
    }

    /// Compares `model` between two environments: schemas, row counts and, joined on `on` (default: the
    /// model's grain), how often each shared column matches.
    pub fn table_diff(
        &self,
        source: &str,
        target: &str,
        model: &str,
        on: &[String],
    ) -> Result<table_diff::TableDiff> {
        let i = self.project.find_model(model)?;
        let meta = &self.project.models[i].meta;
        let keys: Vec<String> = if on.is_empty() {
            meta.grains.clone()
        } else {
            on.to_vec()
        };
        let source_table = self.table_name(model, source)?;
        let target_table = self.table_name(model, target)?;
        let engine = self.open_engine()?;
        let session = engine.session()?;
        let catalog = crate::sql::quote_ident(&self.project.default_catalog);
        table_diff::compare(
            &session,
            &format!("{catalog}.{}", source_table.sql()),
            &format!("{catalog}.{}", target_table.sql()),
            &keys,
        )
    }

    pub fn info(&self) -> Result<Info> {
        let state = self.open_state()?;
        let environments = state.environments()?.into_iter().map(|e| e.name).collect();
        let (engine, engine_ok) = match &self.project.config.connection {
            crate::config::EngineConnection::DuckDb { database, .. } => (
                format!(
                    "duckdb ({})",
                    database
                        .as_ref()
                        .map_or(":memory:".into(), |p| p.display().to_string())
                ),
                self.open_engine()
                    .and_then(|e| e.session())
                    .and_then(|s| s.execute("SELECT 1", || "checking the engine".into()))
                    .is_ok(),
            ),
        };
        Ok(Info {
            project: self.project.root.clone(),
            gateway: self.project.config.gateway.clone(),
            models: self.project.models.len(),
            macros: self.project.macro_files,
            external_models: self.project.externals.len(),
            environments,
            engine,
            engine_ok,
            storage: self.project.config.storage.describe(),
            storage_ok: self.storage().is_ok(),
            state: self.describe_state(),
        })
    }
}

/// `--start` / `--end` as a window; an end given as a date includes that whole day.
pub fn window(start: Option<&str>, end: Option<&str>) -> Result<plan::backfill::Window> {
    let parse = |text: &str, flag: &str| {
        crate::intervals::parse_datetime(text).ok_or_else(|| {
            LakeError::Usage(
                format!("invalid {flag} `{text}`"),
                Some("use YYYY-MM-DD or `YYYY-MM-DD HH:MM:SS`".into()),
            )
        })
    };
    let start = start.map(|s| parse(s, "--start")).transpose()?;
    let end = match end {
        None => None,
        Some(text) => {
            let at = parse(text, "--end")?;
            let date_only = text.trim().len() <= 10;
            Some(if date_only {
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

/// The snapshots an environment exposes names for: a dev environment shows only what it changed.
fn promoted_snapshots(
    env: &crate::state::Environment,
) -> impl Iterator<Item = &crate::state::EnvSnapshot> {
    let promoted: HashSet<&ModelName> = env.promoted.iter().collect();
    env.snapshots
        .iter()
        .filter(move |s| promoted.contains(&s.name))
}

/// How many bad rows `lake audit` shows per failing audit.
pub const AUDIT_SAMPLE_ROWS: usize = 5;

/// One audit's outcome on an environment's table.
pub struct AuditResult {
    pub model: ModelName,
    pub audit: String,
    pub blocking: bool,
    pub rows: u64,
    pub query: String,
    /// The first bad rows, when there are any.
    pub sample: Option<QueryResult>,
}

/// The environment `name`, or a usage error saying how to list or create one.
fn existing_environment(state: &dyn StateStore, name: &str) -> Result<crate::state::Environment> {
    state.environment(name)?.ok_or_else(|| {
        LakeError::Usage(
            format!("environment `{name}` does not exist"),
            Some(format!(
                "`lake environments` lists them; `lake plan {name}` creates it"
            )),
        )
    })
}
