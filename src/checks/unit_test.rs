//! Unit tests: `tests/*.yaml` in SQLMesh's format, each run on its own in-memory DuckDB with fixture rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chrono::NaiveDateTime;
use rayon::prelude::*;
use serde_norway::Value as Yaml;

use crate::engine::{Engine, QueryResult, Session};
use crate::error::{LakeError, Result, SourceError, SourceFile};
use crate::project::macros::MacroContext;
use crate::project::model::ModelKind;
use crate::project::{ModelId, Project, RefTarget, RenderedQuery};
use crate::sql::{quote_ident, quote_literal};

/// One row as written: columns in order, with their YAML values.
type Row = Vec<(String, Yaml)>;

/// Rows a test expects, compared on every output column unless `partial`.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub rows: Vec<Row>,
    pub partial: bool,
}

#[derive(Debug, Clone)]
enum Fixture {
    Rows(Vec<Row>),
    Query(String),
    Csv(String),
}

#[derive(Debug, Clone)]
struct Input {
    model: String,
    fixture: Fixture,
    /// `columns:` type hints, in order.
    columns: Vec<(String, String)>,
}

/// One test of a `tests/*.yaml` file.
#[derive(Debug, Clone)]
pub struct UnitTest {
    pub name: String,
    /// `tests/file.yaml`, as shown to the user.
    pub path: String,
    pub model: String,
    /// The file the test is written in, and where its `model:` value is, for errors about it.
    file: SourceFile,
    model_at: (usize, usize),
    inputs: Vec<Input>,
    query: Option<Expected>,
    ctes: Vec<(String, Expected)>,
    vars: BTreeMap<String, Yaml>,
}

impl UnitTest {
    /// `tests/file.yaml::name`, how `lake test` selects it.
    pub fn id(&self) -> String {
        format!("{}::{}", self.path, self.name)
    }
}

/// What a test found: the rows it missed and the ones it did not expect, per compared output.
#[derive(Debug)]
pub enum Outcome {
    Passed,
    Failed(Vec<Mismatch>),
    /// The test could not run (bad fixture, a query error, an unknown column).
    Error(String),
}

#[derive(Debug)]
pub struct Mismatch {
    /// `query` or the CTE's name.
    pub output: String,
    pub missing: QueryResult,
    pub unexpected: QueryResult,
}

#[derive(Debug)]
pub struct TestResult {
    pub test: UnitTest,
    pub outcome: Outcome,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Passed)
    }
}

/// Every test in `tests/*.yaml` (and `.yml`) under the project.
pub fn load(root: &Path) -> Result<Vec<UnitTest>> {
    let mut tests = Vec::new();
    let mut errors: Vec<LakeError> = Vec::new();
    for file in crate::project::read_files(root, "tests", &["yaml", "yml"])? {
        match parse_file(&file) {
            Ok(found) => tests.extend(found),
            Err(e) => errors.push(e.into()),
        }
    }
    if errors.is_empty() {
        Ok(tests)
    } else {
        Err(crate::error::collect(errors))
    }
}

fn parse_file(file: &SourceFile) -> std::result::Result<Vec<UnitTest>, SourceError> {
    let doc: Yaml = serde_norway::from_str(&file.text).map_err(|e| {
        let at = e
            .location()
            .map_or(0, |l| file.offset_of(l.line(), l.column()));
        file.error(at, 1, format!("cannot read the test file: {e}"))
            .with_help("a test file maps test names to `model`, `inputs` and `outputs`")
    })?;
    let Yaml::Mapping(tests) = doc else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, body) in tests {
        let name = scalar(&name);
        let at = file.text.find(&format!("{name}:")).unwrap_or(0);
        let bad = |message: String, help: &str| {
            file.error(at, name.len().max(1), message)
                .with_label("this test")
                .with_help(help.to_string())
        };
        let Some(model) = body.get("model").map(scalar) else {
            return Err(bad(
                format!("test `{name}` names no `model`"),
                "add `model: schema.model_name`",
            ));
        };
        let mut inputs = Vec::new();
        if let Some(Yaml::Mapping(map)) = body.get("inputs") {
            for (input, spec) in map {
                inputs.push(parse_input(&scalar(input), spec).map_err(|m| {
                    bad(
                        format!("test `{name}`, input `{}`: {m}", scalar(input)),
                        "an input has `rows:` (a list of mappings), `query:`, or `format: csv` with `rows:` text",
                    )
                })?);
            }
        }
        let outputs = body.get("outputs");
        let query = outputs.and_then(|o| o.get("query")).map(expected);
        let ctes = match outputs.and_then(|o| o.get("ctes")) {
            Some(Yaml::Mapping(map)) => map.iter().map(|(k, v)| (scalar(k), expected(v))).collect(),
            _ => Vec::new(),
        };
        if query.is_none() && ctes.is_empty() {
            return Err(bad(
                format!("test `{name}` expects nothing"),
                "add `outputs: {query: {rows: [...]}}` (or `ctes:`)",
            ));
        }
        let vars = match body.get("vars") {
            Some(Yaml::Mapping(map)) => map
                .iter()
                .map(|(k, v)| (scalar(k).to_lowercase(), v.clone()))
                .collect(),
            _ => BTreeMap::new(),
        };
        let model_at = file.text[at..]
            .find(&model)
            .map_or((at, name.len().max(1)), |i| (at + i, model.len().max(1)));
        out.push(UnitTest {
            name,
            path: file.display_path.clone(),
            file: file.clone(),
            model_at,
            model,
            inputs,
            query,
            ctes,
            vars,
        });
    }
    Ok(out)
}

fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// What is wrong with the rows of a unit test's input.
#[derive(Debug, thiserror::Error)]
enum FixtureError {
    #[error("`rows` is a list of mappings (column: value)")]
    RowsNotAList,
    #[error("each row is a mapping (column: value)")]
    RowNotAMapping,
    #[error("`format: csv` needs the CSV text in `rows: |`")]
    CsvWithoutText,
}

fn rows(value: &Yaml) -> std::result::Result<Vec<Row>, FixtureError> {
    let Yaml::Sequence(items) = value else {
        return Err(FixtureError::RowsNotAList);
    };
    items
        .iter()
        .map(|item| match item {
            Yaml::Mapping(map) => Ok(map.iter().map(|(k, v)| (scalar(k), v.clone())).collect()),
            _ => Err(FixtureError::RowNotAMapping),
        })
        .collect()
}

fn parse_input(model: &str, spec: &Yaml) -> std::result::Result<Input, FixtureError> {
    let columns = match spec.get("columns") {
        Some(Yaml::Mapping(map)) => map.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        _ => Vec::new(),
    };
    let fixture = match spec {
        Yaml::Sequence(_) => Fixture::Rows(rows(spec)?),
        _ => match (
            spec.get("query"),
            spec.get("format").map(scalar).as_deref(),
            spec.get("rows"),
        ) {
            (Some(query), _, _) => Fixture::Query(scalar(query)),
            (None, Some("csv"), Some(Yaml::String(text))) => Fixture::Csv(text.clone()),
            (None, Some("csv"), _) => {
                return Err(FixtureError::CsvWithoutText);
            }
            (None, _, Some(r)) => Fixture::Rows(rows(r)?),
            (None, _, None) => Fixture::Rows(Vec::new()),
        },
    };
    Ok(Input {
        model: model.to_string(),
        fixture,
        columns,
    })
}

fn expected(value: &Yaml) -> Expected {
    match value {
        Yaml::Sequence(_) => Expected {
            rows: rows(value).unwrap_or_default(),
            partial: false,
        },
        _ => Expected {
            rows: value
                .get("rows")
                .map(|r| rows(r).unwrap_or_default())
                .unwrap_or_default(),
            partial: value
                .get("partial")
                .is_some_and(|p| matches!(p, Yaml::Bool(true))),
        },
    }
}

/// The tests whose id (`tests/file.yaml::name`), file or name matches one of `selection` (all when empty).
pub fn select(tests: Vec<UnitTest>, selection: &[String]) -> Result<Vec<UnitTest>> {
    if selection.is_empty() {
        return Ok(tests);
    }
    for wanted in selection {
        let found = tests
            .iter()
            .any(|t| t.id() == *wanted || t.path == *wanted || t.name == *wanted);
        if !found {
            return Err(LakeError::Usage(
                format!("no test matches `{wanted}`"),
                Some("select tests as `tests/file.yaml`, `tests/file.yaml::test_name` or `test_name`".into()),
            ));
        }
    }
    Ok(tests
        .into_iter()
        .filter(|t| {
            selection
                .iter()
                .any(|w| t.id() == *w || t.path == *w || t.name == *w)
        })
        .collect())
}

/// The tests whose name holds `pattern` (`-k`), or matches it as a glob when it has `*`, `?` or `[`.
pub fn matching(tests: Vec<UnitTest>, pattern: &str) -> Result<Vec<UnitTest>> {
    let glob = if pattern.contains(['*', '?', '[']) {
        Some(
            globset::Glob::new(pattern)
                .map_err(|e| {
                    LakeError::Usage(
                        format!("-k `{pattern}` is not a pattern: {e}"),
                        Some(
                            "give a substring of test names, or a glob such as `test_*_totals`"
                                .into(),
                        ),
                    )
                })?
                .compile_matcher(),
        )
    } else {
        None
    };
    Ok(tests
        .into_iter()
        .filter(|t| match &glob {
            Some(glob) => glob.is_match(&t.name),
            None => t.name.contains(pattern),
        })
        .collect())
}

