//! DuckDB results as PostgreSQL rows: each column's PostgreSQL type, and its values in text or binary format.
//! arrow-pg encodes the common Arrow types; the columns it cannot carry exactly are prepared here first.

use std::error::Error;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql};

use crate::engine::ColumnLogical as Logical;

/// How one column's values travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    /// arrow-pg encodes the Arrow value as it is.
    Arrow,
    /// TINYINT widened to int2 (PostgreSQL has no one-byte integer).
    Widen,
    /// DECIMAL/HUGEINT as exact decimal text, sent as `numeric` (arrow-pg's decimal stops at 28 digits).
    Numeric,
    /// UUID text, sent as `uuid`.
    Uuid,
    /// STRUCT, MAP, UNION and nested values PostgreSQL has no type for: JSON text, sent as `json`.
    Json,
    /// Text that DuckDB types as JSON, sent as `json`.
    JsonText,
    /// TIMESTAMPTZ: the same instants labelled `+00:00` (DuckDB names its zone, which arrow-pg cannot read).
    Utc,
}

/// The PostgreSQL description of a result and how to encode its rows.
#[derive(Debug, Clone)]
pub struct Shape {
    pub fields: Arc<Vec<FieldInfo>>,
    columns: Vec<Column>,
    arrow_fields: Vec<Field>,
}

fn unsupported(what: String) -> PgWireError {
    super::reply::error("0A000", what)
}

fn column_for(data_type: &DataType, logical: Logical) -> Column {
    match (data_type, logical) {
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Logical::Uuid) => Column::Uuid,
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Logical::Json) => {
            Column::JsonText
        }
        (DataType::Int8, _) => Column::Widen,
        (DataType::Timestamp(_, Some(_)), _) => Column::Utc,
        (DataType::Decimal128(..) | DataType::Decimal256(..), _) => Column::Numeric,
        (DataType::Struct(_) | DataType::Map(..) | DataType::Union(..), _) => Column::Json,
        (
            DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _),
            _,
        ) if !flat_list_item(item.data_type()) => Column::Json,
        (DataType::Dictionary(_, values), _) => column_for(values, logical),
        _ => Column::Arrow,
    }
}

/// List items arrow-pg encodes as a PostgreSQL array.
fn flat_list_item(item: &DataType) -> bool {
    matches!(
        item,
        DataType::Boolean
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Float32
            | DataType::Float64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Timestamp(..)
            | DataType::Time64(_)
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::Null
    )
}

/// The PostgreSQL fields of a DuckDB result: `format` is the client's choice of text or binary per column.
pub fn shape(schema: &Schema, logical: &[Logical], format: &Format) -> PgWireResult<Shape> {
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    let mut arrow_fields = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let column = column_for(
            field.data_type(),
            logical.get(i).copied().unwrap_or(Logical::Other),
        );
        let pg_type = match column {
            Column::Widen => Type::INT2,
            Column::Utc => Type::TIMESTAMPTZ,
            Column::Numeric => Type::NUMERIC,
            Column::Uuid => Type::UUID,
            Column::Json | Column::JsonText => Type::JSON,
            Column::Arrow => arrow_pg::datatypes::field_into_pg_type(field).map_err(|_| {
                unsupported(format!(
                    "column `{}` has type {}, which has no PostgreSQL counterpart here",
                    field.name(),
                    field.data_type()
                ))
            })?,
        };
        fields.push(FieldInfo::new(
            field.name().clone(),
            None,
            None,
            pg_type,
            format.format_for(i),
        ));
        columns.push(column);
        arrow_fields.push(field.as_ref().clone());
    }
    Ok(Shape {
        fields: Arc::new(fields),
        columns,
        arrow_fields,
    })
}

