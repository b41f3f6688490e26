//! The physical and virtual layers behind one trait: tables per model version, views per environment.

pub mod duckdb_file;
pub mod iceberg;
pub mod partition;

use crate::engine::Session;
use crate::error::Result;
use crate::snapshot::{PhysicalTable, VirtualName};

/// Rows written by one operation, when the backend knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub rows: Option<u64>,
    /// The commit the write made, when the storage has commits.
    pub write: Option<WriteId>,
    /// Audits run on the written data that found nothing wrong.
    pub audits_passed: usize,
    /// After a range replacement: a SQL relation holding exactly the table's rows in the range, when the
    /// backend can name one cheaper to read than the table filtered by the range (the files just written).
    pub range_rows: Option<String>,
}

/// The commit a write made, named by the storage that made it (Iceberg: `iceberg:<snapshot id>`), as state
/// records it beside the interval the write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteId(String);

impl WriteId {
    pub fn new(id: impl Into<String>) -> WriteId {
        WriteId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl WriteStats {
    /// How state records the write that produced an interval.
    pub fn write_id(&self) -> Option<String> {
        self.write.as_ref().map(|w| w.as_str().to_string())
    }

    /// Adds one batch's write to a model's total: rows summed (unknown if any is), the latest snapshot kept.
    pub fn absorb(&mut self, batch: WriteStats) {
        self.rows = self.rows.zip(batch.rows).map(|(a, b)| a + b);
        self.write = batch.write.or(self.write.take());
        self.audits_passed += batch.audits_passed;
    }
}

/// The rows a range replacement selects.
#[derive(Debug, Clone, Copy)]
pub struct TimeRange<'a> {
    /// SQL over the table's columns that holds for the range's rows.
    pub predicate: &'a str,
    /// The time column the predicate bounds.
    pub column: &'a str,
    /// `[start, end)` of the column's values, when they are dates or timestamps (not formatted strings): a
    /// backend that records column bounds per file then reads only the files that may hold such rows.
    pub bounds: Option<(chrono::NaiveDateTime, chrono::NaiveDateTime)>,
}

/// How a query's columns differ from those of the table it writes (types as the storage names them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnChange {
    Added {
        name: String,
        data_type: String,
    },
    Dropped {
        name: String,
        data_type: String,
    },
    /// `widening`: every existing value converts without loss (INT to BIGINT, FLOAT to DOUBLE, a wider
    /// DECIMAL), so the column keeps its values; otherwise the old values cannot be kept.
    Retyped {
        name: String,
        from: String,
        to: String,
        widening: bool,
    },
}

impl ColumnChange {
    /// Whether applying the change loses values the table holds (SQLMesh's destructive change).
    pub fn is_destructive(&self) -> bool {
        matches!(
            self,
            ColumnChange::Dropped { .. }
                | ColumnChange::Retyped {
                    widening: false,
                    ..
                }
        )
    }

    pub fn column(&self) -> &str {
        match self {
            ColumnChange::Added { name, .. }
            | ColumnChange::Dropped { name, .. }
            | ColumnChange::Retyped { name, .. } => name,
        }
    }
}

impl std::fmt::Display for ColumnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnChange::Added { name, data_type } => {
                write!(f, "adds column `{name}` {data_type}")
            }
            ColumnChange::Dropped { name, data_type } => {
                write!(f, "drops column `{name}` {data_type}")
            }
            ColumnChange::Retyped { name, from, to, .. } => {
                write!(f, "changes column `{name}` from {from} to {to}")
            }
        }
    }
}

/// Compares a table's columns with a query's, by name; `widening` says whether a type change keeps values.
pub fn column_changes(
    table: &[(String, String)],
    query: &[(String, String)],
    widening: impl Fn(&str, &str) -> bool,
) -> Vec<ColumnChange> {
    let mut changes = Vec::new();
    for (name, data_type) in table {
        match query.iter().find(|(n, _)| n == name) {
            None => changes.push(ColumnChange::Dropped {
                name: name.clone(),
                data_type: data_type.clone(),
            }),
            Some((_, to)) if to != data_type => changes.push(ColumnChange::Retyped {
                name: name.clone(),
                from: data_type.clone(),
                to: to.clone(),
                widening: widening(data_type, to),
            }),
            Some(_) => {}
        }
    }
    for (name, data_type) in query {
        if !table.iter().any(|(n, _)| n == name) {
            changes.push(ColumnChange::Added {
                name: name.clone(),
                data_type: data_type.clone(),
            });
        }
    }
    changes
}

