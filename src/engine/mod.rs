//! The execution engines: an embedded DuckDB database, with one session (connection) per worker thread, and
//! distributed engines reached through Spark Connect (`spark`).

pub mod spark;

use std::path::PathBuf;

use duckdb::Connection;
use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;

use crate::config::EngineConnection;
use crate::error::{LakeError, Result};

/// The bundled DuckDB release; extension binaries must match it exactly.
pub const DUCKDB_VERSION: &str = "1.5.5";

pub struct Engine {
    root: Connection,
    pub database: Option<PathBuf>,
    pub concurrent_tasks: usize,
}

impl Engine {
    /// A private in-memory database with one worker (unit tests, tests of lake itself).
    pub fn in_memory() -> Result<Engine> {
        Engine::open(&EngineConnection::DuckDb {
            database: None,
            concurrent_tasks: 1,
            extensions: Vec::new(),
        })
    }

    pub fn open(connection: &EngineConnection) -> Result<Engine> {
        let EngineConnection::DuckDb {
            database,
            concurrent_tasks,
            extensions,
        } = connection;
        let root = match database {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| LakeError::io(dir, e))?;
                }
                create_database_whole(path)?;
                Connection::open(path).map_err(|e| {
                    LakeError::engine(format!("opening the DuckDB database {}", path.display()), e)
                })?
            }
            None => Connection::open_in_memory()
                .map_err(|e| LakeError::engine("opening an in-memory DuckDB", e))?,
        };
        for extension in extensions {
            root.execute_batch(&format!("LOAD {}", crate::sql::quote_ident(extension)))
                .map_err(|e| {
                    LakeError::engine(format!("loading the DuckDB extension `{extension}`"), e)
                })?;
        }
        Ok(Engine {
            root,
            database: database.clone(),
            concurrent_tasks: *concurrent_tasks,
        })
    }

    /// A new connection to the same database, for use on one thread.
    pub fn session(&self) -> Result<Session> {
        Ok(Session {
            conn: self
                .root
                .try_clone()
                .map_err(|e| LakeError::engine("opening a DuckDB session", e))?,
        })
    }
}

/// Creates a missing DuckDB database file beside `path` and links it into place once DuckDB has written it,
/// so `path` is never a file a process killed midway left without its header (DuckDB refuses to open one).
/// An empty file, all such a kill left before lake created databases this way, holds nothing and is replaced.
fn create_database_whole(path: &std::path::Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(found) if found.len() > 0 || !found.is_file() => return Ok(()),
        Ok(_) => std::fs::remove_file(path).map_err(|e| LakeError::io(path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Unreadable: DuckDB's own open reports it.
        Err(_) => return Ok(()),
    }
    let name = path
        .file_name()
        .map_or_else(|| "database".into(), |n| n.to_string_lossy().into_owned());
    let staging = path.with_file_name(format!(".{name}.creating-{}", std::process::id()));
    let created = Connection::open(&staging)
        .and_then(|conn| conn.close().map_err(|(_, e)| e))
        .map_err(|e| {
            LakeError::engine(
                format!("creating the DuckDB database {}", path.display()),
                e,
            )
        });
    // A hard link never replaces: a database another process created meanwhile is kept, and ours discarded.
    let linked = created.and_then(|()| match std::fs::hard_link(&staging, path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(LakeError::io(path, e)),
        _ => Ok(()),
    });
    let _ = std::fs::remove_file(&staging);
    let _ = std::fs::remove_file(
        staging.with_file_name(format!(".{name}.creating-{}.wal", std::process::id())),
    );
    linked
}

pub struct Session {
    conn: Connection,
}

/// What DuckDB's type of a result column says beyond its Arrow type, which shows UUID and JSON as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnLogical {
    Uuid,
    Json,
    Other,
}

