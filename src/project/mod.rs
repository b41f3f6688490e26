//! Loading a project: config, model files, external models, query analysis and the DAG.

pub mod audit;
pub mod block;
pub mod cache;
pub mod dag;
pub mod lineage;
mod load;
pub use load::Configured;
pub mod macros;
pub mod model;
pub mod models;
pub mod schema;
mod select;
pub mod template;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::ResolvedConfig;
use crate::error::{LakeError, Result, SourceError, SourceFile, did_you_mean};
use crate::project::dag::Dag;
use crate::sql;
use crate::sql::IdentPart;
use crate::sql::ModelName;
use crate::sql::lex;
use macros::MacroContext;
use model::{Model, ModelKind};
pub use models::{LoadedModel, ModelId, PerModel};

/// A table `lake` does not build but models may read, from `external_models.yaml`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExternalModel {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// What one model's query reads, found by parsing it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    /// The query in canonical form (rendered with the loading context), the basis of the fingerprint.
    pub normalized_query: Option<String>,
    /// The models this one reads (query references and `depends_on`), deduplicated.
    pub parents: Vec<ModelId>,
    pub externals: Vec<ModelName>,
    /// Tables read that are neither models nor declared externals (only when loading leniently).
    pub undeclared: Vec<ModelName>,
    /// The columns of an incremental model that reads its own table, for the empty table its first batch
    /// reads (declared, or the query's cast projections).
    pub own_columns: Option<Vec<(String, String)>>,
}

/// Where a table reference in a query points.
#[derive(Debug, Clone, PartialEq)]
pub enum RefTarget {
    Model(ModelId),
    External,
    /// Engine catalogs such as `information_schema`, read as they are.
    System,
    Unknown,
}

#[derive(Debug)]
pub struct Project {
    pub root: PathBuf,
    pub config: ResolvedConfig,
    /// Every enabled model, with its analysis and audits.
    models: PerModel<LoadedModel>,
    by_name: HashMap<ModelName, ModelId>,
    pub externals: BTreeMap<ModelName, ExternalModel>,
    pub dag: Dag,
    /// Parents before children.
    pub order: Vec<ModelId>,
    /// The engine's default catalog; model names qualified with it are the same as unqualified ones.
    pub default_catalog: String,
    /// Number of files under `macros/`.
    pub macro_files: usize,
    /// `@DEF` statements of `macros/*.sql`, in file order: macros every model can use.
    pub macro_definitions: Vec<(SourceFile, crate::project::model::Statement)>,
    /// The `{% macro %}`s of `macros/*.sql`, for Jinja blocks.
    pub jinja_macros: String,
    /// Python macros in `macros/*.py` (name → file), which lake cannot run.
    pub python_macros: std::sync::Arc<BTreeMap<String, String>>,
    /// Declared columns of models and external tables, for `@STAR` and `@UNION`.
    pub known_columns: std::sync::Arc<BTreeMap<String, Vec<(String, String)>>>,
    /// Relations whose columns a macro asked for and did not find (see `MacroContext::column_requests`).
    column_requests: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// The audits written in `audits/*.sql`, by name.
    pub audit_definitions: BTreeMap<String, std::sync::Arc<crate::project::audit::ProjectAudit>>,
    /// Accept references to undeclared tables (for `create-external-models`), recording them in analyses.
    lenient: bool,
    /// How many models' analyses came from the cache in `cache_dir` instead of rendering.
    pub cached_analyses: usize,
    /// Rewriting the cache file, when this load changed it.
    cache_writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Some(writer) = self.cache_writer.take() {
            // A panic in the writer only loses the cache, which the next load rebuilds.
            let _ = writer.join();
        }
    }
}

const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "pg_catalog", "system", "temp"];

impl Project {
    /// Whether prod writes model `i`'s table in place under its name (`virtual_environment_mode: dev_only`, in
    /// config.yaml or its MODEL block) rather than exposing versioned tables through names.
    pub fn dev_only(&self, id: ModelId) -> bool {
        self.models[id].dev_only
    }

    /// Every model, with its analysis and audits.
    pub fn models(&self) -> &PerModel<LoadedModel> {
        &self.models
    }

