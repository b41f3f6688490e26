//! Engine errors about a model's query, located in the model's file instead of in the rendered SQL.

use crate::error::{LakeError, SourceError, engine_message};
use crate::sql::lex;

use super::Model;

/// Where DuckDB points in the SQL it ran: `LINE n: text` and the caret under it.
struct EnginePointer<'a> {
    line_text: &'a str,
    /// Byte column of the caret within `line_text`.
    column: usize,
}

/// DuckDB's pointer in `message`, when it gives one.
fn engine_pointer(message: &str) -> Option<EnginePointer<'_>> {
    let mut lines = message.lines();
    let (prefix_len, line_text) = lines.by_ref().find_map(|line| {
        let rest = line.strip_prefix("LINE ")?;
        let colon = rest.find(": ")?;
        rest[..colon]
            .chars()
            .all(|c| c.is_ascii_digit())
            .then(|| ("LINE ".len() + colon + 2, &rest[colon + 2..]))
    })?;
    let caret = lines.next()?.find('^')?;
    Some(EnginePointer {
        line_text,
        column: caret.checked_sub(prefix_len)?,
    })
}

/// The first double-quoted name in `message` (`Referenced column "idd" not found`).
fn quoted_name(message: &str) -> Option<&str> {
    let start = message.find('"')? + 1;
    let len = message[start..].find('"')?;
    (len > 0).then(|| &message[start..start + len])
}

impl Model {
    /// `error` located in this model's file when it is DuckDB's complaint about a place in the model's query
    /// that can be found there (the line DuckDB quotes, else the name it quotes); `None` otherwise, e.g. for
    /// a pre-statement's error or one about lake's own SQL.
    pub fn locate_engine_error(&self, error: &LakeError) -> Option<SourceError> {
        let LakeError::Engine { cause, .. } = error else {
            return None;
        };
        let message = engine_message(cause);
        let query = self.query.as_ref().filter(|q| q.source.is_none())?;
        let start = lex::skip_blank(&self.file.text, query.offset);
        let end = (query.offset + query.text.len()).min(self.file.text.len());
        let region = self.file.text.get(start..end)?;
        let at = engine_pointer(&message)
            .and_then(|pointer| offset_of_quoted_line(region, &pointer))
            .or_else(|| quoted_name(&message).and_then(|name| offset_of_word(region, name)))?;
        let len = region[at..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(region.len() - at)
            .max(1);
        let mut lines = message.lines().filter(|l| {
            !l.trim().is_empty() && !l.starts_with("LINE ") && !l.trim().starts_with('^')
        });
        let headline = lines.next().unwrap_or(&message).to_string();
        let rest: Vec<&str> = lines.collect();
        Some(
            self.file
                .error(
                    start + at,
                    len,
                    format!("model `{}` failed: {headline}", self.meta.name),
                )
                .with_label("here")
                .with_optional_help((!rest.is_empty()).then(|| rest.join("\n"))),
        )
    }
}

/// The offset in `region` of the caret of `pointer`: the line of `region` whose text is the line DuckDB
/// quotes (macros and table names may shift it within the line, so both are compared trimmed).
fn offset_of_quoted_line(region: &str, pointer: &EnginePointer<'_>) -> Option<usize> {
    let quoted = pointer.line_text.trim();
    if quoted.is_empty() {
        return None;
    }
    let quoted_indent = pointer.line_text.len() - pointer.line_text.trim_start().len();
    let within = pointer.column.checked_sub(quoted_indent)?;
    let mut line_start = 0;
    for line in region.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        if content.trim() == quoted {
            let indent = content.len() - content.trim_start().len();
            return Some(line_start + indent + within.min(content.trim().len().saturating_sub(1)));
        }
        line_start += line.len();
    }
    None
}

/// The offset of `word` in `region` as a whole identifier (case-insensitive).
fn offset_of_word(region: &str, word: &str) -> Option<usize> {
    let lower = region.to_ascii_lowercase();
    let word = word.to_ascii_lowercase();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(found) = lower[from..].find(&word) {
        let at = from + found;
        let before = lower[..at].chars().next_back();
        let after = lower[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_duckdbs_pointer() {
        let message = "Binder Error: Referenced column \"idd\" not found in FROM clause!\nCandidate bindings: \"id\"\n\nLINE 3:   COUNT(DISTINCT idd) AS num_orders\n                         ^";
        let pointer = engine_pointer(message).expect("a pointer");
        assert_eq!(pointer.line_text, "  COUNT(DISTINCT idd) AS num_orders");
        assert_eq!(
            &pointer.line_text[pointer.column..pointer.column + 3],
            "idd"
        );
        let region = "SELECT\n  item_id,\n    COUNT(DISTINCT idd) AS num_orders\nFROM t";
        let at = offset_of_quoted_line(region, &pointer).expect("found");
        assert_eq!(&region[at..at + 3], "idd");
        assert_eq!(quoted_name(message), Some("idd"));
        assert_eq!(offset_of_word("SELECT ids, id FROM t", "id"), Some(12));
    }
}
