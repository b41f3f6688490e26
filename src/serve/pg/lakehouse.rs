//! The lakehouse as the PostgreSQL endpoint reads it: a private in-memory DuckDB whose views follow state and
//! the Iceberg catalog, one attached database per environment (its models under their prod names and every
//! physical version), and a pool of sessions that run clients' queries in parallel up to a limit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, oneshot};

use super::memo::Memo;
use crate::engine::{ColumnLogical, Engine, Session};
use crate::error::{LakeError, Result};
use crate::ops::Context;
use crate::snapshot::{PhysicalTable, SuffixTarget, VirtualName};
use crate::sql::{quote_ident, quote_literal};

/// The names DuckDB reserves for its own databases; an environment cannot be attached under them.
const RESERVED_DATABASES: [&str; 4] = ["memory", "system", "temp", "main"];

/// Limits on what clients may ask of the engine.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    /// Queries running at once; the rest wait for a free session.
    pub concurrent_queries: usize,
    /// DuckDB's `memory_limit` for the whole server (e.g. `4GB`), when set.
    pub memory_limit: Option<String>,
    /// How long a query waits for a free session before it fails (also bounded by its statement timeout).
    pub query_wait: std::time::Duration,
}

/// Replies to a refresh request: the environments clients can connect to, or why the refresh failed.
pub type Refreshed = std::result::Result<Arc<BTreeSet<String>>, RefreshError>;

/// Why the views could not be brought up to date; one failure answers every query that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    #[error("{0}")]
    Failed(Arc<crate::error::LakeError>),
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Asks the refresher (the thread holding the project) to bring the views up to date.
pub type RefreshRequest = oneshot::Sender<Refreshed>;

/// An environment database's views: (schema, name) → (the physical table it reads, that table's view comment,
/// which changes with the table's metadata file).
type EnvironmentViews = BTreeMap<(String, String), (PhysicalTable, String)>;

struct Pooled {
    session: Session,
    interrupt: Arc<duckdb::InterruptHandle>,
    /// The environment the session's `USE` selected last (kept only while clients cannot run `USE`).
    using: Option<String>,
}

impl Pooled {
    /// Makes `environment` the session's database, unless it already is and no client statement can have
    /// changed that (`USE` is a write, refused to read-only clients).
    fn select(&mut self, environment: &str, read_only: bool) -> Result<()> {
        if read_only && self.using.as_deref() == Some(environment) {
            return Ok(());
        }
        self.using = None;
        self.session
            .execute(&format!("USE {}", quote_ident(environment)), || {
                "selecting the environment".into()
            })?;
        self.using = read_only.then(|| environment.to_string());
        Ok(())
    }
}

/// How many statements' analyses (per environment) the server remembers, and the longest statement it
/// remembers (so a client sending long unique statements costs at most about 8 MiB per memo).
const REMEMBERED_STATEMENTS: usize = 1024;
const REMEMBERED_LENGTH: usize = 8 << 10;

/// The shared reader: sessions for queries and the channel to the refresher.
pub struct Lakehouse {
    /// The reader engine's own catalog, whose name a model schema may share (`shop.db` holding `shop`).
    catalog: String,
    pool: Arc<Mutex<Vec<Pooled>>>,
    permits: Arc<tokio::sync::Semaphore>,
    /// How long a query waits for a free session, and how many sessions there are.
    query_wait: std::time::Duration,
    sessions: usize,
    refresher: mpsc::UnboundedSender<RefreshRequest>,
    /// Each (environment, statement) as it runs in that environment's database.
    qualified: Memo<(String, String), String>,
    /// Whether each statement only reads: `Some(keyword)` when it is refused.
    verdicts: Arc<Memo<String, Option<String>>>,
}

