//! Storage in the DuckDB database file itself: physical tables and environment views are DuckDB objects.

use std::collections::{HashMap, HashSet};

use super::{ColumnChange, Merge, Storage, TimeRange, VirtualChange, WriteStats, column_changes};
use crate::engine::Session;
use crate::error::Result;
use crate::profile::{self, Phase};
use crate::snapshot::{PhysicalTable, VirtualName};
use crate::sql::{quote_ident, quote_literal};

/// Every name is qualified with the database's catalog: a project whose DuckDB file is `bench.db` and whose
/// schema is `bench` would otherwise be ambiguous to DuckDB (catalog `bench` or schema `bench`).
#[derive(Debug, Clone)]
pub struct DuckDbStorage {
    catalog: String,
    /// Schemas `physical_schema_mapping` puts physical tables in, besides `lake__*`.
    mapped_schemas: Vec<String>,
    /// Prod's in-place tables of dev_only models, which live under the models' own names.
    in_place: HashSet<PhysicalTable>,
}

/// Runs `body` inside one DuckDB transaction, rolling back if any statement fails.
pub(super) fn in_transaction(
    session: &Session,
    body: &str,
    context: impl Fn() -> String,
) -> Result<()> {
    session.execute("BEGIN TRANSACTION", &context)?;
    match session.execute(body, &context) {
        Ok(()) => session.execute("COMMIT", &context),
        Err(e) => {
            // The original error is what matters; a failed rollback leaves DuckDB aborting the transaction anyway.
            let _ = session.execute("ROLLBACK", String::new);
            Err(e)
        }
    }
}

impl DuckDbStorage {
    pub fn new(catalog: impl Into<String>) -> Self {
        DuckDbStorage {
            catalog: catalog.into(),
            mapped_schemas: Vec::new(),
            in_place: HashSet::new(),
        }
    }

    /// The DuckDB catalog (database) every name is qualified with.
    pub fn catalog(&self) -> &str {
        &self.catalog
    }

    /// Also lists these in-place tables (`virtual_environment_mode: dev_only`) as physical tables.
    pub fn with_in_place(mut self, tables: impl IntoIterator<Item = PhysicalTable>) -> Self {
        self.in_place.extend(tables);
        self
    }

    /// Also lists the physical tables in these schemas (`physical_schema_mapping`'s targets).
    pub fn with_mapped_schemas(mut self, schemas: Vec<String>) -> Self {
        self.mapped_schemas = schemas;
        self
    }

    /// Whether physical tables (model versions) may live in `schema`.
    pub fn is_physical_schema(&self, schema: &str) -> bool {
        schema.starts_with("lake__") || self.mapped_schemas.iter().any(|s| s == schema)
    }

    /// Whether `schema.table` is a physical table's place: in a physical schema, or an in-place table.
    pub fn is_physical(&self, schema: &str, table: &str) -> bool {
        self.is_physical_schema(schema)
            || self.in_place.contains(&PhysicalTable {
                schema: schema.to_string(),
                table: table.to_string(),
            })
    }

    fn schema_sql(&self, schema: &str) -> String {
        format!("{}.{}", quote_ident(&self.catalog), quote_ident(schema))
    }

    fn table_sql(&self, table: &PhysicalTable) -> String {
        format!("{}.{}", quote_ident(&self.catalog), table.sql())
    }

    fn view_sql(&self, name: &VirtualName) -> String {
        format!("{}.{}", quote_ident(&self.catalog), name.sql())
    }

    fn create_empty(&self, session: &Session, table: &PhysicalTable, query: &str) -> Result<()> {
        session.execute(
            &format!(
                "CREATE TABLE IF NOT EXISTS {} AS SELECT * FROM ({query}) AS q LIMIT 0",
                self.table_sql(table)
            ),
            || format!("creating {table}"),
        )
    }
}

/// Marks an environment's view with the physical table it shows, so a sync sees at a glance which names
/// are current.
const VIRTUAL_COMMENT: &str = "lake:virtual";

fn virtual_comment(target: &PhysicalTable) -> String {
    format!("{VIRTUAL_COMMENT} {target}")
}

