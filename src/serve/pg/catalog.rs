//! The PostgreSQL catalog as clients query it: DuckDB's own `pg_catalog` compatibility, with the models shown
//! as tables, and the PostgreSQL spellings DuckDB does not read (`OPERATOR(pg_catalog.~)`, `COLLATE
//! pg_catalog.default`, `::pg_catalog.text`, psql's helper functions) rewritten on the parsed query.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, DataType, Expr, Ident, ObjectName, ObjectNamePart, Statement, VisitMut,
    VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::sql::quote_ident;

/// The schema, in each environment's database, holding the relations and functions below.
pub const SHIM_SCHEMA: &str = "lake_pg";

/// `pg_catalog` relations answered from `lake_pg`, where they differ from DuckDB's.
const SHIM_RELATIONS: [&str; 10] = [
    "pg_class",
    "pg_namespace",
    "pg_database",
    "pg_policy",
    "pg_roles",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_inherits",
];

/// Functions psql and drivers call that DuckDB's `pg_catalog` lacks (or has with other arguments).
const SHIM_FUNCTIONS: [&str; 11] = [
    "format_type",
    "pg_get_statisticsobjdef_columns",
    "pg_relation_is_publishable",
    "array_upper",
    "pg_get_serial_sequence",
    "pg_get_userbyid",
    "pg_get_expr",
    "pg_encoding_to_char",
    "version",
    "to_regtype",
    "to_regclass",
];

