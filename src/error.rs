//! Error types of the library: located source errors and everything else `lake` can fail with.

use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// A text file with a precomputed line index, so byte offsets and line/column pairs convert both ways.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as shown to the user (relative to the project root when possible).
    pub display_path: String,
    pub text: Arc<str>,
    line_starts: Arc<[usize]>,
}

/// A project file's text. A file that is not UTF-8 text (a binary file saved under `models/`, say) is an error
/// at the line and column of its first bad byte, not an I/O failure.
pub fn read_text(path: &std::path::Path, display_path: &str) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| LakeError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let file = SourceFile::new(display_path, String::from_utf8_lossy(e.as_bytes()).as_ref());
        LakeError::from(
            file.error(at, 1, "the file is not UTF-8 text")
                .with_label("not UTF-8")
                .with_help("project files are UTF-8 text; save it as UTF-8, or move a file that is not text out of the project"),
        )
    })
}

/// The same file: the same path and text (the line index follows from the text).
impl PartialEq for SourceFile {
    fn eq(&self, other: &Self) -> bool {
        self.display_path == other.display_path && self.text == other.text
    }
}

impl SourceFile {
    pub fn new(display_path: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        let text: Arc<str> = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            display_path: display_path.into(),
            text,
            line_starts: line_starts.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self.text[start..offset].chars().count() + 1;
        (line + 1, col)
    }

    /// Byte offset of a 1-based line and character column; clamps to the end of the text.
    pub fn offset_of(&self, line: usize, col: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        // A column past the line's end means its end, never a later line.
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        self.text[start..end]
            .char_indices()
            .nth(col.saturating_sub(1))
            .map_or(end, |(i, _)| start + i)
    }

    /// A located error pointing at `len` bytes from `offset`.
    pub fn error(&self, offset: usize, len: usize, message: impl Into<String>) -> SourceError {
        let (line, column) = self.line_col(offset);
        SourceError {
            message: message.into(),
            location: format!("{}:{}:{}", self.display_path, line, column),
            src: NamedSource::new(self.display_path.clone(), self.text.to_string()),
            span: SourceSpan::new(offset.min(self.text.len()).into(), len),
            label: "here".into(),
            help: None,
        }
    }
}

/// An error at a precise place in a project file: file, line, column, what was expected and a hint.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{location}: {message}")]
pub struct SourceError {
    pub message: String,
    /// `path:line:column`, also part of the one-line message so logs and CI show it.
    pub location: String,
    #[source_code]
    pub src: NamedSource<String>,
    #[label("{label}")]
    pub span: SourceSpan,
    pub label: String,
    #[help]
    pub help: Option<String>,
}

