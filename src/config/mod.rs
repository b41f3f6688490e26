//! `config.yaml`: SQLMesh-compatible project configuration, `env_var()` substitution and unknown-key reporting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{LakeError, Result, SourceFile};

pub mod linter;
pub mod storage;
pub use storage::{
    CatalogSettings, IcebergSettings, S3Settings, Secret, StorageChoice, StorageConfig, Warehouse,
};

/// A scalar YAML value read as text: `start: 2024-01-01`, `start: '1 year ago'` and `port: 5432` all work.
fn stringish<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let v = Option::<serde_norway::Value>::deserialize(d)?;
    let found = match v {
        None | Some(serde_norway::Value::Null) => return Ok(None),
        Some(serde_norway::Value::String(s)) => return Ok(Some(s)),
        Some(serde_norway::Value::Number(n)) => return Ok(Some(n.to_string())),
        Some(serde_norway::Value::Bool(b)) => return Ok(Some(b.to_string())),
        Some(serde_norway::Value::Sequence(_)) => "a list",
        Some(serde_norway::Value::Mapping(_)) => "a mapping",
        Some(serde_norway::Value::Tagged(_)) => "a tagged value",
    };
    // Taking a list or mapping as "not set" would silently change what every model gets.
    Err(serde::de::Error::custom(format!(
        "expected a single value such as 2024-01-01, '1 year ago' or 5432, found {found}"
    )))
}

/// A list of names, lower-cased (environment names are case-insensitive).
fn lowercase_names<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    let names: Option<Vec<String>> = Option::deserialize(d)?;
    Ok(names
        .unwrap_or_default()
        .into_iter()
        .map(|n| n.to_lowercase())
        .collect())
}

/// `start`/`end` in `model_defaults`, written as any YAML scalar, parsed as a model's would be.
fn time_bound<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<crate::intervals::bound::TimeBound>, D::Error> {
    stringish(d)?
        .map(|text| {
            crate::intervals::bound::TimeBound::parse(&text).map_err(serde::de::Error::custom)
        })
        .transpose()
}

/// A list of strings (or one string for a list of one); `what` and `example` describe them in the error.
fn string_list<'de, D: Deserializer<'de>>(
    d: D,
    what: &str,
    example: &str,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    let found = match Option::<serde_norway::Value>::deserialize(d)? {
        None | Some(serde_norway::Value::Null) => return Ok(None),
        Some(serde_norway::Value::String(one)) => return Ok(Some(vec![one])),
        Some(serde_norway::Value::Sequence(items)) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect();
            match strings {
                Some(strings) => return Ok(Some(strings)),
                None => "a list holding a value that is not a string",
            }
        }
        Some(_) => "a value that is neither a list nor a string",
    };
    Err(serde::de::Error::custom(format!(
        "expected a list of {what} written as strings, such as {example}, found {found}"
    )))
}

/// `model_defaults.audits`: audit calls, `["not_null(columns := [id])"]`.
fn audit_calls<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    string_list(d, "audit calls", "[\"not_null(columns := [id])\"]")
}

/// `model_defaults.pre_statements` / `post_statements` / `on_virtual_update`, `before_all` / `after_all`: SQL
/// statements, `["SET threads = 4"]`.
fn sql_statements<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    string_list(d, "SQL statements", "[\"SET threads = 4\"]")
}

/// `model_defaults.physical_properties`: a map of property names to scalar values, kept as text
/// (`{write.target-file-size-bytes: 134217728, owner_team: data}`).
fn property_map<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<(String, String)>>, D::Error> {
    use serde_norway::Value;
    let map = match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Mapping(map)) => map,
        Some(_) => {
            return Err(serde::de::Error::custom(
                "expected a map of property names to values, such as {write.target-file-size-bytes: 134217728}",
            ));
        }
    };
    let scalar = |value: &Value| match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    };
    map.iter()
        .map(|(key, value)| match (scalar(key), scalar(value)) {
            (Some(key), Some(value)) => Ok((key, value)),
            (key, _) => Err(serde::de::Error::custom(format!(
                "property `{}` needs a single text, number or boolean value",
                key.unwrap_or_else(|| "?".into())
            ))),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(Some)
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub gateways: BTreeMap<String, GatewayConfig>,
    pub default_gateway: Option<String>,
    pub default_connection: Option<ConnectionConfig>,
    pub default_test_connection: Option<ConnectionConfig>,
    #[serde(default)]
    pub model_defaults: ModelDefaults,
    #[serde(default)]
    pub variables: BTreeMap<String, serde_json::Value>,
    pub snapshot_ttl: Option<String>,
    pub environment_ttl: Option<String>,
    #[serde(default)]
    pub ignore_patterns: Vec<String>,
    pub project: Option<String>,
    pub time_column_format: Option<String>,
    pub default_target_environment: Option<String>,
    /// lake's own setting: where model versions are stored (Iceberg tables by default, or DuckDB tables).
    pub storage: Option<StorageConfig>,
    // Accepted for SQLMesh compatibility; not acted on yet (listed in docs/configuration.md).
    pub users: Option<serde_norway::Value>,
    /// Development environments the janitor keeps even once expired (lower-cased, as environment names are).
    #[serde(default, deserialize_with = "lowercase_names")]
    pub pinned_environments: Vec<String>,
    pub physical_schema_mapping: Option<serde_norway::Value>,
    /// `schema` (default) or `table`: see [`SuffixTarget`].
    pub environment_suffix_target: Option<String>,
    pub physical_table_naming_convention: Option<String>,
    pub virtual_environment_mode: Option<String>,
    pub gateway_managed_virtual_layer: Option<bool>,
    pub environment_catalog_mapping: Option<serde_norway::Value>,
    pub linter: Option<serde_norway::Value>,
    /// Defaults of `lake plan`'s flags (SQLMesh's `plan:` section); a flag given on the command line wins.
    #[serde(default)]
    pub plan: PlanDefaults,
    pub run: Option<serde_norway::Value>,
    pub format: Option<serde_norway::Value>,
    pub ui: Option<serde_norway::Value>,
    pub migration: Option<serde_norway::Value>,
    pub model_naming: Option<serde_norway::Value>,
    pub cicd_bot: Option<serde_norway::Value>,
    pub notification_targets: Option<serde_norway::Value>,
    pub env_vars: Option<serde_norway::Value>,
    pub log_limit: Option<serde_norway::Value>,
    pub cache_dir: Option<String>,
    pub default_scheduler: Option<serde_norway::Value>,
    // SQLMesh keys about its Python loader, its dbt adapter, its own janitor settings and its analytics:
    // accepted so a SQLMesh project loads unchanged, nothing lake acts on.
    pub loader: Option<serde_norway::Value>,
    pub loader_kwargs: Option<serde_norway::Value>,
    pub username: Option<serde_norway::Value>,
    pub physical_schema_override: Option<serde_norway::Value>,
    pub infer_python_dependencies: Option<serde_norway::Value>,
    pub dbt: Option<serde_norway::Value>,
    pub janitor: Option<serde_norway::Value>,
    pub disable_anonymized_analytics: Option<serde_norway::Value>,
    /// Statements run before each applied plan and each run (SQL strings, with macros).
    #[serde(default, deserialize_with = "sql_statements")]
    pub before_all: Option<Vec<String>>,
    /// Statements run after each applied plan and each run.
    #[serde(default, deserialize_with = "sql_statements")]
    pub after_all: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GatewayConfig {
    pub connection: Option<ConnectionConfig>,
    pub state_connection: Option<ConnectionConfig>,
    pub test_connection: Option<ConnectionConfig>,
    pub scheduler: Option<serde_norway::Value>,
    pub state_schema: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, serde_json::Value>,
    pub model_defaults: Option<ModelDefaults>,
}

/// A connection of any engine SQLMesh knows; `lake` acts on `duckdb` today.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionConfig {
    #[serde(rename = "type")]
    pub kind: String,
    // duckdb
    pub database: Option<String>,
    pub catalogs: Option<serde_norway::Value>,
    pub extensions: Option<serde_norway::Value>,
    pub connector_config: Option<serde_norway::Value>,
    pub secrets: Option<serde_norway::Value>,
    pub filesystems: Option<serde_norway::Value>,
    pub concurrent_tasks: Option<usize>,
    pub register_comments: Option<bool>,
    pub pre_ping: Option<bool>,
    pub pretty_sql: Option<bool>,
    // spark: the Spark Connect URL (`sc://host:port/;token=…`) and the engine's name for lake's catalog
    #[serde(default, deserialize_with = "stringish")]
    pub remote: Option<String>,
    #[serde(default, deserialize_with = "stringish")]
    pub catalog: Option<String>,
    // postgres
    #[serde(default, deserialize_with = "stringish")]
    pub host: Option<String>,
    pub port: Option<u16>,
    #[serde(default, deserialize_with = "stringish")]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "stringish")]
    pub password: Option<String>,
    pub sslmode: Option<String>,
    pub schema: Option<String>,
    pub role: Option<String>,
    pub connect_timeout: Option<u64>,
    pub keepalives_idle: Option<u64>,
    pub application_name: Option<String>,
}

/// The answer to one class of column change (destructive: a column dropped or its type changed in a way
/// that loses values; additive: a column added or a type widened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaChangePolicy {
    /// Stop before anything is written.
    Error,
    /// Apply the change and say so.
    Warn,
    /// Apply the change.
    Allow,
    /// Leave the table's columns as they are: new columns are not stored, dropped ones read NULL in new rows.
    Ignore,
}

