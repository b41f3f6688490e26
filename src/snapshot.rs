//! What a model version is: its fingerprint (data vs metadata), snapshot id and version, and the physical
//! and virtual table names it is stored and exposed under. Computing fingerprints is `plan::fingerprint`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::config::SuffixTarget;
use crate::error::LakeError;
use crate::sql::{ModelName, quote_ident};

/// The hashes that identify a model version, split so metadata-only changes can be told apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// What the model itself computes: query, kind, columns, statements, seed contents, storage.
    pub data_hash: String,
    /// What changes no data: owner, description, tags, audits, cron, grains, …
    pub metadata_hash: String,
    /// Versions of the parents: a parent rebuilt into a new table changes this.
    pub parent_data_hash: String,
    /// Snapshot ids of the parents.
    pub parent_metadata_hash: String,
    /// The hash of each data-affecting part (query, kind, columns, …), to tell which one changed.
    #[serde(default)]
    pub data_parts: BTreeMap<String, String>,
}

/// One model version as planned from the local project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: ModelName,
    /// Unique per model version (data and metadata).
    pub id: String,
    /// Identifies the physical table; equal versions share one table. Computed from content here (a breaking
    /// change's version); a plan keeps the previous version instead for non-breaking, forward-only and
    /// metadata-only changes, and state remembers each snapshot's version.
    pub version: String,
    pub fingerprint: Fingerprint,
    pub kind_name: String,
    pub parents: Vec<ModelName>,
    /// Where the version's physical table lives when `physical_schema_mapping` chose the schema; `None` is
    /// `lake__<schema>`. Decided when the version is first planned and kept with it, so changing the
    /// mapping later moves no table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_schema: Option<String>,
}

/// Marks the version of a table a dev plan built to preview a change prod applies forward-only (or built
/// from such a preview's rows): prod never takes such a table over.
const DEV_PREVIEW: &str = "_preview";

/// The version a dev preview of the content version `version` is built under.
pub fn dev_preview_version(version: &str) -> String {
    format!("{version}{DEV_PREVIEW}")
}

/// Whether `version` is a dev preview's (see [`dev_preview_version`]).
pub fn is_dev_preview(version: &str) -> bool {
    version.ends_with(DEV_PREVIEW)
}

/// The version prod applies a dev preview's change to (`version` itself when it is no preview).
pub fn content_version(version: &str) -> &str {
    version.strip_suffix(DEV_PREVIEW).unwrap_or(version)
}

/// The version of prod's table of a `virtual_environment_mode: dev_only` model: one table under the model's
/// own name, which every version deployed to prod writes (as SQLMesh's unversioned production tables).
pub const IN_PLACE: &str = "in_place";

/// Whether `version` is prod's in-place table of a dev_only model.
pub fn is_in_place(version: &str) -> bool {
    version == IN_PLACE
}

/// Where a model version's data lives: `lake__<schema>.<schema>__<name>__<version>`, or the schema
/// `physical_schema_mapping` chose; prod's in-place table of a dev_only model is `<schema>.<name>` itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PhysicalTable {
    pub schema: String,
    pub table: String,
}

impl PhysicalTable {
    /// A listing row `(schema, table, text)` (a DuckDB catalog query's) as the table and its text; `None` when
    /// a column is missing or NULL.
    pub fn with_text(row: Vec<Option<String>>) -> Option<(PhysicalTable, String)> {
        let mut row = row.into_iter();
        let table = PhysicalTable {
            schema: row.next()??,
            table: row.next()??,
        };
        Some((table, row.next()??))
    }

    /// The table of `version` of `name`, in `physical_schema` (`None`: `lake__<schema>`).
    pub fn for_version(name: &ModelName, version: &str, physical_schema: Option<&str>) -> Self {
        if is_in_place(version) {
            return PhysicalTable {
                schema: name.schema.clone(),
                table: name.name.clone(),
            };
        }
        PhysicalTable {
            schema: physical_schema
                .map_or_else(|| format!("lake__{}", name.schema), str::to_string),
            table: format!("{}__{}__{}", name.schema, name.name, version),
        }
    }

    /// The table a snapshot's version lives in.
    pub fn of(snapshot: &Snapshot) -> Self {
        Self::for_version(
            &snapshot.name,
            &snapshot.version,
            snapshot.physical_schema.as_deref(),
        )
    }

    /// Quoted `schema.table` for SQL.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

impl std::fmt::Display for PhysicalTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// An environment's name, validated and normalised (lower-cased) once: it becomes part of schema names
/// (`<schema>__<environment>`), so it holds letters, digits and underscores and starts with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvironmentName(String);

impl EnvironmentName {
    pub fn parse(text: &str) -> Result<Self, LakeError> {
        let name = text.to_lowercase();
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if valid {
            Ok(EnvironmentName(name))
        } else {
            Err(LakeError::Usage(
                format!("invalid environment name `{text}`"),
                Some("environment names use letters, digits and underscores, and start with a letter (e.g. dev_alice)".into()),
            ))
        }
    }
}

impl std::ops::Deref for EnvironmentName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for EnvironmentName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for EnvironmentName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Display for EnvironmentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name an environment exposes a model under: `<schema>.<name>` in prod; elsewhere `<schema>__<env>.<name>`
/// or `<schema>.<name>__<env>`, by the environment's [`SuffixTarget`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VirtualName {
    pub schema: String,
    pub name: String,
}

impl VirtualName {
    pub fn new(model: &ModelName, environment: &str, target: SuffixTarget) -> Self {
        let (schema, name) = match target {
            _ if environment == crate::PROD => (model.schema.clone(), model.name.clone()),
            SuffixTarget::Schema => (
                format!("{}__{}", model.schema, environment),
                model.name.clone(),
            ),
            SuffixTarget::Table => (
                model.schema.clone(),
                format!("{}__{}", model.name, environment),
            ),
        };
        VirtualName { schema, name }
    }

    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Whether this name is `table` itself (prod's in-place table of a dev_only model): nothing to point.
    pub fn is(&self, table: &PhysicalTable) -> bool {
        self.schema == table.schema && self.name == table.table
    }
}

impl std::fmt::Display for VirtualName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}
