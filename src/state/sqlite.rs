//! The embedded state store: a SQLite database in the project's `.lake/` folder, guarded by a file lock.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::schema::{self, Dialect, VersionAction};
use super::{
    EnvSnapshot, Environment, Interval, PromoteOutcome, SCHEMA_VERSION, StateStore, StoredSnapshot,
    StoredVersion, stored_model_name,
};
use crate::error::{LakeError, Result};
use crate::snapshot::VirtualName;
use crate::sql::ModelName;

/// SQLite's limit on bound parameters is far above this; chunks keep statements small.
const CHUNK: usize = 500;

pub struct SqliteState {
    conn: Connection,
    path: PathBuf,
}

/// An exclusive lock on a project's state, held while a plan is applied or models are run.
pub struct StateLock {
    _file: File,
}

/// Takes the project's apply lock, waiting (and saying so through `on_wait`) when another process holds it.
pub fn lock(state_dir: &Path, on_wait: impl FnOnce()) -> Result<StateLock> {
    std::fs::create_dir_all(state_dir).map_err(|e| LakeError::io(state_dir, e))?;
    let path = state_dir.join("apply.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| LakeError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            on_wait();
            file.lock().map_err(|e| LakeError::io(&path, e))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(LakeError::io(&path, e)),
    }
    Ok(StateLock { _file: file })
}

fn sql_err(context: &str) -> impl FnOnce(rusqlite::Error) -> LakeError + '_ {
    move |e| LakeError::state(context, e, None)
}

fn json_err(context: &str, e: serde_json::Error) -> LakeError {
    LakeError::state(
        context,
        e,
        Some("the state database may have been edited by hand or by a newer lake"),
    )
}

impl SqliteState {
    /// Opens (creating on first use) the state database in `state_dir`. State written by an older lake is
    /// refused until `lake migrate` upgrades it.
    pub fn open(state_dir: &Path) -> Result<Self> {
        Self::open_with(state_dir, false)
    }

    /// Opens the state and upgrades an older schema in one transaction (`lake migrate`).
    pub fn open_migrating(state_dir: &Path) -> Result<Self> {
        Self::open_with(state_dir, true)
    }

    fn open_with(state_dir: &Path, upgrade: bool) -> Result<Self> {
        std::fs::create_dir_all(state_dir).map_err(|e| LakeError::io(state_dir, e))?;
        let path = state_dir.join("state.db");
        let conn = Connection::open(&path).map_err(sql_err("opening the state database"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(sql_err("configuring the state database"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(sql_err("configuring the state database"))?;
        let mut state = SqliteState { conn, path };
        state.migrate(upgrade)?;
        Ok(state)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self, upgrade: bool) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err("initialising state"))?;
        let plain = |table: &str| table.to_string();
        tx.execute_batch(&schema::versions_table(&plain))
            .map_err(sql_err("initialising state"))?;
        let current: Option<(u32, String)> = tx
            .query_row(
                "SELECT schema_version, lake_version FROM _versions ORDER BY schema_version DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql_err("reading the state schema version"))?;
        let place = format!("the state in {}", self.path.display());
        let statements = match schema::check_version(current, upgrade, &place)? {
            VersionAction::UpToDate => Vec::new(),
            VersionAction::Create => schema::create_statements(Dialect::Sqlite, &plain),
            VersionAction::Upgrade { from } => {
                // The state as it was, for `lake rollback`, kept in the same transaction as the upgrade.
                let existing: Vec<&str> = schema::STATE_TABLES
                    .iter()
                    .copied()
                    .filter(|t| table_exists(&tx, t))
                    .collect();
                let mut statements = schema::backup_statements(&existing, &plain);
                statements.extend(schema::upgrade_statements(from, Dialect::Sqlite, &plain));
                statements
            }
        };
        if !statements.is_empty() {
            // All steps commit together with the new version, or none does.
            for statement in &statements {
                tx.execute_batch(statement)
                    .map_err(sql_err("creating or migrating the state tables"))?;
            }
            tx.execute(
                "INSERT INTO _versions (schema_version, lake_version) VALUES (?1, ?2)",
                params![SCHEMA_VERSION, env!("CARGO_PKG_VERSION")],
            )
            .map_err(sql_err("recording the state schema version"))?;
        }
        tx.commit().map_err(sql_err("initialising state"))
    }
}

/// `lake rollback`: the state in `state_dir` as the last `lake migrate` found it, in one transaction; the
/// schema version it is back at.
pub fn rollback(state_dir: &Path) -> Result<u32> {
    let path = state_dir.join("state.db");
    if !path.exists() {
        return Err(schema::nothing_to_roll_back(&path.display().to_string()));
    }
    let mut conn = Connection::open(&path).map_err(sql_err("opening the state database"))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sql_err("configuring the state database"))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_err("rolling back the state"))?;
    if !table_exists(&tx, &schema::backup_of("_versions")) {
        return Err(schema::nothing_to_roll_back(&path.display().to_string()));
    }
    let plain = |table: &str| table.to_string();
    for table in schema::STATE_TABLES {
        if !table_exists(&tx, table) {
            continue;
        }
        let backup = schema::backup_of(table);
        let kept = table_exists(&tx, &backup).then(|| table_columns(&tx, &backup));
        let statements =
            schema::restore_statements(table, &table_columns(&tx, table), kept.as_deref(), &plain);
        for statement in statements {
            tx.execute_batch(&statement)
                .map_err(sql_err("rolling back the state"))?;
        }
    }
    let version: u32 = tx
        .query_row("SELECT max(schema_version) FROM _versions", [], |r| {
            r.get(0)
        })
        .map_err(sql_err("reading the state schema version"))?;
    tx.commit().map_err(sql_err("rolling back the state"))?;
    Ok(version)
}

fn table_exists(conn: &Connection, table: &str) -> bool {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get::<_, i64>(0),
    )
    .is_ok_and(|n| n > 0)
}

