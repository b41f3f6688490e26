//! One client connection: the environment it named, the PostgreSQL settings it set, and the answers to its
//! simple and extended queries (statements PostgreSQL clients send that DuckDB must not see are answered here).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::{Sink, StreamExt, stream};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldFormat,
    FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{NoopQueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, METADATA_DATABASE, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::CopyData;
use pgwire::messages::data::DataRow;

use super::ahead::Ahead;
use super::encode;
use super::lakehouse::{Lakehouse, Running};
use super::reply::error;
use crate::sql::lex;

/// The environment a connection reads when its database name is not given.
pub const DEFAULT_DATABASE: &str = crate::PROD;

/// What the server does for every connection.
pub struct Handler {
    pub lakehouse: Arc<Lakehouse>,
    pub allow_writes: bool,
    /// `statement_timeout` until a client sets its own.
    pub statement_timeout: Option<Duration>,
    parser: Arc<NoopQueryParser>,
}

impl Handler {
    pub fn new(
        lakehouse: Arc<Lakehouse>,
        allow_writes: bool,
        statement_timeout: Option<Duration>,
    ) -> Handler {
        Handler {
            lakehouse,
            allow_writes,
            statement_timeout,
            parser: Arc::new(NoopQueryParser::new()),
        }
    }
}

/// The PostgreSQL settings a client changed with `SET` (kept per connection; DuckDB's own are locked).
#[derive(Default)]
struct Settings {
    values: BTreeMap<String, String>,
}

fn settings<C: ClientInfo>(client: &C) -> Arc<Mutex<Settings>> {
    client
        .session_extensions()
        .get_or_insert_with(|| Mutex::new(Settings::default()))
}

/// The query this connection's last Describe started, for the Execute that follows.
fn ahead<C: ClientInfo>(client: &C) -> Arc<Ahead> {
    client
        .session_extensions()
        .get_or_insert_with(Ahead::default)
}

fn environment<C: ClientInfo>(client: &C) -> String {
    client
        .metadata()
        .get(METADATA_DATABASE)
        .cloned()
        .unwrap_or_else(|| DEFAULT_DATABASE.to_string())
}

/// The SQLSTATE PostgreSQL would give for a DuckDB failure, read from DuckDB's error class and message.
fn sqlstate(message: &str) -> &'static str {
    let has = |needle: &str| message.contains(needle);
    if has("INTERRUPT") || has("Interrupted") {
        return "57014";
    }
    if has("Parser Error") {
        "42601"
    } else if has("Permission Error") {
        "42501"
    } else if has("Catalog Error") && (has("Table with name") || has("does not exist")) {
        if has("Schema with name") && !has("Table") {
            "3F000"
        } else if has("Function") || has("Macro") {
            "42883"
        } else {
            "42P01"
        }
    } else if has("Binder Error") && (has("Referenced column") || has("not found in FROM clause")) {
        "42703"
    } else if has("Binder Error") {
        "42804"
    } else if has("Conversion Error") || has("Invalid Input Error") {
        "22P02"
    } else if has("Out of Memory Error") {
        "53200"
    } else if has("Division by zero") || has("division by zero") {
        "22012"
    } else if has("Constraint Error") {
        "23000"
    } else if has("Not implemented Error") {
        "0A000"
    } else {
        "XX000"
    }
}

fn failure(e: &crate::error::LakeError, timed_out: bool) -> PgWireError {
    let text = match e {
        crate::error::LakeError::Engine { cause, .. } => crate::error::engine_message(cause),
        other => other.to_string(),
    };
    if matches!(e, crate::error::LakeError::ReadOnly(_)) {
        return error("42501", e.to_string());
    }
    // insufficient_resources: the server is busy, the query never started.
    if matches!(e, crate::error::LakeError::Busy { .. }) {
        return error("53000", e.to_string());
    }
    let code = sqlstate(&text);
    if code == "57014" {
        let why = if timed_out {
            "canceling statement due to statement timeout"
        } else {
            "canceling statement due to user request"
        };
        return error(code, why);
    }
    error(code, text)
}