/// How new rows (`source`) merge into a table's rows (`target`): rows that match a new row on `keys` (NULL
/// matches NULL) and `filter` are replaced by it, or changed by the `when_matched` clauses; new rows that
/// match none are inserted.
#[derive(Debug, Clone, Copy)]
pub struct Merge<'a> {
    pub keys: &'a [String],
    /// DuckDB `WHEN MATCHED … THEN UPDATE SET … | DELETE` clauses over `source` and `target`.
    pub when_matched: Option<&'a str>,
    /// A condition over `source` and `target` that a match must also meet (SQLMesh's `merge_filter`).
    pub filter: Option<&'a str>,
}

impl Merge<'_> {
    /// Replaces the rows whose `keys` match.
    pub fn by_keys(keys: &[String]) -> Merge<'_> {
        Merge {
            keys,
            when_matched: None,
            filter: None,
        }
    }

    /// The MERGE's ON condition between `source` and `target`.
    pub fn on(&self) -> String {
        let mut conditions: Vec<String> = self
            .keys
            .iter()
            .map(|k| {
                let k = crate::sql::quote_ident(k);
                format!("source.{k} IS NOT DISTINCT FROM target.{k}")
            })
            .collect();
        if let Some(filter) = self.filter {
            conditions.push(format!("({filter})"));
        }
        conditions.join(" AND ")
    }

    /// True for a table row (`target`) that a row of `staged` matches.
    pub fn matched_in(&self, staged: &str) -> String {
        format!(
            "EXISTS (SELECT 1 FROM {staged} AS source WHERE {})",
            self.on()
        )
    }
}

/// One change to an environment's virtual layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtualChange {
    /// Expose `target` under `name`, replacing what the name showed before.
    Point {
        name: VirtualName,
        target: PhysicalTable,
    },
    /// Remove `name` from the environment.
    Drop { name: VirtualName },
}

/// The Iceberg catalog lake shares with an engine that writes it itself (Spark Connect): lake creates the
/// physical tables, the engine commits to them, lake adopts each commit.
pub trait SharedCatalog: Send + Sync {
    /// Creates `table` with these columns unless it exists.
    fn ensure_table(&self, table: &PhysicalTable, columns: &arrow::datatypes::Schema)
    -> Result<()>;
    /// The table's columns, when it exists.
    fn schema(&self, table: &PhysicalTable) -> Result<Option<arrow::datatypes::Schema>>;
    /// After the engine committed to `table`: DuckDB reads the new data; returns the table's current commit.
    fn adopt_commit(&self, session: &Session, table: &PhysicalTable) -> Result<Option<WriteId>>;
}

/// Rows `StagedWrites::stage_rows` wrote that no reader sees until `commit_time_range` takes them. Only the
/// storage that staged them knows what they are (for Iceberg: data files not yet in a snapshot).
pub struct StagedRows(Box<dyn std::any::Any + Send>);

impl StagedRows {
    pub fn new<T: std::any::Any + Send>(rows: T) -> StagedRows {
        StagedRows(Box::new(rows))
    }

    /// The storage's own description of the rows; `None` when another kind of storage staged them.
    pub fn into_inner<T: std::any::Any>(self) -> Option<T> {
        self.0.downcast::<T>().ok().map(|rows| *rows)
    }
}

/// Range replacements in two steps, so the batches of one model can be evaluated concurrently and committed in
/// order: each batch's rows are written as files no reader sees, then committed one batch after another.
pub trait StagedWrites: Send + Sync {
    /// Writes the query's rows as data files of the existing `table` that are not part of it until
    /// `commit_time_range` takes them.
    fn stage_rows(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
    ) -> Result<StagedRows>;
    /// `Storage::replace_time_range`, with the range's new rows the ones `stage_rows` wrote.
    fn commit_time_range(
        &self,
        session: &Session,
        table: &PhysicalTable,
        staged: StagedRows,
        range: TimeRange<'_>,
    ) -> Result<WriteStats>;
    /// Removes staged files that will never be committed (best-effort: nothing refers to them).
    fn discard(&self, staged: StagedRows);
}

