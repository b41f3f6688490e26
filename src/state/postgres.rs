//! The shared state store: tables in a PostgreSQL schema (pg_lake's database in production), with
//! transactional writes, versioned migrations and advisory locks so several machines can plan at once.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgPool, Row};

use super::schema::{self, Dialect, VersionAction};
use super::{
    EnvSnapshot, Environment, Interval, PromoteOutcome, SCHEMA_VERSION, StateStore, StoredSnapshot,
    StoredVersion, stored_model_name,
};
use crate::config::Secret;
use crate::error::{LakeError, Result};
use crate::snapshot::VirtualName;
use crate::sql::{ModelName, quote_ident};

pub struct PostgresState {
    runtime: tokio::runtime::Runtime,
    pool: PgPool,
    /// Quoted schema name, e.g. `"lake"`.
    schema: String,
    /// The schema name unquoted, as information_schema spells it.
    schema_name: String,
    describe: String,
}

async fn pg_table_exists(conn: &mut sqlx::PgConnection, schema: &str, table: &str) -> Result<bool> {
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2)",
    )
    .bind(schema)
    .bind(table)
    .fetch_one(conn)
    .await
    .map_err(pg_err("reading the state's tables"))
}

async fn pg_columns(
    conn: &mut sqlx::PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<String>> {
    sqlx::query_scalar::<_, String>(
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(conn)
    .await
    .map_err(pg_err("reading the state's columns"))
}

fn pg_err(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> LakeError {
    let context = context.into();
    move |e| {
        LakeError::state(
            format!("{context} (PostgreSQL)"),
            e,
            Some("check state_connection in config.yaml and that the server is reachable"),
        )
    }
}

fn json_err(context: &str, e: serde_json::Error) -> LakeError {
    LakeError::state(
        context,
        e,
        Some("the state may have been edited by hand or by a newer lake"),
    )
}

/// Column `index` of a row read while `context`.
fn column<'r, T>(row: &'r PgRow, index: usize, context: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(index).map_err(pg_err(context))
}

/// Advisory lock keys: one for migrations, one per environment for applies.
fn lock_key(what: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("lake/{what}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(bytes)
}

/// Held while a plan is applied to one environment: other applies to it wait; other environments do not.
pub struct EnvironmentLock {
    runtime: tokio::runtime::Runtime,
    conn: Option<sqlx::PgConnection>,
}

impl Drop for EnvironmentLock {
    fn drop(&mut self) {
        // Closing the session releases its advisory locks, even if the unlock below never runs.
        if let Some(conn) = self.conn.take() {
            let _ = self.runtime.block_on(conn.close());
        }
    }
}

impl PostgresState {
    /// Connects, creating the schema on first use; state written by an older lake is refused until
    /// `lake migrate`.
    pub fn open(uri: &Secret, schema: &str) -> Result<Self> {
        Self::open_with(uri, schema, false)
    }

    /// Connects and upgrades an older schema in one transaction (`lake migrate`).
    pub fn open_migrating(uri: &Secret, schema: &str) -> Result<Self> {
        Self::open_with(uri, schema, true)
    }

    fn open_with(uri: &Secret, schema: &str, upgrade: bool) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LakeError::io("tokio runtime", e))?;
        let options: PgConnectOptions = uri
            .expose()
            .parse()
            .map_err(pg_err("reading state_connection"))?;
        let pool = runtime
            .block_on(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .connect_with(options),
            )
            .map_err(pg_err("connecting to the PostgreSQL state"))?;
        let state = PostgresState {
            runtime,
            pool,
            schema: quote_ident(schema),
            schema_name: schema.to_string(),
            describe: format!("PostgreSQL state (schema {schema})"),
        };
        state.migrate(upgrade)?;
        Ok(state)
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Runs one database call to completion, naming what it was doing if it fails.
    fn run<T>(
        &self,
        context: &str,
        call: impl std::future::Future<Output = std::result::Result<T, sqlx::Error>>,
    ) -> Result<T> {
        self.runtime.block_on(call).map_err(pg_err(context))
    }

    fn t(&self, table: &str) -> String {
        format!("{}.{table}", self.schema)
    }

    fn migrate(&self, upgrade: bool) -> Result<()> {
        let context = "initialising the PostgreSQL state";
        let qualify = |table: &str| self.t(table);
        self.runtime.block_on(async {
            let mut tx = self.pool.begin().await.map_err(pg_err(context))?;
            // Concurrent first runs serialise here; the loser then sees the schema in place.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_key("migrate"))
                .execute(&mut *tx)
                .await
                .map_err(pg_err(context))?;
            let mut setup = vec![format!("CREATE SCHEMA IF NOT EXISTS {}", self.schema)];
            setup.push(schema::versions_table(&qualify));
            for statement in &setup {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_err(context))?;
            }
            let current: Option<(i32, String)> = sqlx::query_as(&format!(
                "SELECT schema_version, lake_version FROM {} ORDER BY schema_version DESC LIMIT 1",
                self.t("_versions")
            ))
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg_err(context))?;
            let place = format!("the PostgreSQL state (schema {})", self.schema);
            let current = current.map(|(version, by)| (version.max(0) as u32, by));
            let statements = match schema::check_version(current, upgrade, &place)? {
                VersionAction::UpToDate => Vec::new(),
                VersionAction::Create => schema::create_statements(Dialect::Postgres, &qualify),
                VersionAction::Upgrade { from } => {
                    // The state as it was, for `lake rollback`, kept in the same transaction as the upgrade.
                    let mut existing = Vec::new();
                    for table in schema::STATE_TABLES {
                        if pg_table_exists(&mut tx, &self.schema_name, table).await? {
                            existing.push(*table);
                        }
                    }
                    let mut statements = schema::backup_statements(&existing, &qualify);
                    statements.extend(schema::upgrade_statements(
                        from,
                        Dialect::Postgres,
                        &qualify,
                    ));
                    statements
                }
            };
            if !statements.is_empty() {
                // All steps commit together with the new version, or none does.
                for statement in &statements {
                    sqlx::query(statement)
                        .execute(&mut *tx)
                        .await
                        .map_err(pg_err(context))?;
                }
                sqlx::query(&format!(
                    "INSERT INTO {} (schema_version, lake_version) VALUES ($1, $2)",
                    self.t("_versions")
                ))
                .bind(SCHEMA_VERSION as i32)
                .bind(env!("CARGO_PKG_VERSION"))
                .execute(&mut *tx)
                .await
                .map_err(pg_err(context))?;
            }
            tx.commit().await.map_err(pg_err(context))
        })
    }

    /// `lake rollback`: the state as the last `lake migrate` found it, in one transaction; the schema version
    /// it is back at. Opened without `open_with`, which would refuse the older schema it leaves.
    pub fn rollback(uri: &Secret, schema_name: &str) -> Result<u32> {
        let context = "rolling back the PostgreSQL state";
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LakeError::io("tokio runtime", e))?;
        let options: PgConnectOptions = uri
            .expose()
            .parse()
            .map_err(pg_err("reading state_connection"))?;
        let schema = quote_ident(schema_name);
        let qualify = |table: &str| format!("{schema}.{table}");
        runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect_with(&options)
                .await
                .map_err(pg_err(context))?;
            let mut tx = conn.begin().await.map_err(pg_err(context))?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_key("migrate"))
                .execute(&mut *tx)
                .await
                .map_err(pg_err(context))?;
            let place = format!("the PostgreSQL state (schema {schema_name})");
            if !pg_table_exists(&mut tx, schema_name, &schema::backup_of("_versions")).await? {
                return Err(schema::nothing_to_roll_back(&place));
            }
            for table in schema::STATE_TABLES {
                if !pg_table_exists(&mut tx, schema_name, table).await? {
                    continue;
                }
                let backup = schema::backup_of(table);
                let kept = if pg_table_exists(&mut tx, schema_name, &backup).await? {
                    Some(pg_columns(&mut tx, schema_name, &backup).await?)
                } else {
                    None
                };
                let columns = pg_columns(&mut tx, schema_name, table).await?;
                for statement in
                    schema::restore_statements(table, &columns, kept.as_deref(), &qualify)
                {
                    sqlx::query(&statement)
                        .execute(&mut *tx)
                        .await
                        .map_err(pg_err(context))?;
                }
            }
            let version: i32 = sqlx::query_scalar(&format!(
                "SELECT max(schema_version) FROM {}",
                qualify("_versions")
            ))
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_err(context))?;
            tx.commit().await.map_err(pg_err(context))?;
            Ok(version.max(0) as u32)
        })
    }

    /// Takes the apply lock of `environment` (a session-level advisory lock on its own connection),
    /// calling `on_wait` first if another process holds it.
    pub fn lock_environment(
        &self,
        environment: &str,
        on_wait: impl FnOnce(),
    ) -> Result<EnvironmentLock> {
        let context = format!("locking environment `{environment}`");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LakeError::io("tokio runtime", e))?;
        let key = lock_key(&format!("environment/{environment}"));
        let options = self.pool.connect_options();
        let conn = runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect_with(&options)
                .await
                .map_err(pg_err(context.clone()))?;
            let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut conn)
                .await
                .map_err(pg_err(context.clone()))?
                .try_get(0)
                .map_err(pg_err(context.clone()))?;
            Ok::<_, LakeError>((conn, got))
        })?;
        let (mut conn, got) = conn;
        if !got {
            on_wait();
            runtime
                .block_on(
                    sqlx::query("SELECT pg_advisory_lock($1)")
                        .bind(key)
                        .execute(&mut conn),
                )
                .map_err(pg_err(context))?;
        }
        Ok(EnvironmentLock {
            runtime,
            conn: Some(conn),
        })
    }

    fn environments_where(&self, condition: &str, name: Option<&str>) -> Result<Vec<Environment>> {
        let context = "reading environments";
        let sql = format!(
            "SELECT name, snapshots, promoted, plan_id, previous_plan_id, created_ts, updated_ts, expiration_ts, \
             suffix_target FROM {} {condition} ORDER BY name",
            self.t("environments")
        );
        let rows = self.runtime.block_on(async {
            let mut q = sqlx::query(&sql);
            if let Some(n) = name {
                q = q.bind(n);
            }
            q.fetch_all(&self.pool).await.map_err(pg_err(context))
        })?;
        rows.into_iter()
            .map(|r| {
                let snapshots: String = column(&r, 1, context)?;
                let promoted: String = column(&r, 2, context)?;
                Ok(Environment {
                    name: column(&r, 0, context)?,
                    snapshots: serde_json::from_str::<Vec<EnvSnapshot>>(&snapshots)
                        .map_err(|e| json_err(context, e))?,
                    promoted: serde_json::from_str(&promoted).map_err(|e| json_err(context, e))?,
                    plan_id: column(&r, 3, context)?,
                    previous_plan_id: column(&r, 4, context)?,
                    created_ts: column(&r, 5, context)?,
                    updated_ts: column(&r, 6, context)?,
                    expiration_ts: column(&r, 7, context)?,
                    suffix_target: super::suffix_target_from_state(
                        column::<Option<String>>(&r, 8, context)?.as_deref(),
                    )?,
                })
            })
            .collect()
    }
}