    pub fn model(&self, id: ModelId) -> &Model {
        &self.models[id].model
    }

    /// What model `id`'s query reads.
    pub fn analysis(&self, id: ModelId) -> &Analysis {
        &self.models[id].analysis
    }

    /// Model `id`'s audits, resolved and with parsed arguments.
    pub fn model_audits(&self, id: ModelId) -> &[crate::project::audit::ModelAudit] {
        &self.models[id].audits
    }

    /// The model named `name` (written without the default catalog).
    pub fn id_of(&self, name: &ModelName) -> Option<ModelId> {
        self.by_name.get(name).copied()
    }

    /// The Spark Connect engine that builds model `i` (its `gateway`, or the project's), or `None` when lake
    /// builds it on DuckDB: always for SEED, VIEW, EMBEDDED and EXTERNAL models, which load files, live in
    /// DuckDB or are never built.
    pub fn spark_gateway(&self, i: ModelId) -> Option<&crate::config::SparkConnection> {
        if !self.model(i).meta.kind.built_by_engine() {
            return None;
        }
        let gateway = self
            .model(i)
            .meta
            .gateway
            .as_deref()
            .unwrap_or(&self.config.gateway);
        self.config.spark_gateways.get(gateway)
    }

    /// `time_column_format` in config.yaml: the format of the time columns of INCREMENTAL_BY_TIME_RANGE models
    /// that give none, for those whose values are text or numbers (`'20240131'`, `20240131`). As in SQLMesh,
    /// a batch's bounds are then written in that format; dates and timestamps are compared as they are. A
    /// column's type is the declared one, else what DuckDB's binder infers; a model whose type stays unknown
    /// keeps comparing its column as a timestamp.
    fn apply_time_column_format(&mut self) {
        let Some(format) = self.config.config.time_column_format.clone() else {
            return;
        };
        let unformatted = |kind: &ModelKind| match kind {
            ModelKind::IncrementalByTimeRange { time_column, .. }
                if time_column.format.is_none() =>
            {
                Some(time_column.column.clone())
            }
            _ => None,
        };
        let mut types: Vec<(ModelId, Option<String>)> = Vec::new();
        for (i, loaded) in self.models.entries() {
            let model = &loaded.model;
            if let Some(column) = unformatted(&model.meta.kind) {
                let declared = model
                    .meta
                    .columns
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(&column))
                    .map(|c| c.data_type.clone());
                types.push((i, declared));
            }
        }
        if types.iter().any(|(_, declared)| declared.is_none()) {
            // The binder needs every ancestor bound first.
            let mut needed: HashSet<ModelId> = HashSet::new();
            for (i, declared) in &types {
                if declared.is_none() {
                    needed.insert(*i);
                    needed.extend(self.dag.upstream(*i));
                }
            }
            if let Ok(mut binder) = schema::Binder::new(self) {
                for &i in self.order.iter().filter(|i| needed.contains(i)) {
                    // A model that fails to bind leaves its own columns (and its children's) unknown; those
                    // models keep comparing their time column as a timestamp.
                    let _ = binder.bind(i);
                }
                for (i, found) in &mut types {
                    if found.is_some() {
                        continue;
                    }
                    let model = self.model(*i);
                    let column = unformatted(&model.meta.kind).unwrap_or_default();
                    *found = binder.columns_of(&model.meta.name).and_then(|columns| {
                        columns
                            .into_iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(&column))
                            .map(|(_, data_type)| data_type)
                    });
                }
            }
        }
        for (i, data_type) in types {
            if data_type.as_deref().is_some_and(is_text_or_number)
                && let ModelKind::IncrementalByTimeRange { time_column, .. } =
                    &mut self.models[i].model.meta.kind
            {
                time_column.format = Some(format.clone());
            }
        }
    }

    /// Infers the columns of the models macros asked for (`column_requests`) from their queries, with
    /// DuckDB's binder over their ancestors, and adds them to `known_columns`. Returns whether any were
    /// learnt. Only models whose ancestors all rendered can be inferred.
    fn infer_requested_columns(&mut self, analyses: &PerModel<Result<Analysis>>) -> Result<bool> {
        let requested: Vec<String> = match self.column_requests.lock() {
            Ok(mut requests) => std::mem::take(&mut *requests).into_iter().collect(),
            Err(_) => return Ok(false),
        };
        let mut wanted = Vec::new();
        for relation in &requested {
            let Some(name) = ModelName::parse(relation) else {
                continue;
            };
            let Some(&i) = self.by_name.get(&name) else {
                continue;
            };
            if !self.known_columns.contains_key(relation) {
                wanted.push(i);
            }
        }
        // Ancestors first (depth-first post-order over the parents found so far).
        let mut order = Vec::new();
        let mut state = self.models.map(|_, _| 0u8);
        fn visit(
            i: ModelId,
            analyses: &PerModel<Result<Analysis>>,
            state: &mut PerModel<u8>,
            order: &mut Vec<ModelId>,
        ) -> bool {
            match state[i] {
                1 => return false, // a cycle: reported later by the DAG
                2 => return true,
                _ => {}
            }
            let Ok(analysis) = &analyses[i] else {
                return false;
            };
            state[i] = 1;
            let complete = analysis
                .parents
                .iter()
                .all(|&p| visit(p, analyses, state, order));
            state[i] = 2;
            if complete {
                order.push(i);
            }
            complete
        }
        wanted.retain(|&i| visit(i, analyses, &mut state, &mut order));
        if wanted.is_empty() {
            return Ok(false);
        }
        let mut learnt = BTreeMap::new();
        {
            let mut binder = crate::project::schema::Binder::new(self)?;
            for &i in &order {
                binder.bind(i)?;
            }
            for &i in &wanted {
                let name = &self.model(i).meta.name;
                if let Some(columns) = binder.columns_of(name) {
                    learnt.insert(name.to_string().to_lowercase(), columns);
                }
            }
        }
        if learnt.is_empty() {
            return Ok(false);
        }
        let mut known = (*self.known_columns).clone();
        known.extend(learnt);
        self.known_columns = std::sync::Arc::new(known);
        Ok(true)
    }

    pub fn model_named(&self, name: &ModelName) -> Option<&Model> {
        self.id_of(name).map(|id| self.model(id))
    }

    /// Finds a model by the name a user typed, with a "did you mean" hint when absent.
    pub fn find_model(&self, name: &str) -> Result<ModelId> {
        self.model_id_named(name).ok_or_else(|| {
            let names: Vec<String> = self
                .models
                .iter()
                .map(|m| m.model.meta.name.to_string())
                .collect();
            LakeError::UnknownModel(
                name.to_string(),
                self.named_without_schema(name)
                    .or_else(|| did_you_mean(name, names.iter().map(String::as_str))),
            )
        })
    }

    /// "did you mean `demo.full_model`?" for `full_model`: the models of that name in any schema, when the
    /// name was typed without one.
    fn named_without_schema(&self, name: &str) -> Option<String> {
        if name.contains('.') {
            return None;
        }
        let matches: Vec<String> = self
            .models
            .iter()
            .map(|m| &m.model.meta.name)
            .filter(|m| m.name.eq_ignore_ascii_case(name))
            .map(|m| format!("`{m}`"))
            .collect();
        match matches.as_slice() {
            [] => None,
            [one] => Some(format!(
                "did you mean {one}? Models are named `schema.name`"
            )),
            many => Some(format!(
                "models are named `schema.name`: {} (one per schema)",
                many.join(", ")
            )),
        }
    }

    /// The model a name written in SQL or typed by a user names, with or without the default catalog.
    pub fn model_id_named(&self, name: &str) -> Option<ModelId> {
        let mut name = ModelName::parse(name)?;
        if name.catalog.as_deref() == Some(self.default_catalog.as_str()) {
            name.catalog = None;
        }
        self.by_name.get(&name).copied()
    }

    /// Resolves a table reference found in a query.
    pub fn resolve(&self, parts: &[IdentPart]) -> RefTarget {
        let Some(mut name) = ModelName::from_parts(parts) else {
            return RefTarget::Unknown;
        };
        if name.catalog.as_deref() == Some(self.default_catalog.as_str()) {
            name.catalog = None;
        }
        if let Some(&i) = self.by_name.get(&name) {
            return RefTarget::Model(i);
        }
        if self.externals.contains_key(&name) {
            return RefTarget::External;
        }
        if SYSTEM_SCHEMAS.contains(&name.schema.as_str()) && name.catalog.is_none() {
            return RefTarget::System;
        }
        RefTarget::Unknown
    }

    /// `ctx` with the macros model `i` can use: the project's `@DEF`s from `macros/`, then the model's own.
    pub fn macro_scope(&self, i: ModelId, ctx: &MacroContext) -> Result<MacroContext> {
        let mut scoped = ctx.clone();
        if ctx.scoped_for == Some(i) {
            return Ok(scoped);
        }
        scoped.python_macros = self.python_macros.clone();
        scoped.known_columns = self.known_columns.clone();
        scoped.column_requests = self.column_requests.clone();
        let model = self.model(i);
        for (name, value) in &model.blueprint {
            scoped.locals.insert(name.clone(), value.clone());
        }
        scoped.blueprint_vars = model.blueprint.clone();
        scoped.model_kind = model.meta.kind.name().to_string();
        // Outside a build SQLMesh resolves `@this_model` to the model's own name.
        if scoped.this_model.is_empty() {
            scoped.this_model = model.meta.name.sql();
        }
        let definitions = self
            .macro_definitions
            .iter()
            .map(|(file, d)| (file, d))
            .chain(model.definitions.iter().map(|d| (&model.file, d)));
        for (file, definition) in definitions {
            macros::define(&definition.text, &mut scoped).map_err(|e| {
                LakeError::from(
                    file.error(definition.offset + e.offset, e.len, e.message)
                        .with_label("macro definition")
                        .with_optional_help(e.help),
                )
            })?;
        }
        scoped.scoped_for = Some(i);
        Ok(scoped)
    }

    /// A statement's text, with its Jinja rendered first when it is a Jinja block.
    pub fn jinja(
        &self,
        model: &Model,
        statement: &crate::project::model::Statement,
        ctx: &MacroContext,
    ) -> Result<String> {
        if !statement.jinja {
            return Ok(statement.text.clone());
        }
        macros::jinja::render(&statement.text, ctx, &self.jinja_macros).map_err(|e| {
            let file = statement.file(&model.file);
            let (first_line, _) = file.line_col(statement.offset);
            let at = match e.line {
                Some(line) if line > 1 => file.offset_of(first_line + line - 1, 1),
                _ => statement.offset,
            };
            LakeError::from(
                file
                    .error(at, 1, format!("cannot render the Jinja block: {}", e.message))
                    .with_label("Jinja")
                    .with_help("variables: start_ds, end_ds, execution_ds, … (plain values: quote them yourself), var('name'), env_var('NAME')"),
            )
        })
    }

    /// The query of model `i` with macros rendered for `ctx`, parsed, and each model reference located.
    pub fn render_query(&self, i: ModelId, ctx: &MacroContext) -> Result<Option<RenderedQuery>> {
        let model = self.model(i);
        let Some(query) = &model.query else {
            return Ok(None);
        };
        let ctx = &self.macro_scope(i, ctx)?;
        let source = self.jinja(model, query, ctx)?;
        // Offsets inside Jinja output do not map back to the file: point at the block instead.
        let locate = |offset: usize| {
            if query.jinja {
                query.offset
            } else {
                query.offset + offset
            }
        };
        let rendered = macros::render(&source, ctx).map_err(|e| {
            LakeError::from(
                model
                    .file
                    .error(locate(e.offset), e.len, e.message)
                    .with_label("macro")
                    .with_optional_help(e.help),
            )
        })?;
        let statements = sql::parse(&rendered.sql).map_err(|e| {
            let at = locate(rendered.original_offset(e.offset));
            LakeError::from(
                model
                    .file
                    .error(
                        at,
                        1,
                        format!(
                            "cannot parse the query of `{}`: {}",
                            model.meta.name, e.message
                        ),
                    )
                    .with_label("syntax error")
                    .with_help("lake parses model queries in DuckDB's SQL dialect"),
            )
        })?;
        if statements.len() != 1 {
            return Err(model
                .file
                .error(
                    query.offset,
                    query.text.len().min(20),
                    "a model's query must be a single statement",
                )
                .into());
        }
        let refs = sql::table_refs(&rendered.sql, &statements)
            .into_iter()
            .map(|r| {
                let target = self.resolve(&r.parts);
                (r, target)
            })
            .collect();
        Ok(Some(RenderedQuery {
            normalized: sql::normalized(&statements),
            sql: rendered.sql.clone(),
            refs,
            rendered,
        }))
    }

    /// The column types a self-reading model declares (SQLMesh requires them: the first batch reads an
    /// empty table that must already have the model's columns).
    fn own_columns(
        &self,
        i: ModelId,
        sql: &str,
        at: usize,
        len: usize,
    ) -> Result<Vec<(String, String)>> {
        let model = self.model(i);
        if !model.meta.columns.is_empty() {
            return Ok(model
                .meta
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.data_type.clone()))
                .collect());
        }
        sql::parse(sql)
            .ok()
            .and_then(|statements| sql::cast_projection(&statements))
            .ok_or_else(|| {
                model
                    .file
                    .error(
                        at,
                        len,
                        format!(
                            "model `{}` reads its own table, so its column types must be known before it first runs",
                            model.meta.name
                        ),
                    )
                    .with_label("self-reference")
                    .with_help(
                        "declare them with `columns (name TYPE, …)` in the MODEL block, or cast every selected column (`x::INT AS x`)",
                    )
                    .into()
            })
    }

    /// What the load-time rendering of every model reads besides the model's own file, for cache keys.
    fn cache_inputs(&self) -> cache::ProjectInputs<'_> {
        cache::ProjectInputs {
            gateway: &self.config.gateway,
            variables: &self.config.variables,
            model_defaults: format!("{:?}", self.config.model_defaults),
            macro_definitions: self
                .macro_definitions
                .iter()
                .map(|(_, d)| d.text.as_str())
                .collect(),
            jinja_macros: &self.jinja_macros,
            python_macros: &self.python_macros,
        }
    }

    /// `analyse`, from the cache when it holds the model's rendering and storing it when it may.
    fn analyse_with_cache(
        &self,
        i: ModelId,
        cache: Option<&cache::AnalysisCache>,
    ) -> (Result<Analysis>, cache::CacheUse) {
        let model = self.model(i);
        // Jinja templates can read the process environment (`env_var`), which no key covers.
        let cacheable = model.query.as_ref().is_some_and(|q| !q.jinja);
        let Some(cache) = cache.filter(|_| cacheable) else {
            return (self.analyse(i).map(|(a, _)| a), cache::CacheUse::Bypassed);
        };
        let key = cache.key(model);
        if let Some(hit) = cache
            .get(&key)
            .and_then(|entry| self.analyse_cached(i, entry))
        {
            return (hit, cache::CacheUse::Hit(key));
        }
        match self.analyse(i) {
            Ok((analysis, entry)) => (Ok(analysis), cache::CacheUse::Miss(key, entry)),
            Err(e) => (Err(e), cache::CacheUse::Miss(key, None)),
        }
    }

    /// The analysis of model `i` from its cached rendering, or `None` when a reference needs the full
    /// analysis: an unknown table (for its located error) or the model's own table (for its columns).
    fn analyse_cached(&self, i: ModelId, cached: &cache::CachedQuery) -> Option<Result<Analysis>> {
        let mut analysis = Analysis::default();
        for parts in &cached.references {
            match self.resolve(parts) {
                RefTarget::Model(p) if p != i => analysis.parents.push(p),
                RefTarget::External => analysis.externals.push(ModelName::from_parts(parts)?),
                RefTarget::System => {}
                RefTarget::Model(_) | RefTarget::Unknown => return None,
            }
        }
        analysis.normalized_query = Some(cached.normalized.clone());
        Some(self.add_declared_parents(i, analysis))
    }

    /// What model `i`'s query reads, and its rendering to cache when nothing in it depended on other
    /// models' columns or its own table.
    fn analyse(&self, i: ModelId) -> Result<(Analysis, Option<cache::CachedQuery>)> {
        let model = self.model(i);
        let ctx = MacroContext::for_loading(&self.config.gateway, &self.config.variables);
        let mut analysis = Analysis::default();
        let mut cacheable = None;
        if let Some(rendered) = self.render_query(i, &ctx)? {
            let query = model.query.as_ref().map_or(0, |q| q.offset);
            for (r, target) in &rendered.refs {
                match target {
                    // SQLMesh lets incremental models read the rows they already hold.
                    RefTarget::Model(p) if *p == i && model.meta.kind.is_incremental() => {
                        if analysis.own_columns.is_none() {
                            let start = rendered.rendered.original_offset(r.offset);
                            let end = rendered.rendered.original_offset(r.offset + r.len);
                            let len = end.saturating_sub(start).max(1);
                            analysis.own_columns =
                                Some(self.own_columns(i, &rendered.sql, query + start, len)?);
                        }
                    }
                    RefTarget::Model(p) if *p == i => {
                        let at = query + rendered.rendered.original_offset(r.offset);
                        return Err(model
                            .file
                            .error(at, r.len, format!("model `{}` reads from itself", model.meta.name))
                            .with_label("self-reference")
                            .with_help("only incremental models may read their own table: a FULL model or view is rebuilt from its parents alone")
                            .into());
                    }
                    RefTarget::Model(p) => analysis.parents.push(*p),
                    RefTarget::External => {
                        if let Some(n) = ModelName::from_parts(&r.parts) {
                            analysis.externals.push(n);
                        }
                    }
                    RefTarget::System => {}
                    RefTarget::Unknown => {
                        if self.lenient
                            && let Some(n) = ModelName::from_parts(&r.parts)
                        {
                            analysis.undeclared.push(n);
                            continue;
                        }
                        let at = query + rendered.rendered.original_offset(r.offset);
                        return Err(self.unknown_reference(model, at, r).into());
                    }
                }
            }
            let consulted_columns = ctx
                .columns_consulted
                .load(std::sync::atomic::Ordering::Relaxed);
            if !consulted_columns && !self.lenient && analysis.own_columns.is_none() {
                cacheable = Some(cache::CachedQuery {
                    normalized: rendered.normalized.clone(),
                    references: rendered.refs.iter().map(|(r, _)| r.parts.clone()).collect(),
                });
            }
            analysis.normalized_query = Some(rendered.normalized);
        }
        Ok((self.add_declared_parents(i, analysis)?, cacheable))
    }

    /// `analysis` with the parents model `i` names outside its query (`depends_on`, audits comparing with
    /// another model), sorted and deduplicated.
    fn add_declared_parents(&self, i: ModelId, mut analysis: Analysis) -> Result<Analysis> {
        let model = self.model(i);
        for dep in &model.meta.depends_on {
            match self.by_name.get(dep) {
                Some(&p) => analysis.parents.push(p),
                None => {
                    return Err(LakeError::UnknownModel(
                        dep.to_string(),
                        Some(format!(
                            "`depends_on` of {} names a model that does not exist",
                            model.file.display_path
                        )),
                    ));
                }
            }
        }
        analysis.parents.extend(self.audited_models(i));
        analysis.parents.sort_unstable();
        analysis.parents.dedup();
        Ok(analysis)
    }

    /// The other models that model `i`'s audits read (`relationship(to := other)`, `FROM other` in an audit's
    /// query): SQLMesh runs an audit once those are built, so they are the model's parents. An audit that
    /// cannot be rendered at load adds none; running it reports why.
    fn audited_models(&self, i: ModelId) -> Vec<ModelId> {
        let read = ReadModels {
            project: self,
            read: std::cell::RefCell::new(Vec::new()),
        };
        let ctx = MacroContext::for_loading(&self.config.gateway, &self.config.variables);
        for audit in self.model_audits(i) {
            if let Some(to) = audit.args.get("to") {
                crate::project::audit::ModelResolver::table_of(&read, &to.to_string());
            }
            if let audit::AuditSource::Project(_) = audit.source {
                let _ = audit::render(audit, "this_model", &ctx, &read);
            }
        }
        let mut read = read.read.into_inner();
        read.retain(|&p| p != i);
        read
    }

    fn unknown_reference(&self, model: &Model, at: usize, r: &sql::TableRef) -> SourceError {
        let wanted = r.display().to_lowercase();
        let names: Vec<String> = self
            .models
            .iter()
            .map(|m| m.model.meta.name.to_string())
            .chain(self.externals.keys().map(|n| n.to_string()))
            .collect();
        let hint = did_you_mean(&wanted, names.iter().map(String::as_str)).unwrap_or_else(|| {
            "declare tables that lake does not build in external_models.yaml (name and columns)"
                .to_string()
        });
        model
            .file
            .error(
                at,
                r.len.max(1),
                format!(
                    "`{}` reads `{}`, which is neither a model nor a declared external table",
                    model.meta.name,
                    r.display()
                ),
            )
            .with_label("unknown table")
            .with_help(hint)
    }

    fn cycle_error(&self, cycle: &[ModelId]) -> LakeError {
        let names = cycle
            .iter()
            .map(|&i| self.model(i).meta.name.to_string())
            .collect();
        // Point at the reference in the last model of the path that reads the first one.
        let (src, span) = match cycle {
            [.., from, to] => {
                let model = self.model(*to);
                let ctx = MacroContext::for_loading(&self.config.gateway, &self.config.variables);
                let located = self.render_query(*to, &ctx).ok().flatten().and_then(|q| {
                    let offset = model.query.as_ref()?.offset;
                    q.refs
                        .iter()
                        .find(|(_, t)| *t == RefTarget::Model(*from))
                        .map(|(r, _)| (offset + q.rendered.original_offset(r.offset), r.len))
                });
                match located {
                    Some((at, len)) => (
                        Some(miette::NamedSource::new(
                            model.file.display_path.clone(),
                            model.file.text.to_string(),
                        )),
                        Some(miette::SourceSpan::new(at.into(), len)),
                    ),
                    None => (None, None),
                }
            }
            _ => (None, None),
        };
        LakeError::Cycle {
            cycle: names,
            src,
            span,
        }
    }
}