/// The rows of a query, in Arrow batches.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Session {
    /// Another connection to the same database, for another thread (a connection's own settings and
    /// temporary objects are not shared with it).
    pub fn try_clone(&self) -> Result<Session> {
        Ok(Session {
            conn: self
                .conn
                .try_clone()
                .map_err(|e| LakeError::engine("opening a DuckDB session", e))?,
        })
    }

    /// Runs statements that return nothing of interest.
    pub fn execute(&self, sql: &str, context: impl FnOnce() -> String) -> Result<()> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| LakeError::engine(context(), e))
    }

    /// Runs one statement and returns how many rows it changed or wrote.
    pub fn execute_count(&self, sql: &str, context: impl FnOnce() -> String) -> Result<usize> {
        self.conn
            .execute(sql, [])
            .map_err(|e| LakeError::engine(context(), e))
    }

    pub fn query(&self, sql: &str, context: impl Fn() -> String) -> Result<QueryResult> {
        let mut batches = Vec::new();
        let schema = self.query_each(sql, context, &mut |_, batch| {
            batches.push(batch);
            Ok(())
        })?;
        Ok(QueryResult { schema, batches })
    }

    /// Hands the result to `on_batch` one Arrow batch at a time, so callers that stream (CSV, JSON, writes)
    /// never hold the whole result. Returns the result's schema, which exists even when there are no rows.
    pub fn query_each(
        &self,
        sql: &str,
        context: impl Fn() -> String,
        on_batch: &mut dyn FnMut(&SchemaRef, RecordBatch) -> Result<()>,
    ) -> Result<SchemaRef> {
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| LakeError::engine(context(), e))?;
        // A streaming execution: DuckDB produces chunks as they are fetched instead of materialising the whole
        // result first. Chunks are fetched with `step`, which reports errors, rather than through the Arrow
        // iterator, which panics on them.
        let schema = stmt
            .stream_arrow([])
            .map_err(|e| LakeError::engine(context(), e))?
            .get_schema();
        while let Some(chunk) = stmt.step().map_err(|e| LakeError::engine(context(), e))? {
            on_batch(&schema, RecordBatch::from(&chunk))?;
        }
        Ok(schema)
    }

    /// Like `query_each`, with `$n` parameters bound to `params` (DuckDB casts each to the type the statement
    /// expects), and `on_schema` told the result's columns before the first batch is computed.
    pub fn query_each_with(
        &self,
        sql: &str,
        params: &[duckdb::types::Value],
        context: impl Fn() -> String,
        on_schema: &mut dyn FnMut(&SchemaRef, &[ColumnLogical]) -> Result<()>,
        on_batch: &mut dyn FnMut(RecordBatch) -> Result<bool>,
    ) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| LakeError::engine(context(), e))?;
        let schema = stmt
            .stream_arrow(duckdb::params_from_iter(params.iter()))
            .map_err(|e| LakeError::engine(context(), e))?
            .get_schema();
        let logical: Vec<ColumnLogical> = (0..schema.fields().len())
            .map(|i| {
                let logical = stmt.column_logical_type(i);
                match (logical.id(), logical.get_alias().as_deref()) {
                    (duckdb::core::LogicalTypeId::Uuid, _) => ColumnLogical::Uuid,
                    (_, Some(alias)) if alias.eq_ignore_ascii_case("json") => ColumnLogical::Json,
                    _ => ColumnLogical::Other,
                }
            })
            .collect();
        on_schema(&schema, &logical)?;
        while let Some(chunk) = stmt.step().map_err(|e| LakeError::engine(context(), e))? {
            if !on_batch(RecordBatch::from(&chunk))? {
                break;
            }
        }
        Ok(())
    }

    /// Stops the statement running on this session from another thread; it fails with an interrupt error.
    pub fn interrupt_handle(&self) -> std::sync::Arc<duckdb::InterruptHandle> {
        self.conn.interrupt_handle()
    }

    /// Every column of every row as text (NULL as `None`); for small results such as metadata and counts.
    pub fn query_rows(
        &self,
        sql: &str,
        context: impl FnOnce() -> String,
    ) -> Result<Vec<Vec<Option<String>>>> {
        let ctx = context();
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| LakeError::engine(ctx.clone(), e))?;
        let mut rows = stmt
            .query([])
            .map_err(|e| LakeError::engine(ctx.clone(), e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| LakeError::engine(ctx.clone(), e))? {
            let width = row.as_ref().column_count();
            let values = (0..width)
                .map(|i| {
                    row.get::<_, Option<duckdb::types::Value>>(i)
                        .map(|v| v.map(|v| value_text(&v)))
                })
                .collect::<duckdb::Result<Vec<_>>>()
                .map_err(|e| LakeError::engine(ctx.clone(), e))?;
            out.push(values);
        }
        Ok(out)
    }

    /// The one non-negative integer a counting query (`SELECT count(*) …`) returns. Any other answer is an
    /// error rather than a guess: an audit whose bad-row count read as 0 would pass silently.
    pub fn query_count(&self, sql: &str, context: impl FnOnce() -> String) -> Result<u64> {
        let ctx = context();
        let rows = self.query_rows(sql, || ctx.clone())?;
        let found = match rows.as_slice() {
            [row] => match row.as_slice() {
                [Some(text)] => match text.parse::<u64>() {
                    Ok(count) => return Ok(count),
                    Err(_) => format!("`{text}`"),
                },
                [None] => "NULL".to_string(),
                values => format!("a row of {} values", values.len()),
            },
            rows => format!("{} rows", rows.len()),
        };
        Err(LakeError::NotACount {
            context: ctx,
            found,
        })
    }

    /// The columns `query` returns, with their DuckDB types, without running it.
    pub fn describe(
        &self,
        query: &str,
        context: impl FnOnce() -> String,
    ) -> Result<Vec<(String, String)>> {
        self.query_rows(&format!("DESCRIBE {query}"), context)
            .map(|rows| {
                rows.into_iter()
                    .map(|row| {
                        let mut values = row.into_iter();
                        let name = values.next().flatten().unwrap_or_default();
                        let data_type = values.next().flatten().unwrap_or_default();
                        (name, data_type)
                    })
                    .collect()
            })
    }

    /// Values of the first column, as text.
    pub fn query_strings(
        &self,
        sql: &str,
        context: impl FnOnce() -> String,
    ) -> Result<Vec<String>> {
        let ctx = context();
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| LakeError::engine(ctx.clone(), e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| LakeError::engine(ctx.clone(), e))?;
        rows.collect::<duckdb::Result<Vec<_>>>()
            .map_err(|e| LakeError::engine(ctx, e))
    }
}

