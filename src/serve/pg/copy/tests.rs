//! COPY … TO STDOUT: which statements are answered, and the text and CSV lines they write.

use std::sync::Arc;

use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};

use super::*;

fn text_fields(names: &[&str]) -> Arc<Vec<FieldInfo>> {
    Arc::new(
        names
            .iter()
            .map(|n| FieldInfo::new((*n).to_string(), None, None, Type::TEXT, FieldFormat::Text))
            .collect(),
    )
}

fn row(values: &[Option<&str>]) -> DataRow {
    let names: Vec<String> = (0..values.len()).map(|i| format!("c{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut encoder = DataRowEncoder::new(text_fields(&names));
    for value in values {
        encoder.encode_field(value).expect("a text field");
    }
    encoder.take_row()
}

fn line(copy: &CopyOut, values: &[Option<&str>]) -> String {
    String::from_utf8(copy.row(&row(values)).data.to_vec()).expect("utf8")
}

fn copy(statement: &str) -> CopyOut {
    parse(statement)
        .expect("a COPY TO STDOUT")
        .expect("supported options")
}

#[test]
fn only_copy_to_stdout_is_answered_here() {
    for other in [
        "select 1",
        "copy (select 1) to '/tmp/x.csv'",
        "copy t from stdin",
        "copy (select 1) to program 'cat'",
    ] {
        assert!(parse(other).is_none(), "{other}");
    }
    assert_eq!(
        copy("COPY (select a, b from s.t where a > 1) TO STDOUT").query,
        "SELECT a, b FROM s.t WHERE a > 1"
    );
    assert_eq!(copy("copy s.t to stdout").query, "SELECT * FROM s.t");
    assert_eq!(
        copy("copy s.t (a, b) to stdout").query,
        "SELECT a, b FROM s.t"
    );
}

#[test]
fn text_format_escapes_and_marks_nulls() {
    let text = copy("copy (select 1) to stdout");
    assert_eq!(
        line(&text, &[Some("a\tb"), None, Some("back\\slash\nnext")]),
        "a\\tb\t\\N\tback\\\\slash\\nnext\n"
    );
}

#[test]
fn csv_quotes_what_needs_it_and_writes_a_header() {
    for statement in [
        "copy (select 1) to stdout with (format csv, header)",
        "copy (select 1) to stdout csv header",
    ] {
        let csv = copy(statement);
        let header = csv.header(&text_fields(&["id", "name"])).expect("a header");
        assert_eq!(&header.data[..], b"id,name\n", "{statement}");
        assert_eq!(
            line(
                &csv,
                &[Some("1"), Some("a,b"), Some("say \"hi\""), Some(""), None]
            ),
            "1,\"a,b\",\"say \"\"hi\"\"\",\"\",\n"
        );
    }
    let tabs = copy("copy (select 1) to stdout (format csv, delimiter '|', null 'NULL')");
    assert_eq!(
        line(&tabs, &[Some("a|b"), None, Some("NULL")]),
        "\"a|b\"|NULL|\"NULL\"\n"
    );
}

#[test]
fn what_is_not_supported_says_so() {
    for statement in [
        "copy (select 1) to stdout (format binary)",
        "copy (select 1) to stdout binary",
        "copy (select 1) to stdout (header)",
    ] {
        let refused = parse(statement).expect("a COPY TO STDOUT");
        assert!(refused.is_err(), "{statement}");
    }
}