/// Where each test's DuckDB lives: in memory, or (`--preserve-fixtures`) a file per test in a folder, kept
/// after the test so its input tables can be inspected.
#[derive(Debug, Clone, Copy)]
pub enum Fixtures<'a> {
    InMemory,
    PreservedIn(&'a Path),
}

impl Fixtures<'_> {
    /// The database file of `test` when fixtures are preserved.
    pub fn file_of(&self, test: &UnitTest) -> Option<std::path::PathBuf> {
        let Fixtures::PreservedIn(dir) = self else {
            return None;
        };
        let name: String = test
            .id()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Some(dir.join(format!("{name}.duckdb")))
    }

    fn engine(&self, test: &UnitTest) -> Result<Engine> {
        let Some(file) = self.file_of(test) else {
            return Engine::in_memory();
        };
        // A rerun starts from the fixtures alone.
        for stale in [file.clone(), file.with_extension("duckdb.wal")] {
            if stale.exists() {
                std::fs::remove_file(&stale).map_err(|e| LakeError::io(&stale, e))?;
            }
        }
        Engine::open(&crate::config::EngineConnection::DuckDb {
            database: Some(file),
            concurrent_tasks: 1,
            extensions: Vec::new(),
        })
    }
}

/// Runs the tests in parallel, each on its own DuckDB (in memory unless `fixtures` keeps them): they never
/// touch real data.
pub fn run(
    project: &Project,
    tests: Vec<UnitTest>,
    now: NaiveDateTime,
    fixtures: Fixtures<'_>,
) -> Vec<TestResult> {
    tests
        .into_par_iter()
        .map(|test| {
            let outcome = match run_one(project, &test, now, fixtures) {
                Ok(mismatches) if mismatches.is_empty() => Outcome::Passed,
                Ok(mismatches) => Outcome::Failed(mismatches),
                Err(e) => Outcome::Error(crate::error::error_chain(&e)),
            };
            TestResult { test, outcome }
        })
        .collect()
}

fn run_one(
    project: &Project,
    test: &UnitTest,
    now: NaiveDateTime,
    fixtures: Fixtures<'_>,
) -> Result<Vec<Mismatch>> {
    let (_engine, session, query) = prepare(project, test, now, fixtures)?;
    let mut mismatches = Vec::new();
    if let Some(expected) = &test.query {
        let located = |e: LakeError| {
            let model = project
                .find_model(&test.model)
                .ok()
                .map(|i| project.model(i));
            match model.and_then(|m| m.locate_engine_error(&e)) {
                Some(located) => LakeError::from(located),
                None => e,
            }
        };
        mismatches.extend(compare(&session, "query", &query, expected).map_err(located)?);
    }
    for (cte, expected) in &test.ctes {
        let sql = cte_query(&query, cte).ok_or_else(|| {
            LakeError::Usage(
                format!("the query of `{}` has no CTE named `{cte}`", test.model),
                Some("`outputs.ctes` names CTEs of the model's WITH clause".into()),
            )
        })?;
        mismatches.extend(compare(&session, cte, &sql, expected)?);
    }
    Ok(mismatches)
}

/// An in-memory DuckDB holding the test's inputs, and the model's query rendered for the test.
fn prepare(
    project: &Project,
    test: &UnitTest,
    now: NaiveDateTime,
    fixtures: Fixtures<'_>,
) -> Result<(Engine, Session, String)> {
    let i = project.find_model(&test.model).map_err(|e| match e {
        LakeError::UnknownModel(_, help) => LakeError::from(
            test.file
                .error(
                    test.model_at.0,
                    test.model_at.1,
                    format!("model `{}` is not in the project", test.model),
                )
                .with_label("tested model")
                .with_optional_help(help),
        ),
        other => other,
    })?;
    let engine = fixtures.engine(test)?;
    let session = engine.session()?;
    let ctx = macro_context(project, i, test, now)?;
    let mut given = std::collections::HashSet::new();
    // Every input takes the upstream's inferred columns: omitted ones are NULL, as in SQLMesh.
    let input_models: Vec<ModelId> = test
        .inputs
        .iter()
        .filter_map(|input| project.find_model(&input.model).ok())
        .collect();
    let inferred = inferred_columns(project, &input_models)?;
    for input in &test.inputs {
        let j = project.find_model(&input.model).ok();
        let upstream_columns = j
            .and_then(|j| inferred.get(&j))
            .map_or(&[][..], Vec::as_slice);
        create_input(project, &session, input, j, upstream_columns)?;
        if let Some(j) = j {
            given.insert(j);
        }
    }
    // Upstream models the test leaves out: EMBEDDED ones are inlined as views; any other is an error.
    for p in project.dag.upstream(i) {
        if given.contains(&p) {
            continue;
        }
        let parent = project.model(p);
        if !matches!(parent.meta.kind, ModelKind::Embedded) {
            if project.dag.parents(i).any(|q| q == p) {
                return Err(LakeError::Usage(
                    format!(
                        "test `{}` gives no rows for `{}`, which `{}` reads",
                        test.name, parent.meta.name, test.model
                    ),
                    Some(format!(
                        "add `{}:` under `inputs:` (`rows: []` for an empty table)",
                        parent.meta.name
                    )),
                ));
            }
            continue;
        }
        let Some(rendered) = project.render_query(p, &ctx)? else {
            continue;
        };
        ensure_schema(&session, &parent.meta.name.schema)?;
        session.execute(
            &format!(
                "CREATE VIEW {} AS {}",
                parent.meta.name.sql(),
                without_catalogs(project, &rendered)
            ),
            || format!("inlining the EMBEDDED model {}", parent.meta.name),
        )?;
    }
    let Some(rendered) = project.render_query(i, &ctx)? else {
        return Err(LakeError::Usage(
            format!("`{}` has no query to test", test.model),
            None,
        ));
    };
    Ok((engine, session, without_catalogs(project, &rendered)))
}