/// SQL creating the shims in the database `env` (run once, when it is attached).
pub fn install_sql(env: &str) -> String {
    let schema = format!("{}.{}", quote_ident(env), SHIM_SCHEMA);
    // Models are DuckDB views; clients list them as tables (psql's `\dt`, drivers' table lists), so every view
    // outside DuckDB's own schemas reads as relkind 'r'.
    format!(
        "CREATE SCHEMA {schema};\n\
         CREATE VIEW {schema}.pg_class AS SELECT * REPLACE (CASE WHEN relkind = 'v' THEN 'r' ELSE relkind END AS relkind), \
         false AS relforcerowsecurity FROM pg_catalog.pg_class c WHERE relnamespace NOT IN (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = '{SHIM_SCHEMA}');\n\
         CREATE VIEW {schema}.pg_namespace AS SELECT * FROM pg_catalog.pg_namespace WHERE nspname <> '{SHIM_SCHEMA}';\n\
         CREATE MACRO {schema}.pg_get_userbyid(id) AS 'lake';\n\
         CREATE MACRO {schema}.pg_get_expr(expr, relation, pretty := false) AS NULL::VARCHAR;\n\
         CREATE MACRO {schema}.pg_encoding_to_char(encoding) AS 'UTF8';\n\
         CREATE MACRO {schema}.format_type(type_oid, typemod) AS {format_type};\n\
         CREATE MACRO {schema}.to_regtype(name) AS (SELECT min(oid) FROM pg_catalog.pg_type WHERE typname = name);\n\
         CREATE MACRO {schema}.to_regclass(name) AS (SELECT min(c.oid) FROM {schema}.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relname = name OR n.nspname || '.' || c.relname = name);\n\
         CREATE MACRO {schema}.pg_get_serial_sequence(relation, column_name) AS NULL::VARCHAR;\n\
         CREATE MACRO {schema}.pg_get_statisticsobjdef_columns(oid) AS NULL::VARCHAR;\n\
         CREATE MACRO {schema}.pg_relation_is_publishable(relation) AS false;\n\
         CREATE MACRO {schema}.array_upper(arr, dimension) AS len(arr);\n\
         CREATE VIEW {schema}.pg_policy AS SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS polname, NULL::BIGINT AS polrelid, \
         NULL::VARCHAR AS polcmd, NULL::BOOLEAN AS polpermissive, NULL::BIGINT[] AS polroles, NULL::VARCHAR AS polqual, \
         NULL::VARCHAR AS polwithcheck WHERE false;\n\
         CREATE VIEW {schema}.pg_roles AS SELECT 10::BIGINT AS oid, 'lake' AS rolname, false AS rolsuper, true AS rolinherit, \
         false AS rolcreaterole, false AS rolcreatedb, true AS rolcanlogin, false AS rolreplication, -1 AS rolconnlimit, \
         NULL::VARCHAR AS rolpassword, NULL::TIMESTAMPTZ AS rolvaliduntil, false AS rolbypassrls, NULL::VARCHAR[] AS rolconfig;\n\
         CREATE VIEW {schema}.pg_statistic_ext AS SELECT NULL::BIGINT AS oid, NULL::BIGINT AS stxrelid, NULL::VARCHAR AS stxname, \
         NULL::BIGINT AS stxnamespace, NULL::BIGINT AS stxowner, NULL::INTEGER AS stxstattarget, NULL::SMALLINT[] AS stxkeys, \
         NULL::VARCHAR[] AS stxkind, NULL::VARCHAR AS stxexprs WHERE false;\n\
         CREATE VIEW {schema}.pg_publication AS SELECT NULL::BIGINT AS oid, NULL::VARCHAR AS pubname, NULL::BIGINT AS pubowner, \
         NULL::BOOLEAN AS puballtables, NULL::BOOLEAN AS pubinsert, NULL::BOOLEAN AS pubupdate, NULL::BOOLEAN AS pubdelete, \
         NULL::BOOLEAN AS pubtruncate, NULL::BOOLEAN AS pubviaroot WHERE false;\n\
         CREATE VIEW {schema}.pg_publication_rel AS SELECT NULL::BIGINT AS oid, NULL::BIGINT AS prpubid, NULL::BIGINT AS prrelid, \
         NULL::VARCHAR AS prqual, NULL::SMALLINT[] AS prattrs WHERE false;\n\
         CREATE VIEW {schema}.pg_publication_namespace AS SELECT NULL::BIGINT AS oid, NULL::BIGINT AS pnpubid, \
         NULL::BIGINT AS pnnspid WHERE false;\n\
         CREATE VIEW {schema}.pg_inherits AS SELECT NULL::BIGINT AS inhrelid, NULL::BIGINT AS inhparent, NULL::INTEGER AS inhseqno, \
         NULL::BOOLEAN AS inhdetachpending WHERE false;\n\
         CREATE MACRO {schema}.version() AS 'PostgreSQL 16.6 (lake serve {lake}, DuckDB {duckdb})';\n\
         CREATE VIEW {schema}.pg_database AS SELECT database_oid AS oid, database_name AS datname, 10 AS datdba, \
         6 AS encoding, 'c' AS datlocprovider, false AS datistemplate, true AS datallowconn, -1 AS datconnlimit, \
         0 AS datfrozenxid, 0 AS datminmxid, 1663 AS dattablespace, 'C.UTF-8' AS datcollate, 'C.UTF-8' AS datctype, \
         NULL::VARCHAR AS daticulocale, NULL::VARCHAR AS daticurules, NULL::VARCHAR AS datcollversion, \
         NULL::VARCHAR[] AS datacl FROM duckdb_databases() \
         WHERE NOT internal AND database_name NOT IN ('memory', 'system', 'temp') AND comment IS NULL AND type = 'duckdb' \
         AND database_name IN (SELECT database_name FROM duckdb_schemas() WHERE schema_name = '{SHIM_SCHEMA}');\n",
        lake = env!("CARGO_PKG_VERSION"),
        duckdb = crate::engine::DUCKDB_VERSION,
        format_type = format_type_sql(),
    )
}

/// PostgreSQL's `format_type` names (`integer`, `double precision`, `character varying`…) for the short ones
/// DuckDB's gives (`int4`, `float8`, `varchar`…): psql's `\d`, SQLAlchemy's inspector and JDBC's metadata
/// read types by these names.
fn format_type_sql() -> String {
    const NAMES: [(&str, &str); 12] = [
        ("int2", "smallint"),
        ("int4", "integer"),
        ("int8", "bigint"),
        ("float4", "real"),
        ("float8", "double precision"),
        ("bool", "boolean"),
        ("varchar", "character varying"),
        ("bpchar", "character"),
        ("timestamp", "timestamp without time zone"),
        ("timestamptz", "timestamp with time zone"),
        ("time", "time without time zone"),
        ("timetz", "time with time zone"),
    ];
    let arms: String = NAMES
        .iter()
        .map(|(duckdb, postgres)| format!(" WHEN '{duckdb}' THEN '{postgres}'"))
        .collect();
    format!(
        "CASE pg_catalog.format_type(type_oid, typemod){arms} ELSE pg_catalog.format_type(type_oid, typemod) END"
    )
}