impl SchemaChangePolicy {
    pub const NAMES: [&'static str; 4] = ["error", "warn", "allow", "ignore"];

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Some(Self::Error),
            "warn" => Some(Self::Warn),
            "allow" => Some(Self::Allow),
            "ignore" => Some(Self::Ignore),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Allow => "allow",
            Self::Ignore => "ignore",
        }
    }
}

/// `error`, `warn`, `allow` or `ignore`, in any case (SQLMesh writes them in upper case too).
impl<'de> Deserialize<'de> for SchemaChangePolicy {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SchemaChangePolicy::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected one of error, warn, allow, ignore, found `{text}`"
            ))
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelDefaults {
    pub dialect: Option<String>,
    /// `kind: FULL` or a mapping with `name:` and parameters.
    pub kind: Option<serde_norway::Value>,
    pub cron: Option<crate::intervals::cron::Schedule>,
    pub cron_tz: Option<String>,
    pub owner: Option<String>,
    #[serde(default, deserialize_with = "time_bound")]
    pub start: Option<crate::intervals::bound::TimeBound>,
    #[serde(default, deserialize_with = "time_bound")]
    pub end: Option<crate::intervals::bound::TimeBound>,
    pub interval_unit: Option<crate::intervals::IntervalUnit>,
    pub table_format: Option<String>,
    pub storage_format: Option<String>,
    pub on_destructive_change: Option<SchemaChangePolicy>,
    pub on_additive_change: Option<SchemaChangePolicy>,
    /// Properties of every model's physical tables (Iceberg table properties); a model's own win.
    #[serde(default, deserialize_with = "property_map")]
    pub physical_properties: Option<Vec<(String, String)>>,
    pub virtual_properties: Option<serde_norway::Value>,
    pub session_properties: Option<serde_norway::Value>,
    /// Audit calls every model runs before its own, as SQLMesh writes them: `["not_null(columns := [id])"]`.
    #[serde(default, deserialize_with = "audit_calls")]
    pub audits: Option<Vec<String>>,
    pub optimize_query: Option<bool>,
    pub allow_partials: Option<bool>,
    pub enabled: Option<bool>,
    pub formatting: Option<bool>,
    /// The most batches of one incremental model evaluated at once, where the model does not say (at least 1:
    /// checked when the config is resolved, at its place in the file).
    pub batch_concurrency: Option<u64>,
    /// Statements every model runs before its own pre-statements (SQLMesh's order), as SQL strings.
    #[serde(default, deserialize_with = "sql_statements")]
    pub pre_statements: Option<Vec<String>>,
    /// Statements every model runs after its own post-statements.
    #[serde(default, deserialize_with = "sql_statements")]
    pub post_statements: Option<Vec<String>>,
    /// Statements every model runs when its name in an environment moves, before its own.
    #[serde(default, deserialize_with = "sql_statements")]
    pub on_virtual_update: Option<Vec<String>>,
    pub gateway: Option<String>,
}

/// Where a development environment's suffix goes in the names it exposes (`environment_suffix_target`):
/// `<schema>__<env>.<name>` (the default) or `<schema>.<name>__<env>`. Each environment keeps the one it was
/// planned with in state, so changing the setting renames an environment only when it is next planned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuffixTarget {
    #[default]
    Schema,
    Table,
}

impl SuffixTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            SuffixTarget::Schema => "schema",
            SuffixTarget::Table => "table",
        }
    }

    /// The setting as written in config.yaml or state (case-insensitive), or `None` for anything else.
    pub fn parse(text: &str) -> Option<SuffixTarget> {
        match text.to_ascii_lowercase().as_str() {
            "schema" => Some(SuffixTarget::Schema),
            "table" => Some(SuffixTarget::Table),
            _ => None,
        }
    }
}

/// Whether prod has a virtual layer (`virtual_environment_mode`). `DevOnly`: prod's tables are written in
/// place under the model names, every change reaches them forward-only, and dev environments build their own
/// tables, which prod never takes over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VirtualEnvironmentMode {
    #[default]
    Full,
    DevOnly,
}