impl SourceError {
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_optional_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// What a state store's backend reported, kept whole so its own detail (SQLSTATE, file, line) is not lost.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] sqlx::Error),
    #[error("stored state does not read back: {0}")]
    Unreadable(#[from] serde_json::Error),
}

/// What went wrong in the Iceberg layer, with the library's own error kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum LakehouseError {
    #[error(transparent)]
    Iceberg(#[from] iceberg::Error),
    /// The catalog database (SQLite or PostgreSQL) behind the Iceberg SQL catalog.
    #[error(transparent)]
    Catalog(#[from] sqlx::Error),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// A table that lake cannot work with as it is (its format version, a missing metadata pointer).
    #[error("{0}")]
    Table(String),
}

/// Every way the `lake` library can fail.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum LakeError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Source(#[from] Box<SourceError>),

    #[error("{} errors in the project:\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Many(#[related] Vec<LakeError>),

    #[error("cannot read or write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{message}")]
    #[diagnostic(code(lake::config))]
    Config {
        message: String,
        #[help]
        help: Option<String>,
    },

    #[error("dependency cycle between models (each feeds the next): {}", cycle.join(" -> "))]
    #[diagnostic(
        code(lake::cycle),
        help(
            "a model cannot read from itself, directly or through other models; remove one of these references"
        )
    )]
    Cycle {
        cycle: Vec<String>,
        #[source_code]
        src: Option<NamedSource<String>>,
        #[label("this reference closes the cycle")]
        span: Option<SourceSpan>,
    },

    #[error("model `{0}` not found in the project")]
    #[diagnostic(code(lake::unknown_model))]
    UnknownModel(String, #[help] Option<String>),

    #[error("{what} is not supported yet")]
    #[diagnostic(code(lake::unsupported))]
    Unsupported {
        what: String,
        #[help]
        help: Option<String>,
    },

    // DuckDB's message is shown once, in the line: as a `#[source]` it would be printed again below it,
    // followed by the C API's "Error code 1: Unknown error code".
    #[error("DuckDB error while {context}: {}", engine_message(cause))]
    #[diagnostic(code(lake::engine))]
    Engine {
        context: String,
        cause: duckdb::Error,
    },

    /// A Spark Connect engine's failure; `engine` is its URL with credentials masked.
    #[error("Spark engine {engine} failed while {context}: {source}")]
    #[diagnostic(code(lake::spark))]
    Spark {
        engine: String,
        context: String,
        #[source]
        source: Box<spark_connect::SparkError>,
    },

    #[error("cannot reach the Spark engine {engine}: {detail}")]
    #[diagnostic(
        code(lake::spark),
        help(
            "start the engine (or fix `remote` in config.yaml) and rerun: what was built is kept, nothing was promoted"
        )
    )]
    SparkUnreachable { engine: String, detail: String },

    #[error("permission denied: `{0}` changes data, and this endpoint is read-only")]
    #[diagnostic(
        code(lake::read_only),
        help(
            "only queries (SELECT, WITH, VALUES, DESCRIBE, SHOW) run here; models change through `lake plan`"
        )
    )]
    ReadOnly(String),

    /// No engine session came free in time for a query of `lake serve`'s PostgreSQL endpoint.
    #[error(
        "no engine session came free within {waited:?}: {sessions} queries were running; raise --max-concurrent-queries or --query-wait-timeout"
    )]
    #[diagnostic(code(lake::busy))]
    Busy {
        waited: std::time::Duration,
        sessions: usize,
    },

    #[error("DuckDB answered {found} while {context}, where one count was expected")]
    #[diagnostic(code(lake::engine))]
    NotACount { context: String, found: String },

    #[error("state store error while {context}: {source}")]
    #[diagnostic(code(lake::state))]
    State {
        context: String,
        #[source]
        source: StateError,
        #[help]
        help: Option<String>,
    },

    #[error("{message}")]
    #[diagnostic(code(lake::state))]
    StateConflict {
        message: String,
        #[help]
        help: Option<String>,
    },

    #[error("Iceberg error while {context}: {source}")]
    #[diagnostic(code(lake::lakehouse))]
    Lakehouse {
        context: String,
        #[source]
        source: LakehouseError,
    },

    #[error(
        "another writer committed to the Iceberg table {table} first; this commit was not applied"
    )]
    #[diagnostic(
        code(lake::commit_conflict),
        help(
            "nothing was lost and the commit is safe to retry: rerun the command and it starts from the table's new state"
        )
    )]
    CommitConflict { table: String },

    #[error(
        "model `{model}`: its query {changes} of {table}, which keeps its rows, and {key} is `error`"
    )]
    #[diagnostic(
        code(lake::schema_change),
        help(
            "set `{key} warn` or `allow` in the model's kind to change the table's columns (values of a dropped or retyped column are lost), or allow it for this plan with `--allow-destructive-model` / `--allow-additive-model`; `ignore` keeps the columns as they are, and planning the change as breaking rebuilds the model in a new table"
        )
    )]
    SchemaChange {
        model: String,
        table: String,
        changes: String,
        key: &'static str,
    },

    #[error("model `{model}` failed: {message}")]
    #[diagnostic(code(lake::execution))]
    Execution { model: String, message: String },

    #[error("cannot plan: {failed} of {total} unit test(s) failed")]
    #[diagnostic(
        code(lake::tests_failed),
        help("fix the tests (or the models), or plan anyway with --skip-tests")
    )]
    TestsFailed { failed: usize, total: usize },

    #[error("the linter found {errors} error(s)")]
    #[diagnostic(
        code(lake::lint_failed),
        help(
            "fix them, list the rule under `linter.warn_rules` or a model's `ignored_rules`, or plan with --skip-linter"
        )
    )]
    LintFailed { errors: usize },

    #[error("audit `{audit}` of model `{model}` failed: {rows} bad row(s)\n  query: {query}")]
    #[diagnostic(
        code(lake::audit_failed),
        help(
            "`lake audit --model {model}` shows a sample of the bad rows; a `_non_blocking` audit only warns"
        )
    )]
    AuditFailed {
        model: String,
        audit: String,
        rows: u64,
        query: String,
    },

    #[error("{failed} of {total} models failed; the environment `{environment}` was not updated")]
    #[diagnostic(
        code(lake::apply_failed),
        help(
            "fix the failing models and rerun the same command: models already built are reused, not rebuilt"
        )
    )]
    ApplyFailed {
        environment: String,
        failed: usize,
        total: usize,
        #[related]
        errors: Vec<LakeError>,
    },

    #[error("internal error: {0}")]
    #[diagnostic(
        code(lake::bug),
        help("this is a bug in lake; please report it with the command you ran")
    )]
    Bug(String),

    #[error("cannot write the output: {0}")]
    #[diagnostic(code(lake::output))]
    Output(String),

    #[error("{0}")]
    #[diagnostic(code(lake::usage))]
    Usage(String, #[help] Option<String>),
}