impl StateStore for PostgresState {
    fn environment(&self, name: &str) -> Result<Option<Environment>> {
        Ok(self
            .environments_where("WHERE name = $1", Some(name))?
            .into_iter()
            .next())
    }

    fn environments(&self) -> Result<Vec<Environment>> {
        self.environments_where("", None)
    }

    fn environment_stamps(&self) -> Result<Vec<super::EnvironmentStamp>> {
        let context = "reading the environments' stamps";
        let sql = format!(
            "SELECT name, plan_id, updated_ts, expiration_ts FROM {} ORDER BY name",
            self.t("environments")
        );
        let rows = self
            .runtime
            .block_on(async { sqlx::query(&sql).fetch_all(&self.pool).await })
            .map_err(pg_err(context))?;
        rows.into_iter()
            .map(|r| {
                Ok(super::EnvironmentStamp {
                    name: column(&r, 0, context)?,
                    plan_id: column(&r, 1, context)?,
                    updated_ts: column(&r, 2, context)?,
                    expiration_ts: column(&r, 3, context)?,
                })
            })
            .collect()
    }

    fn stored_versions(&self, ids: &[&str]) -> Result<HashMap<String, StoredVersion>> {
        let context = "reading snapshots";
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let rows = self.run(
            context,
            sqlx::query(&format!(
                "SELECT id, version, physical_schema FROM {} WHERE id = ANY($1)",
                self.t("snapshots")
            ))
            .bind(&ids)
            .fetch_all(&self.pool),
        )?;
        rows.into_iter()
            .map(|r| {
                let stored = StoredVersion {
                    version: column(&r, 1, context)?,
                    physical_schema: column(&r, 2, context)?,
                };
                Ok((column(&r, 0, context)?, stored))
            })
            .collect()
    }

