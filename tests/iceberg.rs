//! Iceberg storage: models become Iceberg tables that an independent reader (pyiceberg) opens.

mod common;

use common::{Scratch, built_models, stderr};

const EXEC: &str = "2024-06-01 12:00:00";

/// A Python with pyiceberg, or `None` (which fails the test when CI requires every service).
fn pyiceberg() -> Option<String> {
    let python = std::env::var("LAKE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import pyiceberg.catalog.sql"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var("LAKE_TEST_REQUIRE_SERVICES").is_err(),
        "pyiceberg is required (set LAKE_TEST_PYTHON to a Python that has it)"
    );
    eprintln!("skipping the pyiceberg check: no Python with pyiceberg");
    None
}

/// Reads a table of the project's catalog with pyiceberg: sorted rows, then the snapshot operations, oldest first.
fn read_with_pyiceberg(python: &str, s: &Scratch, prefix: &str) -> String {
    let script = r#"
import sys, json
from pyiceberg.catalog.sql import SqlCatalog
root, prefix = sys.argv[1], sys.argv[2]
cat = SqlCatalog("lake", uri=f"sqlite:///{root}/.lake/catalog.db", warehouse=f"file://{root}/warehouse")
names = [n for (_, n) in cat.list_tables("lake__demo") if n.startswith(prefix)]
assert len(names) == 1, names
t = cat.load_table(("lake__demo", names[0]))
rows = sorted(tuple(r.values()) for r in t.scan().to_arrow().to_pylist())
ops = [s.summary.operation.value for s in sorted(t.snapshots(), key=lambda s: s.sequence_number)]
print(json.dumps({"rows": rows, "operations": ops}, default=str))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&s.project)
        .arg(prefix)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn models_are_iceberg_tables_readable_by_pyiceberg() {
    let s = Scratch::init();
    s.write(
        "config.yaml",
        &(s.read("config.yaml") + "\nstorage:\n  type: iceberg\n"),
    );
    s.apply(EXEC);
    s.assert_demo_results();
    let parquet = walkdir::WalkDir::new(s.project.join("warehouse"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .count();
    assert_eq!(
        parquet, 2,
        "one data file per materialised model (seed, full)"
    );

    // A rebuild replaces the rows in one overwrite snapshot; history is kept.
    let out = s
        .lake()
        .args([
            "run",
            "--ignore-cron",
            "--execution-time",
            "2024-06-02 01:00:00",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(built_models(&out), ["demo.full_model"]);
    assert_eq!(s.csv("select count(*) as n from demo.full_model"), "n\n3\n");

    if let Some(python) = pyiceberg() {
        assert_eq!(
            read_with_pyiceberg(&python, &s, "demo__full_model__"),
            r#"{"rows": [[1, 5], [2, 1], [3, 1]], "operations": ["append", "overwrite"]}"#
        );
        let seed = read_with_pyiceberg(&python, &s, "demo__seed_model__");
        assert!(seed.starts_with(r#"{"rows": [[1, 2, "#), "{seed}");
        assert!(seed.ends_with(r#""operations": ["append"]}"#), "{seed}");
    }
}