/// Keeps the views of the reader engine in line with the project's state and catalog; runs on the thread that
/// owns the project (`Context` stays on one thread).
pub struct Refresher<'a> {
    ctx: &'a Context,
    session: Session,
    catalog: String,
    /// What each environment's database holds.
    attached: HashMap<String, EnvironmentViews>,
    /// Kept open for the cheap check before each refresh.
    state: Box<dyn crate::state::StateStore>,
    /// The fingerprint of state and catalog at the last full refresh, with the environments it found: a
    /// refresh that finds the same fingerprint has nothing to do.
    last: Option<(u64, Arc<BTreeSet<String>>)>,
    /// Keeps the database alive while sessions come and go.
    _engine: Engine,
}

/// Opens the reader engine, makes its first refresh (so a broken project fails at start), and returns the
/// lakehouse for the server with the refresher to run on the calling thread.
pub fn open<'a>(
    ctx: &'a Context,
    limits: &EngineLimits,
) -> Result<(Lakehouse, Refresher<'a>, RefreshReceiver)> {
    let engine = ctx.open_reader_engine()?;
    let catalog = ctx.project.default_catalog.clone();
    let session = engine.session()?;
    session.execute(&format!("USE {}", quote_ident(&catalog)), || {
        "selecting the reader's catalog".into()
    })?;
    let mut refresher = Refresher {
        ctx,
        session,
        catalog,
        attached: HashMap::new(),
        state: ctx.open_state()?,
        last: None,
        _engine: engine,
    };
    refresher.refresh()?;
    refresher.lock_down(limits)?;
    let mut pool = Vec::with_capacity(limits.concurrent_queries);
    for _ in 0..limits.concurrent_queries.max(1) {
        let session = refresher._engine.session()?;
        let interrupt = session.interrupt_handle();
        pool.push(Pooled {
            session,
            interrupt,
            using: None,
        });
    }
    let (sender, receiver) = mpsc::unbounded_channel();
    Ok((
        Lakehouse {
            catalog: refresher.catalog.clone(),
            permits: Arc::new(tokio::sync::Semaphore::new(pool.len())),
            query_wait: limits.query_wait,
            sessions: pool.len(),
            pool: Arc::new(Mutex::new(pool)),
            refresher: sender,
            qualified: Memo::new(REMEMBERED_STATEMENTS),
            verdicts: Arc::new(Memo::new(REMEMBERED_STATEMENTS)),
        },
        refresher,
        RefreshReceiver(receiver),
    ))
}

/// The refresher's end of the request channel.
pub struct RefreshReceiver(mpsc::UnboundedReceiver<RefreshRequest>);

