//! Model kinds (FULL, VIEW, SEED, incremental, SCD2, …) and their typed parameters.

use serde::{Deserialize, Serialize};

use crate::error::{SourceError, SourceFile, did_you_mean};
use crate::project::block::{Value, ValueKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TimeColumn {
    pub column: String,
    pub format: Option<String>,
}

/// What a forward-only change does when the model's columns change under a table that keeps its rows
/// (SQLMesh's `on_destructive_change` / `on_additive_change`); `None` is the kind's default.
pub type ChangePolicy = Option<SchemaChangePolicy>;
pub use crate::config::SchemaChangePolicy;

/// The policies a model's writes follow when its columns no longer match its table's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaChangePolicies {
    pub destructive: SchemaChangePolicy,
    pub additive: SchemaChangePolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModelKind {
    View {
        materialized: bool,
    },
    Full,
    Seed {
        path: String,
        batch_size: Option<u64>,
        /// `csv_settings (delimiter = ';', …)` as written, key → raw value.
        csv_settings: Vec<(String, String)>,
    },
    IncrementalByTimeRange {
        time_column: TimeColumn,
        batch_size: Option<u64>,
        batch_concurrency: Option<u64>,
        lookback: Option<u64>,
        forward_only: bool,
        disable_restatement: bool,
        on_destructive_change: ChangePolicy,
        on_additive_change: ChangePolicy,
        auto_restatement_intervals: Option<u64>,
        partition_by_time_column: Option<bool>,
    },
    IncrementalByUniqueKey {
        unique_key: Vec<String>,
        when_matched: Option<String>,
        merge_filter: Option<String>,
        batch_size: Option<u64>,
        batch_concurrency: Option<u64>,
        lookback: Option<u64>,
        forward_only: bool,
        disable_restatement: bool,
        on_destructive_change: ChangePolicy,
        on_additive_change: ChangePolicy,
    },
    IncrementalByPartition {
        forward_only: bool,
        disable_restatement: bool,
        on_destructive_change: ChangePolicy,
        on_additive_change: ChangePolicy,
    },
    IncrementalUnmanaged {
        insert_overwrite: bool,
        forward_only: bool,
        disable_restatement: bool,
        on_destructive_change: ChangePolicy,
        on_additive_change: ChangePolicy,
    },
    ScdType2ByTime {
        unique_key: Vec<String>,
        updated_at_name: String,
        updated_at_as_valid_from: bool,
        valid_from_name: String,
        valid_to_name: String,
        invalidate_hard_deletes: bool,
        time_data_type: Option<String>,
        batch_size: Option<u64>,
        forward_only: bool,
        disable_restatement: bool,
        on_destructive_change: ChangePolicy,
        on_additive_change: ChangePolicy,
    },
    ScdType2ByColumn {
        unique_key: Vec<String>,
        /// `None` means `*`: every column.
        columns: Option<Vec<String>>,
        execution_time_as_valid_from: bool,
        updated_at_name: Option<String>,
        valid_from_name: String,
        valid_to_name: String,
        invalidate_hard_deletes: bool,
        time_data_type: Option<String>,
        batch_size: Option<u64>,
        forward_only: bool,
        disable_restatement: bool,
        on_destructive_change: ChangePolicy,
        on_additive_change: ChangePolicy,
    },
    Embedded,
    External,
    Managed,
    Custom {
        materialization: String,
        /// Raw `key = value` pairs of `materialization_properties`.
        materialization_properties: Vec<(String, String)>,
        batch_size: Option<u64>,
        forward_only: bool,
        disable_restatement: bool,
    },
}

impl ModelKind {
    /// Whether the engine of a model's gateway builds it from its query (SEED, VIEW, EMBEDDED and EXTERNAL
    /// models are lake's own).
    pub fn built_by_engine(&self) -> bool {
        matches!(
            self,
            ModelKind::Full
                | ModelKind::IncrementalByTimeRange { .. }
                | ModelKind::IncrementalByUniqueKey { .. }
                | ModelKind::IncrementalByPartition { .. }
                | ModelKind::IncrementalUnmanaged { .. }
                | ModelKind::ScdType2ByTime { .. }
                | ModelKind::ScdType2ByColumn { .. }
        )
    }

    /// Whether every change to the model keeps its table and applies to data built from then on
    /// (`forward_only true`, the default of SCD type 2, INCREMENTAL_BY_PARTITION and INCREMENTAL_UNMANAGED).
    pub fn forward_only(&self) -> bool {
        match self {
            ModelKind::IncrementalByTimeRange { forward_only, .. }
            | ModelKind::IncrementalByUniqueKey { forward_only, .. }
            | ModelKind::IncrementalByPartition { forward_only, .. }
            | ModelKind::IncrementalUnmanaged { forward_only, .. }
            | ModelKind::ScdType2ByTime { forward_only, .. }
            | ModelKind::ScdType2ByColumn { forward_only, .. }
            | ModelKind::Custom { forward_only, .. } => *forward_only,
            _ => false,
        }
    }

    fn policy_fields(&mut self) -> Option<(&mut ChangePolicy, &mut ChangePolicy)> {
        match self {
            ModelKind::IncrementalByTimeRange {
                on_destructive_change,
                on_additive_change,
                ..
            }
            | ModelKind::IncrementalByUniqueKey {
                on_destructive_change,
                on_additive_change,
                ..
            }
            | ModelKind::IncrementalByPartition {
                on_destructive_change,
                on_additive_change,
                ..
            }
            | ModelKind::IncrementalUnmanaged {
                on_destructive_change,
                on_additive_change,
                ..
            }
            | ModelKind::ScdType2ByTime {
                on_destructive_change,
                on_additive_change,
                ..
            }
            | ModelKind::ScdType2ByColumn {
                on_destructive_change,
                on_additive_change,
                ..
            } => Some((on_destructive_change, on_additive_change)),
            _ => None,
        }
    }

    /// The most batches of one build evaluated at once, for the kinds that have the setting.
    pub fn batch_concurrency(&self) -> Option<u64> {
        match self {
            ModelKind::IncrementalByTimeRange {
                batch_concurrency, ..
            }
            | ModelKind::IncrementalByUniqueKey {
                batch_concurrency, ..
            } => *batch_concurrency,
            _ => None,
        }
    }

    fn batch_concurrency_mut(&mut self) -> Option<&mut Option<u64>> {
        match self {
            ModelKind::IncrementalByTimeRange {
                batch_concurrency, ..
            }
            | ModelKind::IncrementalByUniqueKey {
                batch_concurrency, ..
            } => Some(batch_concurrency),
            _ => None,
        }
    }

    /// Fills `batch_concurrency` from `model_defaults` where the kind has the setting and does not set it.
    pub fn default_batch_concurrency(&mut self, default: Option<u64>) {
        if let Some(own) = self.batch_concurrency_mut() {
            *own = own.or(default);
        }
    }

    /// The kind as its data fingerprint sees it: `batch_concurrency` only says how fast batches are built,
    /// so changing it is a metadata change (as in SQLMesh), never a new version of the data.
    pub fn as_data(&self) -> std::borrow::Cow<'_, ModelKind> {
        if self.batch_concurrency().is_none() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut kind = self.clone();
        if let Some(own) = kind.batch_concurrency_mut() {
            *own = None;
        }
        std::borrow::Cow::Owned(kind)
    }

    /// Fills the policies the kind does not set from `model_defaults` (which, as in SQLMesh, apply to the
    /// kinds that keep rows only).
    pub fn default_policies(&mut self, destructive: ChangePolicy, additive: ChangePolicy) {
        if let Some((own_destructive, own_additive)) = self.policy_fields() {
            *own_destructive = own_destructive.or(destructive);
            *own_additive = own_additive.or(additive);
        }
    }

    /// What writes do when the query's columns differ from the table's. A model rebuilt from its query alone
    /// (FULL, VIEW, SEED) loses nothing by taking the new columns; one that keeps rows refuses to drop or
    /// narrow a column unless told, as SQLMesh does.
    pub fn schema_change_policies(&self) -> SchemaChangePolicies {
        let mut kind = self.clone();
        match kind.policy_fields() {
            Some((destructive, additive)) => SchemaChangePolicies {
                destructive: destructive.unwrap_or(SchemaChangePolicy::Error),
                additive: additive.unwrap_or(SchemaChangePolicy::Allow),
            },
            None => SchemaChangePolicies {
                destructive: SchemaChangePolicy::Allow,
                additive: SchemaChangePolicy::Allow,
            },
        }
    }

    /// Whether the model keeps rows between builds, so its query may read them (`@this_model`).
    pub fn is_incremental(&self) -> bool {
        matches!(
            self,
            ModelKind::IncrementalByTimeRange { .. }
                | ModelKind::IncrementalByUniqueKey { .. }
                | ModelKind::IncrementalByPartition { .. }
                | ModelKind::IncrementalUnmanaged { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            ModelKind::View { .. } => "VIEW",
            ModelKind::Full => "FULL",
            ModelKind::Seed { .. } => "SEED",
            ModelKind::IncrementalByTimeRange { .. } => "INCREMENTAL_BY_TIME_RANGE",
            ModelKind::IncrementalByUniqueKey { .. } => "INCREMENTAL_BY_UNIQUE_KEY",
            ModelKind::IncrementalByPartition { .. } => "INCREMENTAL_BY_PARTITION",
            ModelKind::IncrementalUnmanaged { .. } => "INCREMENTAL_UNMANAGED",
            ModelKind::ScdType2ByTime { .. } => "SCD_TYPE_2_BY_TIME",
            ModelKind::ScdType2ByColumn { .. } => "SCD_TYPE_2_BY_COLUMN",
            ModelKind::Embedded => "EMBEDDED",
            ModelKind::External => "EXTERNAL",
            ModelKind::Managed => "MANAGED",
            ModelKind::Custom { .. } => "CUSTOM",
        }
    }

    /// Intervals written per batch (`None`: all missing intervals in one write).
    pub fn batch_size(&self) -> Option<u64> {
        match self {
            ModelKind::IncrementalByTimeRange { batch_size, .. }
            | ModelKind::IncrementalByUniqueKey { batch_size, .. }
            | ModelKind::ScdType2ByTime { batch_size, .. }
            | ModelKind::ScdType2ByColumn { batch_size, .. }
            | ModelKind::Custom { batch_size, .. } => *batch_size,
            _ => None,
        }
    }

    /// Intervals before the missing ones to rebuild too, for late-arriving data (`lookback`).
    pub fn lookback(&self) -> u64 {
        match self {
            ModelKind::IncrementalByTimeRange { lookback, .. }
            | ModelKind::IncrementalByUniqueKey { lookback, .. } => lookback.unwrap_or(0),
            _ => 0,
        }
    }

    /// Whether `--restate-model` may rebuild this model's data (SCD kinds keep history by default).
    pub fn restatement_disabled(&self) -> bool {
        match self {
            ModelKind::IncrementalByTimeRange {
                disable_restatement,
                ..
            }
            | ModelKind::IncrementalByUniqueKey {
                disable_restatement,
                ..
            }
            | ModelKind::IncrementalByPartition {
                disable_restatement,
                ..
            }
            | ModelKind::IncrementalUnmanaged {
                disable_restatement,
                ..
            }
            | ModelKind::ScdType2ByTime {
                disable_restatement,
                ..
            }
            | ModelKind::ScdType2ByColumn {
                disable_restatement,
                ..
            }
            | ModelKind::Custom {
                disable_restatement,
                ..
            } => *disable_restatement,
            _ => false,
        }
    }

    /// Whether `lake` can build this kind today.
    pub fn is_supported(&self) -> bool {
        matches!(
            self,
            ModelKind::View { .. } | ModelKind::Full | ModelKind::Seed { .. }
        )
    }

    /// Whether the model has a query (SEED and EXTERNAL models do not).
    pub fn has_query(&self) -> bool {
        !matches!(self, ModelKind::Seed { .. } | ModelKind::External)
    }
}

const KIND_NAMES: &[&str] = &[
    "VIEW",
    "FULL",
    "SEED",
    "INCREMENTAL_BY_TIME_RANGE",
    "INCREMENTAL_BY_UNIQUE_KEY",
    "INCREMENTAL_BY_PARTITION",
    "INCREMENTAL_UNMANAGED",
    "SCD_TYPE_2",
    "SCD_TYPE_2_BY_TIME",
    "SCD_TYPE_2_BY_COLUMN",
    "EMBEDDED",
    "EXTERNAL",
    "MANAGED",
    "CUSTOM",
];

/// A parameter written `name (a, b)` reads as a call; it is the pair `name` → `(a, b)`
/// (`time_column (ds, '%Y-%m-%d')`).
fn call_as_pair(arg: &Value) -> Value {
    let ValueKind::Call { name, args } = &arg.kind else {
        return arg.clone();
    };
    let open = arg.raw.find('(').unwrap_or(0);
    let list = Value {
        kind: ValueKind::List {
            items: args.clone(),
            bracket: false,
        },
        raw: arg.raw[open..].to_string(),
        offset: arg.offset + open,
        len: arg.len - open,
    };
    let key = Value {
        kind: ValueKind::Ident(vec![crate::sql::IdentPart {
            value: name.clone(),
            quoted: false,
        }]),
        raw: name.clone(),
        offset: arg.offset,
        len: name.len(),
    };
    Value {
        kind: ValueKind::Pair {
            key: Box::new(key),
            value: Box::new(list),
        },
        raw: arg.raw.clone(),
        offset: arg.offset,
        len: arg.len,
    }
}

/// Reads the `kind` property: `FULL`, or `NAME (param value, …)`.
pub fn parse_kind(file: &SourceFile, value: &Value) -> Result<ModelKind, SourceError> {
    let (name, args): (String, &[Value]) = match &value.kind {
        ValueKind::Ident(_) => (value.as_text().unwrap_or_default(), &[]),
        ValueKind::Call { name, args } => (name.clone(), args),
        _ => {
            return Err(file
                .error(
                    value.offset,
                    value.len,
                    "expected a model kind such as `FULL` or `SEED (path '…')`",
                )
                .with_label("not a model kind"));
        }
    };
    let upper = name.to_ascii_uppercase();
    let args: Vec<Value> = args.iter().map(call_as_pair).collect();
    let mut params = Params::new(file, &upper, &args)?;
    let kind = match upper.as_str() {
        "VIEW" => ModelKind::View {
            materialized: params.bool("materialized")?.unwrap_or(false),
        },
        "FULL" => ModelKind::Full,
        "SEED" => ModelKind::Seed {
            path: params.required_text("path", value)?,
            batch_size: params.uint("batch_size")?,
            csv_settings: params.pairs("csv_settings")?,
        },
        "INCREMENTAL_BY_TIME_RANGE" => ModelKind::IncrementalByTimeRange {
            time_column: params.time_column(value)?,
            batch_size: params.uint("batch_size")?,
            batch_concurrency: params.positive_uint("batch_concurrency")?,
            lookback: params.uint("lookback")?,
            forward_only: params.bool("forward_only")?.unwrap_or(false),
            disable_restatement: params.bool("disable_restatement")?.unwrap_or(false),
            on_destructive_change: params.policy("on_destructive_change")?,
            on_additive_change: params.policy("on_additive_change")?,
            auto_restatement_intervals: params.uint("auto_restatement_intervals")?,
            partition_by_time_column: params.bool("partition_by_time_column")?,
        },
        "INCREMENTAL_BY_UNIQUE_KEY" => ModelKind::IncrementalByUniqueKey {
            unique_key: params.required_list("unique_key", value)?,
            when_matched: params.merge_clauses("when_matched")?,
            merge_filter: params.raw("merge_filter"),
            batch_size: params.uint("batch_size")?,
            batch_concurrency: params.positive_uint("batch_concurrency")?,
            lookback: params.uint("lookback")?,
            forward_only: params.bool("forward_only")?.unwrap_or(false),
            disable_restatement: params.bool("disable_restatement")?.unwrap_or(false),
            on_destructive_change: params.policy("on_destructive_change")?,
            on_additive_change: params.policy("on_additive_change")?,
        },
        "INCREMENTAL_BY_PARTITION" => ModelKind::IncrementalByPartition {
            forward_only: params.bool("forward_only")?.unwrap_or(true),
            disable_restatement: params.bool("disable_restatement")?.unwrap_or(false),
            on_destructive_change: params.policy("on_destructive_change")?,
            on_additive_change: params.policy("on_additive_change")?,
        },
        "INCREMENTAL_UNMANAGED" => ModelKind::IncrementalUnmanaged {
            insert_overwrite: params.bool("insert_overwrite")?.unwrap_or(false),
            forward_only: params.bool("forward_only")?.unwrap_or(true),
            disable_restatement: params.bool("disable_restatement")?.unwrap_or(true),
            on_destructive_change: params.policy("on_destructive_change")?,
            on_additive_change: params.policy("on_additive_change")?,
        },
        "SCD_TYPE_2" | "SCD_TYPE_2_BY_TIME" => ModelKind::ScdType2ByTime {
            unique_key: params.required_list("unique_key", value)?,
            updated_at_name: params
                .text("updated_at_name")?
                .unwrap_or_else(|| "updated_at".into()),
            updated_at_as_valid_from: params.bool("updated_at_as_valid_from")?.unwrap_or(false),
            valid_from_name: params
                .text("valid_from_name")?
                .unwrap_or_else(|| "valid_from".into()),
            valid_to_name: params
                .text("valid_to_name")?
                .unwrap_or_else(|| "valid_to".into()),
            invalidate_hard_deletes: params.bool("invalidate_hard_deletes")?.unwrap_or(false),
            time_data_type: params.raw("time_data_type"),
            batch_size: params.uint("batch_size")?,
            forward_only: params.bool("forward_only")?.unwrap_or(true),
            disable_restatement: params.bool("disable_restatement")?.unwrap_or(true),
            on_destructive_change: params.policy("on_destructive_change")?,
            on_additive_change: params.policy("on_additive_change")?,
        },
        "SCD_TYPE_2_BY_COLUMN" => ModelKind::ScdType2ByColumn {
            unique_key: params.required_list("unique_key", value)?,
            columns: params.columns_or_star("columns", value)?,
            execution_time_as_valid_from: params
                .bool("execution_time_as_valid_from")?
                .unwrap_or(false),
            updated_at_name: params.text("updated_at_name")?,
            valid_from_name: params
                .text("valid_from_name")?
                .unwrap_or_else(|| "valid_from".into()),
            valid_to_name: params
                .text("valid_to_name")?
                .unwrap_or_else(|| "valid_to".into()),
            invalidate_hard_deletes: params.bool("invalidate_hard_deletes")?.unwrap_or(false),
            time_data_type: params.raw("time_data_type"),
            batch_size: params.uint("batch_size")?,
            forward_only: params.bool("forward_only")?.unwrap_or(true),
            disable_restatement: params.bool("disable_restatement")?.unwrap_or(true),
            on_destructive_change: params.policy("on_destructive_change")?,
            on_additive_change: params.policy("on_additive_change")?,
        },
        "EMBEDDED" => ModelKind::Embedded,
        "EXTERNAL" => ModelKind::External,
        "MANAGED" => ModelKind::Managed,
        "CUSTOM" => ModelKind::Custom {
            materialization: params.required_text("materialization", value)?,
            materialization_properties: params.pairs("materialization_properties")?,
            batch_size: params.uint("batch_size")?,
            forward_only: params.bool("forward_only")?.unwrap_or(false),
            disable_restatement: params.bool("disable_restatement")?.unwrap_or(false),
        },
        _ => {
            return Err(file
                .error(
                    value.offset,
                    name.len().max(1),
                    format!("unknown model kind `{name}`"),
                )
                .with_label("unknown kind")
                .with_optional_help(
                    did_you_mean(&upper, KIND_NAMES.iter().copied())
                        .or_else(|| Some(format!("valid kinds: {}", KIND_NAMES.join(", ")))),
                ));
        }
    };
    params.finish()?;
    Ok(kind)
}

/// The `key value` parameters of a kind, consumed one by one so leftovers can be reported.
struct Params<'a> {
    file: &'a SourceFile,
    kind: &'a str,
    entries: Vec<(String, &'a Value, &'a Value)>,
}