/// Records the models an audit reads, naming none of them differently.
struct ReadModels<'a> {
    project: &'a Project,
    read: std::cell::RefCell<Vec<ModelId>>,
}

impl audit::ModelResolver for ReadModels<'_> {
    fn table_of(&self, model: &str) -> Option<String> {
        if let Some(id) = self.project.model_id_named(model) {
            self.read.borrow_mut().push(id);
        }
        None
    }
}

/// A model query rendered for one evaluation.
#[derive(Debug, Clone)]
pub struct RenderedQuery {
    pub sql: String,
    pub normalized: String,
    pub refs: Vec<(sql::TableRef, RefTarget)>,
    pub rendered: macros::Rendered,
}

fn display_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn model_files(root: &Path, ignore_patterns: &[String]) -> Result<Vec<PathBuf>> {
    let mut builder = globset::GlobSetBuilder::new();
    for pattern in ignore_patterns {
        let glob = globset::Glob::new(pattern).map_err(|e| LakeError::Config {
            message: format!("invalid ignore pattern `{pattern}`: {e}"),
            help: None,
        })?;
        builder.add(glob);
    }
    let ignored = builder
        .build()
        .map_err(|e| LakeError::config(format!("invalid ignore_patterns: {e}")))?;
    let dir = root.join("models");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&dir).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(&dir).to_path_buf();
            LakeError::io(path, e.into())
        })?;
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(path);
        if entry.file_type().is_file()
            && path.extension().is_some_and(|e| e == "sql")
            && !ignored.is_match(relative)
        {
            files.push(path.to_path_buf());
        }
    }
    Ok(files)
}

