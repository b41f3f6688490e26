//! Property-based fuzzing of everything that reads a user's files: MODEL blocks, audit files, config.yaml,
//! macro and Jinja rendering, the formatter and whole-project loading. Inputs are random text, mutations of
//! valid files, truncations and deep nesting. The property: no panic, no case slower than a generous bound,
//! and every located error points inside the file it names. These call the library in-process (thousands of
//! cases a second) instead of the binary.
//!
//! `LAKE_FUZZ_SECONDS` is each target's budget (default 2); `LAKE_FUZZ_SEED` picks the cases (default 0, so
//! CI is reproducible; `scripts/fuzz.sh` draws a new one). A failure prints the shrunk input and the seed.

use std::path::Path;
use std::time::{Duration, Instant};

use lake::config::ModelDefaults;
use lake::error::{LakeError, SourceError, SourceFile};
use lake::project::macros::MacroContext;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

const FULL_MODEL: &str = include_str!("../../project-template/models/full_model.sql");
const INCREMENTAL_MODEL: &str = include_str!("../../project-template/models/incremental_model.sql");
const SEED_MODEL: &str = include_str!("../../project-template/models/seed_model.sql");
const AUDIT: &str = include_str!("../../project-template/audits/assert_positive_order_ids.sql");
const CONFIG: &str = include_str!("../../project-template/config.yaml");
const MACROS: &str = include_str!("../../project-template/macros/demo_macros.sql");

/// Model files that use more of the MODEL grammar than the template does.
const RICHER_MODELS: &[&str] = &[
    "MODEL (name shop.orders, kind INCREMENTAL_BY_UNIQUE_KEY (unique_key (id, region), when_matched WHEN MATCHED THEN UPDATE SET amount = source.amount), \
     audits (not_null(columns := [id]), unique_values(columns := (id))), columns (id INT, region TEXT, amount DOUBLE), \
     grain [id, region], tags [a, b], owner 'me', description 'orders', partitioned_by (region), \
     physical_properties (format = 'parquet'), blueprints ((region := 'eu'), (region := 'us')));\n\
     @DEF(limit_v, 10);\nSELECT id, @region AS region, amount FROM raw.orders WHERE amount < @limit_v;\n\
     AUDIT (name positive);\nSELECT * FROM @this_model WHERE amount < 0;\n",
    "MODEL (name shop.scd, kind SCD_TYPE_2_BY_COLUMN (unique_key id, columns [status], invalidate_hard_deletes true), \
     cron '*/5 * * * *', start '2024-01-01', end '2024-12-31', lookback 2, batch_size 7);\n\
     JINJA_QUERY_BEGIN;\nSELECT id, status FROM raw.s {% if var('x', 1) > 0 %}WHERE id > {{ var('x', 1) }}{% endif %}\nJINJA_END;\n",
    "MODEL (name shop.view, kind VIEW (materialized true), depends_on [shop.orders], virtual_environment_mode dev_only, \
     pre_statements (SET threads = 1), on_virtual_update (GRANT SELECT ON @this_model TO r));\n\
     SELECT @STAR(shop.orders, except := [amount]), @EACH([1, 2], x -> x * 2) AS doubled \
     FROM shop.orders WHERE @AND(TRUE, @IF(@runtime_stage = 'loading', TRUE, FALSE));\n",
];

const RICHER_CONFIG: &str = "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: db.db\n    state_connection:\n      type: postgres\n      host: 127.0.0.1\n      port: 5432\n      user: '{{ env_var(\"PGUSER\", \"lake\") }}'\n      password: secret\n      database: lake\ndefault_gateway: local\nvariables:\n  x: 1\n  names: [a, b]\nmodel_defaults:\n  dialect: duckdb\n  start: 2020-01-01\n  cron: '@hourly'\n  audits: [not_null(columns := [id])]\n  batch_concurrency: 2\nenvironment_ttl: 1 week\nsnapshot_ttl: in 3 days\nphysical_schema_mapping:\n  '^(sales|ops)$': internal_tables\n  '^x': x_tables\nvirtual_environment_mode: dev_only\nplan:\n  forward_only: true\nformat:\n  normalize: true\n";

const MACRO_TEXTS: &[&str] = &[
    "SELECT @start_ds, @{end_date}, @VAR('x', 2), @this_model",
    "@DEF(f, (a, b) -> a + b); SELECT @f(1, @EACH([1, 2, 3], x -> x * 2))",
    "SELECT @IF(@gateway = 'local', 'yes', 'no'), @SQL('select 1'), @REDUCE([1, 2], (a, b) -> a + b)",
    "SELECT @UNION('distinct', a.b, c.d), @HAVERSINE_DISTANCE(1, 2, 3, 4), @DATE_SPINE('day', '2024-01-01', '2024-01-05')",
];

