//! Tokenises and parses `MODEL ( … )` and `AUDIT ( … )` headers into a generic property tree with source
//! locations, shared by model files, audit files and the formatter.

use sqlparser::dialect::DuckDbDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::{SourceError, SourceFile};
use crate::sql::IdentPart;
use crate::sql::lex;

/// A property value as written, before it is given a meaning.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    Str(String),
    Number(String),
    Bool(bool),
    Null,
    Ident(Vec<IdentPart>),
    /// `(a, b)`; `bracket` is true for `[a, b]`.
    List {
        items: Vec<Value>,
        bracket: bool,
    },
    /// `name(args)`.
    Call {
        name: String,
        args: Vec<Value>,
    },
    /// `key := value` or `key = value`.
    Assign {
        key: String,
        value: Box<Value>,
    },
    /// Juxtaposition: `path 'x'`, `id INT`, `time_column (ts, '%Y')`.
    Pair {
        key: Box<Value>,
        value: Box<Value>,
    },
    /// Any other expression; only its raw text is meaningful.
    Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    /// Source text exactly as written.
    pub raw: String,
    pub offset: usize,
    pub len: usize,
}

impl Value {
    /// The value as a plain scalar string: a string literal's contents, an identifier or a number.
    pub fn as_text(&self) -> Option<String> {
        match &self.kind {
            ValueKind::Str(s) | ValueKind::Number(s) => Some(s.clone()),
            ValueKind::Ident(parts) => Some(
                parts
                    .iter()
                    .map(|p| p.value.as_str())
                    .collect::<Vec<_>>()
                    .join("."),
            ),
            ValueKind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The items of a list, or the value itself as a one-item list.
    pub fn items(&self) -> Vec<&Value> {
        match &self.kind {
            ValueKind::List { items, .. } => items.iter().collect(),
            _ => vec![self],
        }
    }
}

/// A `key value` entry of the MODEL block.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    /// Lower-cased key.
    pub key: String,
    pub key_offset: usize,
    pub key_len: usize,
    pub value: Value,
}

/// The parsed MODEL header and where the rest of the file starts.
#[derive(Debug, Clone)]
pub struct ModelBlock {
    pub properties: Vec<Property>,
    /// Byte offset just past the block (and its `;`, if any).
    pub body_offset: usize,
    /// Offset and length of the `MODEL` keyword, for errors about the block as a whole.
    pub keyword_offset: usize,
}

/// Parses the MODEL block at the start of `file` (after comments and blank lines).
pub fn parse_model_block(file: &SourceFile) -> Result<ModelBlock, SourceError> {
    parse_block(file, "MODEL", 0)
}

/// Parses a `KEYWORD ( … )` block (`MODEL`, `AUDIT`) starting at `from` (after comments and blank lines).
pub fn parse_block(
    file: &SourceFile,
    keyword: &str,
    from: usize,
) -> Result<ModelBlock, SourceError> {
    let text: &str = &file.text;
    let start = lex::skip_blank(text, from);
    let keyword_end = start
        + text[start..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(text.len() - start);
    if !text[start..keyword_end].eq_ignore_ascii_case(keyword) {
        let example = if keyword == "MODEL" {
            "every model file starts with `MODEL (name schema.model_name, kind FULL);` followed by its query"
        } else {
            "an audit file holds `AUDIT (name audit_name);` blocks, each followed by the query for bad rows"
        };
        return Err(file
            .error(
                start,
                keyword_end.saturating_sub(start).max(1),
                format!("expected a `{keyword} (...)` block at the start of the file"),
            )
            .with_label(format!("expected `{keyword}`"))
            .with_help(example));
    }
    let open = lex::skip_blank(text, keyword_end);
    if text.as_bytes().get(open) != Some(&b'(') {
        return Err(file
            .error(open, 1, format!("expected `(` after `{keyword}`"))
            .with_label("expected `(`"));
    }
    let Some(close) = lex::matching_paren(text, open) else {
        return Err(file
            .error(open, 1, format!("the {keyword} block is never closed"))
            .with_label("this `(` has no matching `)`")
            .with_help(format!(
                "check for a missing `)` or an unterminated string in the {keyword} block"
            )));
    };
    let tokens = tokenize(file, open + 1, close - 1)?;
    let mut parser = BlockParser {
        file,
        tokens,
        pos: 0,
        end_offset: close - 1,
        depth: 0,
    };
    let properties = parser.properties()?;
    let mut body_offset = close;
    let after = lex::skip_blank(text, close);
    if text.as_bytes().get(after) == Some(&b';') {
        body_offset = after + 1;
    }
    Ok(ModelBlock {
        properties,
        body_offset,
        keyword_offset: start,
    })
}

struct Tok {
    token: Token,
    offset: usize,
    end: usize,
}

fn tokenize(file: &SourceFile, from: usize, to: usize) -> Result<Vec<Tok>, SourceError> {
    let slice = &file.text[from..to];
    let (base_line, base_col) = file.line_col(from);
    let dialect = DuckDbDialect {};
    let tokens: Vec<TokenWithSpan> = Tokenizer::new(&dialect, slice)
        .tokenize_with_location()
        .map_err(|e| {
            let line = e.location.line as usize;
            let col = e.location.column as usize;
            let offset = locate(file, base_line, base_col, line, col);
            file.error(
                offset,
                1,
                format!("cannot read the MODEL block: {}", e.message),
            )
        })?;
    Ok(tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .map(|t| {
            let offset = locate(
                file,
                base_line,
                base_col,
                t.span.start.line as usize,
                t.span.start.column as usize,
            );
            let end = locate(
                file,
                base_line,
                base_col,
                t.span.end.line as usize,
                t.span.end.column as usize,
            );
            Tok {
                token: t.token,
                offset,
                end,
            }
        })
        .collect())
}

/// Converts a location inside a slice that starts at (`base_line`, `base_col`) into a file offset.
fn locate(file: &SourceFile, base_line: usize, base_col: usize, line: usize, col: usize) -> usize {
    if line <= 1 {
        file.offset_of(base_line, base_col + col.saturating_sub(1))
    } else {
        file.offset_of(base_line + line - 1, col)
    }
}

struct BlockParser<'a> {
    file: &'a SourceFile,
    tokens: Vec<Tok>,
    pos: usize,
    end_offset: usize,
    /// Lists open around the current token.
    depth: usize,
}

/// How deeply lists may nest in a block. Real MODEL blocks nest a few levels (`kind X (unique_key (a, b))`);
/// the limit keeps a generated or corrupt file from recursing until the stack overflows.
const MAX_LIST_DEPTH: usize = 64;

impl BlockParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn here(&self) -> usize {
        self.peek().map_or(self.end_offset, |t| t.offset)
    }

