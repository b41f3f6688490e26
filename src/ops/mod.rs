//! The library's front door: a loaded project (`Context`) and the operations `lake` offers on it, with the
//! engine, storage and state they open. Each group of operations has its own file: `planning` (the checks before
//! a plan, planning, applying), `run`, `inspect` (render, evaluate, fetch, intervals, table diff, info),
//! `quality` (lint, unit tests, audits), `janitor`, `clean` (caches, destroy), `externals` and `hooks`
//! (before_all / after_all).

mod clean;
pub mod externals;
mod hooks;
mod inspect;
pub mod janitor;
mod lineage;
mod planning;
mod quality;
mod run;

pub use crate::project::Configured;
pub use clean::DestroyReport;
pub use inspect::{Info, ModelIntervals, RenderRequest};
pub use lineage::{LineageNode, LineageRequest, Use};
pub use planning::{
    PlanCheckFindings, PlanRequest, PlanSettings, execution_time, fail_on_lint_errors,
    large_backfill, window,
};
pub use quality::{AUDIT_SAMPLE_ROWS, AuditResult, NewTest, TestRequest};
pub use run::{RunOptions, RunReport};

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

use crate::config::StorageChoice;
use crate::engine::Engine;
use crate::error::{LakeError, Result};
use crate::project::{PerModel, Project};
use crate::snapshot::{EnvironmentName, PhysicalTable, VirtualName};
use crate::sql::ModelName;
use crate::state::{Backend as StateBackend, Guard as StateGuard, StateStore};
use crate::storage::Storage;
use crate::storage::duckdb_file::DuckDbStorage;

pub struct Context {
    pub project: Project,
    /// Opened on first use: Iceberg storage starts a runtime and opens its catalog, which plans do not need.
    storage: std::sync::OnceLock<Box<dyn Storage>>,
    /// Spark Connect engines of the project's gateways, connected when a model first needs one.
    spark: crate::engine::spark::SparkEngines,
}

impl Context {
    pub fn load(path: &Path, gateway: Option<&str>) -> Result<Context> {
        Self::load_configured(path, &Configured::gateway(gateway), false)
    }

    /// A project whose models may read tables that are not declared yet (for `create-external-models`).
    pub fn load_lenient(path: &Path, gateway: Option<&str>) -> Result<Context> {
        Self::load_configured(path, &Configured::gateway(gateway), true)
    }