/// What a statement asks of the server.
enum Action<'a> {
    /// Sent to DuckDB.
    Query(&'a str),
    Set {
        name: String,
        value: String,
    },
    Reset(Option<String>),
    Show(String),
    Begin,
    Commit,
    Rollback,
    /// Acknowledged with this tag and otherwise ignored (there is nothing to deallocate or listen to).
    Acknowledge(&'static str),
}

/// Settings drivers and tools SET that change nothing here beyond what `SHOW` answers; any other name (DuckDB's
/// own settings among them) is refused as PostgreSQL refuses an unknown parameter.
fn settable(name: &str) -> bool {
    server_setting(name).is_some()
        || name.contains('.')
        || matches!(
            name,
            "lock_timeout"
                | "idle_in_transaction_session_timeout"
                | "idle_session_timeout"
                | "client_min_messages"
                | "jit"
                | "plan_cache_mode"
                | "row_security"
                | "session_replication_role"
                | "synchronous_commit"
                | "work_mem"
                | "geqo"
                | "enable_seqscan"
                | "lc_messages"
                | "lc_monetary"
                | "lc_numeric"
                | "lc_time"
                | "default_transaction_read_only"
                | "session characteristics"
        )
}

/// PostgreSQL settings clients read with `SHOW` or `current_setting`, and their values here.
fn server_setting(name: &str) -> Option<&'static str> {
    Some(match name {
        "server_version" => "16.6",
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" => "on",
        "transaction_isolation"
        | "transaction isolation level"
        | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" | "time zone" => "UTC",
        "integer_datetimes" => "on",
        "max_identifier_length" => "63",
        "search_path" => "\"$user\", public",
        "statement_timeout" => "0",
        "lc_collate" | "lc_ctype" => "C.UTF-8",
        "application_name" => "",
        "extra_float_digits" => "1",
        "bytea_output" => "hex",
        "is_superuser" => "off",
        _ => return None,
    })
}

fn classify(statement: &str) -> Action<'_> {
    let keyword = lex::leading_keyword(statement);
    let rest = statement[lex::skip_blank(statement, 0) + keyword.len()..].trim();
    let words = |text: &str| {
        text.split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
    };
    match keyword.as_str() {
        "SET" => {
            let lower = words(rest);
            let skip = usize::from(matches!(
                lower.first().map(String::as_str),
                Some("session" | "local")
            ));
            let body: Vec<&str> = rest.split_whitespace().skip(skip).collect();
            let body = body.join(" ");
            if body.to_ascii_lowercase().starts_with("time zone") {
                return Action::Set {
                    name: "timezone".into(),
                    value: unquote(body[9..].trim()),
                };
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.trim().to_string(), v.trim().to_string()),
                None => match body.split_once(char::is_whitespace) {
                    Some((n, v)) => (
                        n.trim().to_string(),
                        v.trim()
                            .strip_prefix("TO ")
                            .or_else(|| v.trim().strip_prefix("to "))
                            .unwrap_or(v.trim())
                            .to_string(),
                    ),
                    None => (body.clone(), String::new()),
                },
            };
            Action::Set {
                name: name.to_ascii_lowercase(),
                value: unquote(&value),
            }
        }
        "RESET" => {
            let name = rest.to_ascii_lowercase();
            Action::Reset((name != "all").then_some(name))
        }
        "SHOW" => {
            let name = rest.trim_end_matches(';').trim().to_ascii_lowercase();
            if server_setting(&name).is_some() || name == "all" {
                Action::Show(name)
            } else {
                Action::Query(statement)
            }
        }
        "BEGIN" | "START" => Action::Begin,
        "COMMIT" | "END" => Action::Commit,
        "ROLLBACK" | "ABORT" if rest.to_ascii_lowercase().starts_with("to") => {
            Action::Acknowledge("ROLLBACK")
        }
        "ROLLBACK" | "ABORT" => Action::Rollback,
        // Savepoints mark nothing: statements only read, so there is nothing to roll back to.
        "SAVEPOINT" => Action::Acknowledge("SAVEPOINT"),
        "RELEASE" => Action::Acknowledge("RELEASE"),
        "DISCARD" => Action::Acknowledge("DISCARD ALL"),
        "DEALLOCATE" => Action::Acknowledge("DEALLOCATE"),
        "LISTEN" => Action::Acknowledge("LISTEN"),
        "UNLISTEN" => Action::Acknowledge("UNLISTEN"),
        "CLOSE" => Action::Acknowledge("CLOSE CURSOR"),
        _ => Action::Query(statement),
    }
}

