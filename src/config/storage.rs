//! The `storage:` key: where model versions live (Iceberg warehouse and catalog, or the DuckDB file).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{LakeError, Result};

/// `storage:` as written in config.yaml.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StorageConfig {
    /// `iceberg` (the default) or `duckdb`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A folder relative to the project (default `warehouse`), or `s3://bucket/prefix`.
    pub warehouse: Option<String>,
    #[serde(default)]
    pub s3: S3Config,
    pub catalog: Option<CatalogConfig>,
    /// Where DuckDB extension files (`httpfs.duckdb_extension`, …) are found offline.
    pub duckdb_extension_directory: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct S3Config {
    /// `http://host:port` of an S3-compatible server (MinIO); AWS when omitted.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`), which MinIO needs; default true when an endpoint is set.
    pub path_style: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CatalogConfig {
    /// `sqlite` (default, a file in `.lake/`) or `postgres`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// sqlite: the database file, relative to the project.
    pub path: Option<String>,
    /// postgres: a full `postgres://` URI; or the parts below.
    pub uri: Option<String>,
    #[serde(default, deserialize_with = "super::stringish")]
    pub host: Option<String>,
    pub port: Option<u16>,
    #[serde(default, deserialize_with = "super::stringish")]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "super::stringish")]
    pub password: Option<String>,
    pub database: Option<String>,
    /// postgres: the schema holding `iceberg_tables` (default `public`); created on first use.
    pub schema: Option<String>,
    /// The catalog name readers ask for (`catalog_name` in `iceberg_tables`); default `lake`. In PostgreSQL
    /// it must differ from the database name, which pg_lake reserves for its own read-only catalog.
    pub name: Option<String>,
}

/// Text that must never be printed: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for handing to a client library; never format it into messages.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where model versions live.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageChoice {
    /// Tables in the DuckDB database file (explicit opt-in: `storage: {type: duckdb}`).
    DuckDb,
    /// Iceberg tables in a warehouse, registered in an Iceberg SQL catalog.
    Iceberg(Box<IcebergSettings>),
}