impl VirtualEnvironmentMode {
    /// The setting as written in config.yaml or a MODEL block (case-insensitive), or `None` for anything else.
    pub fn parse(text: &str) -> Option<VirtualEnvironmentMode> {
        match text.to_ascii_lowercase().as_str() {
            "full" => Some(VirtualEnvironmentMode::Full),
            "dev_only" => Some(VirtualEnvironmentMode::DevOnly),
            _ => None,
        }
    }
}

/// config.yaml's `plan:` section. Unset keys leave lake's own defaults (prompting on a terminal, dev
/// environments exposing only what changed, no apply without `--auto-apply`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PlanDefaults {
    /// Apply without asking, as `--auto-apply`.
    pub auto_apply: Option<bool>,
    /// Never ask (categories, confirmation), as `--no-prompts`.
    pub no_prompts: Option<bool>,
    /// Expose unmodified models in dev environments too, as `--include-unmodified`.
    pub include_unmodified: Option<bool>,
    /// Plan every change forward-only, as `--forward-only`.
    pub forward_only: Option<bool>,
    /// Leave the text differences out of plans, as `--no-diff`.
    pub no_diff: Option<bool>,
    /// Preview forward-only changes in dev tables of their own (true unless set false), as
    /// `--enable-preview`.
    pub enable_preview: Option<serde_norway::Value>,
    /// A child reading none of the columns a breaking change touches keeps its table (true unless set
    /// false; lake's own key).
    pub column_aware: Option<bool>,
    // SQLMesh's other keys, accepted and not acted on yet (docs/configuration.md).
    pub auto_categorize_changes: Option<serde_norway::Value>,
    pub use_finalized_state: Option<serde_norway::Value>,
    pub always_recreate_environment: Option<serde_norway::Value>,
}

/// Configuration with the gateway resolved and every file path made absolute.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    pub config: Config,
    pub gateway: String,
    pub connection: EngineConnection,
    pub storage: StorageChoice,
    pub state: StateChoice,
    pub model_defaults: ModelDefaults,
    pub variables: BTreeMap<String, serde_json::Value>,
    pub snapshot_ttl: Duration,
    pub environment_ttl: Duration,
    pub linter: linter::LinterConfig,
    /// Gateways whose connection is a Spark Connect engine, by gateway name.
    pub spark_gateways: BTreeMap<String, SparkConnection>,
    /// Nested keys present in the file that `lake` does not know, each as "FILE:LINE:COL: unknown key
    /// `dotted.path`" (an unknown top-level key is an error).
    pub unknown_keys: Vec<String>,
    /// Settings accepted but ignored today, with the reason.
    pub warnings: Vec<String>,
    /// Where derived, safe-to-delete files go (`cache_dir`, relative to the project; `.lake/cache` by default).
    pub cache_dir: PathBuf,
    /// Where environments planned now put their suffix (`environment_suffix_target`).
    pub suffix_target: SuffixTarget,
    /// Schemas the physical tables of new versions go to instead of `lake__<schema>`.
    pub physical_schemas: PhysicalSchemaMapping,
    /// Whether prod names are views over versioned tables or the tables themselves.
    pub virtual_environment_mode: VirtualEnvironmentMode,
}

/// `physical_schema_mapping`: regular expressions over model schemas, each naming the schema where the
/// physical tables of new versions of those models live (instead of `lake__<schema>`). As SQLMesh's
/// `re.match`, a pattern matches from the start of the schema name; the first pattern that matches wins.
#[derive(Debug, Clone, Default)]
pub struct PhysicalSchemaMapping(Vec<(regex::Regex, String)>);

impl PhysicalSchemaMapping {
    /// The physical schema for models in `model_schema`; `None`: the default, `lake__<schema>`.
    pub fn schema_for(&self, model_schema: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(pattern, _)| pattern.is_match(model_schema))
            .map(|(_, target)| target.as_str())
    }

    /// Every schema the mapping puts physical tables in.
    pub fn targets(&self) -> Vec<String> {
        let mut targets: Vec<String> = self.0.iter().map(|(_, t)| t.clone()).collect();
        targets.sort();
        targets.dedup();
        targets
    }
}

/// Where lake keeps its state.
#[derive(Debug, Clone, PartialEq)]
pub enum StateChoice {
    /// SQLite in the project's `.lake/` folder.
    Embedded,
    /// Tables in a PostgreSQL schema (the URI holds the password: never print it).
    Postgres { uri: Secret, schema: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum EngineConnection {
    DuckDb {
        /// `None` is an in-memory database.
        database: Option<PathBuf>,
        concurrent_tasks: usize,
        extensions: Vec<String>,
    },
}

impl EngineConnection {
    /// How many models (and batches of one model) the engine builds at once.
    pub fn concurrent_tasks(&self) -> usize {
        match self {
            EngineConnection::DuckDb {
                concurrent_tasks, ..
            } => *concurrent_tasks,
        }
    }
}

/// A distributed engine reached through Spark Connect, sharing lake's Iceberg catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct SparkConnection {
    pub gateway: String,
    /// The `sc://` URL; its `token` is a credential, so it is only handed to the client.
    pub remote: Secret,
    /// The URL with its token masked, for messages.
    pub display: String,
    /// The name the engine knows lake's Iceberg REST catalog by.
    pub catalog: String,
}

impl SparkConnection {
    /// For showing Spark SQL in a project without a Spark gateway: lake's catalog under its usual name.
    pub fn unconfigured() -> SparkConnection {
        SparkConnection {
            gateway: String::new(),
            remote: Secret::new(String::new()),
            display: String::new(),
            catalog: "lake".into(),
        }
    }

    fn parse(gateway: &str, c: &ConnectionConfig) -> Result<SparkConnection> {
        let remote = c.remote.clone().unwrap_or_default();
        if !remote.starts_with("sc://") {
            return Err(LakeError::Config {
                message: format!(
                    "gateway `{gateway}`: a spark connection needs `remote: sc://host:port` (the Spark Connect URL)"
                ),
                help: Some(
                    "parameters follow the sc:// spec: sc://host:15002/;token=…;use_ssl=true"
                        .into(),
                ),
            });
        }
        let display = remote
            .split(';')
            .map(|part| match part.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("token") => format!("{key}=***"),
                _ => part.to_string(),
            })
            .collect::<Vec<_>>()
            .join(";");
        Ok(SparkConnection {
            gateway: gateway.to_string(),
            remote: Secret::new(remote),
            display,
            catalog: c.catalog.clone().unwrap_or_else(|| "lake".into()),
        })
    }
}

const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Reads `config.yaml` (or `config.yml`) in `root`, substituting `{{ env_var('NAME') }}` first.
pub fn load(root: &Path, gateway: Option<&str>) -> Result<ResolvedConfig> {
    load_file(root, None, gateway)
}