/// The batch's columns as `shape` sends them: text for the columns encoded here, the others unchanged.
fn prepared(shape: &Shape, batch: &RecordBatch) -> PgWireResult<Vec<ArrayRef>> {
    batch
        .columns()
        .iter()
        .zip(&shape.columns)
        .map(|(array, column)| match column {
            Column::Arrow => Ok(array.clone()),
            Column::Widen => arrow::compute::cast(array, &DataType::Int16).map_err(api_error),
            Column::Numeric => decimal_text(array),
            Column::Uuid | Column::JsonText => {
                arrow::compute::cast(array, &DataType::Utf8).map_err(api_error)
            }
            Column::Json => json_text(array),
            Column::Utc => match array.data_type() {
                DataType::Timestamp(unit, _) => {
                    arrow::compute::cast(array, &DataType::Timestamp(*unit, Some("+00:00".into())))
                        .map_err(api_error)
                }
                _ => Ok(array.clone()),
            },
        })
        .collect()
}

fn api_error(e: impl Error + Send + Sync + 'static) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// Each decimal as its exact text, from the stored integer and the scale: arrow's own formatting stops at the
/// declared precision, and HUGEINT's 39 digits arrive as DECIMAL(38, 0).
fn decimal_text(array: &ArrayRef) -> PgWireResult<ArrayRef> {
    let Some(decimals) = array
        .as_any()
        .downcast_ref::<arrow::array::Decimal128Array>()
    else {
        return arrow::compute::cast(array, &DataType::Utf8).map_err(api_error);
    };
    let scale = usize::try_from(decimals.scale()).unwrap_or(0);
    let values: Vec<Option<String>> = decimals
        .iter()
        .map(|v| {
            v.map(|raw| {
                let digits = raw.unsigned_abs().to_string();
                let sign = if raw < 0 { "-" } else { "" };
                if scale == 0 {
                    return format!("{sign}{digits}");
                }
                let padded = format!("{digits:0>width$}", width = scale + 1);
                let (int, frac) = padded.split_at(padded.len() - scale);
                format!("{sign}{int}.{frac}")
            })
        })
        .collect();
    Ok(Arc::new(StringArray::from(values)))
}

/// Each value as its JSON text (NULL stays NULL), through arrow's JSON writer: a one-column batch written as
/// JSON lines gives `{"v":<value>}` per row.
fn json_text(array: &ArrayRef) -> PgWireResult<ArrayRef> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        array.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema, vec![array.clone()]).map_err(api_error)?;
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
        writer.write(&batch).map_err(api_error)?;
        writer.finish().map_err(api_error)?;
    }
    let text = String::from_utf8(out).map_err(api_error)?;
    let mut lines = text.lines();
    let values: Vec<Option<String>> = (0..array.len())
        .map(|i| {
            let line = lines.next().unwrap_or("{}");
            if array.is_null(i) {
                return None;
            }
            line.strip_prefix("{\"v\":")
                .and_then(|rest| rest.strip_suffix('}'))
                .map(str::to_string)
        })
        .collect();
    Ok(Arc::new(StringArray::from(values)))
}

/// The rows of one batch, encoded.
pub fn rows(shape: &Shape, batch: &RecordBatch) -> PgWireResult<Vec<DataRow>> {
    let arrays = prepared(shape, batch)?;
    let text_fields: Vec<Field> = shape
        .arrow_fields
        .iter()
        .zip(&arrays)
        .map(|(f, a)| Field::new(f.name(), a.data_type().clone(), true))
        .collect();
    let mut encoder = DataRowEncoder::new(shape.fields.clone());
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (i, array) in arrays.iter().enumerate() {
            let pg_field = &shape.fields[i];
            match shape.columns[i] {
                Column::Numeric | Column::Uuid => {
                    let text = text_value(array, row);
                    let value = text.map(|t| Special {
                        text: t,
                        kind: shape.columns[i],
                    });
                    encoder.encode_field_with_type_and_format(
                        &value,
                        pg_field.datatype(),
                        pg_field.format(),
                        pg_field.format_options(),
                    )?;
                }
                _ => arrow_pg::encoder::encode_value(
                    &mut encoder,
                    array,
                    row,
                    &text_fields[i],
                    pg_field,
                )?,
            }
        }
        out.push(encoder.take_row());
    }
    Ok(out)
}