impl<'a> Params<'a> {
    fn new(file: &'a SourceFile, kind: &'a str, args: &'a [Value]) -> Result<Self, SourceError> {
        let mut entries = Vec::new();
        for arg in args {
            let (key, value) = match &arg.kind {
                ValueKind::Pair { key, value } => {
                    (key.as_text().unwrap_or_default(), value.as_ref())
                }
                ValueKind::Assign { key, value } => (key.clone(), value.as_ref()),
                _ => {
                    return Err(file
                        .error(
                            arg.offset,
                            arg.len,
                            format!("expected `parameter value` inside {kind}(…)"),
                        )
                        .with_label("expected a kind parameter"));
                }
            };
            entries.push((key.to_ascii_lowercase(), arg, value));
        }
        Ok(Params {
            file,
            kind,
            entries,
        })
    }

    fn take(&mut self, key: &str) -> Option<&'a Value> {
        let i = self.entries.iter().position(|(k, _, _)| k == key)?;
        Some(self.entries.remove(i).2)
    }

    fn raw(&mut self, key: &str) -> Option<String> {
        self.take(key).map(|v| v.raw.clone())
    }

    /// `when_matched`, as written, once it parses as MERGE clauses.
    fn merge_clauses(&mut self, key: &str) -> Result<Option<String>, SourceError> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        match crate::sql::merge_clauses(&v.raw) {
            Ok(_) => Ok(Some(v.raw.clone())),
            Err(e) => Err(self
                .file
                .error(v.offset + e.offset.min(v.len), 1, format!("`{key}`: {}", e.message))
                .with_label("not a MERGE clause")
                .with_help(format!(
                    "for example `{key} (WHEN MATCHED THEN UPDATE SET target.total = target.total + source.total)`"
                ))),
        }
    }

    fn policy(&mut self, key: &str) -> Result<ChangePolicy, SourceError> {
        let Some(v) = self.take(key) else {
            return Ok(None);
        };
        v.as_text()
            .and_then(|text| SchemaChangePolicy::parse(&text))
            .map(Some)
            .ok_or_else(|| {
                self.file
                    .error(
                        v.offset,
                        v.len,
                        format!("`{key}` expects error, warn, allow or ignore"),
                    )
                    .with_label("not a policy")
                    .with_help(format!("for example `{key} warn`"))
            })
    }

    fn text(&mut self, key: &str) -> Result<Option<String>, SourceError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.as_text().map(Some).ok_or_else(|| {
                self.file
                    .error(
                        v.offset,
                        v.len,
                        format!("`{key}` expects a name or a string"),
                    )
                    .with_label("expected a single value")
            }),
        }
    }

    fn required_text(&mut self, key: &str, kind_value: &Value) -> Result<String, SourceError> {
        self.text(key)?.ok_or_else(|| self.missing(key, kind_value))
    }

    fn missing(&self, key: &str, kind_value: &Value) -> SourceError {
        self.file
            .error(
                kind_value.offset,
                kind_value.len,
                format!("kind {} requires `{key}`", self.kind),
            )
            .with_label(format!("missing `{key}`"))
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, SourceError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match (&v.kind, s_lower(v).as_str()) {
                (ValueKind::Bool(b), _) => Ok(Some(*b)),
                (ValueKind::Str(_) | ValueKind::Ident(_), "true") => Ok(Some(true)),
                (ValueKind::Str(_) | ValueKind::Ident(_), "false") => Ok(Some(false)),
                _ => Err(self.expected_bool(key, v)),
            },
        }
    }

    fn expected_bool(&self, key: &str, v: &Value) -> SourceError {
        self.file
            .error(v.offset, v.len, format!("`{key}` expects true or false"))
            .with_label("not a boolean")
    }

    fn uint(&mut self, key: &str) -> Result<Option<u64>, SourceError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match &v.kind {
                ValueKind::Number(n) => n.parse().map(Some).map_err(|_| {
                    self.file
                        .error(v.offset, v.len, format!("`{key}` expects a whole number"))
                        .with_label("not a whole number")
                }),
                _ => Err(self
                    .file
                    .error(v.offset, v.len, format!("`{key}` expects a whole number"))
                    .with_label("not a number")),
            },
        }
    }

    /// A whole number of at least 1 (SQLMesh's positive integers).
    fn positive_uint(&mut self, key: &str) -> Result<Option<u64>, SourceError> {
        let offset = self
            .entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| (v.offset, v.len));
        match (self.uint(key)?, offset) {
            (Some(0), Some((offset, len))) => Err(self
                .file
                .error(
                    offset,
                    len,
                    format!("`{key}` expects a whole number of at least 1"),
                )
                .with_label("zero")
                .with_help(format!(
                    "write `{key} 1` for one at a time, or leave it out for no limit"
                ))),
            (found, _) => Ok(found),
        }
    }

    fn list(&mut self, key: &str) -> Option<Vec<String>> {
        self.take(key).map(|v| {
            v.items()
                .iter()
                .map(|i| i.as_text().unwrap_or_else(|| i.raw.clone()))
                .collect()
        })
    }

    fn required_list(&mut self, key: &str, kind_value: &Value) -> Result<Vec<String>, SourceError> {
        self.list(key).ok_or_else(|| self.missing(key, kind_value))
    }

    fn columns_or_star(
        &mut self,
        key: &str,
        kind_value: &Value,
    ) -> Result<Option<Vec<String>>, SourceError> {
        match self.take(key) {
            None => Err(self.missing(key, kind_value)),
            Some(v) if v.raw.trim() == "*" => Ok(None),
            Some(v) => Ok(Some(
                v.items()
                    .iter()
                    .map(|i| i.as_text().unwrap_or_else(|| i.raw.clone()))
                    .collect(),
            )),
        }
    }

    fn pairs(&mut self, key: &str) -> Result<Vec<(String, String)>, SourceError> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(v) => super::key_value_pairs(self.file, key, v),
        }
    }

    fn time_column(&mut self, kind_value: &Value) -> Result<TimeColumn, SourceError> {
        let v = self
            .take("time_column")
            .ok_or_else(|| self.missing("time_column", kind_value))?;
        let items = v.items();
        let column = items.first().and_then(|i| i.as_text()).unwrap_or_default();
        let format = items.get(1).and_then(|i| i.as_text());
        if let (Some(written), Some(format)) = (items.get(1), &format)
            && !crate::intervals::is_time_format(format)
        {
            // Checked here: formatting a time with an invalid format would fail in the middle of a build.
            return Err(self
                .file
                .error(
                    written.offset,
                    written.len,
                    format!("`{format}` is not a time format"),
                )
                .with_label("unknown or incomplete `%` code")
                .with_help("use strftime codes, as SQLMesh does: `time_column (ds, '%Y%m%d')`"));
        }
        Ok(TimeColumn { column, format })
    }

    /// Errors on the first parameter nobody asked for.
    fn finish(self) -> Result<(), SourceError> {
        if let Some((key, arg, _)) = self.entries.first() {
            return Err(self
                .file
                .error(
                    arg.offset,
                    key.len(),
                    format!("unknown parameter `{key}` for kind {}", self.kind),
                )
                .with_label("unknown parameter")
                .with_optional_help(did_you_mean(key, KNOWN_PARAMS.iter().copied())));
        }
        Ok(())
    }
}

fn s_lower(v: &Value) -> String {
    v.as_text().unwrap_or_default().to_ascii_lowercase()
}

const KNOWN_PARAMS: &[&str] = &[
    "materialized",
    "path",
    "batch_size",
    "csv_settings",
    "time_column",
    "batch_concurrency",
    "lookback",
    "forward_only",
    "disable_restatement",
    "on_destructive_change",
    "on_additive_change",
    "auto_restatement_intervals",
    "partition_by_time_column",
    "unique_key",
    "when_matched",
    "merge_filter",
    "insert_overwrite",
    "updated_at_name",
    "updated_at_as_valid_from",
    "valid_from_name",
    "valid_to_name",
    "invalidate_hard_deletes",
    "time_data_type",
    "columns",
    "execution_time_as_valid_from",
    "materialization",
    "materialization_properties",
];