/// The query with each model named without its catalog (`"shop"."main"."customers"` as `main.customers`): a
/// test's inputs are tables of the in-memory database, whatever the project's database file is called.
fn without_catalogs(project: &Project, rendered: &RenderedQuery) -> String {
    let edits = rendered
        .refs
        .iter()
        .filter_map(|(r, target)| match target {
            RefTarget::Model(id) if r.parts.len() == 3 => {
                Some((r.offset, r.len, project.model(*id).meta.name.sql()))
            }
            _ => None,
        })
        .collect();
    crate::sql::replace_spans(&rendered.sql, edits)
}

/// What `lake create-test` writes: a test named `name` of `model` whose inputs are `inputs` (upstream model,
/// rows of a query run on live data), with `vars` and, when `include_ctes`, each CTE's rows too.
pub struct Generated<'a> {
    pub model: &'a str,
    pub name: &'a str,
    pub inputs: Vec<(String, QueryResult)>,
    pub vars: &'a [(String, String)],
    pub include_ctes: bool,
}

/// `lake create-test`: the YAML of `generated`, whose expected output is what the model's query makes of
/// the inputs now.
pub fn create(project: &Project, generated: &Generated<'_>, now: NaiveDateTime) -> Result<String> {
    let mut vars = BTreeMap::from([(
        "execution_time".to_string(),
        Yaml::String(now.format("%Y-%m-%d %H:%M:%S").to_string()),
    )]);
    for (key, value) in generated.vars {
        vars.insert(key.clone(), Yaml::String(value.clone()));
    }
    let mut test = UnitTest {
        name: generated.name.to_string(),
        path: String::new(),
        // Written, not read: there is no file to point into yet.
        file: SourceFile::new("", ""),
        model_at: (0, 0),
        model: project
            .model(project.find_model(generated.model)?)
            .meta
            .name
            .to_string(),
        inputs: Vec::new(),
        query: None,
        ctes: Vec::new(),
        vars,
    };
    let mut input_yaml = serde_norway::Mapping::new();
    for (upstream, result) in &generated.inputs {
        let rows = yaml_rows(result)?;
        let columns: Vec<(String, String)> = result
            .schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), duckdb_type(f.data_type())))
            .collect();
        let mut spec = rows_yaml(&rows);
        if let Yaml::Mapping(spec) = &mut spec {
            let mut types = serde_norway::Mapping::new();
            for (c, t) in &columns {
                types.insert(Yaml::from(c.clone()), Yaml::from(t.clone()));
            }
            spec.insert(Yaml::from("columns"), Yaml::Mapping(types));
        }
        test.inputs.push(Input {
            model: upstream.clone(),
            fixture: Fixture::Rows(rows),
            columns,
        });
        input_yaml.insert(Yaml::from(upstream.clone()), spec);
    }
    let (_engine, session, query) = prepare(project, &test, now, Fixtures::InMemory)?;
    let mut outputs = serde_norway::Mapping::new();
    if generated.include_ctes {
        outputs.insert(Yaml::from("ctes"), cte_outputs(&session, &query)?);
    }
    let output = session.query(&query, || {
        format!("running the query of {}", generated.model)
    })?;
    outputs.insert(Yaml::from("query"), rows_yaml(&yaml_rows(&output)?));
    let mut body = serde_norway::Mapping::new();
    body.insert(Yaml::from("model"), Yaml::from(test.model.clone()));
    body.insert(Yaml::from("inputs"), Yaml::Mapping(input_yaml));
    body.insert(Yaml::from("outputs"), Yaml::Mapping(outputs));
    let mut vars = serde_norway::Mapping::new();
    for (k, v) in &test.vars {
        vars.insert(Yaml::from(k.clone()), v.clone());
    }
    body.insert(Yaml::from("vars"), Yaml::Mapping(vars));
    let mut doc = serde_norway::Mapping::new();
    doc.insert(Yaml::from(generated.name), Yaml::Mapping(body));
    serde_norway::to_string(&doc).map_err(|e| LakeError::Output(e.to_string()))
}