fn table_columns(conn: &Connection, table: &str) -> Vec<String> {
    let Ok(mut statement) = conn.prepare(&format!("PRAGMA table_info({table})")) else {
        return Vec::new();
    };
    statement
        .query_map([], |r| r.get::<_, String>(1))
        .map(|rows| rows.filter_map(std::result::Result::ok).collect())
        .unwrap_or_default()
}

fn row_to_env(row: &rusqlite::Row<'_>) -> rusqlite::Result<EnvRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

type EnvRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<i64>,
    Option<String>,
);

fn env_from_row(row: EnvRow) -> Result<Environment> {
    let (
        name,
        snapshots,
        promoted,
        plan_id,
        previous_plan_id,
        created_ts,
        updated_ts,
        expiration_ts,
        suffix_target,
    ) = row;
    let snapshots: Vec<EnvSnapshot> =
        serde_json::from_str(&snapshots).map_err(|e| json_err("reading an environment", e))?;
    let promoted: Vec<ModelName> =
        serde_json::from_str(&promoted).map_err(|e| json_err("reading an environment", e))?;
    Ok(Environment {
        name,
        snapshots,
        promoted,
        plan_id,
        previous_plan_id,
        created_ts,
        updated_ts,
        expiration_ts,
        suffix_target: super::suffix_target_from_state(suffix_target.as_deref())?,
    })
}

const ENV_COLUMNS: &str = "name, snapshots, promoted, plan_id, previous_plan_id, created_ts, updated_ts, expiration_ts, suffix_target";

impl SqliteState {
    /// Runs `sql` (with `{keys}` standing for the placeholders) once per chunk of `keys`.
    fn select_in<T>(
        &self,
        sql: &str,
        keys: &[&str],
        row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        context: &str,
    ) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(CHUNK) {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let mut stmt = self
                .conn
                .prepare(&sql.replace("{keys}", &placeholders))
                .map_err(sql_err(context))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(chunk.iter()), &row)
                .map_err(sql_err(context))?;
            for r in rows {
                out.push(r.map_err(sql_err(context))?);
            }
        }
        Ok(out)
    }
}

