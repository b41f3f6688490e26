//! How a physical table is partitioned: a model's `partitioned_by` terms, typed, as Iceberg partition fields.

/// What a partition field keeps of its source column (the Iceberg transforms lake writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionTransform {
    Identity,
    Year,
    Month,
    Day,
    Hour,
    /// Hash of the value into this many buckets.
    Bucket(u32),
    /// Values cut to this width (strings to this many characters).
    Truncate(u32),
}

impl PartitionTransform {
    /// Whether rows sorted by the source column are grouped by partition too, so a writer can finish each
    /// partition's file before the next starts. Buckets scatter.
    pub fn keeps_order(self) -> bool {
        !matches!(self, PartitionTransform::Bucket(_))
    }

    /// The transform named by a `partitioned_by` call (`day(ts)`, `bucket(16, id)`), Spark's and Trino's
    /// plural spellings included; `None` for any other function.
    pub fn from_call(name: &str, width: Option<u32>) -> Option<PartitionTransform> {
        Some(match (name.to_ascii_lowercase().as_str(), width) {
            ("year" | "years", None) => PartitionTransform::Year,
            ("month" | "months", None) => PartitionTransform::Month,
            ("day" | "days", None) => PartitionTransform::Day,
            ("hour" | "hours", None) => PartitionTransform::Hour,
            ("bucket", Some(n)) => PartitionTransform::Bucket(n),
            ("truncate", Some(w)) => PartitionTransform::Truncate(w),
            _ => return None,
        })
    }

    /// The suffix Iceberg readers conventionally give the partition field's name.
    pub fn field_suffix(self) -> String {
        match self {
            PartitionTransform::Identity => String::new(),
            PartitionTransform::Year => "_year".into(),
            PartitionTransform::Month => "_month".into(),
            PartitionTransform::Day => "_day".into(),
            PartitionTransform::Hour => "_hour".into(),
            PartitionTransform::Bucket(n) => format!("_bucket_{n}"),
            PartitionTransform::Truncate(w) => format!("_trunc_{w}"),
        }
    }
}

/// One `partitioned_by` term: a column of the model's query and what the partition keeps of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionTerm {
    /// As written; unquoted names match the query's columns case-insensitively, as DuckDB does.
    pub column: String,
    pub quoted: bool,
    pub transform: PartitionTransform,
}

impl PartitionTerm {
    /// Whether `name` (a column of the written rows) is this term's source column.
    pub fn names(&self, name: &str) -> bool {
        if self.quoted {
            name == self.column
        } else {
            name.eq_ignore_ascii_case(&self.column)
        }
    }
}