    /// The project in `path` with the configuration `configured` chooses; `lenient` as `load_lenient`.
    pub fn load_configured(
        path: &Path,
        configured: &Configured<'_>,
        lenient: bool,
    ) -> Result<Context> {
        let project = crate::profile::timed(crate::profile::Phase::LoadProject, || {
            Project::load_configured(path, configured, lenient)
        })?;
        Ok(Context {
            project,
            storage: std::sync::OnceLock::new(),
            spark: Default::default(),
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
        let mut mapped = self.project.config.physical_schemas.targets();
        let mut in_place = Vec::new();
        // Versions planned under an earlier mapping keep their tables where it put them, and in-place tables
        // stay lake's after the mode changes. State that cannot be opened here names none; the command reports
        // it where it needs state.
        if let Ok(state) = self.open_state() {
            if let Ok(earlier) = state.physical_schemas() {
                mapped.extend(earlier);
                mapped.sort();
                mapped.dedup();
            }
            if let Ok(models) = state.in_place_models() {
                in_place.extend(models.iter().map(|model| {
                    PhysicalTable::for_version(model, crate::snapshot::IN_PLACE, None)
                }));
            }
        }
        let layout = DuckDbStorage::new(catalog)
            .with_mapped_schemas(mapped)
            .with_in_place(in_place);
        let opened: Box<dyn Storage> = match &self.project.config.storage {
            StorageChoice::DuckDb => Box::new(layout),
            StorageChoice::Iceberg(settings) => Box::new(
                crate::storage::iceberg::IcebergStorage::open(settings, layout)?,
            ),
        };
        Ok(self.storage.get_or_init(|| opened).as_ref())
    }

    /// What the scheduler needs to render and build `snapshots` at `execution_time`.
    fn build_context<'a>(
        &'a self,
        snapshots: &'a PerModel<crate::snapshot::Snapshot>,
        execution_time: NaiveDateTime,
        intervals_end: Option<NaiveDateTime>,
    ) -> Result<crate::scheduler::BuildContext<'a>> {
        Ok(crate::scheduler::BuildContext {
            project: &self.project,
            snapshots,
            storage: self.storage()?,
            execution_time,
            intervals_end,
            spark: &self.spark,
            allowed_schema_changes: Default::default(),
            concurrent_tasks: self.project.config.connection.concurrent_tasks(),
            slots: crate::scheduler::Slots::new(self.project.config.connection.concurrent_tasks()),
        })
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

    /// Undoes the last `lake migrate`: the state as it was before it, for the lake that wrote it.
    pub fn rollback(&self) -> Result<u32> {
        self.state_backend().rollback()
    }

    /// The whole state, as `lake state export` writes it.
    pub fn export_state(&self) -> Result<crate::state::transfer::StateExport> {
        crate::state::transfer::export(self.open_state()?.as_ref())
    }

    /// Fills the configured state, which has no environments yet, with an export.
    pub fn import_state(
        &self,
        export: &crate::state::transfer::StateExport,
    ) -> Result<crate::state::transfer::ImportReport> {
        crate::state::transfer::import(self.open_state()?.as_mut(), export)
    }

    /// Where state is kept, for `lake info` (no credentials).
    pub fn describe_state(&self) -> String {
        self.state_backend().describe()
    }

    /// The DuckDB engine, readied to read the warehouse (S3 credentials and `httpfs` when it is remote) and
    /// brought in line with state: the DuckDB file is this machine's cache of the shared catalog and
    /// environments, so what other machines applied (or a deleted file held) is visible before anything runs.
    pub fn open_engine(&self) -> Result<Engine> {
        let _timer = crate::profile::time(crate::profile::Phase::OpenEngine);
        let engine = Engine::open(&self.project.config.connection)?;
        let session = engine.session()?;
        if let StorageChoice::Iceberg(settings) = &self.project.config.storage {
            crate::storage::iceberg::prepare_engine(settings, &session)?;
        }
        self.sync_engine(&session)?;
        Ok(engine)
    }

    /// A private in-memory DuckDB (with the project's extensions and S3 credentials) for reading the Iceberg
    /// warehouse without the project's DuckDB file, which a running plan holds: the project's catalog name
    /// is attached and made current, so every name resolves as it does in that file once `sync_engine` ran.
    pub fn open_reader_engine(&self) -> Result<Engine> {
        let StorageChoice::Iceberg(settings) = &self.project.config.storage else {
            return Err(LakeError::unsupported(
                "reading a project with `storage: {type: duckdb}` without its DuckDB file",
                "remove the `storage` override from config.yaml to keep tables in Iceberg",
            ));
        };
        let crate::config::EngineConnection::DuckDb {
            concurrent_tasks,
            extensions,
            ..
        } = &self.project.config.connection;
        let engine = Engine::open(&crate::config::EngineConnection::DuckDb {
            database: None,
            concurrent_tasks: *concurrent_tasks,
            extensions: extensions.clone(),
        })?;
        let session = engine.session()?;
        crate::storage::iceberg::prepare_engine(settings, &session)?;
        session.execute(
            &format!(
                "ATTACH ':memory:' AS {0}",
                crate::sql::quote_ident(&self.project.default_catalog)
            ),
            || "attaching the reader's catalog".into(),
        )?;
        Ok(engine)
    }

    /// A fingerprint of what `sync_engine` reads: every environment's plan and the catalog's current metadata
    /// file of each physical table. Equal fingerprints mean a sync would change nothing; `None` when the storage
    /// cannot tell (DuckDB tables), so callers always sync.
    pub fn engine_fingerprint(&self, state: &dyn StateStore) -> Result<Option<u64>> {
        use std::hash::{Hash, Hasher};
        let Some(catalog) = self.storage()?.catalog_fingerprint()? else {
            return Ok(None);
        };
        let mut hasher = std::hash::DefaultHasher::new();
        catalog.hash(&mut hasher);
        // The stamps, not the environments: their versions are what a full refresh reads.
        state.environment_stamps()?.hash(&mut hasher);
        Ok(Some(hasher.finish()))
    }

    /// Makes the engine's views match state and the Iceberg catalog: tables committed elsewhere appear, views
    /// of VIEW models are restored, and every environment's names point at its versions. Returns the
    /// environments it saw.
    pub fn sync_engine(
        &self,
        session: &crate::engine::Session,
    ) -> Result<Vec<crate::state::Environment>> {
        let state = self.open_state()?;
        let environments = state.environments()?;
        let storage = self.storage()?;
        let here: HashSet<PhysicalTable> = storage.physical_tables(session)?.into_iter().collect();
        self.restore_views(session, state.as_ref(), &environments, &here)?;
        let names: Vec<(VirtualName, PhysicalTable)> = environments
            .iter()
            .flat_map(|env| {
                promoted_snapshots(env).map(|s| {
                    (
                        VirtualName::new(&s.name, &env.name, env.suffix_target),
                        s.table(),
                    )
                })
            })
            // Prod's in-place tables are their own names, and a name never replaces one (an apply that
            // switched prod to them stopped before promotion: its next plan finishes the switch).
            .filter(|(name, table)| {
                !name.is(table)
                    && !here.contains(&PhysicalTable {
                        schema: name.schema.clone(),
                        table: name.name.clone(),
                    })
            })
            .collect();
        storage.sync_local(session, &names)?;
        Ok(environments)
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
                s.kind_name == "VIEW" && !here.contains(&s.table()) && seen.insert(s.id.as_str())
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
                Some((PhysicalTable::of(s), query))
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
        self.janitor_with(state.as_mut(), &session, now, ignore_ttl, environment)
    }

    /// The janitor's pass on state and a session the caller has open (under its lock).
    fn janitor_with(
        &self,
        state: &mut dyn StateStore,
        session: &crate::engine::Session,
        now: NaiveDateTime,
        ignore_ttl: bool,
        environment: Option<&str>,
    ) -> Result<janitor::JanitorReport> {
        let environment = environment.map(EnvironmentName::parse).transpose()?;
        janitor::janitor(
            state,
            self.storage()?,
            session,
            &janitor::JanitorOptions {
                now_ms: now.and_utc().timestamp_millis(),
                ignore_ttl,
                environment: environment.as_deref(),
                pinned: &self.project.config.config.pinned_environments,
            },
        )
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

/// The environment `name`, or a usage error saying how to list or create one.
fn existing_environment(state: &dyn StateStore, name: &str) -> Result<crate::state::Environment> {
    match state.environment(name)? {
        Some(env) => Ok(env),
        None => Err(no_such_environment(state, name)?),
    }
}

/// The error for an environment that does not exist, suggesting the nearest existing name (a typo such as
/// `dev_alise` for `dev_alice`).
fn no_such_environment(state: &dyn StateStore, name: &str) -> Result<LakeError> {
    let names: Vec<String> = state.environments()?.into_iter().map(|e| e.name).collect();
    let hint =
        crate::error::did_you_mean(name, names.iter().map(String::as_str)).unwrap_or_else(|| {
            format!("`lake environments` lists them; `lake plan {name}` creates it")
        });
    Ok(LakeError::Usage(
        format!("environment `{name}` does not exist"),
        Some(hint),
    ))
}

impl Context {
    /// Fails, naming the nearest existing one, unless development environment `name` exists (prod may be
    /// missing: a project not planned yet differs from it in everything).
    pub fn require_environment(&self, name: &str) -> Result<()> {
        if name == crate::PROD {
            return Ok(());
        }
        let state = self.open_state()?;
        match state.environment(name)? {
            Some(_) => Ok(()),
            None => Err(no_such_environment(state.as_ref(), name)?),
        }
    }
}