impl StorageChoice {
    /// One line for `lake info`, without credentials.
    pub fn describe(&self) -> String {
        match self {
            StorageChoice::DuckDb => "DuckDB tables in the engine's database file".to_string(),
            StorageChoice::Iceberg(settings) => {
                let endpoint = match &settings.warehouse {
                    Warehouse::S3 {
                        s3:
                            S3Settings {
                                endpoint: Some(endpoint),
                                ..
                            },
                        ..
                    } => format!(" at {endpoint}"),
                    _ => String::new(),
                };
                format!(
                    "Iceberg tables in {}{endpoint}, {}",
                    settings.warehouse.location(),
                    settings.catalog.describe()
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IcebergSettings {
    pub warehouse: Warehouse,
    pub catalog: CatalogSettings,
    /// `catalog_name` of every row lake writes in the catalog.
    pub catalog_name: String,
    pub duckdb_extension_directory: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Warehouse {
    Local(PathBuf),
    /// `s3://bucket/prefix` (no trailing slash) on AWS or an S3-compatible server.
    S3 {
        url: String,
        s3: S3Settings,
    },
}

impl Warehouse {
    /// The warehouse as an Iceberg location (`file:///…` or `s3://…`).
    pub fn location(&self) -> String {
        match self {
            Warehouse::Local(path) => format!("file://{}", path.display()),
            Warehouse::S3 { url, .. } => url.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CatalogSettings {
    Sqlite(PathBuf),
    /// The URI pins `search_path` to `schema, pg_catalog`, so the unqualified `iceberg_tables` that
    /// iceberg-catalog-sql uses is lake's table even in a pg_lake database, whose read-only view of the same
    /// name sits in `pg_catalog` (searched first unless named later).
    Postgres {
        uri: Secret,
        schema: String,
    },
}

impl CatalogSettings {
    /// The sqlx connection URI (contains the password for PostgreSQL: never print it).
    pub fn uri(&self) -> Secret {
        match self {
            CatalogSettings::Sqlite(path) => {
                Secret::new(format!("sqlite://{}?mode=rwc", path.display()))
            }
            CatalogSettings::Postgres { uri, .. } => uri.clone(),
        }
    }

    /// How the catalog is named in messages, without credentials.
    pub fn describe(&self) -> String {
        match self {
            CatalogSettings::Sqlite(path) => format!("SQLite catalog {}", path.display()),
            CatalogSettings::Postgres { schema, .. } => {
                format!("PostgreSQL catalog (schema {schema})")
            }
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn storage_error(message: impl Into<String>, help: &str) -> LakeError {
    LakeError::Config {
        message: message.into(),
        help: Some(help.to_string()),
    }
}

/// Resolves `storage:` against the project root; Iceberg in `./warehouse` with `.lake/catalog.db` by default.
pub fn resolve(root: &Path, config: Option<&StorageConfig>) -> Result<StorageChoice> {
    let default = StorageConfig::default();
    let config = config.unwrap_or(&default);
    match config
        .kind
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("iceberg") => {}
        Some("duckdb") => return Ok(StorageChoice::DuckDb),
        Some(other) => {
            return Err(storage_error(
                format!("unknown storage type `{other}`"),
                "use `storage: {type: iceberg}` (the default) or `storage: {type: duckdb}`",
            ));
        }
    }
    let warehouse_text = config.warehouse.as_deref().unwrap_or("warehouse");
    let warehouse = if let Some(rest) = warehouse_text.strip_prefix("s3://") {
        let trimmed = rest.trim_end_matches('/');
        if trimmed.is_empty() || trimmed.starts_with('/') {
            return Err(storage_error(
                format!("the warehouse `{warehouse_text}` names no bucket"),
                "write the warehouse as `s3://bucket` or `s3://bucket/prefix`",
            ));
        }
        Warehouse::S3 {
            url: format!("s3://{trimmed}"),
            s3: resolve_s3(&config.s3),
        }
    } else if warehouse_text.contains("://") {
        return Err(storage_error(
            format!("unsupported warehouse location `{warehouse_text}`"),
            "use a local folder or `s3://bucket/prefix` (S3, MinIO and other S3-compatible stores)",
        ));
    } else {
        Warehouse::Local(root.join(warehouse_text))
    };
    let catalog_name = catalog_name(config.catalog.as_ref());
    let catalog = resolve_catalog(root, config.catalog.as_ref(), &catalog_name)?;
    let duckdb_extension_directory = config
        .duckdb_extension_directory
        .clone()
        .or_else(|| env("LAKE_DUCKDB_EXTENSION_DIRECTORY"))
        .map(|d| root.join(d));
    Ok(StorageChoice::Iceberg(Box::new(IcebergSettings {
        warehouse,
        catalog,
        catalog_name,
        duckdb_extension_directory,
    })))
}

/// Explicit settings win; otherwise the standard AWS environment variables apply.
fn resolve_s3(config: &S3Config) -> S3Settings {
    let endpoint = config
        .endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"));
    S3Settings {
        path_style: config.path_style.unwrap_or(endpoint.is_some()),
        endpoint,
        region: config
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string()),
        access_key_id: config
            .access_key_id
            .clone()
            .or_else(|| env("AWS_ACCESS_KEY_ID"))
            .map(Secret),
        secret_access_key: config
            .secret_access_key
            .clone()
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"))
            .map(Secret),
        session_token: config
            .session_token
            .clone()
            .or_else(|| env("AWS_SESSION_TOKEN"))
            .map(Secret),
    }
}

/// The catalog name lake writes under: `storage.catalog.name`, default `lake`.
fn catalog_name(config: Option<&CatalogConfig>) -> String {
    config
        .and_then(|c| c.name.clone())
        .unwrap_or_else(|| "lake".to_string())
}

/// Lower-case letters, digits and underscores, starting with a letter: safe unquoted in `search_path`.
fn is_plain_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The database named in a `postgres://…/DATABASE?…` URI.
fn uri_database(uri: &str) -> Option<String> {
    let after_scheme = uri.split_once("://")?.1;
    let path = after_scheme.split_once('/')?.1;
    let database = path.split(['?', '#']).next()?;
    (!database.is_empty()).then(|| database.to_string())
}

fn resolve_catalog(
    root: &Path,
    config: Option<&CatalogConfig>,
    catalog_name: &str,
) -> Result<CatalogSettings> {
    let default = CatalogConfig::default();
    let config = config.unwrap_or(&default);
    match config
        .kind
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("sqlite") => Ok(CatalogSettings::Sqlite(
            root.join(config.path.as_deref().unwrap_or(".lake/catalog.db")),
        )),
        Some("postgres") | Some("postgresql") => {
            let schema = config
                .schema
                .clone()
                .unwrap_or_else(|| "public".to_string());
            if !is_plain_identifier(&schema) {
                return Err(storage_error(
                    format!("storage.catalog.schema `{schema}` is not a plain identifier"),
                    "use lower-case letters, digits and underscores, starting with a letter",
                ));
            }
            let (uri, database) = match (&config.uri, &config.database) {
                (Some(uri), _) => (uri.clone(), uri_database(uri)),
                (None, Some(database)) => (
                    postgres_uri(
                        config.host.as_deref(),
                        config.port,
                        config.user.as_deref(),
                        config.password.as_deref(),
                        database,
                        None,
                    )
                    .0,
                    Some(database.clone()),
                ),
                (None, None) => {
                    return Err(storage_error(
                        "the PostgreSQL catalog needs a `database`",
                        "set storage.catalog.database (and host, port, user, password), or a full `uri`",
                    ));
                }
            };
            if database.as_deref() == Some(catalog_name) {
                return Err(storage_error(
                    format!(
                        "the catalog name `{catalog_name}` is the name of its PostgreSQL database"
                    ),
                    "pg_lake reserves the catalog named after the database for its own read-only tables; set storage.catalog.name to another name (e.g. `lake_catalog`)",
                ));
            }
            let separator = if uri.contains('?') { '&' } else { '?' };
            Ok(CatalogSettings::Postgres {
                uri: Secret(format!(
                    "{uri}{separator}options[search_path]={schema}%2Cpg_catalog"
                )),
                schema,
            })
        }
        Some(other) => Err(storage_error(
            format!("unknown catalog type `{other}`"),
            "use `catalog: {type: sqlite}` (the default) or `catalog: {type: postgres, ...}`",
        )),
    }
}

/// A `postgres://` URI from its parts (user and password percent-encoded); it holds the password, so it is
/// a `Secret`.
pub(crate) fn postgres_uri(
    host: Option<&str>,
    port: Option<u16>,
    user: Option<&str>,
    password: Option<&str>,
    database: &str,
    sslmode: Option<&str>,
) -> Secret {
    let credentials = match (user, password) {
        (Some(u), Some(p)) => format!("{}:{}@", encode(u), encode(p)),
        (Some(u), None) => format!("{}@", encode(u)),
        _ => String::new(),
    };
    let sslmode = sslmode.map(|m| format!("?sslmode={m}")).unwrap_or_default();
    Secret(format!(
        "postgres://{credentials}{}:{}/{}{sslmode}",
        host.unwrap_or("localhost"),
        port.unwrap_or(5432),
        encode(database)
    ))
}

/// Percent-encodes a URI component so passwords with `@`, `/` or `:` survive.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<StorageChoice> {
        let config: StorageConfig = serde_norway::from_str(yaml).expect("valid yaml");
        resolve(Path::new("/p"), Some(&config))
    }

    #[test]
    fn iceberg_in_a_local_warehouse_by_default() {
        let choice = resolve(Path::new("/p"), None).unwrap();
        let StorageChoice::Iceberg(settings) = choice else {
            panic!("expected Iceberg, got {choice:?}");
        };
        assert_eq!(
            settings.warehouse,
            Warehouse::Local(PathBuf::from("/p/warehouse"))
        );
        assert_eq!(
            settings.catalog,
            CatalogSettings::Sqlite(PathBuf::from("/p/.lake/catalog.db"))
        );
        assert_eq!(parse("type: duckdb").unwrap(), StorageChoice::DuckDb);
        assert!(parse("type: parquet").is_err());
    }

    #[test]
    fn s3_and_postgres_settings_hide_their_secrets() {
        let choice = parse(
            "warehouse: s3://lake/wh/\ns3:\n  endpoint: http://127.0.0.1:9000\n  access_key_id: AKID\n  secret_access_key: s3cr3t\ncatalog:\n  type: postgres\n  host: db\n  user: lake\n  password: p@ss/word\n  database: cat\n",
        )
        .unwrap();
        let StorageChoice::Iceberg(settings) = &choice else {
            panic!("expected Iceberg, got {choice:?}");
        };
        let Warehouse::S3 { url, s3 } = &settings.warehouse else {
            panic!("expected S3");
        };
        assert_eq!(url, "s3://lake/wh");
        assert!(s3.path_style, "an endpoint implies path-style URLs");
        assert_eq!(
            s3.secret_access_key.as_ref().map(Secret::expose),
            Some("s3cr3t")
        );
        assert_eq!(
            settings.catalog.uri().expose(),
            "postgres://lake:p%40ss%2Fword@db:5432/cat?options[search_path]=public%2Cpg_catalog"
        );
        let printed = format!("{choice:?}");
        assert!(
            !printed.contains("s3cr3t") && !printed.contains("p%40ss"),
            "{printed}"
        );
        assert_eq!(settings.catalog_name, "lake");
        assert!(parse("warehouse: s3://").is_err());
        assert!(parse("warehouse: gs://b").is_err());
        assert!(parse("catalog: {type: postgres}").is_err());
    }

    #[test]
    fn a_postgres_catalog_keeps_to_its_schema_and_off_the_database_name() {
        let choice = parse(
            "catalog:\n  type: postgres\n  uri: postgres://u@h:5/wh?sslmode=require\n  schema: iceberg_catalog\n  name: analytics\n",
        )
        .unwrap();
        let StorageChoice::Iceberg(settings) = &choice else {
            panic!("expected Iceberg, got {choice:?}");
        };
        assert_eq!(settings.catalog_name, "analytics");
        assert_eq!(
            settings.catalog.uri().expose(),
            "postgres://u@h:5/wh?sslmode=require&options[search_path]=iceberg_catalog%2Cpg_catalog"
        );
        let clash = parse("catalog: {type: postgres, database: lake}").unwrap_err();
        assert!(
            clash
                .to_string()
                .contains("`lake` is the name of its PostgreSQL database"),
            "{clash}"
        );
        let clash =
            parse("catalog: {type: postgres, uri: 'postgres://h/shop', name: shop}").unwrap_err();
        assert!(clash.to_string().contains("`shop`"), "{clash}");
        assert!(parse("catalog: {type: postgres, database: shop, schema: 'a;b'}").is_err());
    }
}
