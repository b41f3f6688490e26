//! Looking at a project and its environments: rendered SQL, evaluation, queries, intervals, table diffs, info.

use std::path::PathBuf;

use chrono::NaiveDateTime;
use serde::Serialize;

use super::{Context, existing_environment};
use crate::checks::table_diff;
use crate::engine::QueryResult;
use crate::error::{LakeError, Result};
use crate::plan::backfill::BuiltIntervals;
use crate::plan::{self, PlanOptions};
use crate::project::{ModelId, PerModel};
use crate::scheduler;
use crate::snapshot::{EnvironmentName, PhysicalTable};
use crate::sql::ModelName;

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

/// What `lake render` and `lake evaluate` render: a model as it would run at `execution_time`, over
/// `window` (default: the model's start to then), with the upstream models `expand` names read as their
/// queries instead of their tables.
#[derive(Debug, Clone)]
pub struct RenderRequest {
    pub model: String,
    pub execution_time: NaiveDateTime,
    pub window: plan::backfill::Window,
    /// `None`: read every upstream model's table; `Some([])`: expand them all; else these.
    pub expand: Option<Vec<String>>,
}

impl RenderRequest {
    /// `model` at `execution_time`, over its whole range, nothing expanded.
    pub fn new(model: &str, execution_time: NaiveDateTime) -> Self {
        RenderRequest {
            model: model.to_string(),
            execution_time,
            window: plan::backfill::Window::default(),
            expand: None,
        }
    }
}

impl Context {
    /// The SQL that building the requested model would run, with physical table names.
    pub fn render(&self, request: &RenderRequest) -> Result<String> {
        let i = self.project.find_model(&request.model)?;
        let snapshots = self.resolved_snapshots(request.execution_time)?;
        self.executable_query(i, &snapshots, request, "rendering")
    }

    /// The Spark SQL the engine of `model`'s Spark gateway runs for it (or the first Spark gateway's, when the
    /// model's runs on DuckDB), translated from its DuckDB SQL; EXCLUDE expands over the tables built so far.
    pub fn render_spark(&self, model: &str, execution_time: NaiveDateTime) -> Result<String> {
        let i = self.project.find_model(model)?;
        let connection = self
            .project
            .spark_gateway(i)
            .or_else(|| self.project.config.spark_gateways.values().next())
            .cloned()
            .unwrap_or_else(crate::config::SparkConnection::unconfigured);
        let snapshots = self.resolved_snapshots(execution_time)?;
        let ctx = self.build_context(&snapshots, execution_time, None)?;
        let s = &snapshots[i];
        let table = PhysicalTable::of(s);
        let macro_ctx = scheduler::macro_context(&ctx, i, &table, "rendering");
        let columns_of = |name: &[String]| {
            ctx.storage
                .shared_catalog()
                .and_then(|catalog| scheduler::spark::table_columns(catalog, name))
        };
        scheduler::spark::spark_query(&ctx, i, &connection, &macro_ctx, &columns_of)
    }

    /// The local project's versions as a plan against prod would assign them (a changed model keeps its
    /// table when its change is non-breaking, forward-only or metadata-only).
    pub(super) fn resolved_snapshots(
        &self,
        execution_time: NaiveDateTime,
    ) -> Result<PerModel<crate::snapshot::Snapshot>> {
        Ok(self
            .diff_against_state(&PlanOptions::new(crate::PROD, execution_time))?
            .snapshots)
    }

    pub(super) fn executable_query(
        &self,
        model: ModelId,
        snapshots: &PerModel<crate::snapshot::Snapshot>,
        request: &RenderRequest,
        stage: &'static str,
    ) -> Result<String> {
        let ctx = self.build_context(snapshots, request.execution_time, None)?;
        let s = &snapshots[model];
        let table = PhysicalTable::of(s);
        let mut macro_ctx = scheduler::macro_context(&ctx, model, &table, stage);
        if let Some(start) = request.window.start {
            macro_ctx.start = start;
        }
        if let Some(end) = request.window.end {
            macro_ctx.end = end;
        }
        let expanded = self.expanded_models(model, request.expand.as_deref())?;
        let inlining = scheduler::render::Inlining {
            views: false,
            models: &expanded,
        };
        scheduler::render::executable_query_for(&ctx, model, &macro_ctx, &inlining)
    }

