//! How each model kind writes its table, decided once for every engine: `write_batch` and `write_whole` match
//! the kind and call the engine's `KindWriter` (DuckDB's in build.rs, a Spark engine's in spark.rs).

use super::scd::Scd2;
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::plan::BackfillAction;
use crate::project::model::{Model, ModelKind, TimeColumn};
use crate::storage::WriteStats;

/// A merge by unique key as the model declares it: `when_matched` and `merge_filter` as written.
pub(super) struct KeyedMerge<'a> {
    pub unique_key: &'a [String],
    pub when_matched: Option<&'a str>,
    pub merge_filter: Option<&'a str>,
}

/// One engine's ways of writing a model version's table. `Query` is the model's query as the engine takes it.
pub(super) trait KindWriter {
    type Query: ?Sized;

    /// The table becomes the query's rows.
    fn overwrite(&self, query: &Self::Query) -> Result<WriteStats>;
    /// The query's rows are added to the table.
    fn append(&self, query: &Self::Query) -> Result<WriteStats>;
    /// The table's rows in `range` become the query's rows in it.
    fn replace_range(
        &self,
        query: &Self::Query,
        time_column: &TimeColumn,
        range: Range,
    ) -> Result<WriteStats>;
    /// Rows whose keys match a new row are updated by it; the others are inserted.
    fn merge(&self, query: &Self::Query, merge: &KeyedMerge<'_>) -> Result<WriteStats>;
    /// The partitions present in the query's rows are replaced by them.
    fn replace_partitions(&self, query: &Self::Query, columns: &[String]) -> Result<WriteStats>;
    /// SCD type 2: the table becomes its new history, from the current rows and the existing history.
    fn history(&self, query: &Self::Query, scd: &Scd2<'_>) -> Result<WriteStats>;
    /// The version is a view over the query.
    fn create_view(&self, query: &Self::Query) -> Result<WriteStats>;
}

/// One batch of an incremental model, written the way its kind says.
pub(super) fn write_batch<W: KindWriter>(
    writer: &W,
    model: &Model,
    query: &W::Query,
    range: Range,
    execution_time: chrono::NaiveDateTime,
) -> Result<WriteStats> {
    match &model.meta.kind {
        ModelKind::IncrementalByTimeRange { time_column, .. } => {
            writer.replace_range(query, time_column, range)
        }
        ModelKind::IncrementalByUniqueKey {
            unique_key,
            when_matched,
            merge_filter,
            ..
        } => writer.merge(
            query,
            &KeyedMerge {
                unique_key,
                when_matched: when_matched.as_deref(),
                merge_filter: merge_filter.as_deref(),
            },
        ),
        ModelKind::IncrementalByPartition { .. } => {
            writer.replace_partitions(query, partition_columns(model)?)
        }
        ModelKind::IncrementalUnmanaged {
            insert_overwrite: true,
            ..
        } => writer.overwrite(query),
        ModelKind::IncrementalUnmanaged { .. } => writer.append(query),
        kind @ (ModelKind::ScdType2ByTime { .. } | ModelKind::ScdType2ByColumn { .. }) => {
            writer.history(query, &history_of(kind, execution_time)?)
        }
        other => Err(LakeError::unsupported(
            format!("building {} models in batches", other.name()),
            "this kind is built in one piece",
        )),
    }
}

/// A model version built in one piece (no batches): a view, a history, or the whole table.
pub(super) fn write_whole<W: KindWriter>(
    writer: &W,
    model: &Model,
    action: BackfillAction,
    query: &W::Query,
    execution_time: chrono::NaiveDateTime,
) -> Result<WriteStats> {
    match (&model.meta.kind, action) {
        (kind @ (ModelKind::ScdType2ByTime { .. } | ModelKind::ScdType2ByColumn { .. }), _) => {
            writer.history(query, &history_of(kind, execution_time)?)
        }
        (_, BackfillAction::CreateView) => writer.create_view(query),
        (_, BackfillAction::FullRefresh | BackfillAction::InsertSeed | BackfillAction::Insert) => {
            writer.overwrite(query)
        }
    }
}

fn history_of(kind: &ModelKind, execution_time: chrono::NaiveDateTime) -> Result<Scd2<'_>> {
    Scd2::for_kind(kind, execution_time).ok_or_else(|| {
        LakeError::unsupported(
            format!("building {} as history", kind.name()),
            "only SCD_TYPE_2 kinds keep history",
        )
    })
}

/// The columns an INCREMENTAL_BY_PARTITION model replaces partitions by, which it must declare.
fn partition_columns(model: &Model) -> Result<&[String]> {
    if model.meta.partitioned_by.is_empty() {
        return Err(LakeError::Config {
            message: format!(
                "`{}` is INCREMENTAL_BY_PARTITION but has no partitioned_by",
                model.meta.name
            ),
            help: Some("add `partitioned_by (column, ...)` to the MODEL block".into()),
        });
    }
    Ok(&model.meta.partitioned_by)
}