const JINJA_TEXTS: &[&str] = &[
    "SELECT '{{ start_ds }}' {% for x in [1, 2] %}, {{ x }} AS c{{ loop.index }}{% endfor %}",
    "{% macro m(a) %}{{ a }} + 1{% endmacro %}SELECT {{ m(2) }}, {{ var('x', 3) }}, '{{ this_model }}'",
    "{% set xs = ['a', 'b'] %}{% if xs | length > 1 %}SELECT {{ xs | join(', ') }}{% else %}SELECT 1{% endif %}",
];

/// Text a mutation inserts: what the lexers and parsers of lake's formats treat specially, and text that
/// is not ASCII (offsets inside a multi-byte character must never be sliced).
const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    ",",
    ";",
    "'",
    "\"",
    "`",
    "@",
    "@{",
    "}",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    ":=",
    "->",
    "--",
    "/*",
    "*/",
    "\n",
    "\r\n",
    "\t",
    " ",
    "MODEL",
    "AUDIT",
    "kind",
    "name",
    "FULL",
    "SELECT",
    "FROM",
    "JINJA_QUERY_BEGIN;",
    "JINJA_END;",
    "@DEF(",
    "@EACH(",
    "blueprints",
    "é",
    "名",
    "𝄞",
    "\u{0}",
    "\u{feff}",
    "\\",
    "$",
    "::",
    "1e999",
    "-9223372036854775809",
    "NULL",
    "true",
    ": ",
    "- ",
    "&a",
    "*a",
    "!!binary",
    "{",
    "~",
    "%",
    "|",
];