impl DuckDbStorage {
    /// Points the environment views of this DuckDB file at what state says (`names`), where the table
    /// exists here, and drops lake's views of names no environment has any more.
    pub fn sync_names(
        &self,
        session: &Session,
        names: &[(VirtualName, PhysicalTable)],
    ) -> Result<()> {
        let local: HashMap<(String, String), String> = session
            .query_rows(
                &format!(
                    "SELECT schema_name, view_name, coalesce(comment, '') FROM duckdb_views() \
                     WHERE database_name = {} AND NOT internal AND NOT starts_with(schema_name, 'lake__')",
                    quote_literal(&self.catalog)
                ),
                || "listing environment views".into(),
            )?
            .into_iter()
            .filter_map(|row| {
                let mut row = row.into_iter();
                Some(((row.next()??, row.next()??), row.next()??))
            })
            .collect();
        let here: HashSet<PhysicalTable> = self.physical_tables(session)?.into_iter().collect();
        let mut wanted = HashSet::new();
        let mut changes = Vec::new();
        for (name, target) in names {
            let key = (name.schema.clone(), name.name.clone());
            let current = local.get(&key) == Some(&virtual_comment(target));
            wanted.insert(key);
            if !current && here.contains(target) {
                changes.push(VirtualChange::Point {
                    name: name.clone(),
                    target: target.clone(),
                });
            }
        }
        for ((schema, name), comment) in &local {
            if comment.starts_with(VIRTUAL_COMMENT)
                && !wanted.contains(&(schema.clone(), name.clone()))
            {
                changes.push(VirtualChange::Drop {
                    name: VirtualName {
                        schema: schema.clone(),
                        name: name.clone(),
                    },
                });
            }
        }
        self.update_virtual_layer(session, &changes)
    }
}

impl Storage for DuckDbStorage {
    fn ensure_schema(&self, session: &Session, schema: &str) -> Result<()> {
        session.execute(
            &format!("CREATE SCHEMA IF NOT EXISTS {}", self.schema_sql(schema)),
            || format!("creating schema {schema}"),
        )
    }