/// `outputs.ctes` of a generated test: the rows each CTE of `query`'s WITH clause makes, by name.
fn cte_outputs(session: &Session, query: &str) -> Result<Yaml> {
    let mut ctes = serde_norway::Mapping::new();
    for cte in cte_names(query) {
        let Some(sql) = cte_query(query, &cte) else {
            continue;
        };
        let rows = session.query(&sql, || format!("running the CTE `{cte}`"))?;
        ctes.insert(Yaml::from(cte), rows_yaml(&yaml_rows(&rows)?));
    }
    Ok(Yaml::Mapping(ctes))
}

/// The names of the CTEs of `query`'s top-level WITH clause, in order.
fn cte_names(query: &str) -> Vec<String> {
    let Ok(statements) = crate::sql::parse(query) else {
        return Vec::new();
    };
    match statements.first() {
        Some(sqlparser::ast::Statement::Query(q)) => q
            .with
            .iter()
            .flat_map(|with| &with.cte_tables)
            .map(|c| c.alias.name.value.clone())
            .collect(),
        _ => Vec::new(),
    }
}

fn rows_yaml(rows: &[Row]) -> Yaml {
    let mut spec = serde_norway::Mapping::new();
    let list = rows
        .iter()
        .map(|row| {
            let mut map = serde_norway::Mapping::new();
            for (k, v) in row {
                map.insert(Yaml::from(k.clone()), v.clone());
            }
            Yaml::Mapping(map)
        })
        .collect();
    spec.insert(Yaml::from("rows"), Yaml::Sequence(list));
    Yaml::Mapping(spec)
}

/// Rows of a result as YAML values, through Arrow's JSON writer (dates and times become text).
fn yaml_rows(result: &QueryResult) -> Result<Vec<Row>> {
    let mut buffer = Vec::new();
    {
        let mut writer = arrow::json::ArrayWriter::new(&mut buffer);
        for batch in &result.batches {
            writer
                .write(batch)
                .map_err(|e| LakeError::Output(e.to_string()))?;
        }
        writer
            .finish()
            .map_err(|e| LakeError::Output(e.to_string()))?;
    }
    if buffer.is_empty() {
        return Ok(Vec::new());
    }
    let objects: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&buffer).map_err(|e| LakeError::Output(e.to_string()))?;
    let columns: Vec<String> = result
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    Ok(objects
        .into_iter()
        .map(|object| {
            columns
                .iter()
                .map(|c| {
                    let value = object.get(c).cloned().unwrap_or(serde_json::Value::Null);
                    (
                        c.clone(),
                        serde_norway::to_value(value).unwrap_or(Yaml::Null),
                    )
                })
                .collect()
        })
        .collect())
}

/// The DuckDB type for an Arrow column, so a created test keeps the types of the live data.
fn duckdb_type(data_type: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::DataType as D;
    match data_type {
        D::Boolean => "BOOLEAN".into(),
        D::Int8 => "TINYINT".into(),
        D::Int16 => "SMALLINT".into(),
        D::Int32 => "INTEGER".into(),
        D::Int64 => "BIGINT".into(),
        D::UInt8 => "UTINYINT".into(),
        D::UInt16 => "USMALLINT".into(),
        D::UInt32 => "UINTEGER".into(),
        D::UInt64 => "UBIGINT".into(),
        D::Float32 => "FLOAT".into(),
        D::Float64 => "DOUBLE".into(),
        D::Decimal128(p, s) | D::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        D::Date32 | D::Date64 => "DATE".into(),
        D::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        D::Timestamp(_, None) => "TIMESTAMP".into(),
        D::Time32(_) | D::Time64(_) => "TIME".into(),
        D::Binary | D::LargeBinary | D::FixedSizeBinary(_) => "BLOB".into(),
        _ => "VARCHAR".into(),
    }
}