fn budget() -> Duration {
    let seconds = std::env::var("LAKE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(seconds)
}

fn base_seed() -> u64 {
    std::env::var("LAKE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Generous on purpose: a case this slow is a hang (quadratic or worse behaviour), not a slow machine.
const CASE_BOUND: Duration = Duration::from_secs(10);

/// One edit of a text.
#[derive(Debug, Clone)]
enum Mutation {
    Insert { at: usize, fragment: usize },
    Delete { at: usize, len: usize },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
    ReplaceByte { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0..FRAGMENTS.len()).prop_map(|(at, fragment)| Mutation::Insert { at, fragment }),
        3 => (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (any::<usize>(), 1usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::ReplaceByte { at, byte }),
    ]
}

/// The nearest character boundary at or before `at % (len + 1)`.
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, mutation: &Mutation) -> String {
    let mut out = text.to_string();
    match *mutation {
        Mutation::Insert { at, fragment } => {
            out.insert_str(boundary(&out, at), FRAGMENTS[fragment])
        }
        Mutation::Delete { at, len } => {
            let start = boundary(&out, at);
            let end = boundary(&out, start.saturating_add(len).min(out.len()));
            out.replace_range(start..end.max(start), "");
        }
        Mutation::Duplicate { at, len } => {
            let start = boundary(&out, at);
            let end = boundary(&out, start.saturating_add(len).min(out.len())).max(start);
            let copy = out[start..end].to_string();
            out.insert_str(end, &copy);
        }
        Mutation::Truncate { at } => out.truncate(boundary(text, at)),
        Mutation::ReplaceByte { at, byte } => {
            let mut bytes = out.into_bytes();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            // Files are read as UTF-8 with invalid bytes replaced; do the same here.
            out = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    out
}

/// Valid files with a few random edits, random text, or deep nesting around a valid file.
fn inputs(valid: &'static [&'static str]) -> impl Strategy<Value = String> {
    let mutated =
        (0..valid.len(), prop::collection::vec(mutation(), 1..8)).prop_map(move |(i, edits)| {
            edits
                .iter()
                .fold(valid[i].to_string(), |text, edit| apply(&text, edit))
        });
    let random_text = prop::collection::vec(0..FRAGMENTS.len(), 0..60)
        .prop_map(|picks| picks.iter().map(|&i| FRAGMENTS[i]).collect::<String>());
    let random_bytes = prop::collection::vec(any::<u8>(), 0..300)
        .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let nested = (0..valid.len(), 1usize..6000, 0..4usize).prop_map(move |(i, depth, shape)| {
        let (open, close) = [
            ("(", ")"),
            ("[", "]"),
            ("{{ (", ") }}"),
            ("@IF(TRUE, ", ")"),
        ][shape];
        let text = valid[i];
        let middle = boundary(text, text.len() / 2);
        format!(
            "{}{}1{}{}",
            &text[..middle],
            open.repeat(depth),
            close.repeat(depth),
            &text[middle..]
        )
    });
    prop_oneof![6 => mutated, 2 => random_text, 1 => random_bytes, 1 => nested]
}

/// Runs `check` on cases from `strategy` for the target's budget; fails with the shrunk input on a panic,
/// a hang past `CASE_BOUND` or a broken property.
fn fuzz<S>(target: &str, strategy: S, check: impl Fn(&S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let deadline = Instant::now() + budget();
    let seed = base_seed();
    let mut cases: u64 = 0;
    let mut round: u64 = 0;
    while cases == 0 || Instant::now() < deadline {
        let config = Config {
            cases: 32,
            failure_persistence: None,
            ..Config::default()
        };
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        seed_bytes[8..16].copy_from_slice(&round.to_le_bytes());
        seed_bytes[16..].copy_from_slice(&target.as_bytes().iter().fold(
            [0u8; 16],
            |mut acc, b| {
                acc[usize::from(*b) % 16] ^= *b;
                acc
            },
        ));
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let result = runner.run(&strategy, |input| {
            let started = Instant::now();
            check(&input)?;
            let took = started.elapsed();
            prop_assert!(took < CASE_BOUND, "one case took {took:?}");
            Ok(())
        });
        if let Err(failure) = result {
            panic!("fuzz {target} (LAKE_FUZZ_SEED={seed}, round {round}): {failure}");
        }
        cases += 32;
        round += 1;
    }
    eprintln!(
        "fuzz {target}: {cases} cases in {:?}, nothing found",
        budget()
    );
}

/// A located error must point inside the text it names, on a line and column that exist.
fn located_inside(error: &SourceError, text: &str) -> Result<(), TestCaseError> {
    let start = error.span.offset();
    prop_assert!(
        start + error.span.len() <= text.len() + 1,
        "span {start}+{} past the end ({} bytes): {}",
        error.span.len(),
        text.len(),
        error.location
    );
    let mut parts = error.location.rsplitn(3, ':');
    let column: usize = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let line: usize = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    let lines = text.split('\n').count();
    prop_assert!(
        line >= 1 && line <= lines && column >= 1,
        "location {} outside the file's {lines} lines",
        error.location
    );
    prop_assert!(
        !error.message.trim().is_empty(),
        "an empty message at {}",
        error.location
    );
    Ok(())
}

/// Every located error inside a library error (one, or several collected) points inside its file.
fn lake_error_located(error: &LakeError, text: &str, path: &str) -> Result<(), TestCaseError> {
    match error {
        LakeError::Source(source) if source.location.starts_with(path) => {
            located_inside(source, text)
        }
        LakeError::Many(errors) => errors
            .iter()
            .try_for_each(|e| lake_error_located(e, text, path)),
        _ => Ok(()),
    }
}

#[test]
fn model_files_never_panic_and_errors_point_inside_them() {
    let mut valid = vec![FULL_MODEL, INCREMENTAL_MODEL, SEED_MODEL];
    valid.extend_from_slice(RICHER_MODELS);
    let valid: &'static [&'static str] = Box::leak(valid.into_boxed_slice());
    let defaults = ModelDefaults::default();
    fuzz("model file", inputs(valid), |text| {
        let file = SourceFile::new("models/m.sql", text.as_str());
        match lake::project::model::parse_models(file, Path::new("/p/models/m.sql"), &defaults) {
            Ok(_) => Ok(()),
            Err(error) => located_inside(&error, text),
        }
    });
}

#[test]
fn audit_files_never_panic_and_errors_point_inside_them() {
    fuzz(
        "audit file",
        inputs(&[
            AUDIT,
            "AUDIT (name a, blocking false, defaults (x = 1));\nSELECT * FROM @this_model WHERE @x < 0;\nAUDIT (name b);\nSELECT 1 WHERE FALSE;\n",
        ]),
        |text| {
            let file = SourceFile::new("audits/a.sql", text.as_str());
            match lake::project::audit::parse_audit_file(&file) {
                Ok(_) => Ok(()),
                Err(error) => located_inside(&error, text),
            }
        },
    );
}

#[test]
fn config_files_never_panic_and_errors_point_inside_them() {
    let root = tempfile::tempdir().expect("temp dir");
    fuzz(
        "config.yaml",
        inputs(&[CONFIG, RICHER_CONFIG]),
        |text| match lake::config::parse(root.path(), "config.yaml", text, None) {
            Ok(_) => Ok(()),
            Err(error) => lake_error_located(&error, text, "config.yaml"),
        },
    );
}

#[test]
fn macro_rendering_never_panics_and_errors_point_inside_the_text() {
    let mut valid = vec![MACROS];
    valid.extend_from_slice(MACRO_TEXTS);
    let valid: &'static [&'static str] = Box::leak(valid.into_boxed_slice());
    fuzz("macros", inputs(valid), |text| {
        let mut ctx = MacroContext::for_loading("local", &Default::default());
        ctx.this_model = "lake__shop.\"shop__m__1\"".into();
        // Definitions first (as a macro file), then the text as a query, like a model sees it.
        let _ = lake::project::macros::define(text, &mut ctx);
        match lake::project::macros::render(text, &ctx) {
            Ok(_) => Ok(()),
            Err(error) => {
                prop_assert!(
                    error.offset + error.len <= text.len() + 1,
                    "macro error at {}+{} past the end ({} bytes): {}",
                    error.offset,
                    error.len,
                    text.len(),
                    error.message
                );
                Ok(())
            }
        }
    });
}

#[test]
fn jinja_rendering_never_panics_and_errors_name_a_line_of_the_text() {
    let macros = "{% macro twice(x) %}{{ x }} * 2{% endmacro %}";
    fuzz("jinja", inputs(JINJA_TEXTS), |text| {
        let ctx = MacroContext::for_loading("local", &Default::default());
        match lake::project::macros::jinja::render(text, &ctx, macros) {
            Ok(_) => Ok(()),
            Err(error) => {
                let lines = text.split('\n').count();
                prop_assert!(
                    error.line.is_none_or(|line| line >= 1 && line <= lines),
                    "line {:?} outside the template's {lines} lines: {}",
                    error.line,
                    error.message
                );
                Ok(())
            }
        }
    });
}

#[test]
fn the_formatter_never_panics_and_formats_its_own_output_to_itself() {
    let mut valid = vec![FULL_MODEL, INCREMENTAL_MODEL, SEED_MODEL, AUDIT];
    valid.extend_from_slice(RICHER_MODELS);
    let valid: &'static [&'static str] = Box::leak(valid.into_boxed_slice());
    fuzz("format", inputs(valid), |text| {
        let keyword = if text.trim_start().starts_with("AUDIT") {
            "AUDIT"
        } else {
            "MODEL"
        };
        let file = SourceFile::new("models/m.sql", text.as_str());
        match lake::format::format_file(&file, keyword) {
            Ok((formatted, _)) => {
                let again = lake::format::format_file(
                    &SourceFile::new("models/m.sql", formatted.as_str()),
                    keyword,
                );
                match again {
                    Ok((twice, _)) => {
                        prop_assert_eq!(&twice, &formatted, "formatting is not idempotent")
                    }
                    Err(error) => prop_assert!(
                        false,
                        "the formatter's output does not parse: {}",
                        error.message
                    ),
                }
                Ok(())
            }
            Err(error) => located_inside(&error, text),
        }
    });
}

#[test]
fn whole_projects_with_a_mutated_file_load_or_fail_located() {
    let root = tempfile::tempdir().expect("temp dir");
    let project = root.path();
    for (path, text) in [
        ("config.yaml", CONFIG),
        ("models/full_model.sql", FULL_MODEL),
        ("models/incremental_model.sql", INCREMENTAL_MODEL),
        ("models/seed_model.sql", SEED_MODEL),
        ("audits/assert_positive_order_ids.sql", AUDIT),
        ("macros/demo_macros.sql", MACROS),
        (
            "seeds/seed_data.csv",
            include_str!("../../project-template/seeds/seed_data.csv"),
        ),
    ] {
        let file = project.join(path);
        std::fs::create_dir_all(file.parent().expect("a folder")).expect("folder");
        std::fs::write(file, text).expect("write");
    }
    const FILES: &[(&str, &str)] = &[
        ("models/full_model.sql", FULL_MODEL),
        ("models/incremental_model.sql", INCREMENTAL_MODEL),
        ("macros/demo_macros.sql", MACROS),
        ("audits/assert_positive_order_ids.sql", AUDIT),
        ("config.yaml", CONFIG),
    ];
    let strategy = (0..FILES.len(), prop::collection::vec(mutation(), 1..6));
    fuzz("project", strategy, |(which, edits)| {
        let (path, valid) = FILES[*which];
        let text = edits
            .iter()
            .fold(valid.to_string(), |text, edit| apply(&text, edit));
        std::fs::write(project.join(path), &text).expect("write");
        let loaded = lake::project::Project::load(project, None);
        std::fs::write(project.join(path), valid).expect("restore");
        match loaded {
            Ok(_) => Ok(()),
            Err(error) => lake_error_located(&error, &text, path),
        }
    });
}