/// The `@DEF` statements of `macros/*.sql`, their Jinja `{% macro %}`s, and the Python macros (`@macro()`
/// functions) of `macros/*.py`.
#[allow(clippy::type_complexity)]
fn load_macros(
    root: &Path,
) -> Result<(
    Vec<(SourceFile, crate::project::model::Statement)>,
    String,
    BTreeMap<String, String>,
)> {
    let mut definitions = Vec::new();
    let mut jinja = String::new();
    let mut python = BTreeMap::new();
    for file in read_files(root, "macros", &["sql", "py"])? {
        if file.display_path.ends_with(".py") {
            // A function right under an `@macro(...)` decorator is a macro named like the function.
            let mut decorated = false;
            for line in file.text.lines() {
                let line = line.trim();
                if line.starts_with("@macro") {
                    decorated = true;
                } else if decorated && let Some(rest) = line.strip_prefix("def ") {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    python.insert(name.to_lowercase(), file.display_path.clone());
                    decorated = false;
                } else if !line.starts_with('@') && !line.is_empty() {
                    decorated = false;
                }
            }
            continue;
        }
        if file.text.contains("{%") {
            jinja.push_str(&file.text);
            jinja.push('\n');
        }
        for piece in lex::split_statements(&file.text, 0) {
            if lex::leading_keyword(piece.text) == "@DEF" {
                let statement = crate::project::model::Statement {
                    text: piece.text.to_string(),
                    offset: piece.offset,
                    jinja: false,
                    source: None,
                };
                definitions.push((file.clone(), statement));
            }
        }
    }
    Ok((definitions, jinja, python))
}