fn text_value(array: &ArrayRef, row: usize) -> Option<String> {
    let strings = array.as_any().downcast_ref::<StringArray>()?;
    (!strings.is_null(row)).then(|| strings.value(row).to_string())
}

/// A numeric or UUID value held as its exact text: sent as that text, or in PostgreSQL's binary layout.
#[derive(Debug)]
struct Special {
    text: String,
    kind: Column,
}

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for Special {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.kind {
            Column::Uuid => {
                let uuid = uuid::Uuid::parse_str(&self.text)?;
                out.put_slice(uuid.as_bytes());
            }
            _ => numeric_binary(&self.text, out)?,
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for Special {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, BoxError> {
        out.put_slice(self.text.as_bytes());
        Ok(IsNull::No)
    }
}

/// PostgreSQL's binary `numeric`: digit count, weight, sign, display scale, then base-10000 digits.
fn numeric_binary(text: &str, out: &mut BytesMut) -> Result<(), BoxError> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(format!("`{text}` is not a decimal number").into());
    }
    let scale = frac_part.len();
    // Pad the integer part on the left and the fraction on the right to whole groups of four digits.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let padded_int = format!("{}{}", "0".repeat(int_pad), int_part);
    let padded_frac = format!("{}{}", frac_part, "0".repeat(frac_pad));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
            .collect()
    };
    let mut groups = group(&padded_int);
    let int_groups = groups.len() as i32;
    groups.extend(group(&padded_frac));
    // Leading and trailing zero groups are implied by the weight and the digit count.
    let leading = groups.iter().take_while(|g| **g == 0).count();
    let mut weight = int_groups - 1 - leading as i32;
    groups.drain(..leading);
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(i16::try_from(groups.len())?);
    out.put_i16(i16::try_from(weight)?);
    out.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_u16(u16::try_from(scale)?);
    for g in groups {
        out.put_i16(g);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(text: &str) -> Vec<i16> {
        let mut out = BytesMut::new();
        numeric_binary(text, &mut out).expect("a decimal");
        out.chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numeric_binary_matches_postgres_layout() {
        // ndigits, weight, sign, dscale, digits…
        assert_eq!(numeric("0"), vec![0, 0, 0, 0]);
        assert_eq!(numeric("1"), vec![1, 0, 0, 0, 1]);
        assert_eq!(numeric("12345.678"), vec![3, 1, 0, 3, 1, 2345, 6780]);
        assert_eq!(numeric("-0.0001"), vec![1, -1, 0x4000, 4, 1]);
        assert_eq!(numeric("10000"), vec![1, 1, 0, 0, 1]);
        assert_eq!(
            numeric("170141183460469231731687303715884105727"),
            vec![
                10, 9, 0, 0, 170, 1411, 8346, 469, 2317, 3168, 7303, 7158, 8410, 5727
            ]
        );
    }

    #[test]
    fn decimals_keep_every_digit() {
        let array =
            arrow::array::Decimal128Array::from(vec![Some(i128::MAX), Some(-5), None, Some(12345)])
                .with_precision_and_scale(38, 3)
                .expect("valid");
        let text = decimal_text(&(Arc::new(array) as ArrayRef)).expect("formats");
        let text = text.as_any().downcast_ref::<StringArray>().expect("text");
        assert_eq!(text.value(0), "170141183460469231731687303715884105.727");
        assert_eq!(text.value(1), "-0.005");
        assert!(text.is_null(2));
        assert_eq!(text.value(3), "12.345");
    }

    #[test]
    fn nested_values_become_json_text() {
        let json = json_text(&(Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef))
            .expect("encodes");
        let json = json.as_any().downcast_ref::<StringArray>().expect("text");
        assert_eq!(json.value(0), "\"a\"");
        assert!(json.is_null(1));
    }
}
