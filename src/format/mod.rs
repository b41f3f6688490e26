//! `lake format`: rewrites model and audit files in one canonical style without changing what they mean.
//!
//! MODEL/AUDIT blocks get one property per line; SQL statements get clause keywords in upper case at the
//! start of lines and one list item per line (`layout`). Names keep their case, comments stay where they
//! were, and every rewritten statement is parsed again and compared with the original: a statement whose
//! meaning could change (or that does not parse) is kept as written and reported.

pub mod layout;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{LakeError, Result, SourceError, SourceFile};
use crate::project::block::{ModelBlock, Value, ValueKind, parse_block};
use crate::sql::lex;

/// Lines longer than this are broken (MODEL property lists).
const MAX_WIDTH: usize = 80;

/// One file `lake format` looked at.
#[derive(Debug, Serialize)]
pub struct FormattedFile {
    /// Relative to the project.
    pub path: String,
    pub changed: bool,
    /// Statements kept as written, and why (`line 12: …`).
    pub kept: Vec<String>,
    #[serde(skip)]
    pub formatted: String,
    #[serde(skip)]
    absolute: PathBuf,
}

/// Formats every `models/*.sql` and `audits/*.sql` file of the project at `root`; writes the ones that
/// change unless `check`.
pub fn format_project(root: &Path, check: bool) -> Result<Vec<FormattedFile>> {
    crate::config::load(root, None)?;
    let mut out = Vec::new();
    for (folder, keyword) in [("models", "MODEL"), ("audits", "AUDIT")] {
        for file in crate::project::read_files(root, folder, &["sql"])? {
            let (formatted, kept) = format_file(&file, keyword)?;
            out.push(FormattedFile {
                changed: formatted != *file.text,
                absolute: root.join(&file.display_path),
                path: file.display_path.clone(),
                kept,
                formatted,
            });
        }
    }
    if !check {
        for file in out.iter().filter(|f| f.changed) {
            write_atomically(&file.absolute, &file.formatted)?;
        }
    }
    Ok(out)
}

/// Replaces a file through a temporary sibling, so an interrupted format never leaves half a model.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| LakeError::io(dir, e))?;
    std::io::Write::write_all(&mut temp, text.as_bytes()).map_err(|e| LakeError::io(path, e))?;
    temp.persist(path)
        .map_err(|e| LakeError::io(path, e.error))?;
    Ok(())
}

/// The canonical text of a model file (`keyword` MODEL: one block, then statements) or an audit file
/// (`keyword` AUDIT: blocks, each followed by its query), and the notes on statements kept as written.
pub fn format_file(
    file: &SourceFile,
    keyword: &str,
) -> std::result::Result<(String, Vec<String>), SourceError> {
    let text: &str = &file.text;
    let mut out = String::new();
    let mut kept = Vec::new();
    let mut from = 0;
    while lex::skip_blank(text, from) < text.len() {
        let block = parse_block(file, keyword, from)?;
        let header = text[from..block.keyword_offset].trim();
        if !header.is_empty() {
            out.push_str(header);
            out.push('\n');
        }
        out.push_str(&format_block(file, &block, keyword).unwrap_or_else(|| {
            kept.push(note(
                file,
                block.keyword_offset,
                "block kept as written: it has comments inside a property",
            ));
            block_text(file, &block).to_string()
        }));
        out.push_str(";\n");
        // A model file's statements run to its end; an audit's query runs to the next top-level `;`.
        let body_end = if keyword == "AUDIT" {
            audit_query_end(text, block.body_offset)
        } else {
            text.len()
        };
        let body = &text[block.body_offset..body_end];
        if !body.trim().is_empty() {
            out.push('\n');
            // Another block follows an audit's query: its `;` is what ends the query.
            let more = keyword == "AUDIT" && lex::skip_blank(text, body_end) < text.len();
            out.push_str(&format_body(
                file,
                block.body_offset,
                body_end,
                more,
                &mut kept,
            ));
            out.push('\n');
        }
        from = body_end;
        if lex::skip_blank(text, from) < text.len() {
            out.push('\n');
        }
    }
    Ok((out, kept))
}