/// `load`, from `file` (relative to `root`; `--config`) instead of `config.yaml` when it is given.
pub fn load_file(
    root: &Path,
    file: Option<&Path>,
    gateway: Option<&str>,
) -> Result<ResolvedConfig> {
    if let Some(file) = file {
        let path = root.join(file);
        if !path.is_file() {
            return Err(LakeError::Usage(
                format!("there is no configuration file `{}`", path.display()),
                Some(
                    "--config names a YAML file of config.yaml's keys, relative to the project"
                        .into(),
                ),
            ));
        }
        let display = file.display().to_string();
        let text = crate::error::read_text(&path, &display)?;
        return parse(root, &display, &text, gateway);
    }
    let candidates = ["config.yaml", "config.yml"];
    let Some(path) = candidates.iter().map(|c| root.join(c)).find(|p| p.exists()) else {
        if root.join("config.py").exists() {
            return Err(LakeError::Config {
                message: format!("{} has a config.py, which lake cannot execute", root.display()),
                help: Some("translate it to config.yaml (same keys); use {{ env_var('NAME') }} for secrets".into()),
            });
        }
        return Err(LakeError::Config {
            message: format!("no config.yaml in {}", root.display()),
            help: Some(
                "run `lake init` to create a project, or pass -p/--path to point at one".into(),
            ),
        });
    };
    let display = path
        .file_name()
        .map_or("config.yaml".into(), |f| f.to_string_lossy().into_owned());
    let text = crate::error::read_text(&path, &display)?;
    parse(root, &display, &text, gateway)
}

/// Parses configuration text; `root` resolves relative paths.
pub fn parse(
    root: &Path,
    display_path: &str,
    text: &str,
    gateway: Option<&str>,
) -> Result<ResolvedConfig> {
    let rendered = render_env_vars(display_path, text)?;
    // Errors point into the file as written. Substitution keeps the lines, so a line and column found in the
    // rendered text are looked up in the original (a longer value can only move a column within its line).
    let file = SourceFile::new(display_path, text);
    let mut unknown_keys = Vec::new();
    let de = serde_norway::Deserializer::from_str(&rendered);
    let config: Config = serde_ignored::deserialize(de, |path| {
        // serde_ignored marks the step into an Option as `?`; users know the key path without it.
        unknown_keys.push(path.to_string().replace(".?", "").replace("?.", ""))
    }).map_err(|e| {
        let offset = e
            .location()
            .map_or(0, |l| file.offset_of(l.line(), l.column()));
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        LakeError::from(
            file.error(offset, 1, format!("invalid configuration: {message}"))
                .with_help("config.yaml uses SQLMesh's keys: gateways, default_gateway, model_defaults, variables, …"),
        )
    })?;
    if let Some(key) = unknown_keys.iter().find(|k| !k.contains('.')) {
        return Err(unknown_top_level_key(&file, key));
    }
    let unknown_keys = unknown_keys
        .into_iter()
        .map(|key| match key_offset(text, &key) {
            Some(at) => {
                let (line, column) = file.line_col(at);
                format!("{display_path}:{line}:{column}: unknown key `{key}`")
            }
            None => format!("unknown key `{key}` in {display_path}"),
        })
        .collect();
    resolve(root, &file, config, gateway, unknown_keys)
}

/// The top-level keys of config.yaml: SQLMesh's, each of which lake reads or knowingly ignores.
const TOP_LEVEL_KEYS: &[&str] = &[
    "gateways",
    "default_gateway",
    "default_connection",
    "default_test_connection",
    "model_defaults",
    "variables",
    "snapshot_ttl",
    "environment_ttl",
    "ignore_patterns",
    "project",
    "time_column_format",
    "default_target_environment",
    "storage",
    "users",
    "pinned_environments",
    "physical_schema_mapping",
    "environment_suffix_target",
    "physical_table_naming_convention",
    "virtual_environment_mode",
    "gateway_managed_virtual_layer",
    "environment_catalog_mapping",
    "linter",
    "plan",
    "run",
    "format",
    "ui",
    "migration",
    "model_naming",
    "cicd_bot",
    "notification_targets",
    "env_vars",
    "log_limit",
    "cache_dir",
    "default_scheduler",
    "before_all",
    "after_all",
    "loader",
    "loader_kwargs",
    "username",
    "physical_schema_override",
    "infer_python_dependencies",
    "dbt",
    "janitor",
    "disable_anonymized_analytics",
];

/// A top-level key neither SQLMesh nor lake knows is an error (as in SQLMesh): a misspelt `model_defaults`
/// would otherwise silently change every model. Located at the key, with the nearest right name.
fn unknown_top_level_key(file: &SourceFile, key: &str) -> LakeError {
    let at = key_offset(&file.text, key).unwrap_or(0);
    let help = crate::error::did_you_mean(key, TOP_LEVEL_KEYS.iter().copied()).unwrap_or_else(|| {
        "config.yaml uses SQLMesh's keys: gateways, default_gateway, model_defaults, variables, …".into()
    });
    LakeError::from(
        file.error(at, key.len().max(1), format!("unknown key `{key}`"))
            .with_label("not a configuration key")
            .with_help(help),
    )
}

/// Where the dotted `path` (`model_defaults.dialect`) is written as a mapping key in `text`: each segment
/// looked for as `segment:` after the previous one; `None` when it cannot be found that way.
fn key_offset(text: &str, path: &str) -> Option<usize> {
    let mut from = 0;
    let mut found = None;
    for segment in path.split('.') {
        // An empty segment would match everywhere and never move on.
        if segment.is_empty() {
            return None;
        }
        let mut at = from;
        let hit = loop {
            let i = at + text[at..].find(segment)?;
            let before_ok = text[..i]
                .chars()
                .next_back()
                .is_none_or(|c| c.is_whitespace() || c == '{' || c == ',');
            let after = text[i + segment.len()..].trim_start_matches([' ', '"', '\'']);
            if before_ok && after.starts_with(':') {
                break i;
            }
            at = i + segment.len();
        };
        found = Some(hit);
        from = hit + segment.len();
    }
    found
}