impl Refresher<'_> {
    /// Answers refresh requests until every server is gone. Requests that queued during one refresh share
    /// the next, so a burst of queries costs one pass over the catalog, and each query still sees the
    /// catalog as of a moment after it arrived.
    pub fn serve(mut self, mut requests: RefreshReceiver) {
        while let Some(first) = requests.0.blocking_recv() {
            let mut waiting = vec![first];
            while let Ok(more) = requests.0.try_recv() {
                waiting.push(more);
            }
            let outcome: Refreshed = self
                .refresh()
                .map_err(|e| RefreshError::Failed(Arc::new(e)));
            for reply in waiting {
                let _ = reply.send(outcome.clone());
            }
        }
    }

    /// From here on clients reach only the warehouse: no other files, no extension installs, and no setting
    /// can be changed (DuckDB's own `enable_external_access`, `allowed_directories` and `lock_configuration`).
    fn lock_down(&self, limits: &EngineLimits) -> Result<()> {
        let crate::config::StorageChoice::Iceberg(settings) = &self.ctx.project.config.storage
        else {
            return Ok(());
        };
        let warehouse = match &settings.warehouse {
            crate::config::Warehouse::Local(path) => {
                format!("{}/", path.display().to_string().trim_end_matches('/'))
            }
            crate::config::Warehouse::S3 { url, .. } => format!("{}/", url.trim_end_matches('/')),
        };
        // Iceberg data files never change once written (a commit adds new ones), so their Parquet footers
        // can be kept between queries instead of read again by each.
        let mut sql = format!(
            "SET TimeZone = 'UTC';\n\
             SET allowed_directories = [{}];\n\
             SET parquet_metadata_cache = true;\n",
            quote_literal(&warehouse)
        );
        if let Some(limit) = &limits.memory_limit {
            sql.push_str(&format!("SET memory_limit = {};\n", quote_literal(limit)));
        }
        sql.push_str(
            "SET allow_community_extensions = false;\n\
             SET autoload_known_extensions = false;\n\
             SET enable_external_access = false;\n\
             SET lock_configuration = true;",
        );
        self.session
            .execute(&sql, || "locking the reader engine to the warehouse".into())
    }

    fn refresh(&mut self) -> Result<Arc<BTreeSet<String>>> {
        let fingerprint = self.ctx.engine_fingerprint(self.state.as_ref())?;
        if let (Some(now), Some((before, names))) = (fingerprint, &self.last)
            && now == *before
        {
            return Ok(names.clone());
        }
        let environments = self.ctx.sync_engine(&self.session)?;
        // Physical tables are those in `lake__*` schemas, and any other an environment shows: in a schema
        // `physical_schema_mapping` chose, or prod's in-place table of a dev_only model.
        let shown: HashSet<PhysicalTable> = environments
            .iter()
            .flat_map(|env| env.snapshots.iter().map(|s| s.table()))
            .collect();
        let physical: HashMap<PhysicalTable, String> = self
            .session
            .query_rows(
                &format!(
                    "SELECT schema_name, view_name, coalesce(comment, '') FROM duckdb_views() \
                     WHERE database_name = {} AND NOT internal",
                    quote_literal(&self.catalog)
                ),
                || "listing the physical tables".into(),
            )?
            .into_iter()
            .filter_map(PhysicalTable::with_text)
            .filter(|(table, _)| table.schema.starts_with("lake__") || shown.contains(table))
            .collect();
        let mut names = BTreeSet::new();
        for env in &environments {
            if RESERVED_DATABASES.contains(&env.name.as_str()) || env.name == self.catalog {
                continue;
            }
            let mut wanted = BTreeMap::new();
            for table in physical.keys() {
                wanted.insert(
                    (table.schema.clone(), table.table.clone()),
                    (table.clone(), physical[table].clone()),
                );
            }
            for s in &env.snapshots {
                let table = s.table();
                if let Some(comment) = physical.get(&table) {
                    let name = VirtualName::new(&s.name, crate::PROD, SuffixTarget::Schema);
                    wanted.insert((name.schema, name.name), (table, comment.clone()));
                }
            }
            self.apply(&env.name, wanted)?;
            names.insert(env.name.clone());
        }
        let gone: Vec<String> = self
            .attached
            .keys()
            .filter(|name| !names.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            self.session
                .execute(&format!("DETACH {}", quote_ident(&name)), || {
                    format!("detaching the removed environment `{name}`")
                })?;
            self.attached.remove(&name);
        }
        let names = Arc::new(names);
        self.last = fingerprint.map(|f| (f, names.clone()));
        Ok(names)
    }

    /// Brings one environment's database to `wanted` in one transaction, so a query sees all of a promotion
    /// or none of it.
    fn apply(&mut self, env: &str, wanted: EnvironmentViews) -> Result<()> {
        let database = quote_ident(env);
        if !self.attached.contains_key(env) {
            self.session.execute(
                &format!(
                    "ATTACH ':memory:' AS {database};\n{}",
                    super::catalog::install_sql(env)
                ),
                || format!("attaching the environment `{env}`"),
            )?;
            self.attached.insert(env.to_string(), BTreeMap::new());
        }
        let current = &self.attached[env];
        let mut sql = String::new();
        let mut schemas: BTreeSet<&str> = current.keys().map(|(s, _)| s.as_str()).collect();
        for ((schema, name), target) in &wanted {
            if current.get(&(schema.clone(), name.clone())) == Some(target) {
                continue;
            }
            if schemas.insert(schema.as_str()) {
                sql.push_str(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {database}.{};\n",
                    quote_ident(schema)
                ));
            }
            sql.push_str(&format!(
                "CREATE OR REPLACE VIEW {database}.{}.{} AS SELECT * FROM {}.{};\n",
                quote_ident(schema),
                quote_ident(name),
                quote_ident(&self.catalog),
                target.0.sql()
            ));
        }
        for (schema, name) in current.keys() {
            if !wanted.contains_key(&(schema.clone(), name.clone())) {
                sql.push_str(&format!(
                    "DROP VIEW IF EXISTS {database}.{}.{};\n",
                    quote_ident(schema),
                    quote_ident(name)
                ));
            }
        }
        if !sql.is_empty() {
            self.session
                .execute(&format!("BEGIN;\n{sql}COMMIT;"), || {
                    format!("updating the views of the environment `{env}`")
                })
                .inspect_err(|_| {
                    let _ = self.session.execute("ROLLBACK", String::new);
                })?;
        }
        self.attached.insert(env.to_string(), wanted);
        Ok(())
    }
}