/// Start, end and execution time from `vars` (default: the model's start, and now), other vars as
/// macro variables.
fn macro_context(
    project: &Project,
    i: ModelId,
    test: &UnitTest,
    now: NaiveDateTime,
) -> Result<MacroContext> {
    let mut ctx = MacroContext::for_loading(&project.config.gateway, &project.config.variables);
    let time = |key: &str| -> Result<Option<NaiveDateTime>> {
        match test.vars.get(key) {
            None => Ok(None),
            Some(v) => crate::intervals::parse_datetime(&scalar(v))
                .map(Some)
                .ok_or_else(|| {
                    LakeError::Usage(
                        format!("test `{}`: `vars.{key}` is not a date or time", test.name),
                        Some("write it as 2024-01-31 or 2024-01-31 12:00:00".into()),
                    )
                }),
        }
    };
    ctx.execution_time = time("execution_time")?.unwrap_or(now);
    ctx.start = match time("start")? {
        Some(start) => start,
        None => project
            .model(i)
            .meta
            .start
            .as_ref()
            .map_or(ctx.start, |start| start.resolve(now)),
    };
    // `end` is inclusive in tests, as in SQLMesh: a date covers its whole day.
    ctx.end = match time("end")? {
        Some(end) if end.time() == chrono::NaiveTime::MIN => end + chrono::Duration::days(1),
        Some(end) => end,
        None => ctx.execution_time,
    };
    ctx.runtime_stage = "testing";
    for (key, value) in &test.vars {
        if !["start", "end", "execution_time"].contains(&key.as_str()) {
            ctx.variables.insert(
                key.clone(),
                serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
            );
            ctx.locals.insert(key.clone(), literal(value));
        }
    }
    Ok(ctx)
}

fn ensure_schema(session: &Session, schema: &str) -> Result<()> {
    session.execute(
        &format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)),
        || format!("creating schema {schema}"),
    )
}

/// The columns (name, DuckDB type) DuckDB's binder infers for each of `models`, binding their upstream
/// models first; a model whose query does not bind is left out.
fn inferred_columns(
    project: &Project,
    models: &[ModelId],
) -> Result<HashMap<ModelId, Vec<(String, String)>>> {
    if models.is_empty() {
        return Ok(HashMap::new());
    }
    let mut needed: HashSet<ModelId> = models.iter().copied().collect();
    for &j in models {
        needed.extend(project.dag.upstream(j));
    }
    let mut binder = crate::project::schema::Binder::new(project)?;
    for &k in &project.order {
        if needed.contains(&k) {
            binder.bind(k)?;
        }
    }
    Ok(models
        .iter()
        .filter_map(|&j| Some((j, binder.columns_of(&project.model(j).meta.name)?)))
        .collect())
}

/// A fixture table named like the upstream model, with the upstream model's columns as SQLMesh types them:
/// what the binder infers, overridden by the model's declared `columns`, then by the `columns:` hints. Rows given as
/// YAML, CSV or a query get every column (NULL where omitted), each value cast to its column's type.
fn create_input(
    project: &Project,
    session: &Session,
    input: &Input,
    model: Option<ModelId>,
    inferred: &[(String, String)],
) -> Result<()> {
    let name = crate::sql::ModelName::parse(&input.model).ok_or_else(|| {
        LakeError::Usage(
            format!("input `{}` is not a model name", input.model),
            Some("name inputs `schema.model`".into()),
        )
    })?;
    // The upstream's own column order, as the binder sees it, then declared types and hints over it.
    let mut types: Vec<(String, String)> = inferred.to_vec();
    let declared = model.into_iter().flat_map(|j| {
        project
            .model(j)
            .meta
            .columns
            .iter()
            .map(|c| (&c.name, &c.data_type))
    });
    for (column, data_type) in declared.chain(input.columns.iter().map(|(c, t)| (c, t))) {
        match types
            .iter_mut()
            .find(|(c, _)| c.eq_ignore_ascii_case(column))
        {
            Some(entry) => entry.1 = data_type.clone(),
            None => types.push((column.clone(), data_type.clone())),
        }
    }
    // A CSV fixture is read from a temporary file, which lives until the table is created.
    let mut csv_file = None;
    let body = match &input.fixture {
        Fixture::Query(query) => query.clone(),
        Fixture::Csv(text) => {
            let file = tempfile::Builder::new()
                .suffix(".csv")
                .tempfile()
                .map_err(|e| LakeError::io("a temporary CSV file", e))?;
            std::fs::write(file.path(), text).map_err(|e| LakeError::io(file.path(), e))?;
            let sql = format!(
                "SELECT * FROM read_csv({}, header = true)",
                quote_literal(&file.path().display().to_string())
            );
            csv_file = Some(file);
            sql
        }
        Fixture::Rows(rows) => values_query(rows, &types).ok_or_else(|| {
            LakeError::Usage(
                format!("input `{}` has no rows and no column types", input.model),
                Some("give `columns: {name: TYPE}` for an empty input".into()),
            )
        })?,
    };
    ensure_schema(session, &name.schema)?;
    let typed = if types.is_empty() || matches!(input.fixture, Fixture::Rows(_)) {
        body
    } else {
        typed_with_all_columns(&body, &types)
    };
    let created = session.execute(&format!("CREATE TABLE {} AS {typed}", name.sql()), || {
        format!("creating the input rows of {}", input.model)
    });
    drop(csv_file);
    created
}

