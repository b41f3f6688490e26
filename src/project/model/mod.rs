//! Model files: the `MODEL (...)` header as a typed struct, model names, kinds, and the statements that follow.

pub mod kind;
mod located;
use super::block as parser;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::project::audit::AuditCall;
pub use kind::{ModelKind, TimeColumn};
use parser::{Property, Value, ValueKind};

use crate::config::ModelDefaults;
use crate::error::{LakeError, SourceError, SourceFile, did_you_mean};
use crate::intervals::IntervalUnit;
use crate::intervals::bound::TimeBound;
use crate::intervals::cron::Schedule;
use crate::sql::ModelName;
use crate::sql::lex;
use crate::storage::partition::{PartitionTerm, PartitionTransform};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub data_type: String,
}

/// Every property SQLMesh accepts in a MODEL block, typed. Defaults from `model_defaults` are applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub name: ModelName,
    pub project: Option<String>,
    pub kind: ModelKind,
    pub dialect: String,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub start: Option<TimeBound>,
    pub end: Option<TimeBound>,
    pub cron: Schedule,
    pub cron_tz: Option<String>,
    pub interval_unit: Option<IntervalUnit>,
    pub tags: Vec<String>,
    pub stamp: Option<String>,
    pub grains: Vec<String>,
    pub references: Vec<String>,
    pub columns: Vec<ColumnDef>,
    pub column_descriptions: Vec<(String, String)>,
    pub audits: Vec<AuditCall>,
    pub depends_on: Vec<ModelName>,
    pub partitioned_by: Vec<String>,
    /// `partitioned_by`, typed: the Iceberg partition spec of the model's physical tables.
    #[serde(skip)]
    pub partitioning: Vec<PartitionTerm>,
    pub clustered_by: Vec<String>,
    pub table_format: Option<String>,
    pub storage_format: Option<String>,
    pub physical_properties: Vec<(String, String)>,
    pub virtual_properties: Vec<(String, String)>,
    pub session_properties: Vec<(String, String)>,
    pub allow_partials: bool,
    pub signals: Vec<String>,
    pub enabled: bool,
    pub physical_version: Option<String>,
    pub gateway: Option<String>,
    pub optimize_query: Option<bool>,
    pub ignored_rules: Vec<String>,
    pub formatting: Option<bool>,
    pub virtual_environment_mode: Option<String>,
    pub grants: Vec<(String, String)>,
    pub grants_target_layer: Option<String>,
}

/// A SQL statement from a model file, with its byte offset in that file.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub text: String,
    pub offset: usize,
    /// Written between `JINJA_QUERY_BEGIN;`/`JINJA_STATEMENT_BEGIN;` and `JINJA_END;`: rendered with Jinja
    /// before SQLMesh's macros.
    pub jinja: bool,
    /// Where the statement was written when not in the model's file (`model_defaults` statements).
    pub source: Option<SourceFile>,
}

impl Statement {
    /// The file `offset` points into.
    pub fn file<'a>(&'a self, model_file: &'a SourceFile) -> &'a SourceFile {
        self.source.as_ref().unwrap_or(model_file)
    }
}

/// `model_defaults.pre_statements` / `post_statements` / `on_virtual_update`, each statement located in a
/// pseudo-file of them.
fn default_statements(key: &str, written: Option<&Vec<String>>) -> Vec<Statement> {
    let Some(written) = written.filter(|w| !w.is_empty()) else {
        return Vec::new();
    };
    let file = SourceFile::new(
        format!("config.yaml (model_defaults.{key})"),
        written.join(";\n"),
    );
    lex::split_statements(&file.text, 0)
        .into_iter()
        .map(|piece| Statement {
            text: piece.text.to_string(),
            offset: piece.offset,
            jinja: false,
            source: Some(file.clone()),
        })
        .collect()
}

/// A loaded model file: header, statements and, for SEED models, the CSV it reads.
#[derive(Debug, Clone)]
pub struct Model {
    pub meta: ModelMeta,
    pub file: SourceFile,
    pub path: PathBuf,
    /// `@DEF(name, value);` statements: macros for this file only, applied in order.
    pub definitions: Vec<Statement>,
    /// The blueprint this model was made from (`blueprints` property): variable (lower-cased) and its
    /// value as SQL, bound as macro variables and for `@BLUEPRINT_VAR`.
    pub blueprint: Vec<(String, String)>,
    pub pre_statements: Vec<Statement>,
    pub query: Option<Statement>,
    pub post_statements: Vec<Statement>,
    /// Statements between `ON_VIRTUAL_UPDATE_BEGIN;` and `ON_VIRTUAL_UPDATE_END;`: run after the model's
    /// name in an environment is pointed at a new table, with `@this_model` naming that view.
    pub on_virtual_update: Vec<Statement>,
    /// `AUDIT (name …); <query>;` blocks after the model's query: audits only this model can use (when its
    /// `audits` property or `model_defaults.audits` names them), before project audits of the same name.
    pub inline_audits: Vec<std::sync::Arc<crate::project::audit::ProjectAudit>>,
    /// Absolute path of a SEED model's CSV file.
    pub seed_path: Option<PathBuf>,
    /// Offset and length of the `name` value, for errors about the model as a whole.
    pub name_span: (usize, usize),
}

impl Model {
    /// What resolving the model's audit calls needs of it.
    pub fn audit_site(&self) -> crate::project::audit::AuditSite<'_> {
        crate::project::audit::AuditSite {
            file: &self.file,
            calls: &self.meta.audits,
            inline: &self.inline_audits,
            fallback_offset: self.name_span.0,
        }
    }
}

const PROPERTY_NAMES: &[&str] = &[
    "name",
    "project",
    "kind",
    "dialect",
    "owner",
    "description",
    "start",
    "end",
    "cron",
    "cron_tz",
    "interval_unit",
    "tags",
    "stamp",
    "grain",
    "grains",
    "references",
    "columns",
    "column_descriptions",
    "audits",
    "depends_on",
    "partitioned_by",
    "clustered_by",
    "table_format",
    "storage_format",
    "physical_properties",
    "virtual_properties",
    "session_properties",
    "allow_partials",
    "signals",
    "enabled",
    "physical_version",
    "gateway",
    "optimize_query",
    "ignored_rules",
    "formatting",
    "virtual_environment_mode",
    "grants",
    "grants_target_layer",
    "blueprints",
];