/// A query running on a pooled session: its columns, then its batches as DuckDB produces them. Dropping it
/// before the last batch (the client went away or cancelled) interrupts the query.
pub struct Running {
    pub schema: SchemaRef,
    pub logical: Vec<ColumnLogical>,
    pub batches: mpsc::Receiver<Result<RecordBatch>>,
    pub stop: StopOnDrop,
}

/// Interrupts the DuckDB statement it belongs to, unless that statement has ended.
#[derive(Clone)]
pub struct Stop {
    running: Arc<Mutex<bool>>,
    interrupt: Arc<duckdb::InterruptHandle>,
    timed_out: Arc<std::sync::atomic::AtomicBool>,
}

impl Stop {
    pub fn interrupt(&self) {
        // The flag is read under the lock the query's thread takes to finish, so an interrupt can only land on
        // this statement, never on a later one that reuses the session.
        if let Ok(running) = self.running.lock()
            && *running
        {
            self.interrupt.interrupt();
        }
    }

    /// Whether the statement was stopped by its time limit (rather than by the client).
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A `Stop` that fires when dropped; harmless once the statement has ended.
pub struct StopOnDrop(pub Stop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.interrupt();
    }
}

impl Lakehouse {
    /// `sql` as it runs in `environment`'s database, where `shop.events` means its schema `shop`, never the
    /// engine's catalog of the same name.
    fn qualify(&self, environment: &str, sql: String) -> String {
        let key = (environment.to_string(), sql);
        if let Some(known) = self.qualified.get(&key) {
            return known;
        }
        let qualified =
            crate::sql::qualify_catalog_named_schema(&key.1, &self.catalog, environment, |_| true);
        if key.1.len() <= REMEMBERED_LENGTH {
            self.qualified.put(key, qualified.clone());
        }
        qualified
    }

    /// Brings the views up to date with the catalog and returns the environments.
    pub async fn refresh(&self) -> Refreshed {
        let (reply, answer) = oneshot::channel();
        self.refresher
            .send(reply)
            .map_err(|_| RefreshError::ShuttingDown)?;
        answer.await.map_err(|_| RefreshError::ShuttingDown)?
    }

