//! The quality checks of a project: its linter, its unit tests (and writing new ones), and its audits on data.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use chrono::NaiveDateTime;

use super::Context;
use crate::engine::QueryResult;
use crate::error::{LakeError, Result};
use crate::project::ModelId;
use crate::project::model::ModelKind;
use crate::scheduler;
use crate::snapshot::{EnvironmentName, PhysicalTable};
use crate::sql::ModelName;

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

/// Which unit tests `lake test` runs, and how.
#[derive(Debug, Clone, Default)]
pub struct TestRequest {
    /// `tests/file.yaml`, `tests/file.yaml::name` or `name`; all when empty.
    pub selection: Vec<String>,
    /// `-k`: only tests whose name holds this substring (or matches this glob).
    pub pattern: Option<String>,
    /// `--preserve-fixtures`: each test's input tables stay in a DuckDB file.
    pub preserve_fixtures: bool,
}

/// `lake create-test`: which model, from which inputs, written where.
#[derive(Debug, Clone, Default)]
pub struct NewTest {
    pub model: String,
    /// `(upstream model, SQL)`: each upstream's input rows.
    pub queries: Vec<(String, String)>,
    /// The test's name (default `test_<model>`); the file is `tests/<name>.yaml` unless `file` is given.
    pub name: Option<String>,
    pub file: Option<PathBuf>,
    pub overwrite: bool,
    /// Variables the model reads (`@VAR`, `{{ var() }}`, `@start_ds`…), written to the test's `vars`.
    pub vars: Vec<(String, String)>,
    /// Also write the rows of each CTE of the model's query as `outputs.ctes`.
    pub include_ctes: bool,
}

impl Context {
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

