//! Partitioned Iceberg tables: the partition spec built from a model's `partitioned_by`, the order rows are
//! written in, and the writer that puts each partition's rows in its own data files.

use std::sync::Arc;

use arrow::array::RecordBatch;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, PartitionSpec, Schema, Transform, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::writer::IcebergWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::clustered_writer::ClusteredWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;

use crate::error::{LakeError, Result};
use crate::snapshot::PhysicalTable;
use crate::sql::quote_ident;
use crate::storage::partition::{PartitionTerm, PartitionTransform};

use super::{FileWriterBuilder, UnpartitionedWriter, iceberg_err};

fn transform(t: PartitionTransform) -> Transform {
    match t {
        PartitionTransform::Identity => Transform::Identity,
        PartitionTransform::Year => Transform::Year,
        PartitionTransform::Month => Transform::Month,
        PartitionTransform::Day => Transform::Day,
        PartitionTransform::Hour => Transform::Hour,
        PartitionTransform::Bucket(n) => Transform::Bucket(n),
        PartitionTransform::Truncate(w) => Transform::Truncate(w),
    }
}

/// The partition spec of a new table whose columns are `schema`; `None` when `terms` is empty.
pub(super) fn spec(
    table: &PhysicalTable,
    schema: &Schema,
    terms: &[PartitionTerm],
) -> Result<Option<UnboundPartitionSpec>> {
    if terms.is_empty() {
        return Ok(None);
    }
    let columns: Vec<&str> = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    let mut builder = PartitionSpec::builder(Arc::new(schema.clone()));
    for term in terms {
        let source = source_column(table, term, &columns)?;
        let name = format!("{source}{}", term.transform.field_suffix());
        builder = builder
            .add_partition_field(source, name, transform(term.transform))
            .map_err(iceberg_err(format!(
                "partitioning {table} by {}",
                term.column
            )))?;
    }
    let spec = builder
        .build()
        .map_err(iceberg_err(format!("partitioning {table}")))?;
    Ok(Some(spec.into_unbound()))
}

/// The column of `columns` that `term` partitions on, or the error naming the columns there are.
fn source_column<'c>(
    table: &PhysicalTable,
    term: &PartitionTerm,
    columns: &[&'c str],
) -> Result<&'c str> {
    columns
        .iter()
        .copied()
        .find(|c| term.names(c))
        .ok_or_else(|| LakeError::Config {
            message: format!(
                "`partitioned_by` of {table} names `{}`, which is not a column of the model's query \
                 (its columns: {})",
                term.column,
                columns.join(", ")
            ),
            help: None,
        })
}

/// The columns (of `columns`, a write's result) that group each partition's rows together when rows are
/// sorted by them: the source columns of the order-keeping terms. Every term must name one of `columns`.
pub(super) fn order_keys(
    table: &PhysicalTable,
    columns: &[&str],
    terms: &[PartitionTerm],
) -> Result<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    for term in terms {
        let key = quote_ident(source_column(table, term, columns)?);
        if term.transform.keeps_order() && !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// `query` sorted by `keys` (see `order_keys`), so each partition's files are finished before the next
/// partition starts.
pub(super) fn ordered(query: &str, keys: &[String]) -> String {
    if keys.is_empty() {
        return query.to_string();
    }
    format!(
        "SELECT * FROM ({query}) AS partitioned ORDER BY {}",
        keys.join(", ")
    )
}

/// Writes a query's batches as data files of one table, split by its partition spec.
pub(super) enum Writer {
    Unpartitioned(Box<UnpartitionedWriter>),
    /// Rows arrive grouped by partition (see `ordered`): one open file at a time.
    Clustered(
        Box<(
            ClusteredWriter<FileWriterBuilder>,
            RecordBatchPartitionSplitter,
        )>,
    ),
    /// Rows arrive in any order (bucket transforms): one open file per partition seen.
    Fanout(
        Box<(
            FanoutWriter<FileWriterBuilder>,
            RecordBatchPartitionSplitter,
        )>,
    ),
}

impl Writer {
    /// A writer for `table`'s current partition spec; `sorted` says whether rows come in `ordered`'s order.
    pub(super) async fn new(
        table: &Table,
        builder: FileWriterBuilder,
        sorted: bool,
    ) -> Result<Writer> {
        let metadata = table.metadata();
        let spec = metadata.default_partition_spec();
        if spec.is_unpartitioned() {
            return Ok(Writer::Unpartitioned(Box::new(
                iceberg::writer::IcebergWriterBuilder::build(&builder, None)
                    .await
                    .map_err(iceberg_err(format!(
                        "preparing Parquet writes to {}",
                        table.identifier()
                    )))?,
            )));
        }
        let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(
            metadata.current_schema().clone(),
            spec.clone(),
        )
        .map_err(iceberg_err(format!(
            "preparing partitioned writes to {}",
            table.identifier()
        )))?;
        let clusters = sorted
            && spec
                .fields()
                .iter()
                .all(|f| !matches!(f.transform, Transform::Bucket(_)));
        Ok(if clusters {
            Writer::Clustered(Box::new((ClusteredWriter::new(builder), splitter)))
        } else {
            Writer::Fanout(Box::new((FanoutWriter::new(builder), splitter)))
        })
    }

    pub(super) async fn write(&mut self, batch: RecordBatch) -> iceberg::Result<()> {
        match self {
            Writer::Unpartitioned(w) => w.write(batch).await,
            Writer::Clustered(clustered) => {
                let (writer, splitter) = clustered.as_mut();
                for (key, part) in splitter.split(&batch)? {
                    writer.write(key, part).await?;
                }
                Ok(())
            }
            Writer::Fanout(fanout) => {
                let (writer, splitter) = fanout.as_mut();
                for (key, part) in splitter.split(&batch)? {
                    writer.write(key, part).await?;
                }
                Ok(())
            }
        }
    }

    pub(super) async fn close(self) -> iceberg::Result<Vec<DataFile>> {
        match self {
            Writer::Unpartitioned(mut w) => w.close().await,
            Writer::Clustered(clustered) => clustered.0.close().await,
            Writer::Fanout(fanout) => fanout.0.close().await,
        }
    }
}
