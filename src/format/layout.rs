//! Canonical layout of one SQL statement from its tokens: clause keywords start lines, list items get a line
//! each, and comments stay beside the code they were written next to.

use sqlparser::dialect::DuckDbDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

use crate::error::SourceFile;

const INDENT: usize = 2;

/// Keywords written with a space before an opening parenthesis; any other word directly before `(` is a
/// function (or a table alias with its column list) and takes none.
const SPACE_BEFORE_PAREN: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "AS",
    "BETWEEN",
    "BY",
    "DISTINCT",
    "ELSE",
    "EXCLUDE",
    "EXISTS",
    "FILTER",
    "FROM",
    "IN",
    "INTERVAL",
    "IS",
    "JOIN",
    "LATERAL",
    "NOT",
    "ON",
    "OR",
    "OVER",
    "QUALIFY",
    "RECURSIVE",
    "SELECT",
    "SOME",
    "THEN",
    "UNION",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
    "WITHIN",
    "HAVING",
    "INTERSECT",
    "EXCEPT",
    "RENAME",
    "REPLACE",
    "LIKE",
    "ILIKE",
];

/// Clause keywords that end a select or grouping list.
const LIST_ENDS: &[&str] = &[
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "QUALIFY",
    "WINDOW",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "UNION",
    "EXCEPT",
    "INTERSECT",
];

/// Words that, run together and ending in JOIN, make a join keyword.
const JOIN_WORDS: &[&str] = &[
    "LEFT",
    "RIGHT",
    "FULL",
    "INNER",
    "OUTER",
    "CROSS",
    "NATURAL",
    "ANTI",
    "SEMI",
    "POSITIONAL",
    "ASOF",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An unquoted word; `keyword` is true when the statement uses it as a keyword (not as a name).
    Word {
        keyword: bool,
    },
    QuotedWord,
    LineComment,
    BlockComment,
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// `{` and `}` of a struct literal.
    LBrace,
    RBrace,
    Comma,
    Dot,
    DoubleColon,
    /// An operator that reads best with a space on each side (`=`, `<>`, `||`, `:=`, `->`).
    SpacedOperator,
    Other,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    /// The token as written, or upper-cased for a keyword.
    text: String,
    /// Whether the original had whitespace (or a comment) right before this token.
    space_before: bool,
    /// Whether the original had a line break between the previous token and this one.
    newline_before: bool,
}

impl Tok {
    fn upper(&self) -> Option<String> {
        match self.kind {
            Kind::Word { .. } => Some(self.text.to_ascii_uppercase()),
            _ => None,
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.kind, Kind::Word { .. }) && self.text.eq_ignore_ascii_case(word)
    }

    fn is_comment(&self) -> bool {
        matches!(self.kind, Kind::LineComment | Kind::BlockComment)
    }
}

