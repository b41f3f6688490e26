//! `COPY (query) TO STDOUT` and `COPY table [(columns)] TO STDOUT`: a query's rows in PostgreSQL's text or CSV
//! copy format, for bulk export with psql's `\copy` and drivers' copy APIs. COPY to or from anything else is
//! left to the read-only check, which refuses it.

use bytes::Bytes;
use pgwire::api::results::FieldInfo;
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;
use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::reply::error;

/// How rows are written: PostgreSQL's text format (backslash escapes) or CSV (quoted fields).
#[derive(Debug, Clone, PartialEq)]
enum Layout {
    Text,
    Csv { quote: char, escape: char },
}

/// A `COPY … TO STDOUT`: the query whose rows it sends and how it writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyOut {
    pub query: String,
    layout: Layout,
    delimiter: char,
    null: String,
    header: bool,
}

/// The COPY to standard output `statement` asks for; `None` when it is not one (any other COPY, or anything
/// the PostgreSQL grammar does not read as COPY, goes on to the read-only check).
pub fn parse(statement: &str) -> Option<PgWireResult<CopyOut>> {
    if !crate::sql::lex::leading_keyword(statement).eq_ignore_ascii_case("COPY") {
        return None;
    }
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, statement).ok()?;
    let [
        Statement::Copy {
            source,
            to: true,
            target: CopyTarget::Stdout,
            options,
            legacy_options,
            ..
        },
    ] = parsed.as_slice()
    else {
        return None;
    };
    let query = match source {
        CopySource::Query(query) => query.to_string(),
        CopySource::Table {
            table_name,
            columns,
        } if columns.is_empty() => format!("SELECT * FROM {table_name}"),
        CopySource::Table {
            table_name,
            columns,
        } => format!(
            "SELECT {} FROM {table_name}",
            columns
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Some(with_options(query, options, legacy_options))
}

fn unsupported(what: impl std::fmt::Display) -> pgwire::error::PgWireError {
    error(
        "0A000",
        format!("COPY with {what} is not supported by lake serve (use FORMAT text or csv)"),
    )
}

/// Applies the statement's options (PostgreSQL 9's `WITH (…)` and the older bare keywords) over the defaults.
fn with_options(
    query: String,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> PgWireResult<CopyOut> {
    let mut csv = false;
    let (mut delimiter, mut null, mut header) = (None, None, false);
    let (mut quote, mut escape) = (None, None);
    for option in options {
        match option {
            CopyOption::Format(name) => match name.value.to_ascii_lowercase().as_str() {
                "text" => csv = false,
                "csv" => csv = true,
                other => return Err(unsupported(format_args!("FORMAT {other}"))),
            },
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(text) => null = Some(text.clone()),
            CopyOption::Header(on) => header = *on,
            CopyOption::Quote(c) => quote = Some(*c),
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Encoding(name) if name.eq_ignore_ascii_case("utf8") => {}
            other => return Err(unsupported(other)),
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(text) => null = Some(text.clone()),
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Csv(more) => {
                csv = true;
                for option in more {
                    match option {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = Some(*c),
                        CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                        other => return Err(unsupported(other)),
                    }
                }
            }
            other => return Err(unsupported(other)),
        }
    }
    if header && !csv {
        return Err(error("0A000", "COPY HEADER is available only in CSV mode"));
    }
    let layout = if csv {
        let quote = quote.unwrap_or('"');
        Layout::Csv {
            quote,
            escape: escape.unwrap_or(quote),
        }
    } else {
        Layout::Text
    };
    Ok(CopyOut {
        query,
        delimiter: delimiter.unwrap_or(if csv { ',' } else { '\t' }),
        null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
        layout,
        header,
    })
}

impl CopyOut {
    /// The header line, when the statement asked for one.
    pub fn header(&self, fields: &[FieldInfo]) -> Option<CopyData> {
        if !self.header {
            return None;
        }
        let names: Vec<Option<&[u8]>> = fields.iter().map(|f| Some(f.name().as_bytes())).collect();
        Some(self.line(&names))
    }

    /// One row, from the text-format data row the query answered with.
    pub fn row(&self, row: &DataRow) -> CopyData {
        self.line(&fields_of(row))
    }

    fn line(&self, fields: &[Option<&[u8]>]) -> CopyData {
        let mut out = String::new();
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(self.delimiter);
            }
            match field {
                None => out.push_str(&self.null),
                Some(bytes) => {
                    let text = String::from_utf8_lossy(bytes);
                    match &self.layout {
                        Layout::Text => escape_text(&text, self.delimiter, &mut out),
                        Layout::Csv { quote, escape } => {
                            self.csv_field(&text, *quote, *escape, &mut out)
                        }
                    }
                }
            }
        }
        out.push('\n');
        CopyData::new(Bytes::from(out))
    }

    /// A CSV field, quoted when it holds the delimiter, a quote, a line break, or reads like the NULL string.
    fn csv_field(&self, text: &str, quote: char, escape: char, out: &mut String) {
        let needs_quotes = text == self.null
            || text.is_empty()
            || text.contains([self.delimiter, quote, '\n', '\r']);
        if !needs_quotes {
            out.push_str(text);
            return;
        }
        out.push(quote);
        for c in text.chars() {
            if c == quote || c == escape {
                out.push(escape);
            }
            out.push(c);
        }
        out.push(quote);
    }
}

/// PostgreSQL's text-format escapes: backslash, the delimiter and control characters.
fn escape_text(text: &str, delimiter: char, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c == delimiter => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// The fields of an encoded data row: each a 4-byte length (-1 for NULL) and that many bytes.
fn fields_of(row: &DataRow) -> Vec<Option<&[u8]>> {
    let data: &[u8] = &row.data;
    let mut fields = Vec::with_capacity(row.field_count.max(0) as usize);
    let mut at = 0;
    for _ in 0..row.field_count.max(0) {
        let Some(length) = data.get(at..at + 4) else {
            break;
        };
        // The slice is 4 bytes long (checked just above), so the conversion cannot fail.
        let length = i32::from_be_bytes(length.try_into().expect("4 bytes"));
        at += 4;
        if length < 0 {
            fields.push(None);
            continue;
        }
        let end = (at + length as usize).min(data.len());
        fields.push(Some(&data[at..end]));
        at = end;
    }
    fields
}

#[cfg(test)]
mod tests;