    fn physical_tables(&self, session: &Session) -> Result<Vec<PhysicalTable>> {
        let mapped: Vec<String> = self
            .mapped_schemas
            .iter()
            .map(|s| quote_literal(s))
            .collect();
        let in_place: Vec<String> = self
            .in_place
            .iter()
            .map(|t| quote_literal(&format!("{}.{}", t.schema, t.table)))
            .collect();
        let rows = session.query_strings(
            &format!(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables \
                 WHERE table_catalog = current_database() \
                 AND (table_schema LIKE 'lake\\_\\_%' ESCAPE '\\' OR table_schema IN ({}) \
                 OR table_schema || '.' || table_name IN ({}))",
                if mapped.is_empty() {
                    "NULL".to_string()
                } else {
                    mapped.join(", ")
                },
                if in_place.is_empty() {
                    "NULL".to_string()
                } else {
                    in_place.join(", ")
                }
            ),
            || "listing physical tables".into(),
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                r.split_once('.').map(|(s, t)| PhysicalTable {
                    schema: s.to_string(),
                    table: t.to_string(),
                })
            })
            .collect())
    }

    fn create_view(&self, session: &Session, table: &PhysicalTable, query: &str) -> Result<()> {
        let _timer = profile::time(Phase::Views);
        session.execute(
            &format!(
                "CREATE OR REPLACE VIEW {} AS {query}",
                self.table_sql(table)
            ),
            || format!("creating view {table}"),
        )
    }

    fn replace_all(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
    ) -> Result<WriteStats> {
        let _timer = profile::time(Phase::Query);
        session.execute(
            &format!(
                "CREATE OR REPLACE TABLE {} AS {query}",
                self.table_sql(table)
            ),
            || format!("writing {table}"),
        )?;
        // DuckDB reports no row count for CREATE TABLE AS; counting a fresh table reads only its metadata.
        let rows = session.query_strings(
            &format!(
                "SELECT CAST(count(*) AS TEXT) FROM {}",
                self.table_sql(table)
            ),
            || format!("counting the rows of {table}"),
        )?;
        Ok(WriteStats {
            rows: rows.first().and_then(|r| r.parse().ok()),
            ..WriteStats::default()
        })
    }

    fn append(&self, session: &Session, table: &PhysicalTable, query: &str) -> Result<WriteStats> {
        let _timer = profile::time(Phase::Query);
        self.create_empty(session, table, query)?;
        let rows = session.execute_count(
            &format!("INSERT INTO {} BY NAME {query}", self.table_sql(table)),
            || format!("appending to {table}"),
        )?;
        Ok(WriteStats {
            rows: Some(rows as u64),
            ..WriteStats::default()
        })
    }

    fn replace_time_range(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
        range: TimeRange<'_>,
    ) -> Result<WriteStats> {
        let _timer = profile::time(Phase::Query);
        self.create_empty(session, table, query)?;
        let body = format!(
            "DELETE FROM {t} WHERE {in_range};\nINSERT INTO {t} BY NAME {query};",
            t = self.table_sql(table),
            in_range = range.predicate,
        );
        in_transaction(session, &body, || {
            format!("replacing a time range of {table}")
        })?;
        Ok(WriteStats::default())
    }

    fn merge_by_key(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
        merge: &Merge<'_>,
    ) -> Result<WriteStats> {
        let _timer = profile::time(Phase::Query);
        self.create_empty(session, table, query)?;
        let staged = quote_ident(&format!("lake_merge_{}", table.table));
        let t = self.table_sql(table);
        let write = match merge.when_matched {
            None => format!(
                "DELETE FROM {t} AS target WHERE {};\nINSERT INTO {t} BY NAME SELECT * FROM {staged};",
                merge.matched_in(&staged)
            ),
            Some(clauses) => format!(
                "MERGE INTO {t} AS target USING {staged} AS source ON {} {clauses} \
                 WHEN NOT MATCHED THEN INSERT BY NAME;",
                merge.on()
            ),
        };
        let body = format!(
            "CREATE OR REPLACE TEMP TABLE {staged} AS {query};\n{write}\nDROP TABLE {staged};"
        );
        in_transaction(session, &body, || format!("merging into {table}"))?;
        Ok(WriteStats::default())
    }

    fn columns(
        &self,
        session: &Session,
        table: &PhysicalTable,
    ) -> Result<Option<Vec<(String, String)>>> {
        let rows = session.query_rows(
            &format!(
                "SELECT column_name, data_type FROM information_schema.columns \
                 WHERE table_catalog = {} AND table_schema = {} AND table_name = {} ORDER BY ordinal_position",
                quote_literal(&self.catalog),
                quote_literal(&table.schema),
                quote_literal(&table.table)
            ),
            || format!("reading the columns of {table}"),
        )?;
        let columns: Vec<(String, String)> = rows
            .into_iter()
            .map(|row| {
                let mut values = row.into_iter();
                let name = values.next().flatten().unwrap_or_default();
                (name, values.next().flatten().unwrap_or_default())
            })
            .collect();
        Ok((!columns.is_empty()).then_some(columns))
    }

    fn column_changes(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
    ) -> Result<Option<Vec<ColumnChange>>> {
        let Some(existing) = self.columns(session, table)? else {
            return Ok(None);
        };
        let wanted = session.describe(query, || {
            format!("reading the columns of the query for {table}")
        })?;
        Ok(Some(column_changes(&existing, &wanted, duckdb_widening)))
    }

    fn evolve_columns(
        &self,
        session: &Session,
        table: &PhysicalTable,
        _query: &str,
        changes: &[ColumnChange],
    ) -> Result<()> {
        let t = self.table_sql(table);
        let statements: Vec<String> = changes
            .iter()
            .map(|change| match change {
                ColumnChange::Added { name, data_type } => {
                    format!(
                        "ALTER TABLE {t} ADD COLUMN {} {data_type};",
                        quote_ident(name)
                    )
                }
                ColumnChange::Dropped { name, .. } => {
                    format!("ALTER TABLE {t} DROP COLUMN {};", quote_ident(name))
                }
                ColumnChange::Retyped {
                    name,
                    to,
                    widening: true,
                    ..
                } => format!(
                    "ALTER TABLE {t} ALTER COLUMN {} TYPE {to};",
                    quote_ident(name)
                ),
                // Values that do not convert are not kept: the column starts again, empty.
                ColumnChange::Retyped { name, to, .. } => format!(
                    "ALTER TABLE {t} DROP COLUMN {c};\nALTER TABLE {t} ADD COLUMN {c} {to};",
                    c = quote_ident(name)
                ),
            })
            .collect();
        if statements.is_empty() {
            return Ok(());
        }
        in_transaction(session, &statements.join("\n"), || {
            format!("changing the columns of {table}")
        })
    }

    fn update_virtual_layer(&self, session: &Session, changes: &[VirtualChange]) -> Result<()> {
        let _timer = profile::time(Phase::EnvironmentViews);
        if changes.is_empty() {
            return Ok(());
        }
        let mut body = String::new();
        let mut schemas: Vec<&str> = Vec::new();
        for change in changes {
            if let VirtualChange::Point { name, .. } = change
                && !schemas.contains(&name.schema.as_str())
            {
                schemas.push(&name.schema);
            }
        }
        for schema in schemas {
            body.push_str(&format!(
                "CREATE SCHEMA IF NOT EXISTS {};\n",
                self.schema_sql(schema)
            ));
        }
        for change in changes {
            match change {
                VirtualChange::Point { name, target } => body.push_str(&format!(
                    "CREATE OR REPLACE VIEW {view} AS SELECT * FROM {};\nCOMMENT ON VIEW {view} IS {};\n",
                    self.table_sql(target),
                    quote_literal(&virtual_comment(target)),
                    view = self.view_sql(name),
                )),
                VirtualChange::Drop { name } => {
                    body.push_str(&format!("DROP VIEW IF EXISTS {};\n", self.view_sql(name)))
                }
            }
        }
        in_transaction(session, &body, || {
            format!("updating {} names of the virtual layer", changes.len())
        })
    }

    fn sync_local(&self, session: &Session, names: &[(VirtualName, PhysicalTable)]) -> Result<()> {
        let _timer = profile::time(Phase::EnvironmentViews);
        self.sync_names(session, names)
    }

    fn drop_physical(&self, session: &Session, table: &PhysicalTable) -> Result<()> {
        // The object may be a table (FULL, SEED) or a view (VIEW kind, Iceberg proxy). DuckDB refuses
        // `DROP TABLE IF EXISTS` on a view, so ask which it is first.
        let kind = session.query_strings(
            &format!(
                "SELECT table_type FROM information_schema.tables \
                 WHERE table_catalog = {} AND table_schema = {} AND table_name = {}",
                quote_literal(&self.catalog),
                quote_literal(&table.schema),
                quote_literal(&table.table)
            ),
            || format!("looking up {table}"),
        )?;
        let statement = match kind.first().map(String::as_str) {
            None => return Ok(()),
            Some("VIEW") => "DROP VIEW",
            Some(_) => "DROP TABLE",
        };
        session.execute(
            &format!("{statement} IF EXISTS {}", self.table_sql(table)),
            || format!("dropping {table}"),
        )
    }
}