/// Splits `sql` into layout tokens. `keywords` decides, per unquoted word in source order, whether it is
/// used as a keyword (and so upper-cased).
fn tokens(sql: &str, keyword_words: &[bool]) -> Option<Vec<Tok>> {
    let spanned = Tokenizer::new(&DuckDbDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let index = SourceFile::new("", sql);
    let mut out = Vec::new();
    let mut space_before = false;
    let mut newline_before = false;
    let mut word_index = 0;
    for t in spanned {
        let start = index.offset_of(t.span.start.line as usize, t.span.start.column as usize);
        let end = index.offset_of(t.span.end.line as usize, t.span.end.column as usize);
        let raw = sql.get(start..end.max(start))?;
        let kind = match &t.token {
            Token::EOF => continue,
            Token::Whitespace(Whitespace::SingleLineComment { .. }) => Kind::LineComment,
            Token::Whitespace(Whitespace::MultiLineComment(_)) => Kind::BlockComment,
            Token::Whitespace(w) => {
                space_before = true;
                newline_before |= matches!(w, Whitespace::Newline);
                continue;
            }
            Token::Word(w) if w.quote_style.is_none() => {
                let keyword = keyword_words.get(word_index).copied().unwrap_or(false);
                word_index += 1;
                Kind::Word { keyword }
            }
            Token::Word(_) => Kind::QuotedWord,
            Token::LParen => Kind::LParen,
            Token::RParen => Kind::RParen,
            Token::LBracket => Kind::LBracket,
            Token::RBracket => Kind::RBracket,
            Token::LBrace => Kind::LBrace,
            Token::RBrace => Kind::RBrace,
            Token::Comma => Kind::Comma,
            Token::Period => Kind::Dot,
            Token::DoubleColon => Kind::DoubleColon,
            Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::StringConcat
            | Token::Assignment
            | Token::RArrow
            | Token::Arrow
            | Token::LongArrow => Kind::SpacedOperator,
            _ => Kind::Other,
        };
        let text = match kind {
            Kind::Word { keyword: true } => raw.to_ascii_uppercase(),
            // A line comment's token includes the line break that ends it.
            Kind::LineComment => raw.trim_end().to_string(),
            _ => raw.to_string(),
        };
        out.push(Tok {
            kind,
            text,
            space_before,
            newline_before,
        });
        // A line comment ends its line, so whatever follows it starts a new one.
        newline_before = kind == Kind::LineComment;
        space_before = newline_before;
    }
    Some(out)
}

/// For each unquoted word of `sql`, in order: whether it is a keyword (printed upper-case by sqlparser in
/// `printed`, the parsed statement written back) rather than a name, which keeps its case.
pub fn keyword_words(sql: &str, printed: &str) -> Option<Vec<bool>> {
    let words = |text: &str| -> Option<Vec<(String, bool)>> {
        let toks = Tokenizer::new(&DuckDbDialect {}, text).tokenize().ok()?;
        Some(
            toks.into_iter()
                .filter_map(|t| match t {
                    Token::Word(w) if w.quote_style.is_none() => {
                        let is_upper = w.value.chars().all(|c| !c.is_ascii_lowercase());
                        Some((
                            w.value.to_ascii_uppercase(),
                            w.keyword != Keyword::NoKeyword && is_upper,
                        ))
                    }
                    _ => None,
                })
                .collect(),
        )
    };
    let original = words(sql)?;
    let canonical = words(printed)?;
    let original_keys: Vec<&str> = original.iter().map(|(k, _)| k.as_str()).collect();
    let canonical_keys: Vec<&str> = canonical.iter().map(|(k, _)| k.as_str()).collect();
    let mut keyword = vec![false; original.len()];
    for op in
        similar::capture_diff_slices(similar::Algorithm::Myers, &original_keys, &canonical_keys)
    {
        if let similar::DiffOp::Equal {
            old_index,
            new_index,
            len,
        } = op
        {
            for k in 0..len {
                keyword[old_index + k] = canonical[new_index + k].1;
            }
        }
    }
    Some(keyword)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clause {
    None,
    With,
    /// SELECT, GROUP BY, ORDER BY: one item per line.
    List,
    /// WHERE, HAVING, QUALIFY, ON: one condition per line.
    Condition,
    /// FROM, JOIN, LIMIT, …: written inline.
    Inline,
    Join,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    /// A statement or a parenthesised query: its clauses start lines.
    Query,
    /// Parentheses around anything else: written inline.
    Paren,
    /// A CASE with several branches: one WHEN per line.
    Case,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: FrameKind,
    /// Indentation of the frame's clause keywords (WHEN for a CASE).
    base: usize,
    /// Indentation of the line that opened the frame, where its closing parenthesis or END goes.
    open_indent: usize,
    clause: Clause,
    /// BETWEENs whose AND is still to come.
    open_betweens: usize,
    /// The parentheses of `SELECT DISTINCT ON (…)`: the select items start on the next line.
    distinct_on: bool,
}

impl Frame {
    fn new(kind: FrameKind, base: usize, open_indent: usize) -> Frame {
        Frame {
            kind,
            base,
            open_indent,
            clause: Clause::None,
            open_betweens: 0,
            distinct_on: false,
        }
    }
}

#[derive(Default)]
struct Writer {
    out: String,
    /// A line break requested before the next token, with that line's indentation.
    pending_newline: Option<usize>,
}

impl Writer {
    fn newline(&mut self, indent: usize) {
        if !self.out.is_empty() {
            self.pending_newline = Some(indent);
        }
    }

    fn line_indent(&self) -> usize {
        let line = self.out.rsplit('\n').next().unwrap_or("");
        line.len() - line.trim_start().len()
    }

    fn write(&mut self, text: &str, space: bool) {
        if let Some(indent) = self.pending_newline.take() {
            self.out.truncate(self.out.trim_end_matches(' ').len());
            self.out.push('\n');
            self.out.extend(std::iter::repeat_n(' ', indent));
        } else if space && !self.out.is_empty() && !self.out.ends_with([' ', '\n']) {
            self.out.push(' ');
        }
        self.out.push_str(text);
    }

    /// Appends to the current line even when a line break is pending (a comment that trails a line).
    fn append_to_line(&mut self, text: &str) {
        self.out.push(' ');
        self.out.push_str(text);
    }
}

fn space_between(prev: Option<&Tok>, cur: &Tok) -> bool {
    let Some(prev) = prev else { return false };
    match cur.kind {
        Kind::Comma | Kind::RParen | Kind::RBracket | Kind::Dot | Kind::DoubleColon => {
            return false;
        }
        Kind::SpacedOperator => return true,
        _ => {}
    }
    match prev.kind {
        Kind::LParen | Kind::LBracket | Kind::LBrace | Kind::Dot | Kind::DoubleColon => {
            return false;
        }
        Kind::Comma | Kind::SpacedOperator => return true,
        _ => {}
    }
    if cur.kind == Kind::LParen {
        return match prev.kind {
            Kind::Word { keyword } => {
                let upper = prev.text.to_ascii_uppercase();
                if SPACE_BEFORE_PAREN.contains(&upper.as_str()) {
                    true
                } else if keyword {
                    cur.space_before
                } else {
                    false
                }
            }
            _ => cur.space_before,
        };
    }
    cur.space_before || (is_wordlike(prev) && is_wordlike(cur))
}

fn is_wordlike(t: &Tok) -> bool {
    matches!(t.kind, Kind::Word { .. } | Kind::QuotedWord)
}

/// The next token after `i` that is not a comment.
fn next_code(toks: &[Tok], i: usize) -> Option<&Tok> {
    toks[i + 1..].iter().find(|t| !t.is_comment())
}

/// Whether the CASE at `i` has more than one WHEN (or a WHEN and an ELSE) at its own level.
fn case_is_long(toks: &[Tok], i: usize) -> bool {
    let (mut depth, mut cases, mut branches) = (0i32, 0i32, 0);
    for t in &toks[i..] {
        match t.kind {
            Kind::LParen => depth += 1,
            Kind::RParen => depth -= 1,
            _ if depth == 0 && t.is_word("CASE") => cases += 1,
            _ if depth == 0 && t.is_word("END") => {
                cases -= 1;
                if cases == 0 {
                    break;
                }
            }
            _ if depth == 0 && cases == 1 && (t.is_word("WHEN") || t.is_word("ELSE")) => {
                branches += 1
            }
            _ => {}
        }
    }
    branches > 1
}

/// Lays out one statement; `None` when it cannot be tokenized.
pub fn layout(sql: &str, keyword_words: &[bool]) -> Option<String> {
    let toks = tokens(sql, keyword_words)?;
    let mut w = Writer::default();
    let mut frames = vec![Frame::new(FrameKind::Query, 0, 0)];
    let mut prev: Option<&Tok> = None;
    let mut i = 0;
    while i < toks.len() {
        let tok = &toks[i];
        if tok.is_comment() {
            write_comment(&mut w, tok, prev.is_some(), toks.get(i + 1));
            i += 1;
            continue;
        }
        let space = space_between(prev, tok);
        // `frames` is never empty: the statement's own (Query) frame is never popped, as `)` and `}` pop only
        // above it and END only a CASE or parenthesis frame.
        let frame = *frames.last().expect("statement frame");
        let upper = tok.upper();
        let upper = upper.as_deref();
        let keyword = matches!(tok.kind, Kind::Word { keyword: true });
        let mut consumed = 1;
        match (tok.kind, upper) {
            (Kind::LParen, _) => {
                let opens_query = next_code(&toks, i).is_some_and(|t| {
                    matches!(t.kind, Kind::Word { keyword: true })
                        && ["SELECT", "WITH", "FROM", "VALUES"].contains(&t.text.as_str())
                });
                w.write("(", space);
                let open_indent = w.line_indent();
                if opens_query {
                    frames.push(Frame::new(
                        FrameKind::Query,
                        open_indent + INDENT,
                        open_indent,
                    ));
                    w.newline(open_indent + INDENT);
                } else {
                    let distinct_on = frame.kind == FrameKind::Query
                        && i >= 2
                        && toks[i - 1].is_word("ON")
                        && toks[i - 2].is_word("DISTINCT");
                    frames.push(Frame {
                        kind: FrameKind::Paren,
                        base: frame.base,
                        open_indent,
                        clause: Clause::None,
                        open_betweens: 0,
                        distinct_on,
                    });
                }
            }
            (Kind::RParen, _) => {
                let mut closed = None;
                if frames.len() > 1 {
                    closed = frames.pop();
                    if let Some(c) = closed.filter(|c| c.kind == FrameKind::Query) {
                        w.newline(c.open_indent);
                    }
                }
                w.write(")", space);
                if let Some(c) = closed.filter(|c| c.distinct_on) {
                    w.newline(c.base + INDENT);
                }
            }
            (Kind::LBrace, _) => {
                w.write(&tok.text, space);
                frames.push(Frame::new(FrameKind::Paren, frame.base, w.line_indent()));
            }
            (Kind::RBrace, _) => {
                if frames.len() > 1 {
                    frames.pop();
                }
                w.write(&tok.text, space);
            }
            (Kind::Comma, _) if frame.kind == FrameKind::Query && frame.clause == Clause::List => {
                // A trailing comma (`SELECT a, b, FROM t`, allowed by DuckDB) is dropped.
                let ends_list = next_code(&toks, i).is_none_or(|t| {
                    t.kind == Kind::RParen
                        || matches!(t.kind, Kind::Word { keyword: true })
                            && LIST_ENDS.contains(&t.text.as_str())
                });
                if !ends_list {
                    w.write(",", false);
                    w.newline(frame.base + INDENT);
                }
            }
            (Kind::Comma, _) => w.write(",", false),
            (_, Some("CASE")) if keyword => {
                w.write(&tok.text, space);
                if case_is_long(&toks, i) {
                    let open_indent = w.line_indent();
                    frames.push(Frame::new(
                        FrameKind::Case,
                        open_indent + INDENT,
                        open_indent,
                    ));
                } else {
                    frames.push(Frame::new(FrameKind::Paren, frame.base, w.line_indent()));
                }
            }
            (_, Some("WHEN" | "ELSE")) if keyword && frame.kind == FrameKind::Case => {
                w.newline(frame.base);
                w.write(&tok.text, space);
            }
            (_, Some("END")) if keyword && frame.kind != FrameKind::Query => {
                if frame.kind == FrameKind::Case {
                    w.newline(frame.open_indent);
                }
                frames.pop();
                w.write(&tok.text, space);
            }
            (_, Some("BETWEEN")) if keyword => {
                if let Some(f) = frames.last_mut() {
                    f.open_betweens += 1;
                }
                w.write(&tok.text, space);
            }
            (_, Some("AND" | "OR")) if keyword => {
                // Never empty: see `frame` above.
                let f = frames.last_mut().expect("statement frame");
                if upper == Some("AND") && f.open_betweens > 0 {
                    f.open_betweens -= 1;
                } else if f.kind == FrameKind::Query && f.clause == Clause::Condition {
                    w.newline(f.base + INDENT);
                }
                w.write(&tok.text, space);
            }
            _ if keyword && frame.kind == FrameKind::Query => {
                // Never empty: see `frame` above.
                let f = frames.last_mut().expect("statement frame");
                consumed = clause_keyword(&toks, i, &mut w, f, space);
            }
            _ => w.write(&tok.text, space),
        }
        prev = Some(&toks[i + consumed - 1]);
        i += consumed;
    }
    Some(w.out)
}

/// Writes a comment where it was: at the end of the line it trailed, or on a line of its own.
fn write_comment(w: &mut Writer, tok: &Tok, has_code_before: bool, next: Option<&Tok>) {
    let trailing = has_code_before && !tok.newline_before;
    if trailing && w.pending_newline.is_some() {
        w.append_to_line(&tok.text);
    } else if trailing {
        w.write(&tok.text, true);
        if tok.kind == Kind::LineComment {
            w.newline(w.line_indent());
        }
    } else {
        let indent = w.pending_newline.unwrap_or_else(|| w.line_indent());
        w.newline(indent);
        w.write(&tok.text, false);
        if tok.kind == Kind::LineComment || next.is_some_and(|n| n.newline_before) {
            w.newline(indent);
        }
    }
}

/// Writes a keyword met directly in a query; returns how many tokens it took (multi-word keywords).
fn clause_keyword(toks: &[Tok], i: usize, w: &mut Writer, frame: &mut Frame, space: bool) -> usize {
    let upper = toks[i].text.to_ascii_uppercase();
    let next_is = |k: usize, word: &str| toks.get(i + k).is_some_and(|t| t.is_word(word));
    let phrase = |w: &mut Writer, n: usize| {
        let words: Vec<&str> = toks[i..i + n].iter().map(|t| t.text.as_str()).collect();
        w.write(&words.join(" "), space);
    };
    let base = frame.base;
    match upper.as_str() {
        "WITH" => {
            w.newline(base);
            let n = if next_is(1, "RECURSIVE") { 2 } else { 1 };
            phrase(w, n);
            frame.clause = Clause::With;
            n
        }
        "SELECT" => {
            w.newline(base);
            let n = if next_is(1, "DISTINCT") || next_is(1, "ALL") {
                2
            } else {
                1
            };
            phrase(w, n);
            // `SELECT DISTINCT ON (…)` keeps its ON list on the SELECT line.
            if !next_is(n, "ON") {
                w.newline(base + INDENT);
            }
            frame.clause = Clause::List;
            n
        }
        "GROUP" | "ORDER" if next_is(1, "BY") => {
            w.newline(base);
            phrase(w, 2);
            w.newline(base + INDENT);
            frame.clause = Clause::List;
            2
        }
        "WHERE" | "HAVING" | "QUALIFY" => {
            w.newline(base);
            phrase(w, 1);
            w.newline(base + INDENT);
            frame.clause = Clause::Condition;
            1
        }
        "FROM" | "LIMIT" | "OFFSET" | "WINDOW" => {
            w.newline(base);
            phrase(w, 1);
            frame.clause = Clause::Inline;
            1
        }
        "ON" if frame.clause == Clause::Join => {
            w.newline(base + INDENT);
            phrase(w, 1);
            frame.clause = Clause::Condition;
            1
        }
        "UNION" | "INTERSECT" | "EXCEPT"
            if !(frame.clause == Clause::List && toks[i - 1].text == "*") =>
        {
            let mut n = 1;
            while toks.get(i + n).is_some_and(|t| {
                ["ALL", "DISTINCT", "BY", "NAME"]
                    .iter()
                    .any(|k| t.is_word(k))
            }) {
                n += 1;
            }
            w.newline(base);
            phrase(w, n);
            w.newline(base);
            frame.clause = Clause::None;
            n
        }
        word if (word == "JOIN" || JOIN_WORDS.contains(&word))
            && matches!(
                frame.clause,
                Clause::Inline | Clause::Join | Clause::Condition
            ) =>
        {
            let mut n = 0;
            while toks
                .get(i + n)
                .is_some_and(|t| JOIN_WORDS.iter().any(|k| t.is_word(k)))
            {
                n += 1;
            }
            if !next_is(n, "JOIN") {
                w.write(&toks[i].text, space);
                return 1;
            }
            w.newline(base);
            phrase(w, n + 1);
            frame.clause = Clause::Join;
            n + 1
        }
        _ => {
            w.write(&toks[i].text, space);
            1
        }
    }
}