    /// The models `--expand` names (each must be upstream of `model`); every upstream model for a bare
    /// `--expand`.
    fn expanded_models(&self, model: ModelId, expand: Option<&[String]>) -> Result<Vec<ModelId>> {
        let upstream: Vec<ModelId> = self.project.dag.upstream(model);
        match expand {
            None => Ok(Vec::new()),
            Some([]) => Ok(upstream),
            Some(names) => names
                .iter()
                .map(|name| {
                    let id = self.project.find_model(name)?;
                    if upstream.contains(&id) {
                        Ok(id)
                    } else {
                        Err(LakeError::Usage(
                            format!(
                                "--expand {name}: `{}` does not read it",
                                self.project.model(model).meta.name
                            ),
                            Some("expand models upstream of the rendered one".into()),
                        ))
                    }
                })
                .collect(),
        }
    }

    /// Runs the requested model's query against the built tables of its parents and returns up to
    /// `limit` rows.
    pub fn evaluate(&self, request: &RenderRequest, limit: usize) -> Result<QueryResult> {
        let i = self.project.find_model(&request.model)?;
        let snapshots = self.resolved_snapshots(request.execution_time)?;
        let engine = self.open_engine()?;
        let session = engine.session()?;
        self.require_built_parents(i, &snapshots, &session)?;
        let query = self.executable_query(i, &snapshots, request, "evaluating")?;
        session
            .query(
                &format!("SELECT * FROM ({query}) AS q LIMIT {limit}"),
                || format!("evaluating {}", self.project.model(i).meta.name),
            )
            .map_err(|e| match self.project.model(i).locate_engine_error(&e) {
                Some(located) => LakeError::from(located),
                None => e,
            })
    }