/// Offset just past the `;` that ends the query starting at `from` (or the end of the text).
fn audit_query_end(text: &str, from: usize) -> usize {
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    let mut i = from;
    while i < bytes.len() {
        if let Some(n) = lex::skip_lexeme(bytes, i) {
            i += n;
            continue;
        }
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b';' if depth <= 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    text.len()
}

fn note(file: &SourceFile, offset: usize, message: &str) -> String {
    format!("line {}: {message}", file.line_col(offset).0)
}

/// The block as written, from its keyword to its closing parenthesis.
fn block_text<'a>(file: &'a SourceFile, block: &ModelBlock) -> &'a str {
    let text: &str = &file.text;
    text[block.keyword_offset..block.body_offset]
        .trim_end()
        .trim_end_matches(';')
        .trim_end()
}

/// A comment in a gap of the text, and whether code precedes it on its line.
struct Comment {
    text: String,
    trailing: bool,
}

/// The comments in `text[from..to]`, a stretch that holds only whitespace, comments and `;`/`,`.
fn gap_comments(text: &str, from: usize, to: usize) -> Vec<(usize, Comment)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = from;
    while i < to {
        match lex::skip_lexeme(bytes, i) {
            Some(n) if matches!(bytes[i], b'-' | b'/') => {
                let line_start = text[..i].rfind('\n').map_or(0, |p| p + 1);
                let before = text[line_start..i].trim();
                out.push((
                    i,
                    Comment {
                        text: text[i..i + n].trim_end().to_string(),
                        trailing: !before.is_empty(),
                    },
                ));
                i += n;
            }
            Some(n) => i += n,
            None => i += 1,
        }
    }
    out
}

/// `KEYWORD (` + one property per line + `)`; `None` when a comment sits inside a property, where it
/// could not be placed back faithfully.
fn format_block(file: &SourceFile, block: &ModelBlock, keyword: &str) -> Option<String> {
    let text: &str = &file.text;
    let open = lex::skip_blank(text, block.keyword_offset + keyword.len());
    let close = lex::matching_paren(text, open)? - 1;
    let mut out = format!("{keyword} (");
    let mut gap_start = open + 1;
    let count = block.properties.len();
    for (n, prop) in block.properties.iter().enumerate() {
        let prop_end = prop.value.offset + prop.value.len;
        let inside = gap_comments(text, prop.key_offset, prop_end);
        if !inside.is_empty() {
            return None;
        }
        for (_, comment) in gap_comments(text, gap_start, prop.key_offset) {
            if comment.trailing && n > 0 {
                out.push(' ');
            } else {
                out.push_str("\n  ");
            }
            out.push_str(&comment.text);
        }
        out.push_str("\n  ");
        out.push_str(&prop.key);
        out.push(' ');
        out.push_str(&render_value(&prop.value, 2));
        if n + 1 < count {
            out.push(',');
        }
        gap_start = prop_end;
    }
    for (_, comment) in gap_comments(text, gap_start, close) {
        out.push_str(if comment.trailing && count > 0 {
            " "
        } else {
            "\n  "
        });
        out.push_str(&comment.text);
    }
    out.push_str("\n)");
    Some(out)
}