impl From<SourceError> for LakeError {
    fn from(e: SourceError) -> Self {
        LakeError::Source(Box::new(e))
    }
}

impl LakeError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LakeError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        LakeError::Config {
            message: message.into(),
            help: None,
        }
    }

    pub fn engine(context: impl Into<String>, source: duckdb::Error) -> Self {
        LakeError::Engine {
            context: context.into(),
            cause: source,
        }
    }

    /// A state store's own failure (SQLite, PostgreSQL, or stored JSON that no longer reads), with a hint.
    pub fn state(
        context: impl Into<String>,
        source: impl Into<StateError>,
        help: Option<&str>,
    ) -> Self {
        LakeError::State {
            context: context.into(),
            source: source.into(),
            help: help.map(String::from),
        }
    }

    pub fn lakehouse(context: impl Into<String>, source: impl Into<LakehouseError>) -> Self {
        LakeError::Lakehouse {
            context: context.into(),
            source: source.into(),
        }
    }

    pub fn unsupported(what: impl Into<String>, help: impl Into<String>) -> Self {
        LakeError::Unsupported {
            what: what.into(),
            help: Some(help.into()),
        }
    }

    /// Whether rerunning the same command can succeed without any change (a lost commit race).
    pub fn is_retryable(&self) -> bool {
        matches!(self, LakeError::CommitConflict { .. })
    }

    /// Whether the failure is the user's invocation (exit code 2) rather than a failure of the work (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, LakeError::Usage(..))
    }
}

pub type Result<T, E = LakeError> = std::result::Result<T, E>;

/// The error and its sources in one line, each source said once.
pub fn error_chain(e: &LakeError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// One error as itself, several as `Many` (each shown with its own location).
pub fn collect(mut errors: Vec<LakeError>) -> LakeError {
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        LakeError::Many(errors)
    }
}

/// "did you mean `closest`?" for the candidate closest to `wanted`, when one is close enough.
/// DuckDB's own message for `error`, without the C API's error-code suffix.
pub fn engine_message(error: &duckdb::Error) -> String {
    match error {
        duckdb::Error::DuckDBFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    }
}

pub fn did_you_mean<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wanted, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_round_trips() {
        let f = SourceFile::new("x.sql", "ab\ncdé\nf");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(f.offset_of(2, 3)), (2, 3));
        assert_eq!(f.offset_of(3, 1), 8);
        assert_eq!(f.line_col(8), (3, 1));
    }

    #[test]
    fn suggests_close_names() {
        let hint = did_you_mean("demo.ful_model", ["demo.full_model", "demo.seed_model"]);
        assert_eq!(hint.as_deref(), Some("did you mean `demo.full_model`?"));
        assert_eq!(did_you_mean("zzz", ["demo.full_model"]), None);
    }
}