/// A query or CSV input's rows with every column of `types` (NULL where the input leaves one out, as YAML
/// rows get) cast to its type; the input's other columns follow as they are.
fn typed_with_all_columns(body: &str, types: &[(String, String)]) -> String {
    let nulls: Vec<String> = types
        .iter()
        .map(|(c, t)| format!("CAST(NULL AS {t}) AS {}", quote_ident(c)))
        .collect();
    let casts: Vec<String> = types
        .iter()
        .map(|(c, t)| format!("CAST({q} AS {t}) AS {q}", q = quote_ident(c)))
        .collect();
    format!(
        "SELECT * REPLACE ({}) FROM (SELECT {} WHERE false UNION ALL BY NAME SELECT * FROM ({body})) \
         AS fixture",
        casts.join(", "),
        nulls.join(", ")
    )
}

/// `SELECT … FROM (VALUES …)` for rows, each column cast to its type when known; `None` when there is
/// nothing to say what the columns are.
fn values_query(rows: &[Row], types: &[(String, String)]) -> Option<String> {
    let mut columns: Vec<String> = types.iter().map(|(c, _)| c.clone()).collect();
    for row in rows {
        for (column, _) in row {
            if !columns.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                columns.push(column.clone());
            }
        }
    }
    if columns.is_empty() {
        return None;
    }
    let type_of = |column: &str| {
        types
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(column))
            .map(|(_, t)| t.clone())
    };
    let cell = |column: &str, value: Option<&Yaml>| {
        let text = value.map_or("NULL".to_string(), literal);
        match type_of(column) {
            Some(t) => format!("CAST({text} AS {t})"),
            None => text,
        }
    };
    let names: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    if rows.is_empty() {
        let typed: Vec<String> = columns
            .iter()
            .map(|c| format!("{} AS {}", cell(c, None), quote_ident(c)))
            .collect();
        return Some(format!("SELECT {} LIMIT 0", typed.join(", ")));
    }
    let tuples: Vec<String> = rows
        .iter()
        .map(|row| {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| {
                    let value = row
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(c))
                        .map(|(_, v)| v);
                    cell(c, value)
                })
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    Some(format!(
        "SELECT * FROM (VALUES {}) AS fixture({})",
        tuples.join(", "),
        names.join(", ")
    ))
}

/// A YAML value as a SQL literal: dates and timestamps written as text become DATE and TIMESTAMP values.
fn literal(value: &Yaml) -> String {
    match value {
        Yaml::Null => "NULL".into(),
        Yaml::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
        Yaml::Number(n) => n.to_string(),
        Yaml::String(s) => {
            let quoted = quote_literal(s);
            if looks_like_date(s) {
                format!("DATE {quoted}")
            } else if looks_like_timestamp(s) {
                format!("TIMESTAMP {quoted}")
            } else {
                quoted
            }
        }
        Yaml::Sequence(items) => format!(
            "[{}]",
            items.iter().map(literal).collect::<Vec<_>>().join(", ")
        ),
        Yaml::Mapping(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", quote_literal(&scalar(k)), literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Yaml::Tagged(tagged) => literal(&tagged.value),
    }
}

fn looks_like_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10
}

fn looks_like_timestamp(s: &str) -> bool {
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .any(|f| NaiveDateTime::parse_from_str(s, f).is_ok())
}

/// `WITH <the query's CTEs> SELECT * FROM cte`, or `None` when the query has no such CTE.
fn cte_query(query: &str, cte: &str) -> Option<String> {
    let statements = crate::sql::parse(query).ok()?;
    let sqlparser::ast::Statement::Query(q) = statements.first()? else {
        return None;
    };
    let with = q.with.as_ref()?;
    with.cte_tables
        .iter()
        .any(|c| c.alias.name.value.eq_ignore_ascii_case(cte))
        .then(|| format!("{with} SELECT * FROM {}", quote_ident(cte)))
}

