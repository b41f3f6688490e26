//! The state schema, written once for both stores: its tables, the migrations between schema versions, and
//! the check of a store's recorded version against this lake's. Each store renders it in its SQL dialect.

use super::SCHEMA_VERSION;
use crate::error::{LakeError, Result};

/// The SQL dialect a store speaks; only column types differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy)]
enum Type {
    Text,
    /// A 64-bit integer (epoch milliseconds, counts).
    Int,
}

struct Column {
    name: &'static str,
    kind: Type,
    nullable: bool,
}

const fn required(name: &'static str, kind: Type) -> Column {
    Column {
        name,
        kind,
        nullable: false,
    }
}

const fn optional(name: &'static str, kind: Type) -> Column {
    Column {
        name,
        kind,
        nullable: true,
    }
}

struct Table {
    name: &'static str,
    columns: &'static [Column],
    primary_key: &'static [&'static str],
}

const SNAPSHOTS: Table = Table {
    name: "snapshots",
    columns: &[
        required("id", Type::Text),
        required("name", Type::Text),
        required("version", Type::Text),
        required("kind_name", Type::Text),
        required("snapshot", Type::Text),
        required("node", Type::Text),
        required("created_ts", Type::Int),
        required("ttl_ms", Type::Int),
        // NULL is `lake__<schema>`, the only place before schema 5.
        optional("physical_schema", Type::Text),
    ],
    primary_key: &["id"],
};

const ENVIRONMENTS: Table = Table {
    name: "environments",
    columns: &[
        required("name", Type::Text),
        required("snapshots", Type::Text),
        required("promoted", Type::Text),
        required("plan_id", Type::Text),
        optional("previous_plan_id", Type::Text),
        required("created_ts", Type::Int),
        required("updated_ts", Type::Int),
        optional("expiration_ts", Type::Int),
        // NULL is `schema`, the only naming before schema 4.
        optional("suffix_target", Type::Text),
    ],
    primary_key: &["name"],
};

const INTERVALS: Table = Table {
    name: "intervals",
    columns: &[
        required("name", Type::Text),
        required("version", Type::Text),
        required("start_ts", Type::Int),
        required("end_ts", Type::Int),
        required("created_ts", Type::Int),
        optional("write_id", Type::Text),
    ],
    primary_key: &["name", "version", "start_ts"],
};

const PLANS: Table = Table {
    name: "plans",
    columns: &[
        required("plan_id", Type::Text),
        required("environment", Type::Text),
        optional("previous_plan_id", Type::Text),
        required("created_ts", Type::Int),
        required("snapshot_count", Type::Int),
    ],
    primary_key: &["plan_id"],
};

/// The promotion journal: names an apply is repointing, until its promotion commits (schema 3).
const PENDING_PROMOTIONS: Table = Table {
    name: "pending_promotions",
    columns: &[
        required("name", Type::Text),
        required("virtual_names", Type::Text),
        required("created_ts", Type::Int),
    ],
    primary_key: &["name"],
};

/// Names a state table for the store (`"lake".snapshots` in PostgreSQL, `snapshots` in SQLite).
pub type Qualify<'a> = &'a dyn Fn(&str) -> String;

fn column_type(dialect: Dialect, kind: Type) -> &'static str {
    match (dialect, kind) {
        (_, Type::Text) => "TEXT",
        (Dialect::Sqlite, Type::Int) => "INTEGER",
        (Dialect::Postgres, Type::Int) => "BIGINT",
    }
}

fn create_table(table: &Table, dialect: Dialect, qualify: Qualify<'_>) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let null = if c.nullable { "" } else { " NOT NULL" };
            format!("{} {}{null}", c.name, column_type(dialect, c.kind))
        })
        .collect();
    format!(
        "CREATE TABLE {} ({}, PRIMARY KEY ({}))",
        qualify(table.name),
        columns.join(", "),
        table.primary_key.join(", ")
    )
}

