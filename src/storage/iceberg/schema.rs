//! Iceberg table schemas beside DuckDB's: the columns of a table or a query, the evolved schema a new query
//! needs (fresh field ids for new columns), and DuckDB types and empty selects for a schema.

use std::sync::Arc;

use super::iceberg_err;
use crate::engine::Session;
use crate::error::Result;
use crate::snapshot::PhysicalTable;
use crate::sql::quote_ident;
use crate::storage::ColumnChange;

/// The table's columns, named and typed as DuckDB reads them.
pub(super) fn schema_columns(schema: &iceberg::spec::Schema) -> Vec<(String, String)> {
    schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.name.clone(), duckdb_type(&f.field_type)))
        .collect()
}

/// The columns `query` returns, as the Iceberg schema a new table for them would have.
pub(super) fn query_iceberg_schema(
    session: &Session,
    table: &PhysicalTable,
    query: &str,
) -> Result<iceberg::spec::Schema> {
    let arrow = session.query_each(
        &format!("SELECT * FROM ({query}) AS lake_columns LIMIT 0"),
        || format!("reading the columns of the query for {table}"),
        &mut |_, _| Ok(()),
    )?;
    iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&arrow).map_err(iceberg_err(format!(
        "mapping the columns of {table} to Iceberg types"
    )))
}

/// `current` with `changes` applied, as Iceberg schema evolution does it: kept and widened columns keep their
/// field ids (so existing files still supply their values), dropped ones go, added ones and columns whose
/// type changed without widening get new ids after `last_column_id` (existing files have no values for them).
pub(super) fn evolved_schema(
    current: &iceberg::spec::Schema,
    wanted: &iceberg::spec::Schema,
    changes: &[ColumnChange],
    last_column_id: i32,
) -> iceberg::Result<iceberg::spec::Schema> {
    use iceberg::spec::NestedField;
    let mut next_id = last_column_id;
    let mut fresh = |field: &NestedField| Arc::new(renumbered(field, &mut next_id));
    let wanted_field = |name: &str| wanted.as_struct().fields().iter().find(|f| f.name == name);
    let change_of = |name: &str| changes.iter().find(|c| c.column() == name);
    let mut fields = Vec::new();
    for field in current.as_struct().fields() {
        match (change_of(&field.name), wanted_field(&field.name)) {
            (None, _) => fields.push(field.clone()),
            (Some(ColumnChange::Dropped { .. }), _) => {}
            (Some(ColumnChange::Retyped { widening: true, .. }), Some(new)) => {
                let mut widened = field.as_ref().clone();
                widened.field_type = new.field_type.clone();
                fields.push(Arc::new(widened));
            }
            (Some(ColumnChange::Retyped { .. }), Some(new)) => fields.push(fresh(new)),
            (Some(_), _) => fields.push(field.clone()),
        }
    }
    for change in changes {
        if let ColumnChange::Added { name, .. } = change
            && let Some(new) = wanted_field(name)
        {
            fields.push(fresh(new));
        }
    }
    iceberg::spec::Schema::builder()
        .with_fields(fields)
        .with_schema_id(current.schema_id() + 1)
        .build()
}

/// `field` (and every field nested in it) with ids counted on from `last`, optional: a column added to a
/// table has no values in the rows already written.
pub(super) fn renumbered(
    field: &iceberg::spec::NestedField,
    last: &mut i32,
) -> iceberg::spec::NestedField {
    use iceberg::spec::{ListType, MapType, StructType, Type};
    *last += 1;
    let id = *last;
    let mut nested = |f: &iceberg::spec::NestedFieldRef| {
        let mut inner = renumbered(f, last);
        inner.required = f.required;
        Arc::new(inner)
    };
    let field_type = match field.field_type.as_ref() {
        Type::Primitive(p) => Type::Primitive(p.clone()),
        Type::Struct(s) => Type::Struct(StructType::new(
            s.fields().iter().map(&mut nested).collect(),
        )),
        Type::List(l) => Type::List(ListType::new(nested(&l.element_field))),
        Type::Map(m) => {
            let key = nested(&m.key_field);
            Type::Map(MapType::new(key, nested(&m.value_field)))
        }
    };
    let mut out = iceberg::spec::NestedField::optional(id, &field.name, field_type);
    out.doc = field.doc.clone();
    out
}

/// A query with no rows in the table's columns, typed as DuckDB reads the Iceberg types.
pub(super) fn empty_select(schema: &iceberg::spec::Schema) -> String {
    let columns: Vec<String> = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            format!(
                "CAST(NULL AS {}) AS {}",
                duckdb_type(&f.field_type),
                quote_ident(&f.name)
            )
        })
        .collect();
    format!("SELECT {} LIMIT 0", columns.join(", "))
}

pub(super) fn duckdb_type(t: &iceberg::spec::Type) -> String {
    use iceberg::spec::{PrimitiveType as P, Type};
    match t {
        Type::Primitive(p) => match p {
            P::Boolean => "BOOLEAN".into(),
            P::Int => "INTEGER".into(),
            P::Long => "BIGINT".into(),
            P::Float => "FLOAT".into(),
            P::Double => "DOUBLE".into(),
            P::Decimal { precision, scale } => format!("DECIMAL({precision}, {scale})"),
            P::Date => "DATE".into(),
            P::Time => "TIME".into(),
            P::Timestamp => "TIMESTAMP".into(),
            P::Timestamptz => "TIMESTAMPTZ".into(),
            P::TimestampNs => "TIMESTAMP_NS".into(),
            P::TimestamptzNs => "TIMESTAMPTZ".into(),
            P::String => "VARCHAR".into(),
            P::Uuid => "UUID".into(),
            P::Fixed(_) | P::Binary => "BLOB".into(),
        },
        Type::List(list) => format!("{}[]", duckdb_type(&list.element_field.field_type)),
        Type::Map(map) => format!(
            "MAP({}, {})",
            duckdb_type(&map.key_field.field_type),
            duckdb_type(&map.value_field.field_type)
        ),
        Type::Struct(fields) => format!(
            "STRUCT({})",
            fields
                .fields()
                .iter()
                .map(|f| format!("{} {}", quote_ident(&f.name), duckdb_type(&f.field_type)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