/// The files under `root/folder` whose extension is one of `extensions`, in path order, each read with its
/// path as shown to users.
pub fn read_files(root: &Path, folder: &str, extensions: &[&str]) -> Result<Vec<SourceFile>> {
    let dir = root.join(folder);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_type().is_file()
                && e.path()
                    .extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| extensions.contains(&x))
        })
        .map(|e| e.into_path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let display = display_path(root, path);
            let text = crate::error::read_text(path, &display)?;
            Ok(SourceFile::new(display, text))
        })
        .collect()
}

fn count_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && !e.file_name().to_string_lossy().starts_with('.'))
        .count()
}

/// `external_models.yaml` and `external_models/*.yaml`: a list of `{name, columns}`.
fn load_externals(root: &Path) -> Result<BTreeMap<ModelName, ExternalModel>> {
    let mut paths = vec![root.join("external_models.yaml"), root.join("schema.yaml")];
    let dir = root.join("external_models");
    if dir.is_dir() {
        for entry in walkdir::WalkDir::new(&dir)
            .sort_by_file_name()
            .into_iter()
            .filter_map(|e| e.ok())
        {
            if entry
                .path()
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml")
            {
                paths.push(entry.path().to_path_buf());
            }
        }
    }
    let mut out = BTreeMap::new();
    for path in paths.into_iter().filter(|p| p.is_file()) {
        let display = display_path(root, &path);
        let text = crate::error::read_text(&path, &display)?;
        let file = SourceFile::new(display.clone(), text.as_str());
        let list: Vec<ExternalModel> = serde_norway::from_str::<Option<Vec<ExternalModel>>>(&text)
            .map_err(|e| {
                let offset = e.location().map_or(0, |l| file.offset_of(l.line(), l.column()));
                LakeError::from(
                    file.error(offset, 1, format!("invalid external models file: {e}"))
                        .with_help("external_models.yaml is a list of `- name: schema.table` entries with optional `columns:`"),
                )
            })?
            .unwrap_or_default();
        for external in list {
            let name = ModelName::parse(&external.name).ok_or_else(|| LakeError::Config {
                message: format!(
                    "{display}: external model name `{}` is not `schema.table`",
                    external.name
                ),
                help: None,
            })?;
            out.insert(name, external);
        }
    }
    Ok(out)
}

/// Whether a column of this SQL type holds text or numbers (not dates or timestamps).
fn is_text_or_number(data_type: &str) -> bool {
    let base = data_type
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase();
    matches!(
        base.as_str(),
        "VARCHAR"
            | "TEXT"
            | "STRING"
            | "CHAR"
            | "BPCHAR"
            | "NVARCHAR"
            | "TINYINT"
            | "SMALLINT"
            | "INT"
            | "INTEGER"
            | "BIGINT"
            | "HUGEINT"
            | "UTINYINT"
            | "USMALLINT"
            | "UINTEGER"
            | "UBIGINT"
            | "INT2"
            | "INT4"
            | "INT8"
            | "LONG"
            | "DECIMAL"
            | "NUMERIC"
    )
}