    /// Writes a unit test for `request.model` (to `tests/<name>.yaml`, or `request.file`): inputs from its
    /// queries (upstream model, SQL over the names prod exposes), and the output the model makes of them.
    /// Returns the file written.
    pub fn create_test(&self, request: &NewTest, now: NaiveDateTime) -> Result<PathBuf> {
        let i = self.project.find_model(&request.model)?;
        let name = request
            .name
            .clone()
            .unwrap_or_else(|| format!("test_{}", self.project.model(i).meta.name.name));
        let file = match &request.file {
            Some(p) => self.project.root.join(p),
            None => self.project.root.join("tests").join(format!("{name}.yaml")),
        };
        if file.exists() && !request.overwrite {
            return Err(LakeError::Usage(
                format!("{} exists", file.display()),
                Some(
                    "pass --overwrite to replace it, --name to name the test (and its file) \
                     differently, or --path to write elsewhere"
                        .into(),
                ),
            ));
        }
        let engine = self.open_engine()?;
        let session = engine.session()?;
        let mut inputs = Vec::new();
        for (upstream, sql) in &request.queries {
            let j = self.project.find_model(upstream)?;
            let result = session.query(sql, || format!("running the --query for {upstream}"))?;
            inputs.push((self.project.model(j).meta.name.to_string(), result));
        }
        let yaml = crate::checks::unit_test::create(
            &self.project,
            &crate::checks::unit_test::Generated {
                model: &request.model,
                name: &name,
                inputs,
                vars: &request.vars,
                include_ctes: request.include_ctes,
            },
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
        self.run_tests(
            &TestRequest {
                selection: selection.to_vec(),
                ..TestRequest::default()
            },
            now,
        )
    }

    /// `lake test`: the selected tests (and those whose name `pattern` matches), with their fixtures kept in
    /// `.lake/test-fixtures/` when `preserve_fixtures`.
    pub fn run_tests(
        &self,
        request: &TestRequest,
        now: NaiveDateTime,
    ) -> Result<Vec<crate::checks::unit_test::TestResult>> {
        use crate::checks::unit_test;
        let mut tests =
            unit_test::select(unit_test::load(&self.project.root)?, &request.selection)?;
        if let Some(pattern) = &request.pattern {
            tests = unit_test::matching(tests, pattern)?;
        }
        let dir = self.fixtures_dir();
        let fixtures = if request.preserve_fixtures {
            std::fs::create_dir_all(&dir).map_err(|e| LakeError::io(&dir, e))?;
            unit_test::Fixtures::PreservedIn(&dir)
        } else {
            unit_test::Fixtures::InMemory
        };
        Ok(unit_test::run(&self.project, tests, now, fixtures))
    }

    /// Where `lake test --preserve-fixtures` keeps each test's database.
    pub fn fixtures_dir(&self) -> std::path::PathBuf {
        self.project.root.join(".lake").join("test-fixtures")
    }

    /// Runs the project's audits (all models with audits, or `models`) on the tables of the versions the local
    /// project defines, as SQLMesh does: a version a plan built is audited even when its failing audits kept
    /// it from being promoted. A model whose local version was never planned is audited on the version
    /// `environment` serves, if any. `window` limits time-range models to the rows of that range.
    pub fn audit(
        &self,
        environment: &str,
        models: &[String],
        execution_time: NaiveDateTime,
        window: crate::plan::backfill::Window,
    ) -> Result<Vec<AuditResult>> {
        let env_name = EnvironmentName::parse(environment)?;
        let state = self.open_state()?;
        let env = state.environment(&env_name)?;
        let selected: Option<HashSet<ModelId>> = if models.is_empty() {
            None
        } else {
            Some(
                models
                    .iter()
                    .map(|m| self.project.find_model(m))
                    .collect::<Result<_>>()?,
            )
        };
        let mut snapshots = crate::plan::fingerprint::compute(&self.project)?;
        let ids: Vec<&str> = snapshots.iter().map(|s| s.id.as_str()).collect();
        let stored = state.stored_versions(&ids)?;
        let served: HashMap<&ModelName, crate::state::StoredVersion> = env
            .iter()
            .flat_map(|env| &env.snapshots)
            .map(|s| {
                let version = crate::state::StoredVersion {
                    version: s.version.clone(),
                    physical_schema: s.physical_schema.clone(),
                };
                (&s.name, version)
            })
            .collect();
        let mut audited_table: HashMap<ModelName, PhysicalTable> = HashMap::new();
        for s in &mut snapshots {
            let version = stored.get(&s.id).or_else(|| served.get(&s.name));
            if let Some(version) = version {
                s.version = version.version.clone();
                s.physical_schema = version.physical_schema.clone();
                audited_table.insert(s.name.clone(), PhysicalTable::of(s));
            }
        }
        let engine = self.open_engine()?;
        let session = engine.session()?;
        let ctx = self.build_context(&snapshots, execution_time, None)?;
        let existing: HashSet<PhysicalTable> =
            ctx.storage.physical_tables(&session)?.into_iter().collect();
        let mut results = Vec::new();
        for &i in &self.project.order {
            let model = self.project.model(i);
            let name = &model.meta.name;
            let wanted = selected.as_ref().is_none_or(|s| s.contains(&i));
            if !wanted || self.project.model_audits(i).is_empty() {
                continue;
            }
            let built = audited_table
                .get(name)
                .filter(|table| existing.contains(table))
                .cloned();
            let Some(table) = built else {
                if selected.is_some() {
                    return Err(LakeError::Usage(
                        format!("`{name}` has no built version to audit"),
                        Some(format!("build it first with `lake plan {env_name}`")),
                    ));
                }
                continue;
            };
            let mut macro_ctx = scheduler::macro_context(&ctx, i, &table, "auditing");
            let relation = match (&model.meta.kind, window.start, window.end) {
                (ModelKind::IncrementalByTimeRange { time_column, .. }, start, end)
                    if start.is_some() || end.is_some() =>
                {
                    macro_ctx.start = start.unwrap_or(macro_ctx.start);
                    macro_ctx.end = end.unwrap_or(macro_ctx.end);
                    format!(
                        "(SELECT * FROM {} WHERE {}) AS this_model",
                        table.sql(),
                        scheduler::time_range_predicate(
                            time_column,
                            macro_ctx.start,
                            macro_ctx.end
                        )
                    )
                }
                _ => table.sql(),
            };
            for audit in self.project.model_audits(i) {
                let (query, rows) =
                    scheduler::audit_rows(&ctx, &session, audit, &relation, &macro_ctx, i)?;
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
}