/// A property value in canonical form; `indent` is the indentation of the line it starts on.
fn render_value(value: &Value, indent: usize) -> String {
    match &value.kind {
        ValueKind::List { items, bracket } => {
            let (open, close) = if *bracket { ("[", "]") } else { ("(", ")") };
            let rendered: Vec<String> = items.iter().map(|v| render_value(v, indent + 2)).collect();
            let inline = format!("{open}{}{close}", rendered.join(", "));
            let structured = items
                .iter()
                .any(|v| matches!(v.kind, ValueKind::Pair { .. } | ValueKind::Assign { .. }));
            if items.is_empty()
                || (!structured && !inline.contains('\n') && indent + inline.len() <= MAX_WIDTH)
            {
                return inline;
            }
            let pad = " ".repeat(indent + 2);
            let lines: Vec<String> = rendered.iter().map(|r| format!("{pad}{r}")).collect();
            format!(
                "{open}\n{}\n{}{close}",
                lines.join(",\n"),
                " ".repeat(indent)
            )
        }
        // A kind with properties: `INCREMENTAL_BY_TIME_RANGE (time_column ds)`, one property per line. A
        // property written `time_column (ds, '%Y')` reads as a call; it keeps its space.
        ValueKind::Call { name, args }
            if args
                .iter()
                .any(|v| matches!(v.kind, ValueKind::Pair { .. } | ValueKind::Call { .. })) =>
        {
            let pad = " ".repeat(indent + 2);
            let lines: Vec<String> = args
                .iter()
                .map(|v| match &v.kind {
                    ValueKind::Call { name, args } => {
                        let args: Vec<String> =
                            args.iter().map(|a| render_value(a, indent + 2)).collect();
                        format!("{pad}{name} ({})", args.join(", "))
                    }
                    _ => format!("{pad}{}", render_value(v, indent + 2)),
                })
                .collect();
            format!("{name} (\n{}\n{})", lines.join(",\n"), " ".repeat(indent))
        }
        ValueKind::Call { name, args } => {
            let args: Vec<String> = args.iter().map(|v| render_value(v, indent)).collect();
            format!("{name}({})", args.join(", "))
        }
        ValueKind::Assign { key, value: inner } => {
            // Both spellings mean the same; keep the one the author used.
            let operator = if value.raw[key.len()..].trim_start().starts_with(":=") {
                ":="
            } else {
                "="
            };
            format!("{key} {operator} {}", render_value(inner, indent))
        }
        ValueKind::Pair { key, value } => {
            format!(
                "{} {}",
                render_value(key, indent),
                render_value(value, indent)
            )
        }
        _ => value.raw.trim().to_string(),
    }
}

/// The statements of `text[from..to]` in canonical form, separated by blank lines, with the comments
/// between them kept; `terminate_last` ends the last one with `;` too.
fn format_body(
    file: &SourceFile,
    from: usize,
    to: usize,
    terminate_last: bool,
    kept: &mut Vec<String>,
) -> String {
    let text: &str = &file.text;
    let body = &text[from..to];
    if body.to_ascii_uppercase().contains("JINJA_") {
        kept.push(note(
            file,
            from,
            "statements kept as written: Jinja blocks are not formatted",
        ));
        return body.trim().to_string();
    }
    let pieces = lex::split_statements(body, from);
    let mut out = String::new();
    let mut gap_start = from;
    for (n, piece) in pieces.iter().enumerate() {
        for (_, comment) in gap_comments(text, gap_start, piece.offset) {
            if comment.trailing && n > 0 {
                out.push(' ');
                out.push_str(&comment.text);
                out.push('\n');
            } else {
                out.push_str(&comment.text);
                out.push('\n');
            }
        }
        if n > 0 && !out.ends_with("\n\n") {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push('\n');
        }
        match format_statement(piece.text) {
            Ok(formatted) => out.push_str(&formatted),
            Err(reason) => {
                if let Some(reason) = reason {
                    kept.push(note(
                        file,
                        piece.offset,
                        &format!("statement kept as written: {reason}"),
                    ));
                }
                out.push_str(piece.text);
            }
        }
        gap_start = piece.offset + piece.text.len();
        if n + 1 < pieces.len() || terminate_last {
            if ends_in_line_comment(&out) {
                out.push('\n');
            }
            out.push(';');
            // Skip the `;` so a comment after it counts as trailing this statement.
            if let Some(semicolon) = text[gap_start..to].find(';') {
                gap_start += semicolon + 1;
            }
        }
    }
    for (_, comment) in gap_comments(text, gap_start, to) {
        // A body of comments only starts on its own line: a comment "trailing" the block's `)` would gain a
        // line at every run otherwise (found by tests/it/fuzz.rs).
        if !out.is_empty() {
            out.push_str(if comment.trailing { " " } else { "\n" });
        }
        out.push_str(&comment.text);
    }
    out.trim_end().to_string()
}