/// Where model data lives. Each write is atomic: readers see the old data or the new, never a mix.
/// `query` is SQL the engine runs to produce the rows, with model references already resolved.
pub trait Storage: Send + Sync {
    fn ensure_schema(&self, session: &Session, schema: &str) -> Result<()>;
    /// A fingerprint that changes whenever the shared catalog's tables or their current metadata may have
    /// (the catalog's change counter, or a hash of its listing), read without touching the engine; `None` when
    /// tables live in the engine itself.
    fn catalog_fingerprint(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// The catalog other engines write through, when tables live in one.
    fn shared_catalog(&self) -> Option<&dyn SharedCatalog> {
        None
    }
    /// Range replacements in two steps, when this storage can write rows ahead of their commit.
    fn staged_writes(&self) -> Option<&dyn StagedWrites> {
        None
    }
    /// Physical tables that exist, as `schema.table`, in schemas starting with `lake__`.
    fn physical_tables(&self, session: &Session) -> Result<Vec<PhysicalTable>>;
    /// The physical object of a VIEW model: a view, never materialised.
    fn create_view(&self, session: &Session, table: &PhysicalTable, query: &str) -> Result<()>;
    /// FULL refresh and SEED load: the table's rows become exactly the query's.
    fn replace_all(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
    ) -> Result<WriteStats>;
    /// New rows added after the existing ones (creating the table on first use).
    fn append(&self, session: &Session, table: &PhysicalTable, query: &str) -> Result<WriteStats>;
    /// Rows in `range` are replaced by the query's rows (which the caller keeps inside the range), in one
    /// atomic write.
    fn replace_time_range(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
        range: TimeRange<'_>,
    ) -> Result<WriteStats>;
    /// The query's rows merged into the table as `merge` says, in one atomic write.
    fn merge_by_key(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
        merge: &Merge<'_>,
    ) -> Result<WriteStats>;
    /// The table's columns with their DuckDB types, in the table's order; `None` when it does not exist.
    fn columns(
        &self,
        session: &Session,
        table: &PhysicalTable,
    ) -> Result<Option<Vec<(String, String)>>>;
    /// How `query`'s columns differ from the existing table's, compared as the table would store them;
    /// `None` when the table does not exist.
    fn column_changes(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
    ) -> Result<Option<Vec<ColumnChange>>>;
    /// Applies `changes` (found by `column_changes` for `query`) to the table's columns in place, without
    /// rewriting data: added columns read NULL in existing rows, widened ones keep their values, dropped ones
    /// are gone. Readers see the old columns or the new.
    fn evolve_columns(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
        changes: &[ColumnChange],
    ) -> Result<()>;
    /// Applies virtual-layer changes all together.
    fn update_virtual_layer(&self, session: &Session, changes: &[VirtualChange]) -> Result<()>;
    fn drop_physical(&self, session: &Session, table: &PhysicalTable) -> Result<()>;
    /// Brings this machine's engine in line with shared state: `names` are every environment's names and
    /// the tables they show. Names whose table this engine has are (re)pointed, and names of environments
    /// that no longer exist are dropped; another machine's plans are then visible here.
    fn sync_local(&self, session: &Session, names: &[(VirtualName, PhysicalTable)]) -> Result<()>;
    /// The batches of one model version are about to be written by a query that never reads the table
    /// itself: until `publish_views`, the engine's view of `table` may lag its commits, so a long history
    /// does not re-create a view of every file after every batch. A crash in between is repaired when the
    /// engine is next opened (the view's comment names the metadata it shows).
    fn defer_views(&self, _table: &PhysicalTable) {}
    /// The properties `table` is created with, when it is created (a model's `physical_properties`). Iceberg
    /// storage makes them table properties; a DuckDB table has none.
    fn declare_properties(&self, _table: &PhysicalTable, _properties: &[(String, String)]) {}
    /// How `table` is partitioned when it is created (a model's `partitioned_by`). Iceberg storage writes it
    /// as the table's partition spec, one file per partition; a DuckDB table is not partitioned.
    fn declare_partitioning(&self, _table: &PhysicalTable, _terms: &[partition::PartitionTerm]) {}
    /// Ends `defer_views`: the engine's view of `table` shows its last commit. Nothing when not deferred.
    fn publish_views(&self, _session: &Session, _table: &PhysicalTable) -> Result<()> {
        Ok(())
    }
}

/// The rows of 2024-01-02 in a table whose DATE column is `d`, for tests of range replacements.
#[cfg(test)]
pub(crate) fn second_of_january() -> TimeRange<'static> {
    TimeRange {
        predicate: "d >= DATE '2024-01-02' AND d < DATE '2024-01-03'",
        column: "d",
        bounds: Some((midnight("2024-01-02"), midnight("2024-01-03"))),
    }
}

/// Midnight of a `YYYY-MM-DD` date, for tests of time ranges.
#[cfg(test)]
pub(crate) fn midnight(date: &str) -> chrono::NaiveDateTime {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .expect("a YYYY-MM-DD date")
        .and_time(chrono::NaiveTime::MIN)
}