/// An error about the value written as `key: value` in the file, located at that value when it is there (a
/// value given on the command line is not).
/// Types `physical_schema_mapping`: a map of regular expressions to schema names.
fn physical_schema_mapping(
    file: &SourceFile,
    written: Option<&serde_norway::Value>,
) -> Result<PhysicalSchemaMapping> {
    use serde_norway::Value;
    const KEY: &str = "physical_schema_mapping";
    const EXAMPLE: &str =
        "write a map of patterns to schemas: `physical_schema_mapping: {'^sales$': sales_tables}`";
    let entries = match written {
        None | Some(Value::Null) => return Ok(PhysicalSchemaMapping::default()),
        Some(Value::Mapping(entries)) => entries,
        Some(_) => {
            return Err(mapping_error(
                file,
                KEY,
                "expected a map of regular expressions to schema names".into(),
                EXAMPLE,
            ));
        }
    };
    let mut mapping = Vec::new();
    for (pattern, target) in entries {
        let (Some(pattern), Some(target)) = (pattern.as_str(), target.as_str()) else {
            return Err(mapping_error(
                file,
                KEY,
                "each entry maps a pattern (text) to a schema name (text)".into(),
                EXAMPLE,
            ));
        };
        // Anchored at the start only, as Python's `re.match` is.
        let compiled = regex::Regex::new(&format!("^(?:{pattern})")).map_err(|e| {
            // The last line of regex's message says what is wrong; the lines before draw the pattern.
            let reason = e.to_string();
            let reason = reason.lines().last().unwrap_or_default().trim();
            let reason = reason.strip_prefix("error: ").unwrap_or(reason).to_string();
            mapping_error(
                file,
                pattern,
                format!("`{pattern}` is not a regular expression: {reason}"),
                "patterns use the syntax of https://docs.rs/regex; escape `.` and `$` you mean literally",
            )
        })?;
        let target = target.trim().to_ascii_lowercase();
        let valid = !target.is_empty()
            && target
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(mapping_error(
                file,
                pattern,
                format!("`{target}` is not a schema name"),
                "name a schema with letters, digits and `_`",
            ));
        }
        mapping.push((compiled, target));
    }
    Ok(PhysicalSchemaMapping(mapping))
}

/// An error at `pattern`'s entry in `physical_schema_mapping` (at the key when the entry is not found as
/// written, e.g. in flow style across lines).
fn mapping_error(file: &SourceFile, pattern: &str, message: String, help: &str) -> LakeError {
    let text: &str = &file.text;
    let found = text.find("physical_schema_mapping").map(|key| {
        text[key..]
            .find(pattern)
            .map_or((key, "physical_schema_mapping".len()), |at| {
                (key + at, pattern.len())
            })
    });
    match found {
        Some((offset, len)) => LakeError::from(
            file.error(offset, len, message)
                .with_label("here")
                .with_help(help.to_string()),
        ),
        None => LakeError::Config {
            message,
            help: Some(help.to_string()),
        },
    }
}

fn value_error(
    file: &SourceFile,
    key: &str,
    value: &str,
    message: String,
    help: Option<String>,
) -> LakeError {
    let text: &str = &file.text;
    let written = text
        .match_indices(&format!("{key}:"))
        .find_map(|(at, found)| {
            let after = at + found.len();
            let line = &text[after
                ..text[after..]
                    .find('\n')
                    .map_or(text.len(), |end| after + end)];
            line.find(value).map(|v| after + v)
        });
    match written {
        Some(offset) if !value.is_empty() => LakeError::from(
            file.error(offset, value.len(), message)
                .with_label("here")
                .with_optional_help(help),
        ),
        _ => LakeError::Config { message, help },
    }
}

fn resolve(
    root: &Path,
    file: &SourceFile,
    config: Config,
    gateway: Option<&str>,
    unknown_keys: Vec<String>,
) -> Result<ResolvedConfig> {
    let (gateway_name, gateway_cfg) = choose_gateway(file, &config, gateway)?;
    let mut warnings = Vec::new();
    let connection_cfg = gateway_cfg
        .connection
        .clone()
        .or_else(|| config.default_connection.clone());
    let connection = engine_connection(root, file, &gateway_name, connection_cfg)?;
    let state_schema = gateway_cfg.state_schema.as_deref();
    let state = state_choice(file, &gateway_name, &gateway_cfg)?;
    if let (StateChoice::Embedded, Some(schema)) = (&state, state_schema) {
        warnings.push(format!(
            "gateway `{gateway_name}`: state_schema `{schema}` applies to PostgreSQL state; the embedded state \
             in .lake/ has no schemas"
        ));
    }
    let storage = storage::resolve(root, config.storage.as_ref())?;
    let mut model_defaults = config.model_defaults.clone();
    if let Some(overrides) = &gateway_cfg.model_defaults {
        merge_defaults(&mut model_defaults, overrides);
    }
    if model_defaults.batch_concurrency == Some(0) {
        return Err(value_error(
            file,
            "batch_concurrency",
            "0",
            "`batch_concurrency` expects a whole number of at least 1".into(),
            Some("write `batch_concurrency: 1` for one batch at a time, or leave it out for no limit".into()),
        ));
    }
    let mut variables = config.variables.clone();
    variables.extend(gateway_cfg.variables.clone());
    // A TTL lake cannot read is located at its value.
    let ttl = |key: &str, written: Option<&str>| -> Result<Duration> {
        let Some(text) = written else {
            return Ok(DEFAULT_TTL);
        };
        parse_ttl(text).map_err(|e| match e {
            LakeError::Config { message, help } => value_error(file, key, text, message, help),
            other => other,
        })
    };
    let snapshot_ttl = ttl("snapshot_ttl", config.snapshot_ttl.as_deref())?;
    let cache_dir = root.join(config.cache_dir.as_deref().unwrap_or(".lake/cache"));
    let suffix_target = suffix_target(file, &config)?;
    let physical_schemas = physical_schema_mapping(file, config.physical_schema_mapping.as_ref())?;
    let virtual_environment_mode = virtual_environment_mode(file, &config)?;
    if let Some(format) = config.time_column_format.as_deref()
        && !crate::intervals::is_time_format(format)
    {
        return Err(value_error(
            file,
            "time_column_format",
            format,
            format!("`{format}` is not a time format"),
            Some("use strftime codes, as SQLMesh does: `time_column_format: '%Y%m%d'`".into()),
        ));
    }
    let linter = linter::LinterConfig::from_config(config.linter.as_ref())?;
    let environment_ttl = ttl("environment_ttl", config.environment_ttl.as_deref())?;
    let mut spark_gateways = BTreeMap::new();
    for (name, g) in &config.gateways {
        if let Some(c) = &g.connection
            && c.kind.eq_ignore_ascii_case("spark")
        {
            spark_gateways.insert(name.clone(), SparkConnection::parse(name, c)?);
        }
    }
    Ok(ResolvedConfig {
        config,
        gateway: gateway_name,
        spark_gateways,
        connection,
        storage,
        state,
        model_defaults,
        variables,
        snapshot_ttl,
        environment_ttl,
        linter,
        unknown_keys,
        warnings,
        cache_dir,
        physical_schemas,
        suffix_target,
        virtual_environment_mode,
    })
}