/// Statement keywords that start a model's main query.
const QUERY_KEYWORDS: &[&str] = &[
    "SELECT",
    "WITH",
    "FROM",
    "(",
    "VALUES",
    "TABLE",
    "PIVOT",
    "UNPIVOT",
    "SUMMARIZE",
];

/// The error of a model with no query: at a statement whose first word is a misspelt query keyword
/// (`SELEC`) when there is one, else at the model's name.
fn no_query_error(
    file: &SourceFile,
    name: &ModelName,
    (name_offset, name_len): (usize, usize),
    statements: &[Statement],
) -> SourceError {
    for statement in statements.iter().filter(|s| s.source.is_none()) {
        let at = lex::skip_blank(&file.text, statement.offset);
        let word: String = file.text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let upper = word.to_ascii_uppercase();
        let Some(hint) = did_you_mean(&upper, QUERY_KEYWORDS.iter().copied()) else {
            continue;
        };
        return file
            .error(
                at,
                word.len(),
                format!("model `{name}` has no query: `{word}` is not a SQL keyword"),
            )
            .with_label("expected SELECT, WITH or FROM")
            .with_help(hint);
    }
    file.error(
        name_offset,
        name_len,
        format!("model `{name}` has no query"),
    )
    .with_label("this model")
    .with_help("after the MODEL block, write the SELECT statement that produces the model's rows")
}

/// Parses a model file into its models: one, or one per entry of its `blueprints` property
/// (`blueprints ((region := 'eu'), (region := 'us'))`), each with `@region`/`@{region}` in its MODEL block
/// replaced by that entry's value and its variables bound for the query.
pub fn parse_models(
    file: SourceFile,
    path: &Path,
    defaults: &ModelDefaults,
) -> Result<Vec<Model>, SourceError> {
    // Most files have no blueprints: they are parsed once.
    if !file.text.to_ascii_lowercase().contains("blueprints") {
        return parse_model(file, path, defaults).map(|m| vec![m]);
    }
    let block = parser::parse_model_block(&file)?;
    let Some(property) = block.properties.iter().find(|p| p.key == "blueprints") else {
        return parse_model(file, path, defaults).map(|m| vec![m]);
    };
    let mut blueprints = Vec::new();
    for entry in property.value.items() {
        let mut vars = Vec::new();
        for item in entry.items() {
            let ValueKind::Assign { key, value } = &item.kind else {
                return Err(file
                    .error(
                        item.offset,
                        item.len.max(1),
                        "a blueprint binds variables: `(name := value, ...)`",
                    )
                    .with_label("expected `name := value`")
                    .with_help("write `blueprints ((region := 'eu'), (region := 'us'))`"));
            };
            vars.push((key.to_lowercase(), value.raw.trim().to_string()));
        }
        blueprints.push(vars);
    }
    if blueprints.is_empty() {
        return Err(file
            .error(
                property.value.offset,
                property.value.len.max(1),
                "`blueprints` lists no blueprint",
            )
            .with_label("empty"));
    }
    let text: &str = &file.text;
    let value_end = property.value.offset + property.value.len;
    // The property itself (and its comma) is blanked rather than cut, so the rest keeps its place.
    let cut_end = match text[value_end..].trim_start().strip_prefix(',') {
        Some(rest) => text.len() - rest.len(),
        None => value_end,
    };
    let blanked = |t: &str| {
        t.chars()
            .map(|c| if c == '\n' { c } else { ' ' })
            .collect::<String>()
    };
    let without = format!(
        "{}{}{}",
        &text[..property.key_offset],
        blanked(&text[property.key_offset..cut_end]),
        &text[cut_end..]
    );
    let mut models = Vec::with_capacity(blueprints.len());
    for vars in blueprints {
        let header = substitute_blueprint(&without[..block.body_offset], &vars);
        let expanded = format!("{header}{}", &without[block.body_offset..]);
        let mut model = parse_model(
            SourceFile::new(file.display_path.clone(), expanded),
            path,
            defaults,
        )?;
        model.blueprint = vars;
        models.push(model);
    }
    Ok(models)
}

/// `@var` and `@{var}` in a MODEL block replaced by the blueprint's values, string values unquoted (they
/// name things: `name @{region}.orders`).
fn substitute_blueprint(block: &str, vars: &[(String, String)]) -> String {
    let mut out = block.to_string();
    // Longest names first, so `@region_code` is not taken for `@region` + `_code`.
    let mut by_length: Vec<&(String, String)> = vars.iter().collect();
    by_length.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (key, value) in by_length {
        let plain = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .map_or_else(|| value.clone(), |v| v.replace("''", "'"));
        out = replace_ignore_case(&out, &format!("@{{{key}}}"), &plain);
        out = replace_ignore_case(&out, &format!("@{key}"), &plain);
    }
    out
}

