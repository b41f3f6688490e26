//! Loading a project from disk: config, model files (in parallel), the checks across models, external
//! models, macros and audits, then every model's query analysed (through the cache) and the DAG linked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use rayon::prelude::*;

use super::dag::Dag;
use super::model::{self, Model};
use super::{
    Analysis, ExternalModel, LoadedModel, ModelId, PerModel, Project, cache, count_files,
    display_path, load_externals, load_macros, model_files,
};
use crate::config::{self, EngineConnection, ResolvedConfig, VirtualEnvironmentMode};
use crate::error::{LakeError, Result, SourceFile};
use crate::sql::ModelName;

/// Which configuration a project loads with: a gateway of it (default: `default_gateway`) and the file
/// (default: `config.yaml`; `--config`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Configured<'a> {
    pub gateway: Option<&'a str>,
    pub file: Option<&'a Path>,
}

impl<'a> Configured<'a> {
    pub fn gateway(gateway: Option<&'a str>) -> Self {
        Configured {
            gateway,
            file: None,
        }
    }
}

impl Project {
    /// Loads the project in `root`, reporting every broken model file at once.
    pub fn load(root: &Path, gateway: Option<&str>) -> Result<Project> {
        Self::load_with(root, &Configured::gateway(gateway), false)
    }

    /// Like `load`, but a table that is neither a model nor declared is recorded, not an error.
    pub fn load_lenient(root: &Path, gateway: Option<&str>) -> Result<Project> {
        Self::load_with(root, &Configured::gateway(gateway), true)
    }

    /// `load` (or, `lenient`, `load_lenient`) with the configuration `configured` chooses.
    pub fn load_configured(
        root: &Path,
        configured: &Configured<'_>,
        lenient: bool,
    ) -> Result<Project> {
        Self::load_with(root, configured, lenient)
    }

    fn load_with(root: &Path, configured: &Configured<'_>, lenient: bool) -> Result<Project> {
        let root = root.canonicalize().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LakeError::Usage(
                format!("there is no project folder `{}`", root.display()),
                Some("give the folder holding config.yaml with -p, or run `lake init NAME` to create one".into()),
            ),
            _ => LakeError::io(root, e),
        })?;
        let config = config::load_file(&root, configured.file, configured.gateway)?;
        let default_catalog = default_catalog(&config);
        // Checked once here, so a bad default is one error rather than one per model.
        model::default_audits(&config.model_defaults)?;
        let (models, mut errors) = parse_model_files(&root, &config, &default_catalog)?;
        let by_name = index_names(&models, &mut errors);
        errors.extend(other_catalogs(&models, &default_catalog));
        errors.extend(missing_seeds(&root, &models));
        errors.extend(unknown_gateways(&config, &models));
        errors.extend(schema_clashes(&config, &models));
        let externals = load_externals(&root)?;
        let macro_files = count_files(&root.join("macros"));
        let (macro_definitions, jinja_macros, python_macros) = load_macros(&root)?;
        let known_columns = known_columns(&models, &externals);
        let audit_definitions = super::audit::load_project_audits(&root)?;
        let models = models
            .into_iter()
            .map(|model| {
                let audits = super::audit::resolve(&model.audit_site(), &audit_definitions)
                    .unwrap_or_else(|e| {
                        errors.push(e.into());
                        Vec::new()
                    });
                LoadedModel {
                    dev_only: prod_in_place(&config, &model),
                    model,
                    analysis: Analysis::default(),
                    audits,
                }
            })
            .collect();
        let mut project = Project {
            root,
            config,
            models,
            by_name,
            externals,
            dag: Dag::new(0, []),
            order: Vec::new(),
            default_catalog,
            macro_files,
            macro_definitions,
            jinja_macros,
            python_macros: std::sync::Arc::new(python_macros),
            known_columns: std::sync::Arc::new(known_columns),
            column_requests: std::sync::Arc::default(),
            audit_definitions,
            lenient,
            cached_analyses: 0,
            cache_writer: None,
        };
        if !errors.is_empty() {
            return Err(crate::error::collect(errors));
        }
        let analyses = project.analyse_all()?;
        for (loaded, analysis) in project.models.iter_mut().zip(analyses) {
            loaded.analysis = analysis;
        }
        project.link()?;
        project.apply_time_column_format();
        Ok(project)
    }

    /// Every model's analysis, from the cache where its inputs are unchanged; `@STAR(model)` and `@UNION`
    /// need the columns of models that do not declare them, so those are inferred from the models' queries
    /// and the models that asked rendered again, until nothing more is learnt.
    fn analyse_all(&mut self) -> Result<Vec<Analysis>> {
        let cache = if self.lenient {
            None
        } else {
            cache::AnalysisCache::open(&self.config.cache_dir, &self.cache_inputs())
        };
        let (analyses, cache_uses): (Vec<Result<Analysis>>, Vec<cache::CacheUse>) =
            (0..self.models.len())
                .into_par_iter()
                .map(|i| self.analyse_with_cache(ModelId::from_index(i), cache.as_ref()))
                .unzip();
        let mut analyses = PerModel::from(analyses);
        self.cached_analyses = cache_uses
            .iter()
            .filter(|u| matches!(u, cache::CacheUse::Hit(_)))
            .count();
        while self.infer_requested_columns(&analyses)? {
            for (i, analysis) in analyses.entries_mut() {
                if analysis.is_err() {
                    *analysis = self.analyse(i).map(|(a, _)| a);
                }
            }
        }
        if let Some(cache) = cache
            && analyses.iter().all(Result::is_ok)
        {
            // Written while the command goes on with the plan; `Drop` waits for it.
            self.cache_writer = Some(std::thread::spawn(move || cache.update(cache_uses)));
        }
        let mut analysed = Vec::with_capacity(analyses.len());
        let mut errors = Vec::new();
        for a in analyses.into_values() {
            match a {
                Ok(a) => analysed.push(a),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(crate::error::collect(errors));
        }
        Ok(analysed)
    }

    /// The DAG from the analyses' parents, and the models in topological order (a cycle is an error).
    fn link(&mut self) -> Result<()> {
        let edges: Vec<(ModelId, ModelId)> = self
            .models
            .entries()
            .flat_map(|(child, m)| m.analysis.parents.iter().map(move |&p| (p, child)))
            .collect();
        self.dag = Dag::new(self.models.len(), edges);
        self.order = self
            .dag
            .topological_order()
            .map_err(|cycle| self.cycle_error(&cycle))?;
        Ok(())
    }
}

