//! Lexical scanning of raw SQL text: statement boundaries, strings and comments, without parsing.

/// A statement cut out of a larger text, with the byte offset where it starts in that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece<'a> {
    pub text: &'a str,
    pub offset: usize,
}

/// Byte length of the string literal, quoted identifier or comment starting at `i`, if one starts there.
pub fn skip_lexeme(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes[i] {
        q @ (b'\'' | b'"' | b'`') => {
            let mut j = i + 1;
            while j < bytes.len() {
                if bytes[j] == q {
                    // A doubled quote is an escaped quote inside the literal.
                    if j + 1 < bytes.len() && bytes[j + 1] == q {
                        j += 2;
                        continue;
                    }
                    return Some(j + 1 - i);
                }
                j += 1;
            }
            Some(bytes.len() - i)
        }
        b'-' if bytes.get(i + 1) == Some(&b'-') => {
            let end = bytes[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| i + p);
            Some(end - i)
        }
        b'/' if bytes.get(i + 1) == Some(&b'*') => Some(comment_end(bytes, i, b"*/") - i),
        // A Jinja comment, which SQLMesh also allows in models without a JINJA_QUERY block.
        b'{' if bytes.get(i + 1) == Some(&b'#') => Some(comment_end(bytes, i, b"#}") - i),
        _ => None,
    }
}

/// Offset just past the `close` of the two-byte-opened comment starting at `open` (the text's end if unclosed).
fn comment_end(bytes: &[u8], open: usize, close: &[u8; 2]) -> usize {
    bytes[open + 2..]
        .windows(2)
        .position(|w| w == close)
        .map_or(bytes.len(), |p| open + 2 + p + 2)
}

/// Whether `text` holds Jinja (`{{ … }}`, `{% … %}` or `{# … #}`): SQLMesh renders such a statement with Jinja
/// even outside a JINJA_QUERY block.
pub fn has_jinja(text: &str) -> bool {
    ["{{", "{%", "{#"].iter().any(|open| text.contains(open))
}

/// Offset of the first byte that is neither whitespace nor part of a comment.
pub fn skip_blank(text: &str, mut i: usize) -> usize {
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
        } else if matches!(bytes[i], b'-' | b'/' | b'{') {
            match skip_lexeme(bytes, i) {
                Some(n) => i += n,
                None => break,
            }
        } else {
            break;
        }
    }
    i
}

/// Offset just past the parenthesis that closes the one at `open`, or `None` when it is never closed.
pub fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        if let Some(n) = skip_lexeme(bytes, i) {
            i += n;
            continue;
        }
        match bytes[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits `text` on top-level semicolons; blank statements (only whitespace or comments) are dropped.
pub fn split_statements(text: &str, base_offset: usize) -> Vec<Piece<'_>> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let mut i = 0;
    let mut push = |from: usize, to: usize| {
        let begin = skip_blank(text, from);
        if begin < to {
            let piece = text[begin..to].trim_end();
            pieces.push(Piece {
                text: piece,
                offset: base_offset + begin,
            });
        }
    };
    while i < bytes.len() {
        if let Some(n) = skip_lexeme(bytes, i) {
            i += n;
            continue;
        }
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b';' if depth <= 0 => {
                push(start, i);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push(start, bytes.len());
    pieces
}

/// The first word of a statement, upper-cased (`SELECT`, `WITH`, `@DEF`, …).
pub fn leading_keyword(statement: &str) -> String {
    let start = skip_blank(statement, 0);
    let rest = &statement[start..];
    let first = rest.chars().next();
    if first == Some('(') {
        return "(".into();
    }
    let word: String = rest
        .chars()
        .enumerate()
        .take_while(|&(i, c)| c.is_ascii_alphanumeric() || c == '_' || (i == 0 && c == '@'))
        .map(|(_, c)| c)
        .collect();
    word.to_ascii_uppercase()
}

fn placeholder(n: usize) -> String {
    format!("__lake_macro_{n}__")
}

/// Replaces SQLMesh macro syntax (`@name`, `@{name}`, and whole calls `@name(…)`) outside strings and
/// comments by plain identifiers sqlparser can read; returns the text and the macro texts, by placeholder
/// number.
pub fn hide_macros(sql: &str) -> (String, Vec<String>) {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut macros = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if let Some(n) = skip_lexeme(bytes, i) {
            i += n;
            continue;
        }
        if bytes[i] == b'@' {
            let end = match bytes.get(i + 1) {
                Some(b'{') => sql[i..].find('}').map(|p| i + p + 1),
                Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                    let name_end = i
                        + 1
                        + sql[i + 1..]
                            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                            .unwrap_or(sql.len() - i - 1);
                    // A macro call is hidden whole: its arguments (lambdas, `x AS alias`) are macro syntax,
                    // not SQL, and stay as written.
                    match bytes.get(name_end) {
                        Some(b'(') => matching_paren(sql, name_end).or(Some(name_end)),
                        _ => Some(name_end),
                    }
                }
                _ => None,
            };
            if let Some(end) = end {
                out.push_str(&sql[copied..i]);
                out.push_str(&placeholder(macros.len()));
                macros.push(sql[i..end].to_string());
                i = end;
                copied = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&sql[copied..]);
    (out, macros)
}

pub fn show_macros(sql: &str, macros: &[String]) -> String {
    let mut out = sql.to_string();
    // Highest numbers first, so `__lake_macro_1__` never matches inside `__lake_macro_10__`.
    for (n, text) in macros.iter().enumerate().rev() {
        out = out.replace(&placeholder(n), text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let text = "SET x = 1; -- a; comment\nSELECT ';', \"a;b\" FROM t /* ; */;\n\n  ";
        let pieces = split_statements(text, 10);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].text, "SET x = 1");
        assert_eq!(pieces[0].offset, 10);
        assert_eq!(pieces[1].text, "SELECT ';', \"a;b\" FROM t /* ; */");
        assert_eq!(&text[pieces[1].offset - 10..][..6], "SELECT");
    }

    #[test]
    fn finds_matching_paren_past_strings_and_comments() {
        let text = "MODEL (name 'a)b', -- )\n kind FULL) SELECT 1";
        let end = matching_paren(text, 6).unwrap();
        assert_eq!(&text[end..], " SELECT 1");
        assert_eq!(matching_paren("(a (b)", 0), None);
    }

    #[test]
    fn leading_keyword_skips_comments() {
        assert_eq!(
            leading_keyword("-- hi\n  with x as (select 1) select 1"),
            "WITH"
        );
        assert_eq!(leading_keyword("@def(x, 1)"), "@DEF");
        assert_eq!(leading_keyword("(select 1)"), "(");
        assert_eq!(
            leading_keyword("{#- a Jinja comment; with a semicolon #}\nSELECT 1"),
            "SELECT"
        );
        assert_eq!(
            split_statements("{# a; b #} SELECT 1; SELECT 2", 0).len(),
            2,
            "a semicolon inside a Jinja comment ends nothing"
        );
    }
}