/// Whether DuckDB converts every value of type `from` to `to` without loss (an integer to a wider integer, FLOAT to
/// DOUBLE, a DECIMAL to one with as many fractional and at least as many whole digits).
pub(super) fn duckdb_widening(from: &str, to: &str) -> bool {
    const INTEGERS: [&str; 4] = ["TINYINT", "SMALLINT", "INTEGER", "BIGINT"];
    let rank = |t: &str| INTEGERS.iter().position(|i| *i == t);
    if let (Some(a), Some(b)) = (rank(from), rank(to)) {
        return a < b;
    }
    if from == "FLOAT" && to == "DOUBLE" {
        return true;
    }
    match (decimal(from), decimal(to)) {
        (Some((p1, s1)), Some((p2, s2))) => s1 == s2 && p2 >= p1,
        _ => false,
    }
}

/// `DECIMAL(p,s)` as (p, s).
fn decimal(t: &str) -> Option<(u32, u32)> {
    let inner = t.strip_prefix("DECIMAL(")?.strip_suffix(')')?;
    let (p, s) = inner.split_once(',')?;
    Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    fn setup() -> (Engine, Session, PhysicalTable) {
        let engine = Engine::in_memory().unwrap();
        let session = engine.session().unwrap();
        let storage = DuckDbStorage::new("memory");
        storage.ensure_schema(&session, "lake__demo").unwrap();
        let table = PhysicalTable {
            schema: "lake__demo".into(),
            table: "demo__t__1".into(),
        };
        (engine, session, table)
    }

    fn rows(session: &Session, sql: &str) -> Vec<String> {
        let mut out = session.query_strings(sql, || "test".into()).unwrap();
        out.sort();
        out
    }

    #[test]
    fn every_write_kind() {
        let (_engine, s, t) = setup();
        let storage = DuckDbStorage::new("memory");
        let stats = storage
            .replace_all(&s, &t, "SELECT 1 AS id, 'a' AS v, DATE '2024-01-01' AS d")
            .unwrap();
        assert_eq!(stats.rows, Some(1));
        storage
            .append(&s, &t, "SELECT 2 AS id, 'b' AS v, DATE '2024-01-02' AS d")
            .unwrap();
        storage
            .replace_time_range(
                &s,
                &t,
                "SELECT 3 AS id, 'c' AS v, DATE '2024-01-02' AS d",
                crate::storage::second_of_january(),
            )
            .unwrap();
        let all = format!("SELECT id || v FROM {}", t.sql());
        assert_eq!(rows(&s, &all), ["1a", "3c"]);
        storage
            .merge_by_key(&s, &t, "SELECT 3 AS id, 'z' AS v, DATE '2024-01-02' AS d UNION ALL SELECT 4, 'd', DATE '2024-01-03'", &Merge::by_keys(&["id".into()]))
            .unwrap();
        assert_eq!(rows(&s, &all), ["1a", "3z", "4d"]);
        storage
            .replace_all(&s, &t, "SELECT 9 AS id, 'n' AS v, DATE '2024-01-09' AS d")
            .unwrap();
        assert_eq!(rows(&s, &all), ["9n"]);
        assert_eq!(storage.physical_tables(&s).unwrap(), vec![t.clone()]);
    }

    #[test]
    fn virtual_layer_changes_are_all_or_nothing() {
        let (_engine, s, t) = setup();
        let storage = DuckDbStorage::new("memory");
        storage.replace_all(&s, &t, "SELECT 1 AS id").unwrap();
        let name = VirtualName {
            schema: "demo".into(),
            name: "t".into(),
        };
        storage
            .update_virtual_layer(
                &s,
                &[VirtualChange::Point {
                    name: name.clone(),
                    target: t.clone(),
                }],
            )
            .unwrap();
        assert_eq!(rows(&s, "SELECT CAST(id AS TEXT) FROM demo.t"), ["1"]);
        let missing = PhysicalTable {
            schema: "lake__demo".into(),
            table: "nope".into(),
        };
        let other = VirtualName {
            schema: "demo".into(),
            name: "u".into(),
        };
        let result = storage.update_virtual_layer(
            &s,
            &[
                VirtualChange::Drop { name: name.clone() },
                VirtualChange::Point {
                    name: other,
                    target: missing,
                },
            ],
        );
        assert!(result.is_err());
        // The drop was rolled back with the failed point.
        assert_eq!(rows(&s, "SELECT CAST(id AS TEXT) FROM demo.t"), ["1"]);
        storage.drop_physical(&s, &t).unwrap();
        assert!(storage.physical_tables(&s).unwrap().is_empty());
    }

    #[test]
    fn widening_keeps_every_value() {
        assert!(duckdb_widening("INTEGER", "BIGINT"));
        assert!(duckdb_widening("TINYINT", "INTEGER"));
        assert!(duckdb_widening("FLOAT", "DOUBLE"));
        assert!(duckdb_widening("DECIMAL(10, 2)", "DECIMAL(18,2)"));
        assert!(!duckdb_widening("BIGINT", "INTEGER"));
        assert!(!duckdb_widening("DECIMAL(10,2)", "DECIMAL(18,3)"));
        assert!(!duckdb_widening("INTEGER", "VARCHAR"));
        assert!(!duckdb_widening("DOUBLE", "FLOAT"));
    }
}