/// One statement in canonical form. `Err(None)`: a macro statement (`@DEF(…)`) or an
/// `ON_VIRTUAL_UPDATE_BEGIN`/`_END` marker, kept without comment;
/// `Err(Some(reason))`: kept as written for that reason.
pub fn format_statement(sql: &str) -> std::result::Result<String, Option<String>> {
    let keyword = lex::leading_keyword(sql);
    if keyword.starts_with('@') || keyword.starts_with("ON_VIRTUAL_UPDATE_") {
        return Err(None);
    }
    let (hidden, macros) = lex::hide_macros(sql);
    let original = crate::sql::parse(&hidden)
        .map_err(|e| Some(format!("it does not parse as DuckDB SQL ({})", e.message)))?;
    let printed = crate::sql::normalized(&original);
    let unchanged =
        || Some("lake could not lay it out without changing it (please report this)".to_string());
    let keywords = layout::keyword_words(&hidden, &printed).ok_or_else(unchanged)?;
    let laid_out = layout::layout(&hidden, &keywords).ok_or_else(unchanged)?;
    let same_meaning = crate::sql::parse(&laid_out)
        .is_ok_and(|reparsed| crate::sql::normalized(&reparsed) == printed);
    if !same_meaning || comments_of(&laid_out) != comments_of(&hidden) {
        return Err(unchanged());
    }
    Ok(lex::show_macros(&laid_out, &macros))
}

/// Whether the text ends inside a `--` comment, where a `;` appended on the same line would be lost.
fn ends_in_line_comment(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match lex::skip_lexeme(bytes, i) {
            Some(n) if i + n >= bytes.len() => return bytes[i] == b'-',
            Some(n) => i += n,
            None => i += 1,
        }
    }
    false
}