    /// Runs `sql` on a free session with `environment` as its database; waits while all sessions are busy.
    /// Returns once the result's columns are known (DuckDB computes batches as they are read). `timeout`
    /// interrupts the statement when it has not ended by then.
    pub async fn run(
        &self,
        environment: &str,
        sql: String,
        params: Vec<duckdb::types::Value>,
        timeout: Option<std::time::Duration>,
        read_only: bool,
    ) -> std::result::Result<Running, (LakeError, Option<Stop>)> {
        let closed = || {
            (
                LakeError::io("the query pool", std::io::Error::other("closed")),
                None,
            )
        };
        // Waiting for a session counts against the statement's timeout, as lock waits do in PostgreSQL.
        let wait = timeout.map_or(self.query_wait, |limit| limit.min(self.query_wait));
        let permit = tokio::time::timeout(wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                let busy = LakeError::Busy {
                    waited: wait,
                    sessions: self.sessions,
                };
                (busy, None)
            })?
            .map_err(|_| closed())?;
        // A permit is only issued while a session is free: the pool and the semaphore have the same size.
        let mut pooled = self
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or_else(closed)?;
        let stop = Stop {
            running: Arc::new(Mutex::new(true)),
            interrupt: pooled.interrupt.clone(),
            timed_out: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let guard = StopOnDrop(stop.clone());
        if let Some(limit) = timeout {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                stop.timed_out
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                stop.interrupt();
            });
        }
        let (schema_tx, schema_rx) = oneshot::channel::<Result<(SchemaRef, Vec<ColumnLogical>)>>();
        let (batch_tx, batch_rx) = mpsc::channel::<Result<RecordBatch>>(2);
        let pool = self.pool.clone();
        let running = stop.running.clone();
        let sql = self.qualify(environment, sql);
        let environment = environment.to_string();
        let verdicts = self.verdicts.clone();
        tokio::task::spawn_blocking(move || {
            let mut schema_tx = Some(schema_tx);
            let outcome = pooled.select(&environment, read_only).and_then(|()| {
                if read_only {
                    refuse_writes(&pooled.session, &sql, &verdicts)?;
                }
                pooled.session.query_each_with(
                    &sql,
                    &params,
                    || "running the query".into(),
                    &mut |schema, logical| {
                        if let Some(tx) = schema_tx.take() {
                            let _ = tx.send(Ok((schema.clone(), logical.to_vec())));
                        }
                        Ok(())
                    },
                    &mut |batch| Ok(batch_tx.blocking_send(Ok(batch)).is_ok()),
                )
            });
            if let Err(e) = outcome {
                match schema_tx.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(e));
                    }
                    None => {
                        let _ = batch_tx.blocking_send(Err(e));
                    }
                }
            }
            // Finish under the lock `Stop::interrupt` takes (see there), then free the session.
            if let Ok(mut running) = running.lock() {
                *running = false;
            }
            pool.lock().unwrap_or_else(|p| p.into_inner()).push(pooled);
            drop(permit);
        });
        match schema_rx.await {
            Ok(Ok((schema, logical))) => Ok(Running {
                schema,
                logical,
                batches: batch_rx,
                stop: guard,
            }),
            Ok(Err(e)) => Err((e, Some(stop))),
            Err(_) => Err((
                LakeError::io(
                    "the query pool",
                    std::io::Error::other("the query thread ended"),
                ),
                Some(stop),
            )),
        }
    }
}

/// Refuses a statement DuckDB's parser does not see as a query (see `write_keyword`), remembering the verdict
/// for the statement's text.
fn refuse_writes(
    session: &Session,
    sql: &str,
    verdicts: &Memo<String, Option<String>>,
) -> Result<()> {
    let refused = match verdicts.get(sql) {
        Some(known) => known,
        None => {
            let refused = write_keyword(session, sql)?;
            if sql.len() <= REMEMBERED_LENGTH {
                verdicts.put(sql.to_string(), refused.clone());
            }
            refused
        }
    };
    match refused {
        Some(keyword) => Err(LakeError::ReadOnly(keyword)),
        None => Ok(()),
    }
}

/// `Some(what)` for a statement DuckDB's parser does not see as a query: `json_serialize_sql` serialises
/// SELECT statements (with DESCRIBE, SHOW, FROM-first queries) and reports anything else as not implemented.
/// Statements that do not parse are left for DuckDB to report as the syntax errors they are.
fn write_keyword(session: &Session, sql: &str) -> Result<Option<String>> {
    let verdict = session.query_strings(
        &format!("SELECT json_serialize_sql({})::VARCHAR", quote_literal(sql)),
        || "checking that the statement only reads".into(),
    )?;
    let verdict: serde_json::Value = verdict
        .first()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let refused = verdict["error"] == serde_json::Value::Bool(true)
        && verdict["error_type"].as_str() == Some("not implemented");
    if !refused {
        return Ok(None);
    }
    let keyword = crate::sql::lex::leading_keyword(sql);
    Ok(Some(if keyword.is_empty() {
        "this statement".into()
    } else {
        keyword
    }))
}