/// The gateway to use (`--gateway`, else `default_gateway`, else the first defined) and its settings.
fn choose_gateway(
    file: &SourceFile,
    config: &Config,
    gateway: Option<&str>,
) -> Result<(String, GatewayConfig)> {
    let gateway_name = match gateway.or(config.default_gateway.as_deref()) {
        Some(g) => g.to_string(),
        None => config
            .gateways
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| "local".into()),
    };
    let gateway_cfg = match config.gateways.get(&gateway_name) {
        Some(g) => g.clone(),
        None if config.gateways.is_empty() && gateway.is_none() => GatewayConfig::default(),
        None => {
            return Err(value_error(
                file,
                "default_gateway",
                &gateway_name,
                format!("gateway `{gateway_name}` is not defined in config.yaml"),
                crate::error::did_you_mean(
                    &gateway_name,
                    config.gateways.keys().map(String::as_str),
                )
                .or_else(|| {
                    Some(format!(
                        "defined gateways: {}",
                        config
                            .gateways
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
            ));
        }
    };
    Ok((gateway_name, gateway_cfg))
}

/// The engine models run on: the gateway's DuckDB database (models of a Spark gateway run on the engine;
/// seeds, views and reads stay on the local DuckDB).
fn engine_connection(
    root: &Path,
    file: &SourceFile,
    gateway_name: &str,
    connection_cfg: Option<ConnectionConfig>,
) -> Result<EngineConnection> {
    Ok(match connection_cfg {
        None => EngineConnection::DuckDb {
            database: Some(root.join("db.db")),
            concurrent_tasks: default_concurrency(),
            extensions: Vec::new(),
        },
        // Models of a Spark gateway run on the engine; seeds, views and reads stay on the local DuckDB.
        Some(c) if c.kind.eq_ignore_ascii_case("spark") => EngineConnection::DuckDb {
            database: Some(root.join("db.db")),
            concurrent_tasks: c
                .concurrent_tasks
                .unwrap_or_else(default_concurrency)
                .max(1),
            extensions: Vec::new(),
        },
        Some(c) if c.kind.eq_ignore_ascii_case("duckdb") => EngineConnection::DuckDb {
            database: match c.database.as_deref() {
                None | Some("") | Some(":memory:") => None,
                Some(db) => Some(root.join(db)),
            },
            concurrent_tasks: c
                .concurrent_tasks
                .unwrap_or_else(default_concurrency)
                .max(1),
            extensions: c
                .extensions
                .as_ref()
                .and_then(|v| v.as_sequence())
                .map(|s| {
                    s.iter()
                        .filter_map(|e| e.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        },
        Some(c) => {
            return Err(value_error(
                file,
                "type",
                &c.kind,
                format!(
                    "the `{}` engine connection of gateway `{gateway_name}` is not supported yet",
                    c.kind
                ),
                Some("lake runs models on DuckDB (`type: duckdb`) or on a Spark Connect engine (`type: spark`)".into()),
            ));
        }
    })
}

/// Where state is kept: embedded in the project, or the gateway's PostgreSQL `state_connection`.
fn state_choice(
    file: &SourceFile,
    gateway_name: &str,
    gateway_cfg: &GatewayConfig,
) -> Result<StateChoice> {
    let state_schema = gateway_cfg.state_schema.as_deref();
    Ok(match &gateway_cfg.state_connection {
        None => StateChoice::Embedded,
        Some(c)
            if c.kind.eq_ignore_ascii_case("duckdb") || c.kind.eq_ignore_ascii_case("sqlite") =>
        {
            StateChoice::Embedded
        }
        Some(c) if c.kind.eq_ignore_ascii_case("postgres") => {
            let Some(database) = &c.database else {
                return Err(LakeError::Config {
                    message: format!(
                        "gateway `{gateway_name}`: the postgres state_connection needs a `database`"
                    ),
                    help: Some(
                        "set host, port, user, password and database (schema defaults to `lake`)"
                            .into(),
                    ),
                });
            };
            StateChoice::Postgres {
                uri: storage::postgres_uri(
                    c.host.as_deref(),
                    c.port,
                    c.user.as_deref(),
                    c.password.as_deref(),
                    database,
                    c.sslmode.as_deref(),
                ),
                schema: match (state_schema, c.schema.as_deref()) {
                    (Some(named), Some(other)) if named != other => {
                        return Err(value_error(
                            file,
                            "state_schema",
                            named,
                            format!(
                                "gateway `{gateway_name}` names two state schemas: state_schema `{named}` and \
                                 state_connection.schema `{other}`"
                            ),
                            Some("keep one of them (state_schema is SQLMesh's key)".into()),
                        ));
                    }
                    (Some(named), _) | (None, Some(named)) => named.to_string(),
                    (None, None) => "lake".into(),
                },
            }
        }
        Some(c) => {
            return Err(LakeError::unsupported(
                format!("a `{}` state_connection", c.kind),
                "keep state in the project (no state_connection) or in PostgreSQL (`type: postgres`)",
            ));
        }
    })
}

/// `environment_suffix_target`: where dev environments' names put their suffix.
fn suffix_target(file: &SourceFile, config: &Config) -> Result<SuffixTarget> {
    Ok(match config.environment_suffix_target.as_deref() {
        None => SuffixTarget::default(),
        Some(text) => SuffixTarget::parse(text).ok_or_else(|| {
            let help = if text.eq_ignore_ascii_case("catalog") {
                "`catalog` puts each environment in its own catalog; lake keeps every environment in one \
                 DuckDB file and one Iceberg catalog, so it supports `schema` (`db__dev.users`) and `table` \
                 (`db.users__dev`)"
            } else {
                "`schema` names a dev environment's views `db__dev.users` (the default), `table` names them \
                 `db.users__dev`"
            };
            value_error(
                file,
                "environment_suffix_target",
                text,
                format!("expected `schema` or `table`, found `{text}`"),
                Some(help.into()),
            )
        })?,
    })
}

/// `virtual_environment_mode`: `full` or `dev_only`.
fn virtual_environment_mode(file: &SourceFile, config: &Config) -> Result<VirtualEnvironmentMode> {
    Ok(match config.virtual_environment_mode.as_deref() {
        None => VirtualEnvironmentMode::default(),
        Some(text) => VirtualEnvironmentMode::parse(text).ok_or_else(|| {
            value_error(
                file,
                "virtual_environment_mode",
                text,
                format!("expected `full` or `dev_only`, found `{text}`"),
                Some(
                    "`full` (the default) gives prod versioned tables behind its names; `dev_only` writes \
                     prod's tables in place under the model names"
                        .into(),
                ),
            )
        })?,
    })
}

fn default_concurrency() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8)
}

fn merge_defaults(base: &mut ModelDefaults, overrides: &ModelDefaults) {
    macro_rules! take {
        ($($f:ident),*) => { $( if overrides.$f.is_some() { base.$f = overrides.$f.clone(); } )* };
    }
    take!(
        dialect,
        kind,
        cron,
        cron_tz,
        owner,
        start,
        end,
        interval_unit,
        table_format,
        storage_format,
        on_destructive_change,
        on_additive_change,
        physical_properties,
        virtual_properties,
        session_properties,
        audits,
        optimize_query,
        allow_partials,
        enabled,
        formatting,
        batch_concurrency,
        pre_statements,
        post_statements,
        on_virtual_update,
        gateway
    );
}

/// Substitutes `{{ env_var('NAME'[, 'default']) }}` (and any other Jinja) before YAML parsing.
fn render_env_vars(display_path: &str, text: &str) -> Result<String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_string());
    }
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_function(
        "env_var",
        |name: String, default: Option<String>| match std::env::var(&name).ok().or(default) {
            Some(v) => Ok(v),
            None => Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("environment variable `{name}` is not set and has no default"),
            )),
        },
    );
    env.render_str(text, minijinja::context! {}).map_err(|e| {
        let file = SourceFile::new(display_path, text);
        let offset = e.line().map_or(0, |l| file.offset_of(l, 1));
        let detail = e
            .detail()
            .map(String::from)
            .unwrap_or_else(|| e.to_string());
        LakeError::from(
            file.error(offset, 1, format!("cannot substitute template: {detail}"))
                .with_help("set the variable, or give a default: {{ env_var('NAME', 'default') }}"),
        )
    })
}