fn comments_of(sql: &str) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match lex::skip_lexeme(bytes, i) {
            Some(n) => {
                if matches!(bytes[i], b'-' | b'/') {
                    out.push(sql[i..i + n].trim_end().to_string());
                }
                i += n;
            }
            None => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(sql: &str) -> String {
        format_statement(sql).unwrap_or_else(|e| panic!("kept as written: {e:?}"))
    }

    #[test]
    fn lays_out_clauses_and_lists() {
        assert_eq!(
            fmt(
                "select a, sum(b) as total from t join u on t.id = u.id and t.x = 1 where a > 1 and b between 1 and 2 group by a order by a limit 5"
            ),
            "SELECT\n  a,\n  sum(b) AS total\nFROM t\nJOIN u\n  ON t.id = u.id\n  AND t.x = 1\nWHERE\n  a > 1\n  AND b BETWEEN 1 AND 2\nGROUP BY\n  a\nORDER BY\n  a\nLIMIT 5"
        );
    }

    #[test]
    fn nests_subqueries_and_ctes() {
        assert_eq!(
            fmt(
                "with a as (select x from t), b as (select 1 as one) select * from a where exists (select 1 from b)"
            ),
            "WITH a AS (\n  SELECT\n    x\n  FROM t\n), b AS (\n  SELECT\n    1 AS one\n)\nSELECT\n  *\nFROM a\nWHERE\n  EXISTS (\n    SELECT\n      1\n    FROM b\n  )"
        );
    }

    #[test]
    fn keeps_names_case_and_comments() {
        let sql = "-- leading\nselect date, Name, -- the name\n  \"Mixed\" /* inline */ from t";
        assert_eq!(
            fmt(sql),
            "-- leading\nSELECT\n  date,\n  Name, -- the name\n  \"Mixed\" /* inline */\nFROM t"
        );
    }

    #[test]
    fn keeps_macros_and_breaks_long_cases() {
        assert_eq!(
            fmt(
                "select @each(@cols, c -> c), case when x = 1 then 'a' when x = 2 then 'b' else 'c' end as k from t where d between @start_ds and @end_ds"
            ),
            "SELECT\n  @each(@cols, c -> c),\n  CASE\n    WHEN x = 1 THEN 'a'\n    WHEN x = 2 THEN 'b'\n    ELSE 'c'\n  END AS k\nFROM t\nWHERE\n  d BETWEEN @start_ds AND @end_ds"
        );
        assert_eq!(
            fmt("select case when x then 1 end from t"),
            "SELECT\n  CASE WHEN x THEN 1 END\nFROM t"
        );
    }

    #[test]
    fn trailing_commas_are_dropped() {
        assert_eq!(
            fmt("select a, b, from t group by a, b, order by a,"),
            "SELECT\n  a,\n  b\nFROM t\nGROUP BY\n  a,\n  b\nORDER BY\n  a"
        );
    }

    #[test]
    fn struct_literals_distinct_on_and_macro_calls_stay_whole() {
        assert_eq!(
            fmt("select distinct on (a, b) a, {'x': 1, 'y': {'z': 2}} as s from t"),
            "SELECT DISTINCT ON (a, b)\n  a,\n  {'x': 1, 'y': {'z': 2}} AS s\nFROM t"
        );
        // Macro arguments are macro syntax (here `… AS cnt_@x`), kept exactly as written.
        assert_eq!(
            fmt("select @EACH(['a'], x -> sum(case when k = x then 1 end) as cnt_@x) from t"),
            "SELECT\n  @EACH(['a'], x -> sum(case when k = x then 1 end) as cnt_@x)\nFROM t"
        );
    }

    #[test]
    fn formatting_is_idempotent() {
        for sql in [
            "select a, -- c\n b from t qualify row_number() over (partition by a order by b desc) = 1",
            "select * from (select 1 as x union all select 2) as s left join t using (x)",
            "select [1, 2][1], {'a': 1}, x::int, count(*) filter (where y) from t",
            "select case when a then case when b then 1 else 2 end else 3 end as n from t",
            "with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select n from r",
            "select a /* why */ , -- trailing\n  b -- last\nfrom t -- after from\n-- before where\nwhere a = 1",
        ] {
            let once = fmt(sql);
            assert_eq!(fmt(&once), once, "{sql}");
        }
    }

    #[test]
    fn macro_statements_and_unparsable_sql_are_kept() {
        assert_eq!(format_statement("@DEF(x, 1)"), Err(None));
        assert_eq!(format_statement("ON_VIRTUAL_UPDATE_BEGIN"), Err(None));
        assert!(
            matches!(format_statement("selec 1"), Err(Some(r)) if r.contains("does not parse"))
        );
    }

    #[test]
    fn model_block_gets_one_property_per_line() {
        let file = SourceFile::new(
            "m.sql",
            "-- header\nmodel (name a.b, kind incremental_by_time_range (time_column (ds, '%Y'), batch_size 3), grain [id, ds], audits (not_null(columns := [id])), -- checks\n owner me,);\nselect 1 as id",
        );
        let (out, kept) = format_file(&file, "MODEL").unwrap();
        assert!(kept.is_empty(), "{kept:?}");
        assert_eq!(
            out,
            "-- header\nMODEL (\n  name a.b,\n  kind incremental_by_time_range (\n    time_column (ds, '%Y'),\n    batch_size 3\n  ),\n  grain [id, ds],\n  audits (not_null(columns := [id])), -- checks\n  owner me\n);\n\nSELECT\n  1 AS id\n"
        );
        let again = SourceFile::new("m.sql", out.clone());
        assert_eq!(format_file(&again, "MODEL").unwrap().0, out);
    }

    #[test]
    fn a_semicolon_never_lands_in_a_line_comment() {
        let file = SourceFile::new("m.sql", "MODEL (name a.b);\nset x = 1 -- why\n;\nselect 1");
        let (out, _) = format_file(&file, "MODEL").unwrap();
        assert!(out.contains("-- why\n;"), "{out}");
    }

    #[test]
    fn audit_files_keep_each_block_with_its_query() {
        let file = SourceFile::new(
            "a.sql",
            "AUDIT (name one); select * from @this_model where x < 0;\nAUDIT (name two, blocking false);\nselect * from @this_model where y is null",
        );
        let (out, _) = format_file(&file, "AUDIT").unwrap();
        assert_eq!(
            out,
            "AUDIT (\n  name one\n);\n\nSELECT\n  *\nFROM @this_model\nWHERE\n  x < 0;\n\nAUDIT (\n  name two,\n  blocking false\n);\n\nSELECT\n  *\nFROM @this_model\nWHERE\n  y IS NULL\n"
        );
    }

    #[test]
    fn a_statement_kept_as_written_formats_to_itself() {
        let file = SourceFile::new(
            "audits/a.sql",
            "AUDIT (\n  name a\n)/*M @this_model\nWHERE\n  ->item_id < 0\n item_id < 0\n",
        );
        let (once, _) = format_file(&file, "AUDIT").unwrap();
        let (twice, _) =
            format_file(&SourceFile::new("audits/a.sql", once.as_str()), "AUDIT").unwrap();
        assert_eq!(twice, once);
    }
}