    /// Refuses to evaluate `model` while a table it reads (an EMBEDDED parent is inlined) is not built.
    fn require_built_parents(
        &self,
        model: ModelId,
        snapshots: &PerModel<crate::snapshot::Snapshot>,
        session: &crate::engine::Session,
    ) -> Result<()> {
        let existing: std::collections::HashSet<PhysicalTable> = self
            .storage()?
            .physical_tables(session)?
            .into_iter()
            .collect();
        for p in self.project.dag.parents(model) {
            if matches!(
                self.project.model(p).meta.kind,
                crate::project::model::ModelKind::Embedded
            ) {
                continue;
            }
            let s = &snapshots[p];
            if !existing.contains(&PhysicalTable::of(s)) {
                return Err(LakeError::Usage(
                    format!(
                        "`{}` reads `{}`, whose current version has not been built",
                        self.project.model(model).meta.name,
                        s.name
                    ),
                    Some("build it first with `lake plan <env>`".into()),
                ));
            }
        }
        Ok(())
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
    pub(super) fn disambiguate(&self, sql: &str) -> String {
        let catalog = &self.project.default_catalog;
        crate::sql::qualify_catalog_named_schema(sql, catalog, catalog, |schema| {
            self.project
                .models()
                .iter()
                .any(|m| m.model.meta.name.schema == schema)
        })
    }

    /// For each incremental or FULL model of `environment`: the intervals built and those missing up to `now`.
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
            let model = self.project.model(i);
            if !matches!(
                plan::backfill::action_for(&model.meta.kind),
                Some(plan::BackfillAction::Insert | plan::BackfillAction::FullRefresh)
            ) {
                continue;
            }
            let Some(version) = env.snapshots.iter().find(|s| s.name == model.meta.name) else {
                continue;
            };
            let (complete, missing) = plan::backfill::interval_report(
                &self.project,
                i,
                built.of(&model.meta.name, &version.version),
                now,
            )?;
            out.push(ModelIntervals {
                model: model.meta.name.to_string(),
                complete,
                missing,
            });
        }
        Ok(out)
    }

    pub fn environments(&self) -> Result<Vec<crate::state::Environment>> {
        self.open_state()?.environments()
    }

    /// The physical table holding `model`'s data in `environment`.
    pub fn table_name(&self, model: &str, environment: &str) -> Result<PhysicalTable> {
        self.table_name_for(model, environment, false)
    }

    /// [`Context::table_name`], or with `in_prod` the table the environment's version of `model` has once
    /// promoted to prod (`lake table-name --prod`): a forward-only change previewed in dev is applied to
    /// prod's own table, and a `dev_only` model's prod table is its in-place one.
    pub fn table_name_for(
        &self,
        model: &str,
        environment: &str,
        in_prod: bool,
    ) -> Result<PhysicalTable> {
        let i = self.project.find_model(model)?;
        let name = &self.project.model(i).meta.name;
        let env_name = EnvironmentName::parse(environment)?;
        let state = self.open_state()?;
        let env = existing_environment(state.as_ref(), &env_name)?;
        let prod = if in_prod {
            state.environment(crate::PROD)?
        } else {
            None
        };
        env.snapshots
            .iter()
            .find(|s| &s.name == name)
            .map(|s| {
                if !in_prod {
                    return s.table();
                }
                if self.project.dev_only(i) {
                    return PhysicalTable::for_version(&s.name, crate::snapshot::IN_PLACE, None);
                }
                // A forward-only change keeps prod's table; a preview of a model new to prod gets its own.
                let in_prod_now = prod
                    .as_ref()
                    .and_then(|p| p.snapshots.iter().find(|p| p.name == s.name));
                match in_prod_now {
                    Some(current) if crate::snapshot::is_dev_preview(&s.version) => current.table(),
                    _ => PhysicalTable::for_version(
                        &s.name,
                        crate::snapshot::content_version(&s.version),
                        s.physical_schema.as_deref(),
                    ),
                }
            })
            .ok_or_else(|| {
                LakeError::Usage(
                    format!("`{name}` is not in environment `{env_name}`"),
                    Some(format!("apply it first with `lake plan {env_name}`")),
                )
            })
    }

    /// Compares `model` between two environments: schemas, row counts and, joined on `on` (default: the
    /// model's grain), how often each shared column matches.
    /// `model` compared between the `source` and `target` environments, on `options.keys` (default: the
    /// model's grain), over the rows `filter` (a SQL condition) keeps on both sides.
    pub fn table_diff(
        &self,
        (source, target): (&str, &str),
        model: &str,
        options: &table_diff::DiffOptions,
        filter: Option<&str>,
    ) -> Result<table_diff::TableDiff> {
        let i = self.project.find_model(model)?;
        let meta = &self.project.model(i).meta;
        let mut options = options.clone();
        if options.keys.is_empty() {
            options.keys = meta.grains.clone();
        }
        let catalog = crate::sql::quote_ident(&self.project.default_catalog);
        let side = |environment: &str| -> Result<String> {
            let table = format!("{catalog}.{}", self.table_name(model, environment)?.sql());
            Ok(match filter {
                Some(condition) => format!("(SELECT * FROM {table} WHERE {condition})"),
                None => table,
            })
        };
        let (source_rows, target_rows) = (side(source)?, side(target)?);
        let engine = self.open_engine()?;
        let session = engine.session()?;
        table_diff::compare(&session, &source_rows, &target_rows, &options)
    }

    pub fn info(&self) -> Result<Info> {
        let state = self.open_state()?;
        let environments = state.environments()?.into_iter().map(|e| e.name).collect();
        let crate::config::EngineConnection::DuckDb { database, .. } =
            &self.project.config.connection;
        let duckdb = format!(
            "duckdb ({})",
            database
                .as_ref()
                .map_or(":memory:".into(), |p| p.display().to_string())
        );
        let duckdb_ok = || {
            self.open_engine()
                .and_then(|e| e.session())
                .and_then(|s| s.execute("SELECT 1", || "checking the engine".into()))
                .is_ok()
        };
        let gateway = &self.project.config.gateway;
        let (engine, engine_ok) = match self.project.config.spark_gateways.get(gateway) {
            // Models run on the engine; seeds, views and reads on lake's DuckDB: both must answer.
            Some(spark) => (
                format!("spark ({}), with lake's {duckdb}", spark.display),
                self.spark.get(spark).is_ok() && duckdb_ok(),
            ),
            None => (duckdb, duckdb_ok()),
        };
        Ok(Info {
            project: self.project.root.clone(),
            gateway: self.project.config.gateway.clone(),
            models: self.project.models().len(),
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