fn replace_ignore_case(text: &str, pattern: &str, with: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(&pattern) {
        let start = at + found;
        let end = start + pattern.len();
        // `@region` must not match the start of `@regions`.
        let glued = lower
            .as_bytes()
            .get(end)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if glued && !pattern.ends_with('}') {
            out.push_str(&text[at..end]);
        } else {
            out.push_str(&text[at..start]);
            out.push_str(with);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// Parses a model file. `path` is absolute; `file.display_path` is what errors show.
pub fn parse_model(
    file: SourceFile,
    path: &Path,
    defaults: &ModelDefaults,
) -> Result<Model, SourceError> {
    let block = parser::parse_model_block(&file)?;
    let (meta, (name_offset, name_len)) = read_meta(&file, &block, defaults)?;
    let body = split_body(&file, block.body_offset, meta.kind.has_query())?;
    if meta.kind.has_query() && body.query.is_none() {
        return Err(no_query_error(
            &file,
            &meta.name,
            (name_offset, name_len),
            &body.pre,
        ));
    }
    let seed_path = match &meta.kind {
        ModelKind::Seed { path: seed, .. } => {
            let dir = path.parent().unwrap_or(Path::new("."));
            Some(normalize_path(&dir.join(seed)))
        }
        _ => None,
    };
    // As SQLMesh combines them: the defaults first, then the model's own.
    let with_defaults = |key: &str, default: Option<&Vec<String>>, own: Vec<Statement>| {
        let mut statements = default_statements(key, default);
        statements.extend(own);
        statements
    };
    Ok(Model {
        meta,
        blueprint: Vec::new(),
        file,
        path: path.to_path_buf(),
        definitions: body.definitions,
        pre_statements: with_defaults("pre_statements", defaults.pre_statements.as_ref(), body.pre),
        query: body.query,
        post_statements: with_defaults(
            "post_statements",
            defaults.post_statements.as_ref(),
            body.post,
        ),
        on_virtual_update: with_defaults(
            "on_virtual_update",
            defaults.on_virtual_update.as_ref(),
            body.on_virtual_update,
        ),
        inline_audits: body.inline_audits,
        seed_path,
        name_span: (name_offset, name_len),
    })
}

/// A model's properties as `model_defaults` sets them before its MODEL block is read.
fn default_meta(defaults: &ModelDefaults) -> ModelMeta {
    ModelMeta {
        name: ModelName::new("", ""),
        project: None,
        kind: ModelKind::View {
            materialized: false,
        },
        dialect: defaults.dialect.clone().unwrap_or_else(|| "duckdb".into()),
        owner: defaults.owner.clone(),
        description: None,
        start: defaults.start.clone(),
        end: defaults.end.clone(),
        cron: defaults.cron.clone().unwrap_or_default(),
        cron_tz: defaults.cron_tz.clone(),
        interval_unit: defaults.interval_unit,
        tags: Vec::new(),
        stamp: None,
        grains: Vec::new(),
        references: Vec::new(),
        columns: Vec::new(),
        column_descriptions: Vec::new(),
        audits: Vec::new(),
        depends_on: Vec::new(),
        partitioned_by: Vec::new(),
        partitioning: Vec::new(),
        clustered_by: Vec::new(),
        table_format: defaults.table_format.clone(),
        storage_format: defaults.storage_format.clone(),
        physical_properties: defaults.physical_properties.clone().unwrap_or_default(),
        virtual_properties: Vec::new(),
        session_properties: Vec::new(),
        allow_partials: defaults.allow_partials.unwrap_or(false),
        signals: Vec::new(),
        enabled: defaults.enabled.unwrap_or(true),
        physical_version: None,
        gateway: defaults.gateway.clone(),
        optimize_query: defaults.optimize_query,
        ignored_rules: Vec::new(),
        formatting: defaults.formatting,
        virtual_environment_mode: None,
        grants: Vec::new(),
        grants_target_layer: None,
    }
}

/// The MODEL block read into the model's properties on top of `model_defaults`, with where its name is.
fn read_meta(
    file: &SourceFile,
    block: &parser::ModelBlock,
    defaults: &ModelDefaults,
) -> Result<(ModelMeta, (usize, usize)), SourceError> {
    let mut reader = MetaReader {
        file,
        seen: Vec::new(),
    };
    let mut meta = default_meta(defaults);
    let mut name: Option<(ModelName, usize, usize)> = None;
    let mut kind: Option<ModelKind> = None;
    for prop in &block.properties {
        reader.check_duplicate(prop)?;
        match prop.key.as_str() {
            "name" => {
                let v = &prop.value;
                name = Some((model_name(file, v)?, v.offset, v.len));
            }
            "kind" => kind = Some(kind::parse_kind(file, &prop.value)?),
            _ => read_property(&mut reader, &mut meta, prop)?,
        }
    }
    let Some((model_name, name_offset, name_len)) = name else {
        return Err(file
            .error(block.keyword_offset, 5, "the MODEL block has no `name`")
            .with_label("missing `name`")
            .with_help("add `name schema.model_name,` to the MODEL block"));
    };
    meta.name = model_name;
    if defaults.audits.is_some() {
        // SQLMesh runs the defaults first, then the model's own.
        let mut audits = default_audits(defaults)?;
        audits.append(&mut meta.audits);
        meta.audits = audits;
    }
    meta.kind = match kind {
        Some(k) => k,
        None => default_kind(file, defaults, block.keyword_offset)?,
    };
    meta.kind
        .default_policies(defaults.on_destructive_change, defaults.on_additive_change);
    meta.kind
        .default_batch_concurrency(defaults.batch_concurrency);
    check_partition_columns(file, block, &meta)?;
    Ok((meta, (name_offset, name_len)))
}

/// The `name` property: `schema.name`, as an identifier or a string.
fn model_name(file: &SourceFile, v: &parser::Value) -> Result<ModelName, SourceError> {
    let parsed = match &v.kind {
        ValueKind::Ident(parts) => ModelName::from_parts(parts),
        ValueKind::Str(s) => ModelName::parse(s),
        _ => None,
    };
    parsed.ok_or_else(|| {
        file.error(v.offset, v.len, format!("invalid model name `{}`", v.raw))
            .with_label("expected `schema.name`")
            .with_help("model names are qualified with a schema, e.g. `name analytics.orders`")
    })
}

/// INCREMENTAL_BY_PARTITION's batches replace the partitions their rows fall in, matched on the columns'
/// values: its `partitioned_by` lists columns, not transforms.
fn check_partition_columns(
    file: &SourceFile,
    block: &parser::ModelBlock,
    meta: &ModelMeta,
) -> Result<(), SourceError> {
    if matches!(meta.kind, ModelKind::IncrementalByPartition { .. })
        && let Some(prop) = block.properties.iter().find(|p| p.key == "partitioned_by")
        && meta
            .partitioning
            .iter()
            .any(|t| t.transform != PartitionTransform::Identity)
    {
        return Err(file
            .error(prop.value.offset, prop.value.len, "INCREMENTAL_BY_PARTITION replaces partitions matched on column values, so its `partitioned_by` lists columns")
            .with_label("a transform")
            .with_help("partition by a column the query computes (`date_trunc('day', ts) AS ts_day`, then `partitioned_by ts_day`)"));
    }
    Ok(())
}

/// One MODEL property other than `name` and `kind`, read into `meta`.
fn read_property(
    reader: &mut MetaReader<'_>,
    meta: &mut ModelMeta,
    prop: &parser::Property,
) -> Result<(), SourceError> {
    let file = reader.file;
    let v = &prop.value;
    match prop.key.as_str() {
        "project" => meta.project = Some(reader.text(prop)?),
        "dialect" => meta.dialect = reader.text(prop)?.to_ascii_lowercase(),
        "owner" => meta.owner = Some(reader.text(prop)?),
        "description" => meta.description = Some(reader.text(prop)?),
        "start" | "end" => {
            let bound = TimeBound::parse(&reader.text(prop)?).map_err(|e| {
                let help = match &e {
                    LakeError::Config { help, .. } => help.clone(),
                    _ => None,
                };
                file.error(v.offset, v.len, e.to_string())
                    .with_optional_help(help)
            })?;
            if prop.key == "start" {
                meta.start = Some(bound);
            } else {
                meta.end = Some(bound);
            }
        }
        "cron" => {
            meta.cron = Schedule::parse(&reader.text(prop)?).map_err(|e| {
                file.error(v.offset, v.len, e.to_string()).with_help(
                    "use @hourly, @daily, @weekly, @monthly or a 5-field cron expression such as `0 6 * * *`",
                )
            })?
        }
        "cron_tz" => meta.cron_tz = Some(reader.text(prop)?),
        "interval_unit" => {
            let unit = IntervalUnit::parse(&reader.text(prop)?).map_err(|e| {
                file.error(v.offset, v.len, e.to_string()).with_help(
                    "use year, month, day, hour, half_hour, quarter_hour or five_minute",
                )
            })?;
            meta.interval_unit = Some(unit)
        }
        "tags" => meta.tags = reader.list(prop),
        "stamp" => meta.stamp = Some(reader.text(prop)?),
        "grain" | "grains" => meta.grains.extend(reader.list(prop)),
        "references" => meta.references = reader.list(prop),
        "columns" => meta.columns = reader.columns(prop)?,
        "column_descriptions" => {
            meta.column_descriptions = key_value_pairs(file, &prop.key, v)?
        }
        "audits" => meta.audits = reader.audits(prop)?,
        "depends_on" => meta.depends_on = reader.model_names(prop)?,
        "partitioned_by" => {
            meta.partitioned_by = reader.list(prop);
            meta.partitioning = reader.partitioning(prop)?;
        }
        "clustered_by" => meta.clustered_by = reader.list(prop),
        "table_format" => meta.table_format = Some(reader.text(prop)?),
        "storage_format" => meta.storage_format = Some(reader.text(prop)?),
        "physical_properties" => {
            // On top of `model_defaults.physical_properties`: a key the model gives replaces the default.
            for (key, value) in key_value_pairs(file, &prop.key, v)? {
                meta.physical_properties.retain(|(k, _)| *k != key);
                meta.physical_properties.push((key, value));
            }
        }
        "virtual_properties" => meta.virtual_properties = key_value_pairs(file, &prop.key, v)?,
        "session_properties" => meta.session_properties = key_value_pairs(file, &prop.key, v)?,
        "allow_partials" => meta.allow_partials = reader.bool(prop)?,
        "signals" => meta.signals = v.items().iter().map(|i| i.raw.clone()).collect(),
        "enabled" => meta.enabled = reader.bool(prop)?,
        "physical_version" => meta.physical_version = Some(reader.text(prop)?),
        "gateway" => meta.gateway = Some(reader.text(prop)?),
        "optimize_query" => meta.optimize_query = Some(reader.bool(prop)?),
        "ignored_rules" => meta.ignored_rules = reader.list(prop),
        "formatting" => meta.formatting = Some(reader.bool(prop)?),
        "virtual_environment_mode" => {
            let text = reader.text(prop)?;
            if crate::config::VirtualEnvironmentMode::parse(&text).is_none() {
                return Err(file
                    .error(
                        prop.value.offset,
                        prop.value.len,
                        format!("expected `full` or `dev_only`, found `{text}`"),
                    )
                    .with_label("not a virtual environment mode")
                    .with_help("write `virtual_environment_mode dev_only` (or leave it to config.yaml)"));
            }
            meta.virtual_environment_mode = Some(text);
        }
        "grants" => meta.grants = key_value_pairs(file, &prop.key, v)?,
        "grants_target_layer" => meta.grants_target_layer = Some(reader.text(prop)?),
        other => {
            return Err(file
                .error(
                    prop.key_offset,
                    prop.key_len,
                    format!("unknown MODEL property `{other}`"),
                )
                .with_label("not a MODEL property")
                .with_optional_help(
                    did_you_mean(other, PROPERTY_NAMES.iter().copied()).or_else(|| {
                        Some("see docs/models.md for the properties lake reads".into())
                    }),
                ));
        }
    }
    Ok(())
}

/// The statements after a MODEL block, sorted by role.
struct Body {
    pre: Vec<Statement>,
    definitions: Vec<Statement>,
    query: Option<Statement>,
    post: Vec<Statement>,
    on_virtual_update: Vec<Statement>,
    inline_audits: Vec<std::sync::Arc<crate::project::audit::ProjectAudit>>,
}

/// The statements after the MODEL block: `@DEF`s, pre-statements, the query (for kinds that have one),
/// post-statements, `ON_VIRTUAL_UPDATE_BEGIN … END` statements and inline AUDIT blocks.
fn split_body(file: &SourceFile, body_offset: usize, has_query: bool) -> Result<Body, SourceError> {
    let mut pre = Vec::new();
    let mut definitions = Vec::new();
    let mut query = None;
    let mut post = Vec::new();
    let mut on_virtual_update = Vec::new();
    let mut virtual_begin: Option<usize> = None;
    let mut inline_audits: Vec<std::sync::Arc<crate::project::audit::ProjectAudit>> = Vec::new();
    // The end of the last AUDIT block's query: statements before it are that audit's.
    let mut audit_end = 0;
    for (statement, keyword) in body_statements(file, body_offset)? {
        if statement.offset < audit_end {
            continue;
        }
        if keyword == "AUDIT" && virtual_begin.is_none() {
            let (audit, end) = crate::project::audit::parse_audit_block(file, statement.offset)?;
            if let Some(first) = inline_audits.iter().find(|a| a.name == audit.name) {
                let at = lex::skip_blank(&file.text, statement.offset);
                return Err(file
                    .error(
                        at,
                        end.saturating_sub(at).clamp(1, "AUDIT".len()),
                        format!("audit `{}` is defined twice in this file", first.name),
                    )
                    .with_label("second definition")
                    .with_help("give each AUDIT block of a model its own name"));
            }
            inline_audits.push(std::sync::Arc::new(audit));
            audit_end = end;
            continue;
        }
        match (keyword.as_str(), virtual_begin) {
            ("ON_VIRTUAL_UPDATE_BEGIN", None) => {
                virtual_begin = Some(statement.offset);
                continue;
            }
            ("ON_VIRTUAL_UPDATE_END", Some(_)) => {
                virtual_begin = None;
                continue;
            }
            ("ON_VIRTUAL_UPDATE_BEGIN" | "ON_VIRTUAL_UPDATE_END", _) => {
                return Err(file
                    .error(statement.offset, keyword.len(), format!("unexpected {keyword}"))
                    .with_label("not paired")
                    .with_help("write `ON_VIRTUAL_UPDATE_BEGIN;` statements `ON_VIRTUAL_UPDATE_END;`, once"));
            }
            (_, Some(_)) => {
                on_virtual_update.push(statement);
                continue;
            }
            _ => {}
        }
        if keyword == "@DEF" {
            definitions.push(statement);
            continue;
        }
        let is_query = statement.jinja && keyword == "JINJA_QUERY"
            || QUERY_KEYWORDS.contains(&keyword.as_str());
        if query.is_none() && has_query && is_query {
            query = Some(statement);
        } else if query.is_none() {
            pre.push(statement);
        } else {
            post.push(statement);
        }
    }
    if let Some(at) = virtual_begin {
        return Err(file
            .error(
                at,
                "ON_VIRTUAL_UPDATE_BEGIN".len(),
                "ON_VIRTUAL_UPDATE_BEGIN has no ON_VIRTUAL_UPDATE_END",
            )
            .with_label("opened here")
            .with_help("close the block with `ON_VIRTUAL_UPDATE_END;`"));
    }
    Ok(Body {
        pre,
        definitions,
        query,
        post,
        on_virtual_update,
        inline_audits,
    })
}

/// The statements after the MODEL block, each with its leading keyword; a Jinja block is one statement
/// (keyword `JINJA_QUERY` or `JINJA_STATEMENT`), whatever semicolons it holds.
fn body_statements(
    file: &SourceFile,
    from: usize,
) -> Result<Vec<(Statement, String)>, SourceError> {
    let text: &str = &file.text;
    let upper = text.to_ascii_uppercase();
    let mut out = Vec::new();
    let mut at = from;
    let plain = |out: &mut Vec<(Statement, String)>, start: usize, end: usize| {
        for piece in lex::split_statements(&text[start..end], start) {
            let keyword = lex::leading_keyword(piece.text);
            out.push((
                Statement {
                    text: piece.text.to_string(),
                    offset: piece.offset,
                    jinja: lex::has_jinja(piece.text),
                    source: None,
                },
                keyword,
            ));
        }
    };
    loop {
        let next = ["JINJA_QUERY_BEGIN", "JINJA_STATEMENT_BEGIN"]
            .iter()
            .filter_map(|k| upper[at..].find(k).map(|i| (at + i, *k)))
            .min();
        let Some((begin, keyword)) = next else {
            plain(&mut out, at, text.len());
            return Ok(out);
        };
        plain(&mut out, at, begin);
        let after_keyword = begin + keyword.len();
        let content_start = match text[after_keyword..].trim_start().strip_prefix(';') {
            Some(rest) => text.len() - rest.len(),
            None => after_keyword,
        };
        let Some(end) = upper[content_start..]
            .find("JINJA_END")
            .map(|i| content_start + i)
        else {
            return Err(file
                .error(begin, keyword.len(), format!("{keyword} has no JINJA_END"))
                .with_label("this Jinja block")
                .with_help("close the block with `JINJA_END;`"));
        };
        let content = &text[content_start..end];
        let leading = content.len() - content.trim_start().len();
        out.push((
            Statement {
                text: content.trim().to_string(),
                offset: content_start + leading,
                jinja: true,
                source: None,
            },
            keyword.trim_end_matches("_BEGIN").to_string(),
        ));
        let after_end = end + "JINJA_END".len();
        at = match text[after_end..].trim_start().strip_prefix(';') {
            Some(rest) => text.len() - rest.len(),
            None => after_end,
        };
    }
}

fn default_kind(
    file: &SourceFile,
    defaults: &ModelDefaults,
    at: usize,
) -> Result<ModelKind, SourceError> {
    let name = match &defaults.kind {
        None => {
            return Ok(ModelKind::View {
                materialized: false,
            });
        }
        Some(serde_norway::Value::String(s)) => s.clone(),
        Some(serde_norway::Value::Mapping(m)) if m.len() == 1 => m
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string(),
        Some(_) => String::new(),
    };
    let text = format!("MODEL (kind {name})");
    let probe = SourceFile::new("config.yaml (model_defaults.kind)", text);
    let block = parser::parse_model_block(&probe).map_err(|_| bad_default_kind(file, at, &name))?;
    kind::parse_kind(&probe, &block.properties[0].value)
        .map_err(|_| bad_default_kind(file, at, &name))
}

/// `model_defaults.audits` (audit calls as strings, `not_null(columns := [id])`), which every model runs
/// before its own. Errors point into the calls as written.
pub fn default_audits(defaults: &ModelDefaults) -> Result<Vec<AuditCall>, SourceError> {
    let Some(calls) = &defaults.audits else {
        return Ok(Vec::new());
    };
    let probe = SourceFile::new(
        "config.yaml (model_defaults.audits)",
        format!("MODEL (audits ({}))", calls.join(", ")),
    );
    let block = parser::parse_model_block(&probe)?;
    let Some(property) = block.properties.first() else {
        return Ok(Vec::new());
    };
    let reader = MetaReader {
        file: &probe,
        seen: Vec::new(),
    };
    reader.audits(property)
}

fn bad_default_kind(file: &SourceFile, at: usize, name: &str) -> SourceError {
    file.error(at, 5, format!("model_defaults.kind `{name}` in config.yaml is not a kind lake can apply as a default"))
        .with_help("give the model an explicit `kind`, or set model_defaults.kind to a kind name without parameters")
}

/// Collapses `a/b/../c` without touching the file system.
pub fn normalize_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `(key = value, …)` entries, keys lower-cased, values as written (string literals unquoted).
pub(crate) fn key_value_pairs(
    file: &SourceFile,
    property: &str,
    value: &Value,
) -> Result<Vec<(String, String)>, SourceError> {
    value
        .items()
        .into_iter()
        .map(|item| match &item.kind {
            ValueKind::Assign { key, value } => Ok((key.clone(), text_or_raw(value))),
            ValueKind::Pair { key, value } => Ok((text_or_raw(key), text_or_raw(value))),
            _ => Err(file
                .error(
                    item.offset,
                    item.len,
                    format!("`{property}` expects `key = value` entries"),
                )
                .with_label("expected `key = value`")),
        })
        .collect()
}

fn text_or_raw(value: &Value) -> String {
    value.as_text().unwrap_or_else(|| value.raw.clone())
}

/// Typed readers for top-level properties; remembers keys to reject duplicates.
struct MetaReader<'a> {
    file: &'a SourceFile,
    seen: Vec<String>,
}

impl MetaReader<'_> {
    fn check_duplicate(&mut self, prop: &Property) -> Result<(), SourceError> {
        let canonical = if prop.key == "grains" {
            "grain".to_string()
        } else {
            prop.key.clone()
        };
        if self.seen.contains(&canonical) {
            return Err(self
                .file
                .error(
                    prop.key_offset,
                    prop.key_len,
                    format!("property `{}` is given twice", prop.key),
                )
                .with_label("duplicate property"));
        }
        self.seen.push(canonical);
        Ok(())
    }

    fn text(&self, prop: &Property) -> Result<String, SourceError> {
        prop.value.as_text().ok_or_else(|| {
            self.file
                .error(
                    prop.value.offset,
                    prop.value.len,
                    format!("`{}` expects a string or a name", prop.key),
                )
                .with_label("expected a single value")
        })
    }

    fn bool(&self, prop: &Property) -> Result<bool, SourceError> {
        match (
            &prop.value.kind,
            prop.value
                .as_text()
                .map(|t| t.to_ascii_lowercase())
                .as_deref(),
        ) {
            (ValueKind::Bool(b), _) => Ok(*b),
            (_, Some("true")) => Ok(true),
            (_, Some("false")) => Ok(false),
            _ => Err(self
                .file
                .error(
                    prop.value.offset,
                    prop.value.len,
                    format!("`{}` expects true or false", prop.key),
                )
                .with_label("not a boolean")),
        }
    }

    fn list(&self, prop: &Property) -> Vec<String> {
        prop.value
            .items()
            .iter()
            .map(|i| i.as_text().unwrap_or_else(|| i.raw.clone()))
            .collect()
    }

    fn columns(&self, prop: &Property) -> Result<Vec<ColumnDef>, SourceError> {
        prop.value
            .items()
            .into_iter()
            .map(|item| match &item.kind {
                ValueKind::Pair { key, value } => Ok(ColumnDef {
                    name: match &key.kind {
                        ValueKind::Ident(parts) if parts.len() == 1 && !parts[0].quoted => {
                            parts[0].value.to_lowercase()
                        }
                        _ => key.as_text().unwrap_or_else(|| key.raw.clone()),
                    },
                    data_type: value.raw.clone(),
                }),
                _ => Err(self
                    .file
                    .error(item.offset, item.len, "expected `column_name TYPE`")
                    .with_label("expected a column and its type")
                    .with_help("write columns as `columns (id INT, name TEXT)`")),
            })
            .collect()
    }

    /// `partitioned_by` terms as partition fields: a column, or `year`/`month`/`day`/`hour` of one, or
    /// `bucket`/`truncate` with a width (either argument order, as Spark and Trino write them).
    fn partitioning(&self, prop: &Property) -> Result<Vec<PartitionTerm>, SourceError> {
        let column = |value: &Value| match &value.kind {
            ValueKind::Ident(parts) if parts.len() == 1 => {
                Some((parts[0].value.clone(), parts[0].quoted))
            }
            _ => None,
        };
        let width = |value: &Value| match &value.kind {
            ValueKind::Number(n) => n.parse::<u32>().ok().filter(|w| *w > 0),
            _ => None,
        };
        prop.value
            .items()
            .into_iter()
            .map(|item| {
                let term = match &item.kind {
                    ValueKind::Call { name, args } => match args.as_slice() {
                        [source] => column(source).zip(PartitionTransform::from_call(name, None)),
                        [a, b] => column(b)
                            .zip(width(a))
                            .or_else(|| column(a).zip(width(b)))
                            .and_then(|(c, w)| Some(c).zip(PartitionTransform::from_call(name, Some(w)))),
                        _ => None,
                    },
                    _ => column(item).map(|c| (c, PartitionTransform::Identity)),
                };
                term.map(|((column, quoted), transform)| PartitionTerm {
                    column,
                    quoted,
                    transform,
                })
                .ok_or_else(|| {
                    self.file
                        .error(item.offset, item.len, "lake cannot write this `partitioned_by` term as an Iceberg partition field")
                        .with_label("partition term")
                        .with_help("write a column (`region`), `year`/`month`/`day`/`hour` of a column (`day(event_ts)`), `bucket(16, id)` or `truncate(4, name)`")
                })
            })
            .collect()
    }

    fn audits(&self, prop: &Property) -> Result<Vec<AuditCall>, SourceError> {
        prop.value
            .items()
            .into_iter()
            .map(|item| match &item.kind {
                ValueKind::Ident(_) => Ok(AuditCall {
                    name: item.as_text().unwrap_or_default().to_lowercase(),
                    args: Vec::new(),
                }),
                ValueKind::Call { name, args } => Ok(AuditCall {
                    name: name.to_lowercase(),
                    args: args
                        .iter()
                        .map(|a| match &a.kind {
                            ValueKind::Assign { key, value } => {
                                Ok((key.clone(), value.raw.clone()))
                            }
                            _ => Err(self
                                .file
                                .error(
                                    a.offset,
                                    a.len,
                                    "audit arguments are written `name := value`",
                                )
                                .with_label("expected `name := value`")),
                        })
                        .collect::<Result<_, _>>()?,
                }),
                _ => Err(self
                    .file
                    .error(item.offset, item.len, "expected an audit name or call")
                    .with_label("expected `audit_name(arg := value)`")),
            })
            .collect()
    }

    fn model_names(&self, prop: &Property) -> Result<Vec<ModelName>, SourceError> {
        prop.value
            .items()
            .into_iter()
            .map(|item| {
                let parsed = match &item.kind {
                    ValueKind::Ident(parts) => ModelName::from_parts(parts),
                    ValueKind::Str(s) => ModelName::parse(s),
                    _ => None,
                };
                parsed.ok_or_else(|| {
                    self.file
                        .error(
                            item.offset,
                            item.len,
                            format!("`{}` expects model names such as `schema.model`", prop.key),
                        )
                        .with_label("not a model name")
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Model, SourceError> {
        parse_model(
            SourceFile::new("models/m.sql", text),
            Path::new("/p/models/m.sql"),
            &ModelDefaults::default(),
        )
    }

    #[test]
    fn partitioned_by_terms_are_typed_as_spark_and_trino_write_them() {
        let m = parse(
            "MODEL (name a.b, partitioned_by (region, \"Day\", days(ts), month(ts), YEAR(ts), hours(ts), \
             bucket(16, id), bucket(id, 8), truncate(4, name)));\nSELECT 1",
        )
        .unwrap();
        let terms: Vec<(String, bool, PartitionTransform)> = m
            .meta
            .partitioning
            .into_iter()
            .map(|t| (t.column, t.quoted, t.transform))
            .collect();
        let term = |c: &str, t| (c.to_string(), false, t);
        assert_eq!(
            terms,
            [
                term("region", PartitionTransform::Identity),
                ("Day".to_string(), true, PartitionTransform::Identity),
                term("ts", PartitionTransform::Day),
                term("ts", PartitionTransform::Month),
                term("ts", PartitionTransform::Year),
                term("ts", PartitionTransform::Hour),
                term("id", PartitionTransform::Bucket(16)),
                term("id", PartitionTransform::Bucket(8)),
                term("name", PartitionTransform::Truncate(4)),
            ]
        );
        for bad in [
            "a + b",
            "bucket(id)",
            "bucket(0, id)",
            "day(ts, 2)",
            "date_trunc('day', ts)",
            "s.col",
        ] {
            let text = format!("MODEL (name a.b, partitioned_by ({bad}));\nSELECT 1");
            let e = parse(&text).unwrap_err();
            let at = text.find(bad).unwrap();
            assert_eq!((e.span.offset(), e.span.len()), (at, bad.len()), "{bad}");
            assert!(
                e.message.contains("Iceberg partition field"),
                "{bad}: {}",
                e.message
            );
        }
    }

    #[test]
    fn incremental_by_partition_partitions_by_columns_only() {
        let ok = parse(
            "MODEL (name a.b, kind INCREMENTAL_BY_PARTITION, partitioned_by (region, ds));\nSELECT 1",
        );
        assert!(ok.is_ok(), "{ok:?}");
        let text = "MODEL (name a.b, kind INCREMENTAL_BY_PARTITION, partitioned_by (region, day(ts)));\nSELECT 1";
        let e = parse(text).unwrap_err();
        let at = text.find("(region, day").unwrap();
        assert_eq!(e.span.offset(), at);
        assert!(e.message.contains("lists columns"), "{}", e.message);
    }

    #[test]
    fn kind_parameters_written_like_calls_are_pairs() {
        for column in ["ds", "date"] {
            let m = parse(&format!(
                "MODEL (name a.b, kind INCREMENTAL_BY_TIME_RANGE (time_column ({column}, '%Y-%m-%d'), batch_size 10,));\nSELECT 1 AS {column}"
            ))
            .unwrap();
            let ModelKind::IncrementalByTimeRange { time_column, .. } = &m.meta.kind else {
                panic!("kind {:?}", m.meta.kind);
            };
            assert_eq!(time_column.column, column);
            assert_eq!(time_column.format.as_deref(), Some("%Y-%m-%d"));
        }
    }

    #[test]
    fn blueprint_values_fill_the_model_block() {
        let vars = vec![
            ("region".to_string(), "'eu'".to_string()),
            ("region_code".to_string(), "7".to_string()),
        ];
        assert_eq!(
            substitute_blueprint("name @{region}.orders_@region_code, tags (@regions)", &vars),
            "name eu.orders_7, tags (@regions)"
        );
    }

    #[test]
    fn reads_every_common_property() {
        let m = parse(
            "MODEL (\n  name Demo.Full_Model,\n  kind FULL,\n  cron '@hourly',\n  owner jen,\n  description 'orders by item',\n  tags (a, b),\n  grain item_id,\n  columns (item_id INT, n BIGINT),\n  column_descriptions (item_id = 'the item'),\n  audits (assert_positive_order_ids, not_null(columns := [item_id])),\n  depends_on [demo.other],\n  partitioned_by item_id,\n  physical_properties (x = 1),\n  enabled true,\n);\n\nSET threads = 2;\nSELECT item_id, count(*) AS n FROM demo.seed_model GROUP BY 1;\nANALYZE;\n",
        )
        .unwrap();
        let meta = &m.meta;
        assert_eq!(meta.name.to_string(), "demo.full_model");
        assert_eq!(meta.kind, ModelKind::Full);
        assert_eq!(meta.cron, "@hourly");
        assert_eq!(meta.owner.as_deref(), Some("jen"));
        assert_eq!(meta.tags, ["a", "b"]);
        assert_eq!(meta.grains, ["item_id"]);
        assert_eq!(
            meta.columns[1],
            ColumnDef {
                name: "n".into(),
                data_type: "BIGINT".into()
            }
        );
        assert_eq!(
            meta.column_descriptions,
            [("item_id".to_string(), "the item".to_string())]
        );
        assert_eq!(meta.audits[1].name, "not_null");
        assert_eq!(
            meta.audits[1].args,
            [("columns".to_string(), "[item_id]".to_string())]
        );
        assert_eq!(meta.depends_on, [ModelName::new("demo", "other")]);
        assert_eq!(
            meta.physical_properties,
            [("x".to_string(), "1".to_string())]
        );
        assert_eq!(m.pre_statements.len(), 1);
        assert!(m.query.as_ref().unwrap().text.starts_with("SELECT item_id"));
        assert_eq!(m.post_statements[0].text, "ANALYZE");
    }

    #[test]
    fn seed_path_is_relative_to_the_model_file() {
        let m = parse("MODEL (name bench.seed_000, kind SEED (path '../seeds/seed_000.csv'), columns (id INT), grain id);").unwrap();
        assert_eq!(m.seed_path, Some(PathBuf::from("/p/seeds/seed_000.csv")));
        assert!(m.query.is_none());
    }

    #[test]
    fn defaults_to_view_kind_like_sqlmesh() {
        let m = parse("MODEL (name a.b); SELECT 1 AS x").unwrap();
        assert_eq!(
            m.meta.kind,
            ModelKind::View {
                materialized: false
            }
        );
        assert_eq!(m.meta.cron, "@daily");
    }

    #[test]
    fn errors_point_at_the_problem() {
        let err = parse("MODEL (\n  name a.b,\n  knd FULL\n);\nSELECT 1").unwrap_err();
        assert_eq!(err.location, "models/m.sql:3:3");
        assert_eq!(err.help.as_deref(), Some("did you mean `kind`?"));
        let err = parse("MODEL (name a.b, kind FULL);").unwrap_err();
        assert!(err.message.contains("has no query"));
        let err = parse("MODEL (name a.b, kind FULLL); SELECT 1").unwrap_err();
        assert!(
            err.message.contains("unknown model kind"),
            "{}",
            err.message
        );
        assert_eq!(err.help.as_deref(), Some("did you mean `FULL`?"));
        let err = parse("MODEL (name justone, kind FULL); SELECT 1").unwrap_err();
        assert!(err.message.contains("invalid model name"));
        let err = parse("MODEL (name a.b, kind SEED (batch_size 3));").unwrap_err();
        assert!(err.message.contains("requires `path`"));
    }

    #[test]
    fn schedules_and_interval_units_are_typed_at_load_with_located_errors() {
        let m =
            parse("MODEL (name a.b, kind FULL, cron '0 6 * * *', interval_unit 'HOUR'); SELECT 1")
                .unwrap();
        assert_eq!(m.meta.cron.expression(), "0 6 * * *");
        assert_eq!(m.meta.interval_unit, Some(IntervalUnit::Hour));
        // Stored model definitions keep the text as written, as before the values were typed.
        let json = serde_json::to_value(&m.meta).unwrap();
        assert_eq!(json["cron"], "0 6 * * *");
        assert_eq!(json["interval_unit"], "hour");

        let err = parse("MODEL (\n  name a.b,\n  cron 'every day'\n);\nSELECT 1").unwrap_err();
        assert_eq!(err.location, "models/m.sql:3:8");
        assert!(
            err.message.contains("invalid cron expression"),
            "{}",
            err.message
        );
        let err = parse("MODEL (name a.b, interval_unit 'fortnight'); SELECT 1").unwrap_err();
        assert!(
            err.message.contains("unknown interval_unit"),
            "{}",
            err.message
        );
        assert!(err.help.unwrap().contains("half_hour"));
    }

    #[test]
    fn start_and_end_are_typed_at_load_and_keep_their_text() {
        let m = parse("MODEL (name a.b, start '1 year ago', end 1704067200000); SELECT 1").unwrap();
        let now = crate::intervals::parse_datetime("2024-06-15").unwrap();
        let start = m.meta.start.as_ref().unwrap();
        assert_eq!(start.text(), "1 year ago");
        assert_eq!(
            start.resolve(now),
            crate::intervals::parse_datetime("2023-06-15").unwrap()
        );
        assert_eq!(
            m.meta.end.as_ref().unwrap().resolve(now),
            crate::intervals::parse_datetime("2024-01-01").unwrap()
        );
        let json = serde_json::to_value(&m.meta).unwrap();
        assert_eq!(json["start"], "1 year ago");

        let err = parse("MODEL (\n  name a.b,\n  start 'last tuesday'\n);\nSELECT 1").unwrap_err();
        assert_eq!(err.location, "models/m.sql:3:9");
        assert!(
            err.message.contains("invalid date or time"),
            "{}",
            err.message
        );
        assert!(err.help.unwrap().contains("1 year ago"));
    }
}