fn unquote(value: &str) -> String {
    let v = value.trim().trim_end_matches(';').trim();
    v.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .map(|s| s.replace("''", "'"))
        .unwrap_or_else(|| v.to_string())
}

/// `statement_timeout` as PostgreSQL reads it: milliseconds, or a number with a unit; 0 means none.
fn parse_timeout(value: &str) -> Option<Option<Duration>> {
    let v = value.trim().to_ascii_lowercase();
    let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
    let number: u64 = digits.parse().ok()?;
    let unit = v[digits.len()..].trim();
    let millis = match unit {
        "" | "ms" => number,
        "s" => number * 1000,
        "min" => number * 60_000,
        "h" => number * 3_600_000,
        _ => return None,
    };
    Some((millis > 0).then(|| Duration::from_millis(millis)))
}

/// A one-row result of text values, for `SHOW` and the like.
fn text_rows(columns: &[&str], rows: Vec<Vec<String>>) -> PgWireResult<Response> {
    let fields = Arc::new(
        columns
            .iter()
            .map(|c| FieldInfo::new((*c).to_string(), None, None, Type::TEXT, FieldFormat::Text))
            .collect::<Vec<_>>(),
    );
    let mut encoded = Vec::with_capacity(rows.len());
    for row in rows {
        let mut encoder = DataRowEncoder::new(fields.clone());
        for value in row {
            encoder.encode_field(&value)?;
        }
        encoded.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter(encoded),
    )))
}

impl Handler {
    fn timeout<C: ClientInfo>(&self, client: &C) -> Option<Duration> {
        let settings = settings(client);
        let chosen = settings
            .lock()
            .ok()
            .and_then(|s| s.values.get("statement_timeout").cloned());
        match chosen {
            Some(value) => parse_timeout(&value).flatten(),
            None => self.statement_timeout,
        }
    }

    /// The answer to one statement; `format` is the client's choice of text or binary result columns, `ahead`
    /// the query a Describe already started for it.
    async fn respond<C: ClientInfo>(
        &self,
        client: &C,
        statement: &str,
        params: Vec<duckdb::types::Value>,
        format: &Format,
        ahead: Option<Running>,
    ) -> PgWireResult<Response> {
        match classify(statement) {
            Action::Set { name, value } => {
                if !settable(&name) {
                    return Err(error(
                        "42704",
                        format!(
                            "unrecognized configuration parameter \"{name}\" (lake serve's DuckDB settings are fixed when it starts)"
                        ),
                    ));
                }
                if name == "statement_timeout" && parse_timeout(&value).is_none() {
                    return Err(error(
                        "22023",
                        format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
                    ));
                }
                if let Ok(mut s) = settings(client).lock() {
                    s.values.insert(name, value);
                }
                Ok(Response::Execution(Tag::new("SET")))
            }
            Action::Reset(name) => {
                if let Ok(mut s) = settings(client).lock() {
                    match name {
                        Some(name) => {
                            s.values.remove(&name);
                        }
                        None => s.values.clear(),
                    }
                }
                Ok(Response::Execution(Tag::new("RESET")))
            }
            Action::Show(name) => {
                let chosen = settings(client)
                    .lock()
                    .ok()
                    .and_then(|s| s.values.get(&name).cloned());
                if name == "all" {
                    return text_rows(&["name", "setting"], vec![]);
                }
                let value = chosen
                    .or_else(|| server_setting(&name).map(str::to_string))
                    .unwrap_or_default();
                text_rows(&[name.as_str()], vec![vec![value]])
            }
            Action::Begin => Ok(Response::TransactionStart(Tag::new("BEGIN"))),
            Action::Commit => Ok(Response::TransactionEnd(Tag::new("COMMIT"))),
            Action::Rollback => Ok(Response::TransactionEnd(Tag::new("ROLLBACK"))),
            Action::Acknowledge(tag) => Ok(Response::Execution(Tag::new(tag))),
            Action::Query(sql) => {
                if let Some(copy) = super::copy::parse(sql) {
                    return self.copy_out(client, copy?).await;
                }
                let sql = super::catalog::rewrite(sql).unwrap_or_else(|| sql.to_string());
                let running = match ahead {
                    Some(running) => running,
                    None => self.start(client, sql, params, true).await?,
                };
                let shape = encode::shape(&running.schema, &running.logical, format)?;
                Ok(Response::Query(QueryResponse::new(
                    shape.fields.clone(),
                    row_stream(running, shape),
                )))
            }
        }
    }