    fn snapshots(&self, ids: &[&str]) -> Result<Vec<StoredSnapshot>> {
        let context = "reading snapshots";
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        let rows = self.run(
            context,
            sqlx::query(&format!(
                "SELECT snapshot, node, created_ts, ttl_ms FROM {} WHERE id = ANY($1)",
                self.t("snapshots")
            ))
            .bind(&ids)
            .fetch_all(&self.pool),
        )?;
        rows.into_iter()
            .map(|r| {
                let snapshot: String = column(&r, 0, context)?;
                let node: String = column(&r, 1, context)?;
                Ok(StoredSnapshot {
                    snapshot: serde_json::from_str(&snapshot).map_err(|e| json_err(context, e))?,
                    node: serde_json::from_str(&node).map_err(|e| json_err(context, e))?,
                    created_ts: column(&r, 2, context)?,
                    ttl_ms: column(&r, 3, context)?,
                })
            })
            .collect()
    }

    fn push_snapshots(&mut self, snapshots: &[StoredSnapshot]) -> Result<()> {
        let context = "storing snapshots";
        let sql = format!(
            "INSERT INTO {} (id, name, version, kind_name, snapshot, node, created_ts, ttl_ms, physical_schema) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            self.t("snapshots")
        );
        self.runtime.block_on(async {
            let mut tx = self.pool.begin().await.map_err(pg_err(context))?;
            for s in snapshots {
                let snapshot =
                    serde_json::to_string(&s.snapshot).map_err(|e| json_err(context, e))?;
                let node = serde_json::to_string(&s.node).map_err(|e| json_err(context, e))?;
                sqlx::query(&sql)
                    .bind(&s.snapshot.id)
                    .bind(s.snapshot.name.to_string())
                    .bind(&s.snapshot.version)
                    .bind(&s.snapshot.kind_name)
                    .bind(snapshot)
                    .bind(node)
                    .bind(s.created_ts)
                    .bind(s.ttl_ms)
                    .bind(&s.snapshot.physical_schema)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_err(context))?;
            }
            tx.commit().await.map_err(pg_err(context))
        })
    }

    fn intervals(&self, versions: &[(ModelName, String)]) -> Result<Vec<Interval>> {
        let context = "reading intervals";
        let wanted: HashSet<(String, &str)> = versions
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_str()))
            .collect();
        let version_list: Vec<String> = versions.iter().map(|(_, v)| v.clone()).collect();
        let rows = self.run(context, sqlx::query(&format!(
                    "SELECT name, version, start_ts, end_ts, created_ts, write_id FROM {} WHERE version = ANY($1)",
                    self.t("intervals")
                ))
                .bind(&version_list)
                .fetch_all(&self.pool))?;
        let mut out = Vec::new();
        for r in rows {
            let name: String = column(&r, 0, context)?;
            let version: String = column(&r, 1, context)?;
            if !wanted.contains(&(name.clone(), version.as_str())) {
                continue;
            }
            let Some(model) = ModelName::parse(&name) else {
                continue;
            };
            out.push(Interval {
                name: model,
                version,
                start_ts: column(&r, 2, context)?,
                end_ts: column(&r, 3, context)?,
                created_ts: column(&r, 4, context)?,
                write_id: column(&r, 5, context)?,
            });
        }
        Ok(out)
    }

    fn add_interval(&mut self, interval: &Interval) -> Result<()> {
        self.run(
            "recording an interval",
            sqlx::query(&format!(
                "INSERT INTO {} (name, version, start_ts, end_ts, created_ts, write_id) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (name, version, start_ts) DO UPDATE SET end_ts = EXCLUDED.end_ts, \
                     created_ts = EXCLUDED.created_ts, write_id = EXCLUDED.write_id",
                self.t("intervals")
            ))
            .bind(interval.name.to_string())
            .bind(&interval.version)
            .bind(interval.start_ts)
            .bind(interval.end_ts)
            .bind(interval.created_ts)
            .bind(&interval.write_id)
            .execute(&self.pool),
        )?;
        Ok(())
    }

    fn set_expiration(&mut self, name: &str, expiration_ts: i64) -> Result<bool> {
        let done = self.run(
            "invalidating an environment",
            sqlx::query(&format!(
                "UPDATE {} SET expiration_ts = $1 WHERE name = $2",
                self.t("environments")
            ))
            .bind(expiration_ts)
            .bind(name)
            .execute(&self.pool),
        )?;
        Ok(done.rows_affected() == 1)
    }

    fn remove_environment(&mut self, name: &str, expected_plan_id: &str) -> Result<bool> {
        let done = self.run(
            "removing an environment",
            sqlx::query(&format!(
                "DELETE FROM {} WHERE name = $1 AND plan_id = $2",
                self.t("environments")
            ))
            .bind(name)
            .bind(expected_plan_id)
            .execute(&self.pool),
        )?;
        Ok(done.rows_affected() == 1)
    }

    fn physical_schemas(&self) -> Result<Vec<String>> {
        let context = "listing physical schemas";
        let rows = self.run(
            context,
            sqlx::query(&format!(
                "SELECT DISTINCT physical_schema FROM {} WHERE physical_schema IS NOT NULL ORDER BY 1",
                self.t("snapshots")
            ))
            .fetch_all(&self.pool),
        )?;
        rows.into_iter().map(|r| column(&r, 0, context)).collect()
    }

    fn snapshot_ids(&self) -> Result<Vec<String>> {
        let context = "listing snapshots";
        let rows = self.run(
            context,
            sqlx::query(&format!(
                "SELECT id FROM {} ORDER BY id",
                self.t("snapshots")
            ))
            .fetch_all(&self.pool),
        )?;
        rows.into_iter().map(|r| column(&r, 0, context)).collect()
    }

    fn in_place_models(&self) -> Result<Vec<ModelName>> {
        let context = "listing in-place tables";
        let rows = self.run(
            context,
            sqlx::query(&format!(
                "SELECT name FROM {} WHERE version = $1 UNION SELECT name FROM {} WHERE version = $1 \
                 ORDER BY 1",
                self.t("intervals"),
                self.t("snapshots")
            ))
            .bind(crate::snapshot::IN_PLACE)
            .fetch_all(&self.pool),
        )?;
        rows.into_iter()
            .map(|r| stored_model_name(&column::<String>(&r, 0, context)?))
            .collect()
    }

    fn versions_with_expiry(&self) -> Result<Vec<(ModelName, StoredVersion, i64)>> {
        let context = "listing stored versions";
        let rows = self.run(
            context,
            sqlx::query(&format!(
                "SELECT name, version, max(physical_schema), max(created_ts + ttl_ms) FROM {} \
                 GROUP BY name, version",
                self.t("snapshots")
            ))
            .fetch_all(&self.pool),
        )?;
        rows.into_iter()
            .map(|r| {
                let name: String = column(&r, 0, context)?;
                let model = stored_model_name(&name)?;
                let stored = StoredVersion {
                    version: column(&r, 1, context)?,
                    physical_schema: column(&r, 2, context)?,
                };
                Ok((model, stored, column(&r, 3, context)?))
            })
            .collect()
    }

    fn remove_intervals(
        &mut self,
        name: &ModelName,
        version: &str,
        start_ts: i64,
        end_ts: i64,
    ) -> Result<()> {
        let context = "clearing intervals to restate";
        let name = name.to_string();
        let table = self.t("intervals");
        self.runtime.block_on(async {
            let mut tx = self.pool.begin().await.map_err(pg_err(context))?;
            let overlapping = sqlx::query(&format!(
                "DELETE FROM {table} WHERE name = $1 AND version = $2 AND start_ts < $4 AND end_ts > $3 \
                 RETURNING start_ts, end_ts, created_ts, write_id"
            ))
            .bind(&name)
            .bind(version)
            .bind(start_ts)
            .bind(end_ts)
            .fetch_all(&mut *tx)
            .await
            .map_err(pg_err(context))?;
            for row in overlapping {
                let (s, e, created, write_id): (i64, i64, i64, Option<String>) = (
                    column(&row, 0, context)?,
                    column(&row, 1, context)?,
                    column(&row, 2, context)?,
                    column(&row, 3, context)?,
                );
                // Intervals that stick out of the range keep the parts outside it.
                for (keep_start, keep_end) in super::outside_of(s, e, start_ts, end_ts) {
                    sqlx::query(&format!(
                        "INSERT INTO {table} (name, version, start_ts, end_ts, created_ts, write_id) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, version, start_ts) DO NOTHING"
                    ))
                    .bind(&name)
                    .bind(version)
                    .bind(keep_start)
                    .bind(keep_end)
                    .bind(created)
                    .bind(&write_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_err(context))?;
                }
            }
            tx.commit().await.map_err(pg_err(context))
        })
    }

    fn remove_versions(&mut self, versions: &[(ModelName, String)]) -> Result<()> {
        let context = "forgetting dropped versions";
        let (snapshots, intervals) = (self.t("snapshots"), self.t("intervals"));
        self.runtime.block_on(async {
            let mut tx = self.pool.begin().await.map_err(pg_err(context))?;
            for (name, version) in versions {
                for table in [&snapshots, &intervals] {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE name = $1 AND version = $2"
                    ))
                    .bind(name.to_string())
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_err(context))?;
                }
            }
            tx.commit().await.map_err(pg_err(context))
        })
    }

    fn write_pending_promotion(&mut self, environment: &str, names: &[VirtualName]) -> Result<()> {
        let context = "journaling a promotion";
        let text = serde_json::to_string(names).map_err(|e| json_err(context, e))?;
        self.run(
            context,
            sqlx::query(&format!(
                "INSERT INTO {} (name, virtual_names, created_ts) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET virtual_names = EXCLUDED.virtual_names",
                self.t("pending_promotions")
            ))
            .bind(environment)
            .bind(text)
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&self.pool),
        )?;
        Ok(())
    }

    fn pending_promotion(&self, environment: &str) -> Result<Vec<VirtualName>> {
        let context = "reading the promotion journal";
        let row = self.run(
            context,
            sqlx::query(&format!(
                "SELECT virtual_names FROM {} WHERE name = $1",
                self.t("pending_promotions")
            ))
            .bind(environment)
            .fetch_optional(&self.pool),
        )?;
        match row {
            None => Ok(Vec::new()),
            Some(r) => {
                let text: String = column(&r, 0, context)?;
                serde_json::from_str(&text).map_err(|e| json_err(context, e))
            }
        }
    }

    fn promote(
        &mut self,
        env: &Environment,
        expected_plan_id: Option<&str>,
    ) -> Result<PromoteOutcome> {
        let context = "updating an environment";
        let snapshots = serde_json::to_string(&env.snapshots).map_err(|e| json_err(context, e))?;
        let promoted = serde_json::to_string(&env.promoted).map_err(|e| json_err(context, e))?;
        let (environments, plans, pending) = (
            self.t("environments"),
            self.t("plans"),
            self.t("pending_promotions"),
        );
        self.runtime.block_on(async {
            let mut tx = self.pool.begin().await.map_err(pg_err(context))?;
            // Row lock: a concurrent promotion of the same environment waits, then sees our plan id.
            let current: Option<String> = sqlx::query(&format!(
                "SELECT plan_id FROM {environments} WHERE name = $1 FOR UPDATE"
            ))
            .bind(&env.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(pg_err(context))?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(pg_err(context))?;
            if current.as_deref() != expected_plan_id {
                tx.rollback().await.map_err(pg_err(context))?;
                return Ok(PromoteOutcome::Conflict {
                    current_plan_id: current,
                });
            }
            let write = sqlx::query(&format!(
                "INSERT INTO {environments} (name, snapshots, promoted, plan_id, previous_plan_id, created_ts, \
                 updated_ts, expiration_ts, suffix_target) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (name) DO UPDATE SET snapshots = EXCLUDED.snapshots, promoted = EXCLUDED.promoted, \
                 plan_id = EXCLUDED.plan_id, previous_plan_id = EXCLUDED.previous_plan_id, \
                 updated_ts = EXCLUDED.updated_ts, expiration_ts = EXCLUDED.expiration_ts, \
                 suffix_target = EXCLUDED.suffix_target"
            ))
            .bind(&env.name)
            .bind(&snapshots)
            .bind(&promoted)
            .bind(&env.plan_id)
            .bind(&env.previous_plan_id)
            .bind(env.created_ts)
            .bind(env.updated_ts)
            .bind(env.expiration_ts)
            .bind(env.suffix_target.as_str())
            .execute(&mut *tx)
            .await;
            match write {
                Ok(_) => {}
                // Two first plans of a new environment: the loser's insert hits the primary key.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    tx.rollback().await.map_err(pg_err(context))?;
                    return Ok(PromoteOutcome::Conflict {
                        current_plan_id: None,
                    });
                }
                Err(e) => return Err(pg_err(context)(e)),
            }
            sqlx::query(&format!(
                "INSERT INTO {plans} (plan_id, environment, previous_plan_id, created_ts, snapshot_count) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (plan_id) DO NOTHING"
            ))
            .bind(&env.plan_id)
            .bind(&env.name)
            .bind(&env.previous_plan_id)
            .bind(env.updated_ts)
            .bind(env.snapshots.len() as i64)
            .execute(&mut *tx)
            .await
            .map_err(pg_err(context))?;
            crate::failpoint::hit("during-promote");
            sqlx::query(&format!("DELETE FROM {pending} WHERE name = $1"))
                .bind(&env.name)
                .execute(&mut *tx)
                .await
                .map_err(pg_err(context))?;
            tx.commit().await.map_err(pg_err(context))?;
            Ok(PromoteOutcome::Promoted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StateError;

    #[test]
    fn an_unreachable_server_is_a_state_error_not_a_conflict() {
        // A port nothing listens on: bind one, note it, and close it again.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let uri = Secret::new(format!("postgres://lake:hunter2@127.0.0.1:{port}/lake"));
        let error = PostgresState::open(&uri, "lake")
            .err()
            .expect("no server there");
        match &error {
            LakeError::State {
                source: StateError::Postgres(_),
                help: Some(help),
                ..
            } => assert!(help.contains("reachable"), "{help}"),
            other => panic!("expected a PostgreSQL state error, got {other:?}"),
        }
        assert!(
            !format!("{error} {error:?}").contains("hunter2"),
            "never prints the password"
        );
    }
}