fn value_text(value: &duckdb::types::Value) -> String {
    use duckdb::types::Value;
    match value {
        Value::Text(t) => t.clone(),
        Value::Boolean(b) => b.to_string(),
        Value::TinyInt(n) => n.to_string(),
        Value::SmallInt(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::BigInt(n) => n.to_string(),
        Value::HugeInt(n) => n.to_string(),
        Value::UTinyInt(n) => n.to_string(),
        Value::USmallInt(n) => n.to_string(),
        Value::UInt(n) => n.to_string(),
        Value::UBigInt(n) => n.to_string(),
        Value::Float(n) => n.to_string(),
        Value::Double(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kill while DuckDB wrote a new database file used to leave it headerless: every later open failed.
    #[test]
    fn a_database_file_appears_whole_and_an_empty_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lake.db");
        let open = || {
            Engine::open(&EngineConnection::DuckDb {
                database: Some(path.clone()),
                concurrent_tasks: 1,
                extensions: Vec::new(),
            })
        };
        std::fs::write(&path, b"").unwrap();
        let engine = open().unwrap();
        let session = engine.session().unwrap();
        session
            .execute("CREATE TABLE kept AS SELECT 42 AS answer", String::new)
            .unwrap();
        drop((session, engine));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("creating"))
            .collect();
        assert!(names.is_empty(), "staging files left: {names:?}");
        // An existing database is opened as it is.
        let session = open().unwrap().session().unwrap();
        let count = session.query_count("SELECT count(*) FROM kept", || "counting".into());
        assert_eq!(count.unwrap(), 1);
    }

    #[test]
    fn a_count_is_one_non_negative_integer_or_an_error() {
        let session = Engine::in_memory().unwrap().session().unwrap();
        let count = |sql: &str| session.query_count(sql, || "counting".into());
        assert_eq!(count("SELECT count(*) FROM range(7)").unwrap(), 7);
        for (sql, found) in [
            ("SELECT NULL::BIGINT", "NULL"),
            ("SELECT 'many'", "`many`"),
            ("SELECT -1", "`-1`"),
            ("SELECT 1 WHERE false", "0 rows"),
            ("SELECT * FROM range(2)", "2 rows"),
            ("SELECT 1, 2", "a row of 2 values"),
        ] {
            let error = count(sql).unwrap_err().to_string();
            assert!(error.contains(found), "{sql}: {error}");
        }
    }

    #[test]
    fn sessions_share_one_database() {
        let engine = Engine::open(&EngineConnection::DuckDb {
            database: None,
            concurrent_tasks: 2,
            extensions: vec![],
        })
        .unwrap();
        let a = engine.session().unwrap();
        a.execute("CREATE TABLE t AS SELECT range AS x FROM range(5)", || {
            "test".into()
        })
        .unwrap();
        let b = engine.session().unwrap();
        let result = b
            .query("SELECT sum(x) AS s FROM t", || "test".into())
            .unwrap();
        assert_eq!(result.schema.field(0).name(), "s");
        assert_eq!(
            result.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            1
        );
        let err = b
            .query("SELECT * FROM missing", || "reading missing".into())
            .err()
            .unwrap();
        assert!(err.to_string().contains("reading missing"), "{err}");
    }

    #[test]
    fn an_error_in_the_middle_of_a_stream_is_an_error_not_a_panic() {
        let engine = Engine::in_memory().unwrap();
        let session = engine.session().unwrap();
        let mut batches = 0;
        let err = session
            .query_each(
                "SELECT CAST(CASE WHEN range < 3000000 THEN range::VARCHAR ELSE 'x' END AS INTEGER) AS n \
                 FROM range(4000000)",
                || "streaming".into(),
                &mut |_, _| {
                    batches += 1;
                    Ok(())
                },
            )
            .unwrap_err();
        assert!(err.to_string().contains("streaming"), "{err}");
        assert!(batches > 0, "rows before the failure were streamed");
    }
}

thread_local! {
    /// An in-memory DuckDB per thread for evaluating macro conditions (`@IF`, `@EVAL`): real SQL semantics,
    /// opened once.
    static CONSTANTS: std::cell::RefCell<Option<Connection>> = const { std::cell::RefCell::new(None) };
}

/// Evaluates a constant SQL expression: its value as text (`None` for NULL) and its DuckDB type name.
pub fn evaluate_constant(expr: &str) -> std::result::Result<(Option<String>, String), String> {
    CONSTANTS.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Connection::open_in_memory().map_err(|e| e.to_string())?);
        }
        let Some(conn) = slot.as_ref() else {
            return Err("no DuckDB connection".into());
        };
        conn.query_row(
            &format!("SELECT CAST(v AS VARCHAR), typeof(v) FROM (SELECT ({expr}) AS v)"),
            [],
            |row| Ok((row.get::<_, Option<String>>(0)?, row.get::<_, String>(1)?)),
        )
        .map_err(|e| e.to_string())
    })
}