/// The engine's default catalog: the DuckDB file's name, or `memory`.
fn default_catalog(config: &ResolvedConfig) -> String {
    match &config.connection {
        EngineConnection::DuckDb {
            database: Some(path),
            ..
        } => path
            .file_stem()
            .map_or("memory".into(), |s| s.to_string_lossy().into_owned()),
        EngineConnection::DuckDb { database: None, .. } => "memory".into(),
    }
}

/// The enabled models of every model file, parsed in parallel, with names in the default catalog written
/// without it; and the files' errors, all of them.
fn parse_model_files(
    root: &Path,
    config: &ResolvedConfig,
    default_catalog: &str,
) -> Result<(Vec<Model>, Vec<LakeError>)> {
    let files = model_files(root, &config.config.ignore_patterns)?;
    let parsed: Vec<Result<Vec<Model>>> = files
        .par_iter()
        .map(|path| {
            let display = display_path(root, path);
            let text = crate::error::read_text(path, &display)?;
            let models =
                model::parse_models(SourceFile::new(display, text), path, &config.model_defaults)?;
            Ok(models.into_iter().filter(|m| m.meta.enabled).collect())
        })
        .collect();
    let mut errors = Vec::new();
    let mut models = Vec::new();
    for result in parsed {
        match result {
            Ok(file_models) => models.extend(file_models.into_iter().map(|mut m| {
                if m.meta.name.catalog.as_deref() == Some(default_catalog) {
                    m.meta.name.catalog = None;
                }
                m
            })),
            Err(e) => errors.push(e),
        }
    }
    Ok((models, errors))
}

/// The models by name; a name defined twice is an error at its second definition.
fn index_names(models: &[Model], errors: &mut Vec<LakeError>) -> HashMap<ModelName, ModelId> {
    let mut index = HashMap::with_capacity(models.len());
    for (i, m) in models.iter().enumerate() {
        let Some(&first) = index.get(&m.meta.name) else {
            index.insert(m.meta.name.clone(), ModelId::from_index(i));
            continue;
        };
        let other: &Model = &models[first.index()];
        errors.push(
            m.file
                .error(
                    m.name_span.0,
                    m.name_span.1,
                    format!("model `{}` is defined twice", m.meta.name),
                )
                .with_label("second definition")
                .with_help(format!(
                    "the first definition is in {}",
                    other.file.display_path
                ))
                .into(),
        );
    }
    index
}