    /// A `COPY … TO STDOUT`: the query's rows as copy data, the header (when asked for) ahead of the first.
    async fn copy_out<C: ClientInfo>(
        &self,
        client: &C,
        copy: super::copy::CopyOut,
    ) -> PgWireResult<Response> {
        let sql = super::catalog::rewrite(&copy.query).unwrap_or_else(|| copy.query.clone());
        let running = self.start(client, sql, Vec::new(), true).await?;
        let shape = encode::shape(&running.schema, &running.logical, &Format::UnifiedText)?;
        let columns = shape.fields.len();
        // Sent with the first row, so the COPY tag counts rows only; alone when there is none.
        let header = Arc::new(Mutex::new(copy.header(&shape.fields)));
        let pending = header.clone();
        let rows = row_stream(running, shape).map(move |row| {
            let line = copy.row(&row?);
            Ok(match pending.lock().ok().and_then(|mut h| h.take()) {
                Some(header) => CopyData::new([header.data, line.data].concat().into()),
                None => line,
            })
        });
        // pgwire sends no empty copy data: nothing goes out here when the header went with a row.
        let lone_header = stream::once(async move {
            let header = header.lock().ok().and_then(|mut h| h.take());
            Ok(header.unwrap_or_else(|| CopyData::new(Default::default())))
        });
        Ok(Response::CopyOut(CopyResponse::new(
            0,
            columns,
            rows.chain(lone_header),
        )))
    }

    /// Starts a query on the engine (after the read-only check and, when `refresh`, a catalog refresh: a
    /// Describe skips it, since the Execute that follows refreshes anyway).
    async fn start<C: ClientInfo>(
        &self,
        client: &C,
        sql: String,
        params: Vec<duckdb::types::Value>,
        refresh: bool,
    ) -> PgWireResult<Running> {
        let env = environment(client);
        let environments = if refresh {
            Some(
                self.lakehouse
                    .refresh()
                    .await
                    .map_err(|e| error("58000", format!("cannot read the lakehouse: {e}")))?,
            )
        } else {
            None
        };
        if environments.is_some_and(|known| !known.contains(&env)) {
            return Err(error(
                "3D000",
                format!("database \"{env}\" does not exist (no lake environment has that name)"),
            ));
        }
        self.lakehouse
            .run(&env, sql, params, self.timeout(client), !self.allow_writes)
            .await
            .map_err(|(e, stop)| failure(&e, stop.is_some_and(|s| s.timed_out())))
    }
}

/// The rows of a running query, encoded batch by batch as the client reads them; an engine error ends the
/// stream with that error.
fn row_stream(
    running: Running,
    shape: encode::Shape,
) -> impl futures::Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    stream::unfold((Some(running), shape), |(running, shape)| async move {
        let mut running = running?;
        match running.batches.recv().await {
            Some(Ok(batch)) => match encode::rows(&shape, &batch) {
                Ok(rows) => {
                    let items: Vec<PgWireResult<DataRow>> = rows.into_iter().map(Ok).collect();
                    Some((stream::iter(items), (Some(running), shape)))
                }
                Err(e) => Some((stream::iter(vec![Err(e)]), (None, shape))),
            },
            Some(Err(e)) => {
                let timed_out = running.stop.0.timed_out();
                Some((
                    stream::iter(vec![Err(failure(&e, timed_out))]),
                    (None, shape),
                ))
            }
            None => None,
        }
    })
    .flatten()
}