/// The table that records which schema version a store holds and which lake wrote it.
pub fn versions_table(qualify: Qualify<'_>) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (schema_version INTEGER NOT NULL, lake_version TEXT NOT NULL)",
        qualify("_versions")
    )
}

/// Statements that create the current schema in an empty store.
pub fn create_statements(dialect: Dialect, qualify: Qualify<'_>) -> Vec<String> {
    let mut statements: Vec<String> = [
        &SNAPSHOTS,
        &ENVIRONMENTS,
        &INTERVALS,
        &PLANS,
        &PENDING_PROMOTIONS,
    ]
    .into_iter()
    .map(|t| create_table(t, dialect, qualify))
    .collect();
    statements.push(format!(
        "CREATE INDEX snapshots_by_version ON {} (name, version)",
        qualify("snapshots")
    ));
    statements
}

/// Every table of the state, `_versions` first: what a migration backs up and `lake rollback` restores.
pub const STATE_TABLES: &[&str] = &[
    "_versions",
    "snapshots",
    "environments",
    "intervals",
    "plans",
    "pending_promotions",
];

/// The copy of `table` a migration keeps.
pub fn backup_of(table: &str) -> String {
    format!("_backup_{table}")
}

/// Statements, run in a migration's transaction before it changes anything, that replace any older copies
/// with a copy of each of the `existing` state tables.
pub fn backup_statements(existing: &[&str], qualify: Qualify<'_>) -> Vec<String> {
    let mut statements: Vec<String> = STATE_TABLES
        .iter()
        .map(|t| format!("DROP TABLE IF EXISTS {}", qualify(&backup_of(t))))
        .collect();
    statements.extend(existing.iter().map(|t| {
        format!(
            "CREATE TABLE {} AS SELECT * FROM {}",
            qualify(&backup_of(t)),
            qualify(t)
        )
    }));
    statements
}

/// Statements that put `table` back as the last migration found it: a table the migration created is
/// dropped; otherwise the columns it added are dropped, its rows replaced by the copy's, and the copy dropped.
pub fn restore_statements(
    table: &str,
    columns: &[String],
    backup_columns: Option<&[String]>,
    qualify: Qualify<'_>,
) -> Vec<String> {
    let Some(kept) = backup_columns else {
        return vec![format!("DROP TABLE IF EXISTS {}", qualify(table))];
    };
    let mut statements: Vec<String> = columns
        .iter()
        .filter(|c| !kept.contains(c))
        .map(|c| format!("ALTER TABLE {} DROP COLUMN {c}", qualify(table)))
        .collect();
    let listed = kept.join(", ");
    statements.push(format!("DELETE FROM {}", qualify(table)));
    statements.push(format!(
        "INSERT INTO {} ({listed}) SELECT {listed} FROM {}",
        qualify(table),
        qualify(&backup_of(table))
    ));
    statements.push(format!("DROP TABLE {}", qualify(&backup_of(table))));
    statements
}

/// `lake rollback` without a migration to undo.
pub(crate) fn nothing_to_roll_back(place: &str) -> LakeError {
    LakeError::Usage(
        format!("{place} has no migration to roll back"),
        Some("`lake migrate` keeps a copy of the state it upgrades; a rollback uses it up, and a state created at this schema has none".into()),
    )
}

/// Statements that upgrade a store at schema version `from` to this lake's, one version after another.
pub fn upgrade_statements(from: u32, dialect: Dialect, qualify: Qualify<'_>) -> Vec<String> {
    (from + 1..=SCHEMA_VERSION)
        .filter_map(|version| match version {
            // Intervals remember which write (Iceberg snapshot) produced them.
            2 => Some(format!(
                "ALTER TABLE {} ADD COLUMN write_id TEXT",
                qualify("intervals")
            )),
            // IF NOT EXISTS: a state touched by a newer lake and then set back may hold it already.
            3 => Some(
                create_table(&PENDING_PROMOTIONS, dialect, qualify).replacen(
                    "CREATE TABLE",
                    "CREATE TABLE IF NOT EXISTS",
                    1,
                ),
            ),
            // Environments remember where their names put the suffix (`environment_suffix_target`).
            4 => Some(format!(
                "ALTER TABLE {} ADD COLUMN suffix_target TEXT",
                qualify("environments")
            )),
            // Snapshots remember the schema `physical_schema_mapping` put their table in.
            5 => Some(format!(
                "ALTER TABLE {} ADD COLUMN physical_schema TEXT",
                qualify("snapshots")
            )),
            _ => None,
        })
        .collect()
}

