//! Setting Iceberg storage up: the warehouse's file IO (local folder or S3), the catalog opened for serving, and
//! the DuckDB extensions and S3 secret the engine reads the warehouse with.

use std::collections::HashMap;
use std::sync::Arc;

use super::catalog::LakeCatalog;
use super::local_fs;
use crate::config::{IcebergSettings, S3Settings, Warehouse};
use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::sql::quote_literal;

/// Settings for the warehouse's files, in iceberg-rust's FileIO property names.
pub(super) fn file_io_properties(warehouse: &Warehouse) -> HashMap<String, String> {
    let mut props = HashMap::new();
    if let Warehouse::S3 { s3, .. } = warehouse {
        use iceberg::io::*;
        if let Some(endpoint) = &s3.endpoint {
            props.insert(S3_ENDPOINT.to_string(), endpoint.clone());
        }
        props.insert(S3_REGION.to_string(), s3.region.clone());
        props.insert(S3_PATH_STYLE_ACCESS.to_string(), s3.path_style.to_string());
        let secrets = [
            (S3_ACCESS_KEY_ID, &s3.access_key_id),
            (S3_SECRET_ACCESS_KEY, &s3.secret_access_key),
            (S3_SESSION_TOKEN, &s3.session_token),
        ];
        for (key, value) in secrets {
            if let Some(value) = value {
                props.insert(key.to_string(), value.expose().to_string());
            }
        }
        if s3.access_key_id.is_some() {
            // Explicit keys: do not probe ~/.aws or the EC2 metadata service (a slow timeout off AWS).
            props.insert(S3_DISABLE_CONFIG_LOAD.to_string(), "true".into());
            props.insert(S3_DISABLE_EC2_METADATA.to_string(), "true".into());
        }
    }
    props
}

/// Reads and writes the warehouse's files: a local folder directly (see [`local_fs`]), anything else through
/// OpenDAL.
pub(super) fn storage_factory(warehouse: &Warehouse) -> Arc<dyn iceberg::io::StorageFactory> {
    match warehouse {
        Warehouse::Local(_) => Arc::new(local_fs::DurableLocalFsFactory),
        Warehouse::S3 { .. } => {
            Arc::new(iceberg_storage_opendal::OpenDalResolvingStorageFactory::new())
        }
    }
}

/// The settings with the folders a local setup needs created, and a local warehouse as an absolute path.
pub(super) fn prepared(settings: &IcebergSettings) -> Result<IcebergSettings> {
    if let Warehouse::Local(path) = &settings.warehouse {
        std::fs::create_dir_all(path).map_err(|e| LakeError::io(path, e))?;
    }
    if let crate::config::CatalogSettings::Sqlite(path) = &settings.catalog
        && let Some(dir) = path.parent()
    {
        std::fs::create_dir_all(dir).map_err(|e| LakeError::io(dir, e))?;
    }
    let mut settings = settings.clone();
    if let Warehouse::Local(path) = &settings.warehouse {
        settings.warehouse =
            Warehouse::Local(path.canonicalize().map_err(|e| LakeError::io(path, e))?);
    }
    Ok(settings)
}

/// Opens the catalog alone, for serving it: the same database, tables and storage settings lake writes with.
pub async fn open_catalog(settings: &IcebergSettings) -> Result<LakeCatalog> {
    let settings = prepared(settings)?;
    LakeCatalog::open(&settings, file_io_properties(&settings.warehouse)).await
}

/// Readies a DuckDB database to read the warehouse: for S3, loads `httpfs` (from the configured extension
/// directory when there is one, for offline machines) and registers the credentials as a temporary secret,
/// which DuckDB keeps in memory only.
pub fn prepare_engine(settings: &IcebergSettings, session: &Session) -> Result<()> {
    let Warehouse::S3 { url, s3 } = &settings.warehouse else {
        return Ok(());
    };
    load_extension(
        session,
        "httpfs",
        settings.duckdb_extension_directory.as_deref(),
    )?;
    session.execute(&s3_secret_sql(url, s3), || {
        "registering the S3 credentials with DuckDB".into()
    })
}

pub(super) fn load_extension(
    session: &Session,
    name: &str,
    directory: Option<&std::path::Path>,
) -> Result<()> {
    let file_name = format!("{name}.duckdb_extension");
    if let Some(dir) = directory {
        let found = walkdir::WalkDir::new(dir)
            .follow_links(true)
            .max_depth(8)
            .into_iter()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy() == file_name);
        let Some(entry) = found else {
            return Err(LakeError::Config {
                message: format!("no {file_name} under {}", dir.display()),
                help: Some(format!(
                    "install it (e.g. `pip install duckdb-extension-{name}=={}`) or point duckdb_extension_directory / LAKE_DUCKDB_EXTENSION_DIRECTORY at the folder holding it",
                    crate::engine::DUCKDB_VERSION
                )),
            });
        };
        return session.execute(
            &format!("LOAD {}", quote_literal(&entry.path().to_string_lossy())),
            || format!("loading the DuckDB extension {}", entry.path().display()),
        );
    }
    session
        .execute(&format!("LOAD {name}"), String::new)
        .or_else(|_| {
            session.execute(&format!("INSTALL {name}; LOAD {name}"), || {
                format!("installing the DuckDB extension `{name}` (set duckdb_extension_directory to load it offline)")
            })
        })
}

pub(super) fn s3_secret_sql(url: &str, s3: &S3Settings) -> String {
    let bucket = url
        .trim_start_matches("s3://")
        .split('/')
        .next()
        .unwrap_or_default();
    let mut options = vec![
        "TYPE s3".to_string(),
        format!("REGION {}", quote_literal(&s3.region)),
        format!("SCOPE {}", quote_literal(&format!("s3://{bucket}"))),
    ];
    if let Some(endpoint) = &s3.endpoint {
        let (ssl, host) = match endpoint.split_once("://") {
            Some((scheme, host)) => (scheme.eq_ignore_ascii_case("https"), host),
            None => (true, endpoint.as_str()),
        };
        options.push(format!(
            "ENDPOINT {}",
            quote_literal(host.trim_end_matches('/'))
        ));
        options.push(format!("USE_SSL {ssl}"));
    }
    options.push(format!(
        "URL_STYLE {}",
        quote_literal(if s3.path_style { "path" } else { "vhost" })
    ));
    let keys = [
        ("KEY_ID", &s3.access_key_id),
        ("SECRET", &s3.secret_access_key),
        ("SESSION_TOKEN", &s3.session_token),
    ];
    for (key, value) in keys {
        if let Some(value) = value {
            options.push(format!("{key} {}", quote_literal(value.expose())));
        }
    }
    format!(
        "CREATE OR REPLACE TEMPORARY SECRET lake_warehouse ({})",
        options.join(", ")
    )
}