/// Runs `sql` and compares its rows with `expected` as multisets (row order does not matter), each expected
/// value cast to the output column's type. Omitted columns are expected to be NULL unless `partial`.
fn compare(
    session: &Session,
    output: &str,
    sql: &str,
    expected: &Expected,
) -> Result<Option<Mismatch>> {
    session.execute(
        &format!("CREATE OR REPLACE TEMP TABLE lake_actual AS {sql}"),
        || format!("running the tested query ({output})"),
    )?;
    let actual_columns: Vec<(String, String)> = session
        .query_rows("DESCRIBE lake_actual", || {
            "reading the output columns".into()
        })?
        .into_iter()
        .filter_map(|row| Some((row.first()?.clone()?, row.get(1)?.clone()?)))
        .collect();
    let mut mentioned: Vec<String> = Vec::new();
    for row in &expected.rows {
        for (column, _) in row {
            if !mentioned.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                mentioned.push(column.clone());
            }
        }
    }
    for column in &mentioned {
        if !actual_columns
            .iter()
            .any(|(c, _)| c.eq_ignore_ascii_case(column))
        {
            let have: Vec<&str> = actual_columns.iter().map(|(c, _)| c.as_str()).collect();
            return Err(LakeError::Usage(
                format!("expected column `{column}` is not in the output ({output})"),
                Some(format!("the output has: {}", have.join(", "))),
            ));
        }
    }
    let compared: Vec<(String, String)> = actual_columns
        .into_iter()
        .filter(|(c, _)| !expected.partial || mentioned.iter().any(|m| m.eq_ignore_ascii_case(c)))
        .collect();
    let types: Vec<(String, String)> = compared.clone();
    let expected_sql =
        values_query(&expected.rows, &types).unwrap_or_else(|| "SELECT 1 LIMIT 0".into());
    let columns = compared
        .iter()
        .map(|(c, _)| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    session.execute(
        &format!("CREATE OR REPLACE TEMP TABLE lake_expected AS SELECT {columns} FROM ({expected_sql}) AS e"),
        || format!("loading the expected rows ({output})"),
    )?;
    let difference = |from: &str, minus: &str| {
        session.query(
            &format!(
                "SELECT {columns} FROM {from} EXCEPT ALL SELECT {columns} FROM {minus} ORDER BY ALL"
            ),
            || format!("comparing the rows ({output})"),
        )
    };
    let missing = difference("lake_expected", "lake_actual")?;
    let unexpected = difference("lake_actual", "lake_expected")?;
    let count = |r: &QueryResult| r.batches.iter().map(|b| b.num_rows()).sum::<usize>();
    if count(&missing) + count(&unexpected) == 0
        || equal_within_float_tolerance(session, output, &compared)?
    {
        return Ok(None);
    }
    Ok(Some(Mismatch {
        output: output.to_string(),
        missing,
        unexpected,
    }))
}

/// pandas' default tolerance, which SQLMesh's test comparison uses for floating-point columns:
/// `|actual - expected| <= ABSOLUTE + RELATIVE * |expected|`.
const RELATIVE_TOLERANCE: f64 = 1e-5;
const ABSOLUTE_TOLERANCE: f64 = 1e-8;

fn is_floating_point(data_type: &str) -> bool {
    matches!(
        data_type.to_ascii_uppercase().as_str(),
        "FLOAT" | "DOUBLE" | "REAL" | "FLOAT4" | "FLOAT8"
    )
}

/// Whether the actual and expected rows, both sorted, pair up with floating-point columns equal within the
/// tolerance and every other column exactly equal (as SQLMesh compares sorted frames).
fn equal_within_float_tolerance(
    session: &Session,
    output: &str,
    compared: &[(String, String)],
) -> Result<bool> {
    if !compared.iter().any(|(_, t)| is_floating_point(t)) {
        return Ok(false);
    }
    let columns = compared
        .iter()
        .map(|(c, _)| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let equal = compared
        .iter()
        .map(|(c, t)| {
            let (a, e) = (format!("a.{}", quote_ident(c)), format!("e.{}", quote_ident(c)));
            if is_floating_point(t) {
                format!(
                    "({a} IS NOT DISTINCT FROM {e} OR abs({a} - {e}) <= {ABSOLUTE_TOLERANCE:e} + {RELATIVE_TOLERANCE:e} * abs({e}))"
                )
            } else {
                format!("{a} IS NOT DISTINCT FROM {e}")
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let numbered = |table: &str| {
        format!("SELECT {columns}, row_number() OVER (ORDER BY {columns}) AS lake_row FROM {table}")
    };
    let unpaired = session.query_count(
        &format!(
            "WITH a AS ({}), e AS ({}) SELECT count(*) FROM a FULL JOIN e ON a.lake_row = e.lake_row \
             WHERE a.lake_row IS NULL OR e.lake_row IS NULL OR NOT ({equal})",
            numbered("lake_actual"),
            numbered("lake_expected")
        ),
        || format!("comparing the rows with a float tolerance ({output})"),
    )?;
    Ok(unpaired == 0)
}
