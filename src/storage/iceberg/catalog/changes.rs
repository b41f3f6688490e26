//! The catalog's change counter: one number that every write to `iceberg_tables` (by lake, by
//! iceberg-catalog-sql or by any other client of the same database) moves on, so a reader learns that nothing
//! changed from one row instead of listing every table.

use sqlx::AnyPool;

/// SQLite: writers take the database lock one at a time, so plain row triggers count every commit.
const SQLITE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS lake_catalog_changes \
     (id INTEGER PRIMARY KEY CHECK (id = 1), changes INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO lake_catalog_changes (id, changes) VALUES (1, 0)",
    "CREATE TRIGGER IF NOT EXISTS lake_catalog_changed_insert AFTER INSERT ON iceberg_tables \
     BEGIN UPDATE lake_catalog_changes SET changes = changes + 1 WHERE id = 1; END",
    "CREATE TRIGGER IF NOT EXISTS lake_catalog_changed_update AFTER UPDATE ON iceberg_tables \
     BEGIN UPDATE lake_catalog_changes SET changes = changes + 1 WHERE id = 1; END",
    "CREATE TRIGGER IF NOT EXISTS lake_catalog_changed_delete AFTER DELETE ON iceberg_tables \
     BEGIN UPDATE lake_catalog_changes SET changes = changes + 1 WHERE id = 1; END",
];

/// PostgreSQL: the counter row is updated once per transaction and only at its commit (a deferred constraint
/// trigger), so writers never wait on it while holding other rows: two commits touching tables in different
/// orders cannot deadlock through the counter, and they queue on it only for the moment of their commit.
const POSTGRES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS lake_catalog_changes \
     (id integer PRIMARY KEY CHECK (id = 1), changes bigint NOT NULL)",
    "INSERT INTO lake_catalog_changes (id, changes) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    "CREATE OR REPLACE FUNCTION lake_catalog_changed_v1() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
       IF current_setting('lake.catalog_counted', true) IS DISTINCT FROM txid_current()::text THEN \
         PERFORM set_config('lake.catalog_counted', txid_current()::text, true); \
         UPDATE lake_catalog_changes SET changes = changes + 1 WHERE id = 1; \
       END IF; \
       RETURN NULL; \
     END $$",
    "CREATE CONSTRAINT TRIGGER lake_catalog_changed AFTER INSERT OR UPDATE OR DELETE ON iceberg_tables \
     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION lake_catalog_changed_v1()",
];

/// Whether the counter's trigger is on `iceberg_tables` already (in the first schema of the search path, where
/// the catalog's tables are).
async fn installed(pool: &AnyPool, postgres: bool) -> Result<bool, sqlx::Error> {
    let query = if postgres {
        "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         WHERE t.tgname = 'lake_catalog_changed' AND c.relname = 'iceberg_tables' \
         AND c.relnamespace = current_schema()::regnamespace"
    } else {
        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'lake_catalog_changed_delete'"
    };
    let found: i64 = sqlx::query_scalar(query).fetch_one(pool).await?;
    Ok(found > 0)
}

/// Installs the counter when it is missing. `false` when it cannot be (a database user without the right to
/// create tables or triggers): readers then fall back to listing the tables, which is slower but as correct.
pub async fn install(pool: &AnyPool, postgres: bool) -> bool {
    if let Ok(true) = installed(pool, postgres).await {
        return true;
    }
    let statements = if postgres { POSTGRES } else { SQLITE };
    let created = async {
        let mut tx = pool.begin().await?;
        for statement in statements {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await
    }
    .await;
    // Two processes opening a new catalog at once may race to create it; the loser's error is harmless when
    // the winner's counter is there.
    created.is_ok() || matches!(installed(pool, postgres).await, Ok(true))
}

/// The counter's value: it differs from an earlier reading whenever a write to the catalog committed since.
pub async fn read(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT changes FROM lake_catalog_changes WHERE id = 1")
        .fetch_one(pool)
        .await
}
