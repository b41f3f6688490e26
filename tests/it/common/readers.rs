//! Independent Iceberg readers for interop tests: pyiceberg and DuckDB's iceberg extension, run in Python.

use std::path::{Path, PathBuf};

/// Whether CI demands every external component (a missing one fails the test instead of skipping it).
pub fn services_required() -> bool {
    std::env::var("LAKE_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The test Python (`LAKE_TEST_PYTHON`, else `python3`) if `imports` run in it; otherwise `None`, or a failure
/// naming `what` when CI requires every component.
fn python_with(imports: &str, what: &str) -> Option<String> {
    let python = std::env::var("LAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", imports])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    assert!(
        !services_required(),
        "{what} required: set LAKE_TEST_PYTHON to a Python that has it (.ci/run makes one)"
    );
    eprintln!("skipping checks that need {what}: not in the test Python");
    None
}

/// A Python with pyiceberg and duckdb, or `None` when it is missing and CI does not require it.
pub fn pyiceberg() -> Option<String> {
    python_with(
        "import pyiceberg.catalog.sql, duckdb",
        "pyiceberg and duckdb are",
    )
}

/// A Python whose `pty` module works (any CPython on Linux), for driving lake at a terminal.
pub fn python_with_pty() -> Option<String> {
    python_with("import pty, select", "Python's pty module is")
}

/// A Python with Playwright, when Debian's Chromium is installed too, for testing pages in a real browser.
pub fn browser() -> Option<String> {
    if !std::path::Path::new("/usr/bin/chromium").exists() {
        assert!(
            !services_required(),
            "Chromium required at /usr/bin/chromium (.ci/run installs Debian's chromium)"
        );
        eprintln!("skipping checks in a browser: /usr/bin/chromium is missing");
        return None;
    }
    python_with("import playwright.sync_api", "Playwright is")
}

/// The folder holding DuckDB 1.5.5 extension binaries (`LAKE_TEST_DUCKDB_EXTENSIONS`), or `None` when missing
/// and not required.
pub fn duckdb_extensions() -> Option<PathBuf> {
    let dir = std::env::var("LAKE_TEST_DUCKDB_EXTENSIONS")
        .ok()
        .map(PathBuf::from);
    let has_httpfs = dir.as_ref().is_some_and(|d| {
        walkdir::WalkDir::new(d)
            .into_iter()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name() == "httpfs.duckdb_extension")
    });
    if has_httpfs {
        return dir;
    }
    assert!(
        !services_required(),
        "DuckDB extensions are required: set LAKE_TEST_DUCKDB_EXTENSIONS to a folder with httpfs.duckdb_extension (pip install duckdb-extension-httpfs==1.5.5)"
    );
    eprintln!("skipping: no DuckDB httpfs extension (LAKE_TEST_DUCKDB_EXTENSIONS)");
    None
}

pub fn support(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/support")
        .join(script)
}

pub fn run_python(python: &str, script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(python)
        .arg(support(script))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

/// Every table of the catalog as pyiceberg reads it: `{"ns.table": {rows, columns, operations, metadata}}`.
pub fn read_catalog(
    python: &str,
    uri: &str,
    warehouse: &str,
    properties: &serde_json::Value,
) -> serde_json::Value {
    let out = run_python(
        python,
        "read_catalog.py",
        &[uri, warehouse, &properties.to_string()],
    );
    serde_json::from_str(&out).expect("read_catalog.py prints JSON")
}

/// Every table of a project's default catalog and warehouse (`.lake/catalog.db`, `warehouse/`), as pyiceberg
/// reads them.
pub fn read_project_catalog(python: &str, project: &Path) -> serde_json::Value {
    let root = project.display();
    read_catalog(
        python,
        &format!("sqlite:///{root}/.lake/catalog.db"),
        &format!("file://{root}/warehouse"),
        &serde_json::json!({}),
    )
}

/// Runs `sql` (over a view `t`) on the Iceberg table whose metadata file is `metadata`, with DuckDB's iceberg
/// extension.
pub fn duckdb_iceberg_scan(
    python: &str,
    extensions: &Path,
    metadata: &str,
    sql: &str,
) -> serde_json::Value {
    let out = run_python(
        python,
        "duckdb_iceberg_scan.py",
        &[&extensions.to_string_lossy(), metadata, sql],
    );
    serde_json::from_str(&out).expect("duckdb_iceberg_scan.py prints JSON")
}

/// A Python with Sail (`pysail==0.7.2`) and the Spark Connect client (`pyspark-client==4.2.0`), or `None` when
/// it is missing and CI does not require it.
pub fn pysail() -> Option<String> {
    python_with(
        "import pysail; from pyspark.sql import SparkSession",
        "Sail (pysail==0.7.2 with pyspark-client==4.2.0) is",
    )
}

/// A Python with psycopg 3 and SQLAlchemy, or `None` when missing and CI does not require it.
pub fn psycopg() -> Option<String> {
    python_with("import psycopg, sqlalchemy", "psycopg 3 and SQLAlchemy are")
}