/// Reads every row of a response now, so the next statement of the same query string can run (statements
/// that are not last in a simple query are buffered; the last one streams).
async fn buffered(response: Response) -> PgWireResult<Response> {
    let query = match response {
        Response::Query(query) => query,
        Response::CopyOut(copy) => {
            let mut lines = Vec::new();
            let mut data = copy.data_stream;
            while let Some(line) = data.next().await {
                lines.push(Ok(line?));
            }
            return Ok(Response::CopyOut(CopyResponse::new(
                copy.format,
                copy.columns,
                stream::iter(lines),
            )));
        }
        other => return Ok(other),
    };
    let fields = query.row_schema();
    let mut rows = Vec::new();
    let mut data = query.data_rows;
    while let Some(row) = data.next().await {
        rows.push(Ok(row?));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        stream::iter(rows),
    )))
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        ahead(client).clear();
        let pieces = lex::split_statements(query, 0);
        let mut responses = Vec::with_capacity(pieces.len());
        let last = pieces.len().saturating_sub(1);
        for (i, piece) in pieces.iter().enumerate() {
            let answered = self
                .respond(client, piece.text, Vec::new(), &Format::UnifiedText, None)
                .await;
            let answered = match answered {
                Ok(response) if i < last => buffered(response).await,
                other => other,
            };
            match answered {
                Ok(response) => responses.push(response),
                Err(e) => {
                    // PostgreSQL stops at the first failing statement of a query string.
                    responses.push(Response::Error(Box::new(ErrorInfo::from(e))));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

/// The DuckDB type a parameter the client declared as `declared` is cast to, so `SELECT $1` answers the type
/// the client sent, as PostgreSQL does; `value` gives a numeric's scale.
fn cast_type(declared: &Type, value: &duckdb::types::Value) -> Option<String> {
    Some(
        match *declared {
            Type::BOOL => "BOOLEAN",
            Type::INT2 => "SMALLINT",
            Type::INT4 => "INTEGER",
            Type::INT8 => "BIGINT",
            Type::FLOAT4 => "FLOAT",
            Type::FLOAT8 => "DOUBLE",
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => "VARCHAR",
            Type::BYTEA => "BLOB",
            Type::DATE => "DATE",
            Type::TIME => "TIME",
            Type::TIMESTAMP => "TIMESTAMP",
            Type::TIMESTAMPTZ => "TIMESTAMPTZ",
            Type::UUID => "UUID",
            Type::JSON | Type::JSONB => "JSON",
            Type::INTERVAL => "INTERVAL",
            Type::NUMERIC => {
                let scale = match value {
                    duckdb::types::Value::Text(text) => {
                        text.split_once('.').map_or(0, |(_, frac)| frac.len())
                    }
                    _ => 0,
                };
                return Some(format!("DECIMAL(38, {})", scale.min(38)));
            }
            _ => return None,
        }
        .to_string(),
    )
}

/// `sql` with each `$n` whose type the client declared cast to that type (outside strings and comments).
fn typed_sql(sql: &str, casts: &[Option<String>]) -> String {
    if casts.iter().all(Option::is_none) {
        return sql.to_string();
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16 * casts.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some(n) = lex::skip_lexeme(bytes, i) {
            out.push_str(&sql[i..i + n]);
            i += n;
            continue;
        }
        if bytes[i] == b'$' {
            let digits: String = sql[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Some(Some(cast)) = digits
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|n| casts.get(n))
            {
                out.push_str(&format!("CAST(${digits} AS {cast})"));
                i += 1 + digits.len();
                continue;
            }
        }
        let next = sql[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&sql[i..i + next]);
        i += next;
    }
    out
}

/// The statement of a portal with its parameters bound: the SQL with declared types cast, and the values.
fn bound(portal: &Portal<String>) -> PgWireResult<(String, Vec<duckdb::types::Value>)> {
    let values = (0..portal.parameter_len())
        .map(|i| parameter(portal, i))
        .collect::<PgWireResult<Vec<_>>>()?;
    let casts: Vec<Option<String>> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let declared = portal.statement.parameter_types.get(i).cloned().flatten()?;
            cast_type(&declared, value)
        })
        .collect();
    Ok((typed_sql(portal.statement.statement.trim(), &casts), values))
}

/// A bound parameter as DuckDB takes it: text parameters go as text (DuckDB casts them to the type the
/// statement expects), binary ones are decoded by their declared type.
fn parameter(portal: &Portal<String>, i: usize) -> PgWireResult<duckdb::types::Value> {
    use duckdb::types::Value;
    let Some(Some(bytes)) = portal.parameters.get(i) else {
        return Ok(Value::Null);
    };
    let declared = portal
        .statement
        .parameter_types
        .get(i)
        .cloned()
        .flatten()
        .unwrap_or(Type::UNKNOWN);
    if !portal.parameter_format.is_binary(i) {
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| error("22021", format!("parameter ${} is not valid UTF-8", i + 1)))?;
        return Ok(Value::Text(text));
    }
    let value = |v: Option<Value>| Ok(v.unwrap_or(Value::Null));
    match declared {
        Type::BOOL => value(portal.parameter::<bool>(i, &declared)?.map(Value::Boolean)),
        Type::INT2 => value(portal.parameter::<i16>(i, &declared)?.map(Value::SmallInt)),
        Type::INT4 => value(portal.parameter::<i32>(i, &declared)?.map(Value::Int)),
        Type::INT8 => value(portal.parameter::<i64>(i, &declared)?.map(Value::BigInt)),
        Type::FLOAT4 => value(portal.parameter::<f32>(i, &declared)?.map(Value::Float)),
        Type::FLOAT8 => value(portal.parameter::<f64>(i, &declared)?.map(Value::Double)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            value(portal.parameter::<String>(i, &declared)?.map(Value::Text))
        }
        Type::BYTEA => value(portal.parameter::<Vec<u8>>(i, &declared)?.map(Value::Blob)),
        Type::NUMERIC => value(
            portal
                .parameter::<rust_decimal::Decimal>(i, &declared)?
                .map(|d| Value::Text(d.to_string())),
        ),
        Type::TIME => value(
            portal
                .parameter::<chrono::NaiveTime>(i, &declared)?
                .map(|d| Value::Text(d.to_string())),
        ),
        Type::DATE => value(
            portal
                .parameter::<chrono::NaiveDate>(i, &declared)?
                .map(|d| Value::Text(d.to_string())),
        ),
        Type::TIMESTAMP => value(
            portal
                .parameter::<chrono::NaiveDateTime>(i, &declared)?
                .map(|d| Value::Text(d.to_string())),
        ),
        Type::TIMESTAMPTZ => value(
            portal
                .parameter::<chrono::DateTime<chrono::FixedOffset>>(i, &declared)?
                .map(|d| Value::Text(d.to_rfc3339())),
        ),
        Type::JSON | Type::JSONB => value(
            portal
                .parameter::<serde_json::Value>(i, &declared)?
                .map(|d| Value::Text(d.to_string())),
        ),
        Type::UUID if bytes.len() == 16 => {
            let uuid = uuid::Uuid::from_slice(bytes)
                .map_err(|_| error("22P02", format!("parameter ${} is not a UUID", i + 1)))?;
            Ok(Value::Text(uuid.to_string()))
        }
        other => Err(error(
            "0A000",
            format!(
                "parameter ${} has binary type {}, which lake serve does not decode; send it as text",
                i + 1,
                other.name()
            ),
        )),
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let sql = portal.statement.statement.trim();
        if sql
            .trim_matches(|c: char| c == ';' || c.is_whitespace())
            .is_empty()
        {
            return Ok(Response::EmptyQuery);
        }
        let (sql, params) = bound(portal)?;
        let started = ahead(client).take(&portal.name, &sql, &params);
        self.respond(client, &sql, params, &portal.result_column_format, started)
            .await
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        statement: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let count = parameter_count(&statement.statement);
        let types: Vec<Type> = (0..count.max(statement.parameter_types.len()))
            .map(|i| {
                statement
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        let params = vec![duckdb::types::Value::Null; types.len()];
        let casts: Vec<Option<String>> = statement
            .parameter_types
            .iter()
            .map(|t| {
                t.as_ref()
                    .and_then(|t| cast_type(t, &duckdb::types::Value::Null))
            })
            .collect();
        let sql = typed_sql(statement.statement.trim(), &casts);
        let fields = self
            .describe(client, &sql, params, &Format::UnifiedBinary)
            .await?;
        Ok(DescribeStatementResponse::new(types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (sql, params) = bound(portal)?;
        let (Action::Query(query), None) = (classify(&sql), super::copy::parse(&sql)) else {
            let fields = self
                .describe(client, &sql, params, &portal.result_column_format)
                .await?;
            return Ok(DescribePortalResponse::new(fields));
        };
        // The Execute that follows would run the same query: start it now and keep it for that Execute.
        let query = super::catalog::rewrite(query).unwrap_or_else(|| query.to_string());
        let running = self.start(client, query, params.clone(), true).await?;
        let shape = encode::shape(
            &running.schema,
            &running.logical,
            &portal.result_column_format,
        )?;
        ahead(client).keep(&portal.name, &sql, &params, running);
        Ok(DescribePortalResponse::new(shape.fields.as_ref().clone()))
    }
}

impl Handler {
    /// The result columns of `sql` without computing its rows: statements answered here describe themselves,
    /// queries run as `SELECT * FROM (…) LIMIT 0`.
    async fn describe<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
        params: Vec<duckdb::types::Value>,
        format: &Format,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match classify(sql) {
            // COPY describes no result columns (its rows come as copy data).
            Action::Query(query) if super::copy::parse(query).is_some() => Ok(Vec::new()),
            Action::Query(query) => {
                let query = super::catalog::rewrite(query).unwrap_or_else(|| query.to_string());
                let trimmed = query.trim().trim_end_matches(';');
                let running = self
                    .start(
                        client,
                        format!("SELECT * FROM ({trimmed}) AS q LIMIT 0"),
                        params,
                        false,
                    )
                    .await?;
                let shape = encode::shape(&running.schema, &running.logical, format)?;
                Ok(shape.fields.as_ref().clone())
            }
            Action::Show(name) => Ok(vec![FieldInfo::new(
                name,
                None,
                None,
                Type::TEXT,
                format.format_for(0),
            )]),
            _ => Ok(Vec::new()),
        }
    }
}

/// The highest `$n` placeholder outside strings and comments.
fn parameter_count(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut highest = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(n) = lex::skip_lexeme(bytes, i) {
            i += n;
            continue;
        }
        if bytes[i] == b'$' {
            let digits: String = sql[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Ok(n) = digits.parse::<usize>() {
                highest = highest.max(n);
            }
            i += 1 + digits.len();
            continue;
        }
        i += 1;
    }
    highest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_chatter_is_answered_here() {
        assert!(matches!(
            classify("SET extra_float_digits = 3"),
            Action::Set { name, value } if name == "extra_float_digits" && value == "3"
        ));
        assert!(matches!(
            classify("set session statement_timeout to '5s'"),
            Action::Set { name, value } if name == "statement_timeout" && value == "5s"
        ));
        assert!(matches!(
            classify("SET TIME ZONE 'UTC'"),
            Action::Set { name, value } if name == "timezone" && value == "UTC"
        ));
        assert!(matches!(
            classify("show standard_conforming_strings"),
            Action::Show(_)
        ));
        assert!(matches!(classify("SHOW TABLES"), Action::Query(_)));
        assert!(matches!(classify("begin"), Action::Begin));
        assert!(matches!(classify("SELECT 1"), Action::Query(_)));
    }

    #[test]
    fn timeouts_read_like_postgres() {
        assert_eq!(parse_timeout("0"), Some(None));
        assert_eq!(parse_timeout("250"), Some(Some(Duration::from_millis(250))));
        assert_eq!(parse_timeout("5s"), Some(Some(Duration::from_secs(5))));
        assert_eq!(parse_timeout("soon"), None);
    }

    #[test]
    fn declared_parameters_are_cast_to_their_type() {
        let casts = vec![Some("DATE".to_string()), None];
        assert_eq!(
            typed_sql("SELECT $1, $2, '$1' -- $1", &casts),
            "SELECT CAST($1 AS DATE), $2, '$1' -- $1"
        );
        let value = duckdb::types::Value::Text("-1.2300".into());
        assert_eq!(
            cast_type(&Type::NUMERIC, &value).as_deref(),
            Some("DECIMAL(38, 4)")
        );
    }

    #[test]
    fn placeholders_are_counted_outside_strings() {
        assert_eq!(parameter_count("SELECT $1, $2 WHERE x = '$9'"), 2);
        assert_eq!(parameter_count("SELECT 1"), 0);
    }

    #[test]
    fn duckdb_errors_get_postgres_codes() {
        assert_eq!(
            sqlstate("Catalog Error: Table with name nope does not exist!"),
            "42P01"
        );
        assert_eq!(
            sqlstate("Binder Error: Referenced column \"nope\" not found in FROM clause!"),
            "42703"
        );
        assert_eq!(
            sqlstate("Parser Error: syntax error at or near \"SELEC\""),
            "42601"
        );
        assert_eq!(sqlstate("Permission Error: Cannot access file"), "42501");
    }
}