/// Whether `sql` may be a catalog query worth rewriting (a cheap test before parsing).
fn mentions_catalog(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    [
        "pg_catalog",
        "pg_class",
        "pg_namespace",
        "pg_database",
        "pg_type",
        "pg_roles",
        "version(",
        "to_reg",
        "::reg",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// The query with the PostgreSQL-only spellings DuckDB rejects replaced, or `None` when nothing needs it (or
/// it does not parse as PostgreSQL, in which case DuckDB gets it as written).
pub fn rewrite(sql: &str) -> Option<String> {
    if !mentions_catalog(sql) {
        return None;
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut rewriter = Rewriter { changed: false };
    for statement in &mut statements {
        let _ = statement.visit(&mut rewriter);
    }
    rewriter.changed.then(|| {
        statements
            .iter()
            .map(Statement::to_string)
            .collect::<Vec<_>>()
            .join(";\n")
    })
}

struct Rewriter {
    changed: bool,
}

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(ident) => ident.value.to_ascii_lowercase(),
            other => other.to_string().to_ascii_lowercase(),
        })
        .collect()
}

fn shim_name(name: &str) -> ObjectName {
    ObjectName(vec![
        ObjectNamePart::Identifier(Ident::new(SHIM_SCHEMA)),
        ObjectNamePart::Identifier(Ident::new(name)),
    ])
}