    fn error_here(&self, message: impl Into<String>, label: &str) -> SourceError {
        let (offset, len) = self.peek().map_or((self.end_offset, 1), |t| {
            (t.offset, (t.end - t.offset).max(1))
        });
        self.file.error(offset, len, message).with_label(label)
    }

    fn properties(&mut self) -> Result<Vec<Property>, SourceError> {
        let mut props = Vec::new();
        while let Some(tok) = self.peek() {
            let Token::Word(word) = &tok.token else {
                return Err(self
                    .error_here(format!("expected a property name, found `{}`", tok.token), "expected a property name")
                    .with_help("MODEL properties are written `key value`, separated by commas, e.g. `kind FULL,`"));
            };
            let key = word.value.to_ascii_lowercase();
            let (key_offset, key_len) = (tok.offset, tok.end - tok.offset);
            self.pos += 1;
            if self.at_terminator() {
                return Err(self
                    .file
                    .error(
                        key_offset,
                        key_len,
                        format!("property `{key}` has no value"),
                    )
                    .with_label("expected a value after this name"));
            }
            let value = self.item(false)?;
            props.push(Property {
                key,
                key_offset,
                key_len,
                value,
            });
            match self.peek().map(|t| &t.token) {
                None => break,
                Some(Token::Comma) => self.pos += 1,
                Some(other) => {
                    return Err(self
                        .error_here(
                            format!(
                                "expected `,` or `)` after the value of `{}`, found `{other}`",
                                props.last().map_or("", |p| p.key.as_str())
                            ),
                            "expected `,`",
                        )
                        .with_help("separate MODEL properties with commas"));
                }
            }
        }
        Ok(props)
    }

    fn at_terminator(&self) -> bool {
        matches!(
            self.peek().map(|t| &t.token),
            None | Some(Token::Comma | Token::RParen | Token::RBracket)
        )
    }

    fn can_start_primary(&self) -> bool {
        matches!(
            self.peek().map(|t| &t.token),
            Some(
                Token::Word(_)
                    | Token::SingleQuotedString(_)
                    | Token::Number(..)
                    | Token::LParen
                    | Token::LBracket
                    | Token::Mul
            )
        )
    }

    fn value(&self, kind: ValueKind, from: usize, to: usize) -> Value {
        Value {
            kind,
            raw: self.file.text[from..to].to_string(),
            offset: from,
            len: to - from,
        }
    }

    fn last_end(&self) -> usize {
        self.tokens[self.pos - 1].end
    }