/// What opening a store must do, given the newest version it records.
#[derive(Debug, PartialEq, Eq)]
pub enum VersionAction {
    /// The store is empty: create the schema.
    Create,
    UpToDate,
    /// Apply `upgrade_statements(from)` (only when migrating).
    Upgrade {
        from: u32,
    },
}

/// Decides what to do with a store that records `current` (version, lake version that wrote it): refuse
/// state from a newer lake, and state from an older one unless `upgrade` (`lake migrate`).
pub fn check_version(
    current: Option<(u32, String)>,
    upgrade: bool,
    place: &str,
) -> Result<VersionAction> {
    match current {
        None => Ok(VersionAction::Create),
        Some((version, _)) if version == SCHEMA_VERSION => Ok(VersionAction::UpToDate),
        Some((version, written_by)) if version > SCHEMA_VERSION => {
            Err(super::newer_schema_error(place, version, &written_by))
        }
        Some((version, _)) if !upgrade => Err(super::older_schema_error(place, version)),
        Some((0, _)) => Err(LakeError::StateConflict {
            message: format!("{place} records schema version 0, which no lake wrote"),
            help: Some("the state may have been edited by hand".into()),
        }),
        Some((from, _)) => Ok(VersionAction::Upgrade { from }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_create_the_same_tables_with_their_own_integer_type() {
        let plain = |t: &str| t.to_string();
        let sqlite = create_statements(Dialect::Sqlite, &plain);
        let postgres = create_statements(Dialect::Postgres, &plain);
        assert_eq!(sqlite.len(), postgres.len());
        for (a, b) in sqlite.iter().zip(&postgres) {
            assert_eq!(a.replace("INTEGER", "BIGINT"), *b);
        }
        assert!(sqlite[2].starts_with(
            "CREATE TABLE intervals (name TEXT NOT NULL, version TEXT NOT NULL, start_ts INTEGER NOT NULL"
        ));
        assert!(sqlite[2].ends_with("write_id TEXT, PRIMARY KEY (name, version, start_ts))"));
    }

    #[test]
    fn upgrades_run_every_step_from_the_stored_version() {
        let plain = |t: &str| t.to_string();
        assert_eq!(upgrade_statements(1, Dialect::Sqlite, &plain).len(), 4);
        assert_eq!(upgrade_statements(2, Dialect::Sqlite, &plain).len(), 3);
        assert_eq!(
            upgrade_statements(3, Dialect::Sqlite, &plain),
            [
                "ALTER TABLE environments ADD COLUMN suffix_target TEXT",
                "ALTER TABLE snapshots ADD COLUMN physical_schema TEXT"
            ]
        );
        assert!(upgrade_statements(SCHEMA_VERSION, Dialect::Sqlite, &plain).is_empty());
    }

    #[test]
    fn versions_are_checked_in_one_place() {
        let at = |v: u32| Some((v, "0.1.0".to_string()));
        assert_eq!(
            check_version(None, false, "s").unwrap(),
            VersionAction::Create
        );
        assert_eq!(
            check_version(at(SCHEMA_VERSION), false, "s").unwrap(),
            VersionAction::UpToDate
        );
        assert!(check_version(at(1), false, "s").is_err());
        assert_eq!(
            check_version(at(1), true, "s").unwrap(),
            VersionAction::Upgrade { from: 1 }
        );
        let newer = check_version(at(SCHEMA_VERSION + 1), true, "s").unwrap_err();
        assert!(format!("{newer:?}").contains("0.1.0"), "{newer:?}");
    }
}