/// `pg_catalog.x` or `x` when `x` is one of `names`.
fn shimmed(name: &ObjectName, names: &[&str]) -> Option<String> {
    match parts(name).as_slice() {
        [schema, object] if schema == "pg_catalog" && names.contains(&object.as_str()) => {
            Some(object.clone())
        }
        [object] if names.contains(&object.as_str()) => Some(object.clone()),
        _ => None,
    }
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<Self::Break> {
        if let Some(object) = shimmed(relation, &SHIM_RELATIONS) {
            *relation = shim_name(&object);
            self.changed = true;
        } else if relation.0.len() == 2
            && parts(relation).first().map(String::as_str) == Some("pg_catalog")
        {
            // DuckDB finds its catalog relations unqualified, and its table functions only so
            // (`pg_catalog.generate_series(…)` is not found).
            relation.0.remove(0);
            self.changed = true;
        }
        ControlFlow::Continue(())
    }

    /// `FROM generate_series(…) s` names its one column `s` in PostgreSQL; DuckDB names it after the function
    /// and makes `s` the row, so the column alias is spelled out.
    fn post_visit_table_factor(
        &mut self,
        table_factor: &mut sqlparser::ast::TableFactor,
    ) -> ControlFlow<Self::Break> {
        if let sqlparser::ast::TableFactor::Table {
            name,
            alias: Some(alias),
            args: Some(_),
            ..
        } = table_factor
            && alias.columns.is_empty()
            && matches!(
                parts(name).last().map(String::as_str),
                Some("generate_series" | "unnest")
            )
        {
            alias.columns = vec![sqlparser::ast::TableAliasColumnDef::from_name(
                alias.name.value.clone(),
            )];
            self.changed = true;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        match expr {
            // `pg_catalog.pg_class.relname` names a column of a relation read from `lake_pg` instead.
            Expr::CompoundIdentifier(idents)
                if idents.len() == 3
                    && idents[0].value.eq_ignore_ascii_case("pg_catalog")
                    && SHIM_RELATIONS.contains(&idents[1].value.to_ascii_lowercase().as_str()) =>
            {
                idents[0] = Ident::new(SHIM_SCHEMA);
                self.changed = true;
            }
            Expr::Function(function) => {
                if let Some(object) = shimmed(&function.name, &["json_build_object"]) {
                    debug_assert_eq!(object, "json_build_object");
                    function.name =
                        ObjectName(vec![ObjectNamePart::Identifier(Ident::new("json_object"))]);
                    self.changed = true;
                } else if let Some(object) = shimmed(&function.name, &SHIM_FUNCTIONS) {
                    function.name = shim_name(&object);
                    self.changed = true;
                } else if parts(&function.name).first().map(String::as_str) == Some("pg_catalog")
                    && function.name.0.len() == 2
                {
                    // DuckDB knows most catalog functions unqualified (`pg_catalog.array_to_string` is not found).
                    function.name.0.remove(0);
                    self.changed = true;
                }
            }
            Expr::BinaryOp { op, .. } => {
                if let BinaryOperator::PGCustomBinaryOperator(path) = op
                    && let Some(last) = path.last()
                {
                    let replacement = match last.as_str() {
                        "~" => Some(BinaryOperator::PGRegexMatch),
                        "!~" => Some(BinaryOperator::PGRegexNotMatch),
                        "~*" => Some(BinaryOperator::PGRegexIMatch),
                        "!~*" => Some(BinaryOperator::PGRegexNotIMatch),
                        "=" => Some(BinaryOperator::Eq),
                        "<>" => Some(BinaryOperator::NotEq),
                        _ => None,
                    };
                    if let Some(replacement) = replacement {
                        *op = replacement;
                        self.changed = true;
                    }
                }
            }
            Expr::Collate { expr: inner, .. } => {
                *expr = (**inner).clone();
                self.changed = true;
            }
            Expr::Cast { data_type, .. } => {
                self.changed |= duckdb_type(data_type);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites a cast's type as DuckDB reads it: `pg_catalog.text` unqualified, object-identifier types
/// (`regclass`, `regtype`…, which DuckDB lacks) as their text, inside arrays too. Whether it changed anything.
fn duckdb_type(data_type: &mut DataType) -> bool {
    match data_type {
        DataType::Regclass => {
            *data_type = DataType::Varchar(None);
            true
        }
        DataType::Array(
            sqlparser::ast::ArrayElemTypeDef::SquareBracket(inner, _)
            | sqlparser::ast::ArrayElemTypeDef::AngleBracket(inner)
            | sqlparser::ast::ArrayElemTypeDef::Parenthesis(inner),
        ) => duckdb_type(inner),
        DataType::Custom(name, modifiers) => {
            let parts = parts(name);
            let object = match parts.as_slice() {
                [schema, object] if schema == "pg_catalog" => object.clone(),
                [object] => object.clone(),
                _ => return false,
            };
            if object.starts_with("reg") {
                *data_type = DataType::Varchar(None);
                true
            } else if parts.len() == 2 {
                *data_type = DataType::Custom(
                    ObjectName(vec![ObjectNamePart::Identifier(Ident::new(object))]),
                    modifiers.clone(),
                );
                true
            } else {
                false
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_spellings_become_duckdb_ones() {
        let sql = "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c \
                   LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                   WHERE c.relname OPERATOR(pg_catalog.~) '^(full_model)$' COLLATE pg_catalog.default \
                   AND pg_catalog.pg_get_userbyid(c.relowner) = 'lake' ORDER BY 2, 3";
        let rewritten = rewrite(sql).expect("rewritten");
        assert!(rewritten.contains("FROM lake_pg.pg_class c"), "{rewritten}");
        assert!(
            rewritten.contains("JOIN lake_pg.pg_namespace n"),
            "{rewritten}"
        );
        assert!(
            rewritten.contains("c.relname ~ '^(full_model)$'"),
            "{rewritten}"
        );
        assert!(
            rewritten.contains("lake_pg.pg_get_userbyid(c.relowner)"),
            "{rewritten}"
        );
        assert!(!rewritten.contains("COLLATE"), "{rewritten}");
        let types = rewrite(
            "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a",
        )
        .expect("rewritten");
        assert!(
            types.contains("lake_pg.format_type(a.atttypid, a.atttypmod)"),
            "{types}"
        );
    }

    #[test]
    fn ordinary_queries_are_left_alone() {
        assert_eq!(rewrite("SELECT * FROM demo.full_model"), None);
        // DuckDB syntax sqlparser cannot read still reaches DuckDB unchanged.
        assert_eq!(rewrite("FROM pg_class SELECT relname"), None);
    }
}