/// Parses SQLMesh TTLs such as `in 1 week`, `2 days`, `in 12 hours`.
pub fn parse_ttl(text: &str) -> Result<Duration> {
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !w.eq_ignore_ascii_case("in"))
        .collect();
    let invalid = || LakeError::Config {
        message: format!("invalid TTL `{text}`"),
        help: Some("write a TTL as `in <number> <unit>`, e.g. `in 1 week` or `in 3 days`".into()),
    };
    let [count, unit] = words.as_slice() else {
        return Err(invalid());
    };
    let count: u64 = count.parse().map_err(|_| invalid())?;
    let unit = unit.to_ascii_lowercase();
    let seconds = match unit.trim_end_matches('s') {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        "month" => 30 * 86_400,
        "year" => 365 * 86_400,
        _ => return Err(invalid()),
    };
    Ok(Duration::from_secs(count * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_gateways_keep_their_token_out_of_messages() {
        let text = "gateways:\n  local:\n    connection: {type: duckdb}\n  cluster:\n    connection:\n      type: spark\n      remote: sc://h:15002/;token=T0K;user_id=u\ndefault_gateway: cluster\n";
        let cfg = parse(Path::new("/p"), "config.yaml", text, None).unwrap();
        let cluster = &cfg.spark_gateways["cluster"];
        assert_eq!(cluster.display, "sc://h:15002/;token=***;user_id=u");
        assert_eq!(cluster.remote.expose(), "sc://h:15002/;token=T0K;user_id=u");
        assert_eq!(cluster.catalog, "lake");
        assert!(!format!("{cluster:?}").contains("T0K"));
        assert_eq!(cfg.spark_gateways.len(), 1);
        let bad = text.replace("sc://h:15002", "http://h");
        let e = parse(Path::new("/p"), "config.yaml", &bad, None).unwrap_err();
        assert!(e.to_string().contains("sc://host:port"), "{e}");
    }

    #[test]
    fn loads_sqlmesh_config_and_reports_unknown_keys() {
        let text = "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: bench.db\n      bogus_option: 1\ndefault_gateway: local\nmodel_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n  cron: '@daily'\nsnapshot_ttl: in 2 days\n";
        let cfg = parse(Path::new("/p"), "config.yaml", text, None).unwrap();
        assert_eq!(cfg.gateway, "local");
        assert_eq!(
            cfg.connection,
            EngineConnection::DuckDb {
                database: Some(PathBuf::from("/p/bench.db")),
                concurrent_tasks: default_concurrency(),
                extensions: vec![]
            }
        );
        assert_eq!(
            cfg.model_defaults.start.as_ref().map(|s| s.text()),
            Some("2024-01-01")
        );
        assert_eq!(cfg.snapshot_ttl, Duration::from_secs(2 * 86_400));
        assert_eq!(
            cfg.unknown_keys,
            vec!["config.yaml:6:7: unknown key `gateways.local.connection.bogus_option`"]
        );
        let err = parse(
            Path::new("/p"),
            "config.yaml",
            &format!("{text}frobnicate: true\n"),
            None,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown key `frobnicate`"),
            "{err}"
        );
    }

    /// SQLMesh's keys about its loader, dbt, janitor and analytics load, so its projects read unchanged.
    #[test]
    fn sqlmesh_only_top_level_keys_load() {
        let text = "model_defaults:\n  dialect: duckdb\nloader: sqlmesh.core.loader.SqlMeshLoader\n\
                    loader_kwargs: {}\nusername: alice\ninfer_python_dependencies: false\n\
                    dbt: {infer_state_schema_name: true}\njanitor: {warn_on_delete_failure: true}\n\
                    disable_anonymized_analytics: true\nphysical_schema_override: {}\n";
        let cfg = parse(Path::new("/p"), "config.yaml", text, None).unwrap();
        assert!(cfg.unknown_keys.is_empty(), "{:?}", cfg.unknown_keys);
    }

    /// Every key the error's suggestions offer is one the configuration reads: none is itself unknown.
    #[test]
    fn every_suggested_top_level_key_is_known() {
        for key in TOP_LEVEL_KEYS {
            let text = format!("{key}: null\n");
            if let Err(e) = parse(Path::new("/p"), "config.yaml", &text, None) {
                assert!(!e.to_string().contains("unknown key"), "{key}: {e}");
            }
        }
    }

    #[test]
    fn substitutes_env_vars() {
        // SAFETY of the test: the variable name is unique to this test.
        unsafe { std::env::set_var("LAKE_TEST_CONFIG_DB", "from_env.db") };
        let text = "gateways:\n  g:\n    connection:\n      type: duckdb\n      database: \"{{ env_var('LAKE_TEST_CONFIG_DB') }}\"\n";
        let cfg = parse(Path::new("/p"), "config.yaml", text, None).unwrap();
        let EngineConnection::DuckDb { database, .. } = cfg.connection;
        assert_eq!(database, Some(PathBuf::from("/p/from_env.db")));
        let text = "variables:\n  x: \"{{ env_var('LAKE_TEST_SURELY_UNSET') }}\"\n";
        let err = parse(Path::new("/p"), "config.yaml", text, None).unwrap_err();
        assert!(err.to_string().contains("LAKE_TEST_SURELY_UNSET"), "{err}");
        let text = "variables:\n  x: \"{{ env_var('LAKE_TEST_SURELY_UNSET', 'dflt') }}\"\n";
        let cfg = parse(Path::new("/p"), "config.yaml", text, None).unwrap();
        assert_eq!(cfg.variables["x"], serde_json::json!("dflt"));
    }

    /// SQLMesh's `state_schema` names the PostgreSQL schema of state, as lake's `state_connection.schema` does.
    #[test]
    fn state_schema_names_the_postgres_state_schema() {
        let config = |state_schema: &str, schema: &str| {
            format!(
                "gateways:\n  g:\n    connection: {{type: duckdb}}\n{state_schema}    state_connection:\n      \
                 type: postgres\n      host: localhost\n      database: state\n{schema}"
            )
        };
        let schema_of = |text: &str| match parse(Path::new("/p"), "config.yaml", text, None)
            .unwrap()
            .state
        {
            StateChoice::Postgres { schema, .. } => schema,
            StateChoice::Embedded => panic!("embedded state from {text}"),
        };
        assert_eq!(schema_of(&config("", "")), "lake");
        assert_eq!(
            schema_of(&config("    state_schema: sqlmesh\n", "")),
            "sqlmesh"
        );
        assert_eq!(schema_of(&config("", "      schema: mine\n")), "mine");
        let same = config("    state_schema: mine\n", "      schema: mine\n");
        assert_eq!(schema_of(&same), "mine");
        let both = config("    state_schema: sqlmesh\n", "      schema: mine\n");
        let err = parse(Path::new("/p"), "config.yaml", &both, None).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("config.yaml:4:")
                && shown.contains("`sqlmesh`")
                && shown.contains("`mine`"),
            "{shown}"
        );

        let embedded =
            "gateways:\n  g:\n    connection: {type: duckdb}\n    state_schema: sqlmesh\n";
        let cfg = parse(Path::new("/p"), "config.yaml", embedded, None).unwrap();
        assert_eq!(cfg.state, StateChoice::Embedded);
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.contains("state_schema `sqlmesh`")),
            "{:?}",
            cfg.warnings
        );
    }

    #[test]
    fn physical_schema_mapping_is_typed_and_its_errors_are_located() {
        let text = "physical_schema_mapping:\n  '^sales$': Sales_Tables\n  '^s': s_tables\n";
        let cfg = parse(Path::new("/p"), "config.yaml", text, None).unwrap();
        let mapping = &cfg.physical_schemas;
        assert_eq!(mapping.schema_for("sales"), Some("sales_tables"));
        assert_eq!(mapping.schema_for("shop"), Some("s_tables"));
        assert_eq!(
            mapping.schema_for("presales"),
            None,
            "matched from the start"
        );
        assert_eq!(mapping.targets(), ["s_tables", "sales_tables"]);
        for (bad, expected, at) in [
            (
                "[a, b]",
                "expected a map of regular expressions",
                "config.yaml:1:1",
            ),
            ("{a: [b]}", "each entry maps a pattern", "config.yaml:1:1"),
            (
                "{'(a': b}",
                "`(a` is not a regular expression",
                "config.yaml:1:28",
            ),
            (
                "{'^a': 'no such'}",
                "`no such` is not a schema name",
                "config.yaml:1:28",
            ),
        ] {
            let text = format!("physical_schema_mapping: {bad}\n");
            let err = parse(Path::new("/p"), "config.yaml", &text, None).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(expected) && shown.contains(at), "{shown}");
        }
    }

    #[test]
    fn physical_properties_are_a_map_of_scalars() {
        let text = "model_defaults:\n  physical_properties:\n    write.format.default: parquet\n    files: 3\n    on: true\n";
        let cfg = parse(Path::new("/p"), "config.yaml", text, None).unwrap();
        assert_eq!(
            cfg.model_defaults.physical_properties,
            Some(vec![
                ("write.format.default".to_string(), "parquet".to_string()),
                ("files".to_string(), "3".to_string()),
                ("on".to_string(), "true".to_string()),
            ])
        );
        for (bad, expected) in [
            ("[a, b]", "a map of property names"),
            ("{nested: {a: 1}}", "property `nested` needs a single"),
        ] {
            let text = format!("model_defaults:\n  physical_properties: {bad}\n");
            let err = parse(Path::new("/p"), "config.yaml", &text, None).unwrap_err();
            let shown = err.to_string();
            assert!(shown.contains(expected), "{shown}");
            assert!(shown.contains("config.yaml:2:"), "{shown}");
        }
    }

    /// A list or mapping where one value belongs is a located error, never taken as "not set".
    #[test]
    fn a_list_where_a_value_belongs_is_a_located_error() {
        let text = "model_defaults:\n  dialect: duckdb\n  start: [1, 2]\n";
        let err = parse(Path::new("/p"), "config.yaml", text, None).unwrap_err();
        let message = err.to_string();
        // serde_norway locates a custom error at the mapping that holds the field.
        assert!(message.starts_with("config.yaml:2:3:"), "{message}");
        assert!(
            message.contains("model_defaults") && message.contains("found a list"),
            "{message}"
        );
        let text = "gateways:\n  g:\n    connection:\n      type: duckdb\n      catalog: {a: 1}\n";
        let err = parse(Path::new("/p"), "config.yaml", text, None).unwrap_err();
        assert!(err.to_string().contains("found a mapping"), "{err}");
        let text = "model_defaults:\n  start: ~\n";
        let cfg = parse(Path::new("/p"), "config.yaml", text, None).unwrap();
        assert!(cfg.model_defaults.start.is_none());
    }

    #[test]
    fn yaml_errors_are_located() {
        let err = parse(
            Path::new("/p"),
            "config.yaml",
            "model_defaults:\n  cron: [1\n",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("config.yaml:"), "{err}");
        let err = parse(
            Path::new("/p"),
            "config.yaml",
            "default_gateway: nope\ngateways:\n  nop: {}\n",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
    }

    #[test]
    fn ttl_forms() {
        assert_eq!(
            parse_ttl("in 1 week").unwrap(),
            Duration::from_secs(604_800)
        );
        assert_eq!(parse_ttl("3 hours").unwrap(), Duration::from_secs(10_800));
        assert!(parse_ttl("soon").is_err());
    }

    #[test]
    fn errors_after_substitution_point_into_the_file_as_written() {
        // Found by tests/it/fuzz.rs: the location was computed in the substituted text, past the file's end.
        let text = "variables:\n  long: \"{{ range(300) | join(',') }}\"\n bad: [\n";
        let error = parse(Path::new("/p"), "config.yaml", text, None).unwrap_err();
        let LakeError::Source(source) = error else {
            panic!("a located error: {error:?}");
        };
        assert!(source.span.offset() <= text.len(), "{}", source.location);
        assert!(
            source.location.starts_with("config.yaml:3:"),
            "{}",
            source.location
        );
    }
}
