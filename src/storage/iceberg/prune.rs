//! Which data files may hold rows of a time range, from the column bounds the manifests record: a range
//! replacement reads and rewrites only those, however long the table's history.

use chrono::{DateTime, NaiveDateTime};
use iceberg::spec::{DataFile, Datum, PrimitiveLiteral, PrimitiveType, Schema, Type};

/// Rows whose `column` lies in `[start, end)`, as a range replacement selects them.
#[derive(Debug, Clone, Copy)]
pub struct TimePrune<'a> {
    pub column: &'a str,
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
}

impl TimePrune<'_> {
    /// The Iceberg field of the time column, when its bounds can be compared with the range: a top-level
    /// DATE or TIMESTAMP (without time zone) column, named unambiguously. `None` means no file is pruned.
    pub fn field_id(&self, schema: &Schema) -> Option<i32> {
        let mut matching = schema
            .as_struct()
            .fields()
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(self.column));
        let field = matching.next()?;
        if matching.next().is_some() {
            return None;
        }
        match field.field_type.as_ref() {
            Type::Primitive(
                PrimitiveType::Date | PrimitiveType::Timestamp | PrimitiveType::TimestampNs,
            ) => Some(field.id),
            _ => None,
        }
    }

    /// `false` only when the file's recorded bounds prove it holds no row of the range; a file without
    /// bounds for the column may hold any.
    pub fn may_hold(&self, file: &DataFile, field_id: i32) -> bool {
        let bound = |bounds: &std::collections::HashMap<i32, Datum>| {
            bounds.get(&field_id).and_then(as_time)
        };
        match (bound(file.lower_bounds()), bound(file.upper_bounds())) {
            (Some(lower), Some(upper)) => lower < self.end && upper >= self.start,
            _ => true,
        }
    }
}

/// A DATE or TIMESTAMP bound as a time of day (a date at midnight).
fn as_time(datum: &Datum) -> Option<NaiveDateTime> {
    match (datum.data_type(), datum.literal()) {
        (PrimitiveType::Date, PrimitiveLiteral::Int(days)) => {
            DateTime::from_timestamp(i64::from(*days) * 86_400, 0).map(|t| t.naive_utc())
        }
        (PrimitiveType::Timestamp, PrimitiveLiteral::Long(micros)) => {
            DateTime::from_timestamp_micros(*micros).map(|t| t.naive_utc())
        }
        (PrimitiveType::TimestampNs, PrimitiveLiteral::Long(nanos)) => {
            Some(DateTime::from_timestamp_nanos(*nanos).naive_utc())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").expect("a time")
    }

    #[test]
    fn bounds_of_every_time_type_read_as_times() {
        assert_eq!(
            as_time(&Datum::date(19_723)),
            Some(at("2024-01-01 00:00:00"))
        );
        assert_eq!(
            as_time(&Datum::timestamp_micros(1_704_067_201_000_000)),
            Some(at("2024-01-01 00:00:01"))
        );
        assert_eq!(
            as_time(&Datum::timestamp_nanos(1_704_067_200_000_000_500)),
            Some(at("2024-01-01 00:00:00") + chrono::Duration::nanoseconds(500))
        );
        assert_eq!(as_time(&Datum::long(5)), None, "not a time");
        assert_eq!(as_time(&Datum::string("2024-01-01")), None);
    }

    #[test]
    fn a_file_is_pruned_only_when_its_bounds_miss_the_range() {
        let range = TimePrune {
            column: "d",
            start: at("2024-01-02 00:00:00"),
            end: at("2024-01-03 00:00:00"),
        };
        let file = |lower: i32, upper: i32| {
            iceberg::spec::DataFileBuilder::default()
                .content(iceberg::spec::DataContentType::Data)
                .file_path("f.parquet".into())
                .file_format(iceberg::spec::DataFileFormat::Parquet)
                .partition(iceberg::spec::Struct::empty())
                .record_count(1)
                .file_size_in_bytes(1)
                .lower_bounds([(1, Datum::date(lower))].into())
                .upper_bounds([(1, Datum::date(upper))].into())
                .build()
                .expect("a data file")
        };
        // 19_723 is 2024-01-01; the range is the day after.
        assert!(!range.may_hold(&file(19_723, 19_723), 1), "the day before");
        assert!(
            range.may_hold(&file(19_723, 19_724), 1),
            "overlaps its start"
        );
        assert!(range.may_hold(&file(19_724, 19_724), 1), "inside");
        assert!(!range.may_hold(&file(19_725, 19_730), 1), "from its end on");
        assert!(
            range.may_hold(&file(19_725, 19_730), 2),
            "no bounds for the field"
        );
    }
}