    /// One comma-separated item. `allow_pair` permits juxtaposed values (`id INT`), which the top level
    /// of the block does not use, so that a missing comma there is reported rather than swallowed.
    fn item(&mut self, allow_pair: bool) -> Result<Value, SourceError> {
        let start_pos = self.pos;
        let from = self.here();
        if self.can_start_primary() {
            let primary = self.primary()?;
            if self.at_terminator() {
                return Ok(primary);
            }
            match self.peek().map(|t| &t.token) {
                Some(Token::Assignment | Token::Eq) => {
                    self.pos += 1;
                    if self.at_terminator() {
                        return Err(
                            self.error_here("expected a value after `:=`", "expected a value")
                        );
                    }
                    let value = self.item(true)?;
                    let key = primary
                        .as_text()
                        .unwrap_or(primary.raw.clone())
                        .to_ascii_lowercase();
                    let to = self.last_end();
                    return Ok(self.value(
                        ValueKind::Assign {
                            key,
                            value: Box::new(value),
                        },
                        from,
                        to,
                    ));
                }
                _ if self.can_start_primary() && !allow_pair => return Ok(primary),
                _ if self.can_start_primary() => {
                    let value = self.item(true)?;
                    let to = self.last_end();
                    return Ok(self.value(
                        ValueKind::Pair {
                            key: Box::new(primary),
                            value: Box::new(value),
                        },
                        from,
                        to,
                    ));
                }
                _ => {}
            }
        }
        // A free-form expression (`a + b`, `x > 0`): keep its text up to the next top-level separator.
        self.pos = start_pos;
        let mut depth = 0i32;
        while let Some(tok) = self.peek() {
            match tok.token {
                Token::LParen | Token::LBracket => depth += 1,
                Token::RParen | Token::RBracket if depth == 0 => break,
                Token::RParen | Token::RBracket => depth -= 1,
                Token::Comma if depth == 0 => break,
                _ => {}
            }
            self.pos += 1;
        }
        if self.pos == start_pos {
            return Err(self.error_here("expected a value", "expected a value"));
        }
        let to = self.last_end();
        Ok(self.value(ValueKind::Expr, from, to))
    }