impl StateStore for SqliteState {
    fn environment(&self, name: &str) -> Result<Option<Environment>> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {ENV_COLUMNS} FROM environments WHERE name = ?1"),
                [name],
                row_to_env,
            )
            .optional()
            .map_err(sql_err("reading an environment"))?;
        row.map(env_from_row).transpose()
    }

    fn environments(&self) -> Result<Vec<Environment>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {ENV_COLUMNS} FROM environments ORDER BY name"
            ))
            .map_err(sql_err("listing environments"))?;
        let rows = stmt
            .query_map([], row_to_env)
            .map_err(sql_err("listing environments"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql_err("listing environments"))?;
        rows.into_iter().map(env_from_row).collect()
    }

    fn environment_stamps(&self) -> Result<Vec<super::EnvironmentStamp>> {
        let context = "reading the environments' stamps";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, plan_id, updated_ts, expiration_ts FROM environments ORDER BY name",
            )
            .map_err(sql_err(context))?;
        stmt.query_map([], |r| {
            Ok(super::EnvironmentStamp {
                name: r.get(0)?,
                plan_id: r.get(1)?,
                updated_ts: r.get(2)?,
                expiration_ts: r.get(3)?,
            })
        })
        .map_err(sql_err(context))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql_err(context))
    }

    fn stored_versions(&self, ids: &[&str]) -> Result<HashMap<String, StoredVersion>> {
        let found = self.select_in(
            "SELECT id, version, physical_schema FROM snapshots WHERE id IN ({keys})",
            ids,
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    StoredVersion {
                        version: r.get(1)?,
                        physical_schema: r.get(2)?,
                    },
                ))
            },
            "reading snapshots",
        )?;
        Ok(found.into_iter().collect())
    }

    fn snapshots(&self, ids: &[&str]) -> Result<Vec<StoredSnapshot>> {
        let rows = self.select_in(
            "SELECT snapshot, node, created_ts, ttl_ms FROM snapshots WHERE id IN ({keys})",
            ids,
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            },
            "reading snapshots",
        )?;
        rows.into_iter()
            .map(|(snapshot, node, created_ts, ttl_ms)| {
                Ok(StoredSnapshot {
                    snapshot: serde_json::from_str(&snapshot)
                        .map_err(|e| json_err("reading a snapshot", e))?,
                    node: serde_json::from_str(&node)
                        .map_err(|e| json_err("reading a snapshot", e))?,
                    created_ts,
                    ttl_ms,
                })
            })
            .collect()
    }

    fn push_snapshots(&mut self, snapshots: &[StoredSnapshot]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err("storing snapshots"))?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT OR IGNORE INTO snapshots (id, name, version, kind_name, snapshot, node, created_ts, ttl_ms,
                       physical_schema)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(sql_err("storing snapshots"))?;
            for s in snapshots {
                let snapshot = serde_json::to_string(&s.snapshot)
                    .map_err(|e| json_err("storing a snapshot", e))?;
                let node = serde_json::to_string(&s.node)
                    .map_err(|e| json_err("storing a snapshot", e))?;
                stmt.execute(params![
                    s.snapshot.id,
                    s.snapshot.name.to_string(),
                    s.snapshot.version,
                    s.snapshot.kind_name,
                    snapshot,
                    node,
                    s.created_ts,
                    s.ttl_ms,
                    s.snapshot.physical_schema
                ])
                .map_err(sql_err("storing snapshots"))?;
            }
        }
        tx.commit().map_err(sql_err("storing snapshots"))
    }

    fn intervals(&self, versions: &[(ModelName, String)]) -> Result<Vec<Interval>> {
        let wanted: HashSet<(String, &str)> = versions
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_str()))
            .collect();
        let version_list: Vec<&str> = versions.iter().map(|(_, v)| v.as_str()).collect();
        let rows = self.select_in(
            "SELECT name, version, start_ts, end_ts, created_ts, write_id FROM intervals WHERE version IN ({keys})",
            &version_list,
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            "reading intervals",
        )?;
        Ok(rows
            .into_iter()
            // Versions are per model; the name check guards against two models sharing a version string.
            .filter(|(name, version, ..)| wanted.contains(&(name.clone(), version.as_str())))
            .filter_map(|(name, version, start_ts, end_ts, created_ts, write_id)| {
                Some(Interval {
                    name: ModelName::parse(&name)?,
                    version,
                    start_ts,
                    end_ts,
                    created_ts,
                    write_id,
                })
            })
            .collect())
    }

    fn add_interval(&mut self, interval: &Interval) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO intervals (name, version, start_ts, end_ts, created_ts, write_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![interval.name.to_string(), interval.version, interval.start_ts, interval.end_ts, interval.created_ts, interval.write_id],
            )
            .map_err(sql_err("recording an interval"))?;
        Ok(())
    }

    fn set_expiration(&mut self, name: &str, expiration_ts: i64) -> Result<bool> {
        let changed = self
            .conn
            .execute(
                "UPDATE environments SET expiration_ts = ?1 WHERE name = ?2",
                params![expiration_ts, name],
            )
            .map_err(sql_err("invalidating an environment"))?;
        Ok(changed == 1)
    }

    fn remove_environment(&mut self, name: &str, expected_plan_id: &str) -> Result<bool> {
        let changed = self
            .conn
            .execute(
                "DELETE FROM environments WHERE name = ?1 AND plan_id = ?2",
                params![name, expected_plan_id],
            )
            .map_err(sql_err("removing an environment"))?;
        Ok(changed == 1)
    }

    fn physical_schemas(&self) -> Result<Vec<String>> {
        let context = "listing physical schemas";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT physical_schema FROM snapshots WHERE physical_schema IS NOT NULL \
                 ORDER BY 1",
            )
            .map_err(sql_err(context))?;
        stmt.query_map([], |r| r.get::<_, String>(0))
            .map_err(sql_err(context))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql_err(context))
    }

    fn snapshot_ids(&self) -> Result<Vec<String>> {
        let context = "listing snapshots";
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM snapshots ORDER BY id")
            .map_err(sql_err(context))?;
        stmt.query_map([], |r| r.get::<_, String>(0))
            .map_err(sql_err(context))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql_err(context))
    }

    fn in_place_models(&self) -> Result<Vec<ModelName>> {
        let context = "listing in-place tables";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name FROM intervals WHERE version = ?1 \
                 UNION SELECT name FROM snapshots WHERE version = ?1 ORDER BY 1",
            )
            .map_err(sql_err(context))?;
        let names = stmt
            .query_map([crate::snapshot::IN_PLACE], |r| r.get::<_, String>(0))
            .map_err(sql_err(context))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql_err(context))?;
        names.iter().map(|name| stored_model_name(name)).collect()
    }

    fn versions_with_expiry(&self) -> Result<Vec<(ModelName, StoredVersion, i64)>> {
        let context = "listing stored versions";
        // Every snapshot of a version shares its physical schema (later ones inherit it with the version).
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, version, max(physical_schema), max(created_ts + ttl_ms) FROM snapshots \
                 GROUP BY name, version",
            )
            .map_err(sql_err(context))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    StoredVersion {
                        version: r.get(1)?,
                        physical_schema: r.get(2)?,
                    },
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(sql_err(context))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql_err(context))?;
        rows.into_iter()
            .map(|(name, version, expiry)| Ok((stored_model_name(&name)?, version, expiry)))
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(context))?;
        // Intervals that stick out of the range keep the parts outside it.
        let overlapping: Vec<(i64, i64, i64, Option<String>)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT start_ts, end_ts, created_ts, write_id FROM intervals \
                     WHERE name = ?1 AND version = ?2 AND start_ts < ?4 AND end_ts > ?3",
                )
                .map_err(sql_err(context))?;
            stmt.query_map(params![name, version, start_ts, end_ts], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(sql_err(context))?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql_err(context))?
        };
        tx.execute(
            "DELETE FROM intervals WHERE name = ?1 AND version = ?2 AND start_ts < ?4 AND end_ts > ?3",
            params![name, version, start_ts, end_ts],
        )
        .map_err(sql_err(context))?;
        for (s, e, created, write_id) in overlapping {
            for (keep_start, keep_end) in super::outside_of(s, e, start_ts, end_ts) {
                tx.execute(
                    "INSERT OR REPLACE INTO intervals (name, version, start_ts, end_ts, created_ts, write_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![name, version, keep_start, keep_end, created, write_id],
                )
                .map_err(sql_err(context))?;
            }
        }
        tx.commit().map_err(sql_err(context))
    }

    fn remove_versions(&mut self, versions: &[(ModelName, String)]) -> Result<()> {
        let context = "forgetting dropped versions";
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(context))?;
        for (name, version) in versions {
            let name = name.to_string();
            tx.execute(
                "DELETE FROM snapshots WHERE name = ?1 AND version = ?2",
                params![name, version],
            )
            .map_err(sql_err(context))?;
            tx.execute(
                "DELETE FROM intervals WHERE name = ?1 AND version = ?2",
                params![name, version],
            )
            .map_err(sql_err(context))?;
        }
        tx.commit().map_err(sql_err(context))
    }

    fn write_pending_promotion(&mut self, environment: &str, names: &[VirtualName]) -> Result<()> {
        let context = "journaling a promotion";
        let text = serde_json::to_string(names).map_err(|e| json_err(context, e))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO pending_promotions (name, virtual_names, created_ts) VALUES (?1, ?2, ?3)",
                params![environment, text, chrono::Utc::now().timestamp_millis()],
            )
            .map_err(sql_err(context))?;
        Ok(())
    }

    fn pending_promotion(&self, environment: &str) -> Result<Vec<VirtualName>> {
        let context = "reading the promotion journal";
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT virtual_names FROM pending_promotions WHERE name = ?1",
                [environment],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_err(context))?;
        match text {
            None => Ok(Vec::new()),
            Some(t) => serde_json::from_str(&t).map_err(|e| json_err(context, e)),
        }
    }

    fn promote(
        &mut self,
        env: &Environment,
        expected_plan_id: Option<&str>,
    ) -> Result<PromoteOutcome> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err("updating an environment"))?;
        let current: Option<String> = tx
            .query_row(
                "SELECT plan_id FROM environments WHERE name = ?1",
                [&env.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql_err("updating an environment"))?;
        if current.as_deref() != expected_plan_id {
            return Ok(PromoteOutcome::Conflict {
                current_plan_id: current,
            });
        }
        let snapshots = serde_json::to_string(&env.snapshots)
            .map_err(|e| json_err("storing an environment", e))?;
        let promoted = serde_json::to_string(&env.promoted)
            .map_err(|e| json_err("storing an environment", e))?;
        tx.execute(
            &format!("INSERT OR REPLACE INTO environments ({ENV_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                env.name,
                snapshots,
                promoted,
                env.plan_id,
                env.previous_plan_id,
                env.created_ts,
                env.updated_ts,
                env.expiration_ts,
                env.suffix_target.as_str()
            ],
        )
        .map_err(sql_err("updating an environment"))?;
        tx.execute(
            "INSERT OR REPLACE INTO plans (plan_id, environment, previous_plan_id, created_ts, snapshot_count) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![env.plan_id, env.name, env.previous_plan_id, env.updated_ts, env.snapshots.len() as i64],
        )
        .map_err(sql_err("recording the plan"))?;
        crate::failpoint::hit("during-promote");
        tx.execute(
            "DELETE FROM pending_promotions WHERE name = ?1",
            [&env.name],
        )
        .map_err(sql_err("updating an environment"))?;
        tx.commit().map_err(sql_err("updating an environment"))?;
        Ok(PromoteOutcome::Promoted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_1_state_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("state.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE _versions (schema_version INTEGER NOT NULL, lake_version TEXT NOT NULL);
             INSERT INTO _versions VALUES (1, '0.1.0');
             CREATE TABLE snapshots (id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL,
               kind_name TEXT NOT NULL, snapshot TEXT NOT NULL, node TEXT NOT NULL, created_ts INTEGER NOT NULL,
               ttl_ms INTEGER NOT NULL);
             CREATE TABLE environments (name TEXT PRIMARY KEY, snapshots TEXT NOT NULL, promoted TEXT NOT NULL,
               plan_id TEXT NOT NULL, previous_plan_id TEXT, created_ts INTEGER NOT NULL, updated_ts INTEGER NOT NULL,
               expiration_ts INTEGER);
             CREATE TABLE intervals (name TEXT NOT NULL, version TEXT NOT NULL, start_ts INTEGER NOT NULL,
               end_ts INTEGER NOT NULL, created_ts INTEGER NOT NULL, PRIMARY KEY (name, version, start_ts));
             CREATE TABLE plans (plan_id TEXT PRIMARY KEY, environment TEXT NOT NULL, previous_plan_id TEXT,
               created_ts INTEGER NOT NULL, snapshot_count INTEGER NOT NULL);
             INSERT INTO intervals VALUES ('a.b', 'v1', 0, 10, 1);",
        )
        .unwrap();
        drop(conn);
        let refused = SqliteState::open(dir.path()).err().unwrap();
        assert!(
            refused.to_string().contains("older than this lake's"),
            "{refused}"
        );
        let state = SqliteState::open_migrating(dir.path()).unwrap();
        let kept = state
            .intervals(&[(ModelName::new("a", "b"), "v1".into())])
            .unwrap();
        assert_eq!(kept.len(), 1, "the old interval survives the migration");
        assert_eq!(kept[0].write_id, None);
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteState::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("state.db")).unwrap();
        conn.execute("INSERT INTO _versions VALUES (99, 'future')", [])
            .unwrap();
        drop(conn);
        let err = SqliteState::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
        assert!(
            format!("{err:?}").contains("written by lake future"),
            "names the lake needed: {err:?}"
        );
    }
}