/// Models named in a catalog other than the engine's.
fn other_catalogs(models: &[Model], default_catalog: &str) -> Vec<LakeError> {
    models
        .iter()
        .filter(|m| m.meta.name.catalog.is_some())
        .map(|m| {
            m.file
                .error(
                    m.name_span.0,
                    m.name_span.1,
                    format!(
                        "model `{}` names a catalog other than the engine's (`{default_catalog}`)",
                        m.meta.name
                    ),
                )
                .with_label("other catalog")
                .with_help(
                    "name the model `schema.name`; models in other catalogs are not supported yet",
                )
                .into()
        })
        .collect()
}

/// SEED models whose file does not exist, located at the path as written in the MODEL block.
fn missing_seeds(root: &Path, models: &[Model]) -> Vec<LakeError> {
    let mut errors = Vec::new();
    for m in models {
        if let (Some(path), model::ModelKind::Seed { path: written, .. }) =
            (&m.seed_path, &m.meta.kind)
            && !path.is_file()
        {
            let at = m.file.text.find(written.as_str()).unwrap_or(m.name_span.0);
            errors.push(
                m.file
                    .error(
                        at,
                        written.len().max(1),
                        format!("seed file {} does not exist", display_path(root, path)),
                    )
                    .with_label("seed path")
                    .with_help("a SEED model's path is relative to the model file's folder")
                    .into(),
            );
        }
    }
    errors
}

/// Models whose `gateway` config.yaml does not define.
fn unknown_gateways(config: &ResolvedConfig, models: &[Model]) -> Vec<LakeError> {
    let gateways = &config.config.gateways;
    let defined = || {
        gateways
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut errors = Vec::new();
    for m in models {
        if let Some(gateway) = &m.meta.gateway
            && !gateways.contains_key(gateway)
            && !(gateways.is_empty() && *gateway == config.gateway)
        {
            let at = m.file.text.find(gateway.as_str()).unwrap_or(m.name_span.0);
            errors.push(
                m.file
                    .error(
                        at,
                        gateway.len().max(1),
                        format!("gateway `{gateway}` is not defined in config.yaml"),
                    )
                    .with_label("unknown gateway")
                    .with_help(format!("defined gateways: {}", defined()))
                    .into(),
            );
        }
    }
    errors
}

/// Physical tables in a schema of model names (or of their dev environments) would sit among the names
/// environments expose, and lake would take those names for tables of its own: one error per such target.
fn schema_clashes(config: &ResolvedConfig, models: &[Model]) -> Vec<LakeError> {
    let targets = config.physical_schemas.targets();
    let mut reported = HashSet::new();
    let mut errors = Vec::new();
    for m in models {
        let schema = &m.meta.name.schema;
        let clash = targets
            .iter()
            .find(|t| *t == schema || t.starts_with(&format!("{schema}__")));
        if let Some(target) = clash
            && reported.insert(target.clone())
        {
            errors.push(
                m.file
                    .error(
                        m.name_span.0,
                        m.name_span.1.max(1),
                        format!(
                            "physical_schema_mapping in config.yaml puts physical tables in `{target}`, where \
                             environments expose the names of models such as this one"
                        ),
                    )
                    .with_label("a model in that schema")
                    .with_help(format!("map to a schema of its own, such as `{schema}_tables`"))
                    .into(),
            );
        }
    }
    errors
}

/// The declared columns of models and external tables, by lower-case name, for `@STAR` and `@UNION`.
fn known_columns(
    models: &[Model],
    externals: &BTreeMap<ModelName, ExternalModel>,
) -> BTreeMap<String, Vec<(String, String)>> {
    let mut known = BTreeMap::new();
    for m in models.iter().filter(|m| !m.meta.columns.is_empty()) {
        known.insert(
            m.meta.name.to_string().to_lowercase(),
            m.meta
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.data_type.clone()))
                .collect(),
        );
    }
    for (name, external) in externals.iter().filter(|(_, e)| !e.columns.is_empty()) {
        known.insert(
            name.to_string().to_lowercase(),
            external
                .columns
                .iter()
                .map(|(c, t)| (c.clone(), t.clone()))
                .collect(),
        );
    }
    known
}

/// Whether prod writes the model's table in place (`virtual_environment_mode: dev_only`, from its MODEL block
/// or config.yaml; both were checked when parsed). Embedded and external models have no table.
fn prod_in_place(config: &ResolvedConfig, m: &Model) -> bool {
    let mode = m
        .meta
        .virtual_environment_mode
        .as_deref()
        .and_then(VirtualEnvironmentMode::parse)
        .unwrap_or(config.virtual_environment_mode);
    mode == VirtualEnvironmentMode::DevOnly
        && !matches!(
            m.meta.kind,
            model::ModelKind::External | model::ModelKind::Embedded
        )
}