    fn primary(&mut self) -> Result<Value, SourceError> {
        let from = self.here();
        let tok = &self.tokens[self.pos];
        let kind = match &tok.token {
            Token::SingleQuotedString(s) => {
                let s = s.clone();
                self.pos += 1;
                ValueKind::Str(s)
            }
            Token::Number(n, _) => {
                let n = n.clone();
                self.pos += 1;
                ValueKind::Number(n)
            }
            Token::LParen | Token::LBracket => {
                let bracket = matches!(tok.token, Token::LBracket);
                self.pos += 1;
                let items = self.list(if bracket {
                    Token::RBracket
                } else {
                    Token::RParen
                })?;
                ValueKind::List { items, bracket }
            }
            // `columns *` (every column), as SQLMesh writes it.
            Token::Mul => {
                self.pos += 1;
                ValueKind::Ident(vec![IdentPart {
                    value: "*".into(),
                    quoted: false,
                }])
            }
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::TRUE => {
                self.pos += 1;
                ValueKind::Bool(true)
            }
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::FALSE => {
                self.pos += 1;
                ValueKind::Bool(false)
            }
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::NULL => {
                self.pos += 1;
                ValueKind::Null
            }
            Token::Word(_) => {
                let mut parts = Vec::new();
                loop {
                    let Some(Tok {
                        token: Token::Word(w),
                        ..
                    }) = self.peek()
                    else {
                        return Err(self.error_here(
                            "expected an identifier after `.`",
                            "expected an identifier",
                        ));
                    };
                    parts.push(IdentPart {
                        value: w.value.clone(),
                        quoted: w.quote_style.is_some(),
                    });
                    self.pos += 1;
                    if matches!(self.peek().map(|t| &t.token), Some(Token::Period)) {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                if matches!(self.peek().map(|t| &t.token), Some(Token::LParen)) {
                    self.pos += 1;
                    let args = self.list(Token::RParen)?;
                    let name = parts
                        .iter()
                        .map(|p| p.value.as_str())
                        .collect::<Vec<_>>()
                        .join(".");
                    ValueKind::Call { name, args }
                } else {
                    ValueKind::Ident(parts)
                }
            }
            other => {
                return Err(self.error_here(format!("unexpected `{other}`"), "expected a value"));
            }
        };
        let to = self.last_end();
        Ok(self.value(kind, from, to))
    }

    /// Items up to the closing token, which is consumed. Trailing commas are allowed.
    fn list(&mut self, close: Token) -> Result<Vec<Value>, SourceError> {
        if self.depth >= MAX_LIST_DEPTH {
            let opened = self.pos.saturating_sub(1);
            let at = self
                .tokens
                .get(opened)
                .map_or(self.end_offset, |t| t.offset);
            return Err(self
                .file
                .error(at, 1, format!("lists nested more than {MAX_LIST_DEPTH} deep"))
                .with_label("too deep")
                .with_help("a MODEL block's values nest a few levels at most; look for unbalanced brackets"));
        }
        self.depth += 1;
        let items = self.list_items(close);
        self.depth -= 1;
        items
    }

    fn list_items(&mut self, close: Token) -> Result<Vec<Value>, SourceError> {
        let mut items = Vec::new();
        loop {
            match self.peek().map(|t| &t.token) {
                Some(t) if *t == close => {
                    self.pos += 1;
                    return Ok(items);
                }
                None => {
                    return Err(self.error_here(
                        format!("expected `{close}` to close the list"),
                        "list not closed",
                    ));
                }
                _ => {}
            }
            items.push(self.item(true)?);
            match self.peek().map(|t| &t.token) {
                Some(Token::Comma) => self.pos += 1,
                Some(t) if *t == close => {}
                Some(other) => {
                    return Err(self.error_here(
                        format!("expected `,` or `{close}`, found `{other}`"),
                        "expected `,`",
                    ));
                }
                None => {
                    return Err(self.error_here(
                        format!("expected `{close}` to close the list"),
                        "list not closed",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ModelBlock, SourceError> {
        parse_model_block(&SourceFile::new("m.sql", text))
    }

    #[test]
    fn parses_nested_values_and_trailing_commas() {
        let block = parse(
            "-- header\nMODEL (\n  name demo.\"My Model\",\n  kind INCREMENTAL_BY_TIME_RANGE (time_column (ts, '%Y'), batch_size 3,),\n  columns (id INT, price DECIMAL(10, 2), tags TEXT[]),\n  audits (not_null(columns := [a, b]), unique_values(columns = (id))),\n  enabled false,\n  partitioned_by (day(ts), a + b),\n);\nSELECT 1",
        )
        .unwrap();
        let keys: Vec<_> = block.properties.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "name",
                "kind",
                "columns",
                "audits",
                "enabled",
                "partitioned_by"
            ]
        );
        let ValueKind::Ident(parts) = &block.properties[0].value.kind else {
            panic!()
        };
        assert_eq!(
            parts[1],
            IdentPart {
                value: "My Model".into(),
                quoted: true
            }
        );
        let ValueKind::Call { name, args } = &block.properties[1].value.kind else {
            panic!()
        };
        assert_eq!(name, "INCREMENTAL_BY_TIME_RANGE");
        assert_eq!(args.len(), 2);
        let ValueKind::List { items, .. } = &block.properties[2].value.kind else {
            panic!()
        };
        assert_eq!(items[1].raw, "price DECIMAL(10, 2)");
        assert_eq!(items[2].raw, "tags TEXT[]");
        assert_eq!(block.properties[4].value.kind, ValueKind::Bool(false));
        let parts = block.properties[5].value.items();
        assert_eq!(parts[1].raw, "a + b");
        assert_eq!(parts[1].kind, ValueKind::Expr);
        assert_eq!(block.body_offset, block.body_offset);
        let text = "-- header\nMODEL (\n";
        assert!(block.properties[0].key_offset > text.len() - 1);
    }

    #[test]
    fn deeply_nested_values_are_a_located_error_not_a_stack_overflow() {
        // Found by tests/it/fuzz.rs: 20,000 nested brackets overflowed the stack.
        for (open, close) in [("(", ")"), ("[", "]")] {
            let text = format!(
                "MODEL (name a.b, x {}1{});",
                open.repeat(20_000),
                close.repeat(20_000)
            );
            let e = parse(&text).unwrap_err();
            assert!(
                e.message.contains("nested more than 64 deep"),
                "{}",
                e.message
            );
            // The opener past the limit: the 65th, after "MODEL (name a.b, x " (19 bytes).
            assert_eq!(e.span.offset(), 19 + 64);
        }
        let fine = format!("MODEL (name a.b, x {}1{});", "(".repeat(60), ")".repeat(60));
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn body_starts_after_semicolon() {
        let text = "MODEL (name a.b);\nSELECT 1";
        let block = parse(text).unwrap();
        assert_eq!(&text[block.body_offset..], "\nSELECT 1");
    }

    #[test]
    fn located_errors() {
        let err = parse("MODEL (\n  name a.b\n  kind FULL\n)").unwrap_err();
        assert!(err.location.ends_with("m.sql:3:3"), "{}", err.location);
        let err = parse("MODEL (name a.b, kind FULL").unwrap_err();
        assert!(err.message.contains("never closed"));
        let err = parse("SELECT 1").unwrap_err();
        assert!(err.message.contains("MODEL"));
        assert!(err.location.ends_with(":1:1"));
    }
}
