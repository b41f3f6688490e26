//! A distributed engine through Spark Connect (Apache Spark 4, Databricks, Sail): statements, Arrow
//! results and result schemas, with the engine's errors kept whole, and Spark SQL's names for Arrow types.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
use spark_connect::types::DataType as SparkType;
use spark_connect::{SparkError, SparkSession};

use crate::config::SparkConnection;
use crate::error::{LakeError, Result};

/// One Spark Connect session, shared by the worker threads (the protocol runs operations of one session
/// concurrently). The client is synchronous and blocks on its own runtime: it must not be called from
/// inside an async task.
pub struct SparkEngine {
    session: SparkSession,
    pub connection: SparkConnection,
}

impl std::fmt::Debug for SparkEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SparkEngine({})", self.connection.display)
    }
}

/// How long lake waits for the engine's port before calling it unreachable. The client itself retries a
/// failing call for minutes (transient faults of a busy cluster); lake checks the engine answers at all
/// before each statement, so an engine that is down fails the model at once.
const REACHABLE_WITHIN: Duration = Duration::from_secs(10);

/// `host:port` of an `sc://` URL (Spark Connect's default port is 15002).
fn endpoint(remote: &str) -> Option<String> {
    let rest = remote.strip_prefix("sc://")?;
    let authority = rest.split(['/', ';']).next()?;
    if authority.is_empty() {
        return None;
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    Some(if has_port {
        authority.to_string()
    } else {
        format!("{authority}:15002")
    })
}

impl SparkEngine {
    pub fn connect(connection: &SparkConnection) -> Result<SparkEngine> {
        check_reachable(connection)?;
        let session = SparkSession::builder()
            .remote(connection.remote.expose())
            .get_or_create()
            .map_err(|e| spark_error(connection, "connecting", e))?;
        Ok(SparkEngine {
            session,
            connection: connection.clone(),
        })
    }

    fn error(&self, context: impl Into<String>) -> impl FnOnce(SparkError) -> LakeError + '_ {
        let context = context.into();
        move |e| spark_error(&self.connection, &context, e)
    }

    /// Runs a statement; returns the rows it reports changing when the engine says (`count` or
    /// `num_affected_rows`).
    pub fn execute(&self, sql: &str, context: impl FnOnce() -> String) -> Result<Option<u64>> {
        let batches = self.query(sql, context)?;
        let affected = batches.first().and_then(|b| {
            let column = b
                .column_by_name("count")
                .or_else(|| b.column_by_name("num_affected_rows"))?;
            let counts = column.as_any().downcast_ref::<Int64Array>()?;
            (!counts.is_empty() && counts.is_valid(0)).then(|| counts.value(0).max(0) as u64)
        });
        Ok(affected)
    }

    /// Runs a query and returns its rows as Arrow batches.
    pub fn query(&self, sql: &str, context: impl FnOnce() -> String) -> Result<Vec<RecordBatch>> {
        check_reachable(&self.connection)?;
        self.session
            .sql(sql)
            .and_then(|frame| frame.collect_record_batches())
            .map_err(self.error(context()))
    }

    /// The columns a query answers, as Arrow fields (asked of the engine's analyser; nothing runs): the types
    /// of a `dialect spark` model, which DuckDB cannot bind.
    pub fn schema(&self, sql: &str, context: impl FnOnce() -> String) -> Result<ArrowSchema> {
        let context = context();
        check_reachable(&self.connection)?;
        let schema = self
            .session
            .sql(sql)
            .and_then(|frame| frame.schema())
            .map_err(self.error(context.clone()))?;
        let SparkType::Struct { fields } = schema else {
            return Err(LakeError::Execution {
                model: context,
                message: format!("the engine described the query as {schema:?}, not as rows"),
            });
        };
        let fields = fields
            .iter()
            .map(|f| {
                arrow_type(&f.data_type)
                    .map(|t| Field::new(&f.name, t, true))
                    .ok_or_else(|| {
                        LakeError::unsupported(
                            format!(
                                "the {:?} column `{}` written by the Spark engine ({context})",
                                f.data_type, f.name
                            ),
                            "cast it to a standard type (numbers, strings, dates, timestamps, decimals, arrays)",
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ArrowSchema::new(fields))
    }
}

/// Fails at once, naming the engine, when nothing listens at its address.
fn check_reachable(connection: &SparkConnection) -> Result<()> {
    let unreachable = |detail: String| LakeError::SparkUnreachable {
        engine: connection.display.clone(),
        detail,
    };
    let endpoint = endpoint(connection.remote.expose())
        .ok_or_else(|| unreachable("the URL has no host".into()))?;
    let addresses = endpoint
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve {endpoint}: {e}")))?;
    let mut last = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, REACHABLE_WITHIN) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(unreachable(match last {
        Some(e) => format!("nothing answers at {endpoint}: {e}"),
        None => format!("{endpoint} resolves to no address"),
    }))
}

fn spark_error(connection: &SparkConnection, context: &str, e: SparkError) -> LakeError {
    LakeError::Spark {
        engine: connection.display.clone(),
        context: context.to_string(),
        source: Box::new(e),
    }
}

/// The Spark SQL name of the type an Arrow column (of an Iceberg table) has.
pub fn sql_type(t: &ArrowType) -> Option<String> {
    Some(match t {
        ArrowType::Boolean => "BOOLEAN".into(),
        ArrowType::Int8 => "TINYINT".into(),
        ArrowType::Int16 => "SMALLINT".into(),
        ArrowType::Int32 => "INT".into(),
        ArrowType::Int64 => "BIGINT".into(),
        ArrowType::Float32 => "FLOAT".into(),
        ArrowType::Float64 => "DOUBLE".into(),
        ArrowType::Decimal128(p, s) => format!("DECIMAL({p},{s})"),
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => "STRING".into(),
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::FixedSizeBinary(_) => {
            "BINARY".into()
        }
        ArrowType::Date32 => "DATE".into(),
        ArrowType::Timestamp(_, None) => "TIMESTAMP_NTZ".into(),
        ArrowType::Timestamp(_, Some(_)) => "TIMESTAMP".into(),
        ArrowType::List(item) | ArrowType::LargeList(item) => {
            format!("ARRAY<{}>", sql_type(item.data_type())?)
        }
        _ => return None,
    })
}

/// Spark's column type as the Arrow type lake's Iceberg writer maps to an Iceberg type.
fn arrow_type(t: &SparkType) -> Option<ArrowType> {
    Some(match t {
        SparkType::Boolean => ArrowType::Boolean,
        SparkType::Byte | SparkType::Short => ArrowType::Int32,
        SparkType::Integer => ArrowType::Int32,
        SparkType::Long => ArrowType::Int64,
        SparkType::Float => ArrowType::Float32,
        SparkType::Double => ArrowType::Float64,
        SparkType::Decimal { precision, scale } => {
            ArrowType::Decimal128(u8::try_from(*precision).ok()?, i8::try_from(*scale).ok()?)
        }
        SparkType::String { .. } | SparkType::Char { .. } | SparkType::Varchar { .. } => {
            ArrowType::Utf8
        }
        SparkType::Binary => ArrowType::Binary,
        SparkType::Date => ArrowType::Date32,
        SparkType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        SparkType::TimestampNtz => ArrowType::Timestamp(TimeUnit::Microsecond, None),
        SparkType::Array { element_type, .. } => ArrowType::List(Arc::new(Field::new(
            "element",
            arrow_type(element_type)?,
            true,
        ))),
        _ => return None,
    })
}

/// The Spark engines of a project's gateways, each connected on first use and then shared.
#[derive(Debug, Default)]
pub struct SparkEngines {
    connected: std::sync::Mutex<std::collections::HashMap<String, Arc<SparkEngine>>>,
}

impl SparkEngines {
    pub fn get(&self, connection: &SparkConnection) -> Result<Arc<SparkEngine>> {
        let mut connected = self
            .connected
            .lock()
            .map_err(|_| LakeError::Bug("a thread panicked while connecting to Spark".into()))?;
        if let Some(engine) = connected.get(&connection.gateway) {
            return Ok(engine.clone());
        }
        let engine = Arc::new(SparkEngine::connect(connection)?);
        connected.insert(connection.gateway.clone(), engine.clone());
        Ok(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_sc_urls() {
        assert_eq!(endpoint("sc://h:1/;token=x").as_deref(), Some("h:1"));
        assert_eq!(endpoint("sc://h;use_ssl=true").as_deref(), Some("h:15002"));
        assert_eq!(endpoint("sc://[::1]:7").as_deref(), Some("[::1]:7"));
        assert_eq!(endpoint("http://h:1"), None);
    }
}
