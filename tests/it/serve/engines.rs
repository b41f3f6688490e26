//! More engines through `lake serve`: Sail (a Spark Connect engine) reading prod and a dev environment and
//! writing tables of its own, and eight readers loading tables while `lake plan` commits.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Server, prod_and_dev};
use crate::common::readers::{pyiceberg, pysail, run_python};
use crate::common::{EXEC, Scratch};

#[test]
fn sail_reads_prod_and_dev_and_writes_its_own_tables_through_the_rest_catalog() {
    let Some(python) = pysail() else {
        return;
    };
    let s = prod_and_dev();
    let server = Server::start_with(&s, &["--allow-writes"]);
    let (_, prod) = server.request("GET", "/v1/namespaces/demo/tables/full_model", None);
    let warehouse = prod["metadata"]["location"]
        .as_str()
        .and_then(|l| l.rsplit_once("/lake__demo/"))
        .map(|(w, _)| w.to_string())
        .expect("versions live in lake__demo");
    let workdir = s.dir.path().join("sail");
    std::fs::create_dir_all(&workdir).expect("sail's working folder");
    let statements = [
        "SELECT * FROM lake.demo.full_model ORDER BY item_id".to_string(),
        "SELECT * FROM lake.demo__dev.full_model ORDER BY item_id".to_string(),
        "SELECT count(*) FROM lake.demo.incremental_model".to_string(),
        // Sail's own tables, created and committed through lake serve (Sail needs explicit locations).
        "CREATE DATABASE lake.ext".to_string(),
        format!(
            "CREATE TABLE lake.ext.t (id BIGINT, name STRING) USING iceberg LOCATION '{warehouse}/ext/t'"
        ),
        "INSERT INTO lake.ext.t VALUES (1, 'a'), (2, 'b')".to_string(),
        "INSERT INTO lake.ext.t SELECT item_id, 'prod' FROM lake.demo.full_model".to_string(),
        format!(
            "CREATE TABLE lake.ext.c USING iceberg LOCATION '{warehouse}/ext/c' AS SELECT * FROM lake.demo__dev.full_model"
        ),
        "SELECT count(*) FROM lake.ext.t".to_string(),
    ];
    let mut args = vec![server.uri(), workdir.to_string_lossy().into_owned()];
    args.extend(statements.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_python(&python, "sail_sql.py", &args);
    let results: Value = serde_json::from_str(&out).expect("sail_sql.py prints JSON");
    assert_eq!(
        results[0],
        json!({"columns": ["item_id", "num_orders"], "rows": [[1, 5], [2, 1], [3, 1]]})
    );
    assert_eq!(
        results[1],
        json!({"columns": ["item_id", "one", "num_orders"], "rows": [[1, 1, 5], [2, 1, 1], [3, 1, 1]]})
    );
    let incremental = s.csv("select count(*) as n from demo.incremental_model");
    assert_eq!(
        results[2]["rows"][0][0].to_string(),
        incremental.trim_start_matches("n\n").trim(),
        "{results}"
    );
    assert_eq!(results[8]["rows"], json!([[5]]), "{results}");
    // What Sail wrote is in lake's catalog for every other client, and lake's own tables are untouched.
    let (status, tables) = server.request("GET", "/v1/namespaces/ext/tables", None);
    assert_eq!(status, 200, "{tables}");
    assert_eq!(
        tables["identifiers"],
        json!([{"namespace": ["ext"], "name": "c"}, {"namespace": ["ext"], "name": "t"}])
    );
    let (_, table) = server.request("GET", "/v1/namespaces/ext/tables/t", None);
    assert_eq!(
        table["metadata"]["snapshots"].as_array().map(Vec::len),
        Some(2),
        "{table}"
    );
    s.assert_demo_results();
}

#[test]
fn eight_readers_see_whole_snapshots_while_plans_commit() {
    let Some(python) = pyiceberg() else {
        return;
    };
    let s = Scratch::init();
    s.apply(EXEC);
    let server = Server::start(&s);
    let stop = s.dir.path().join("stop");
    let hammer = std::process::Command::new(&python)
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/it/support/rest_hammer.py"),
        )
        .arg(server.uri())
        .arg(&stop)
        .args(["demo.full_model", "demo.incremental_model"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rest_hammer.py");
    // The plan starts once every reader has loaded both tables.
    let mut hammer = hammer;
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(hammer.stderr.as_mut().expect("piped stderr")),
        &mut ready,
    )
    .expect("rest_hammer.py's ready line");
    assert_eq!(ready.trim(), "ready", "rest_hammer.py did not start");

    // A breaking change: prod's name moves to a new version with one row fewer; then a later run appends the
    // incremental model's new days in place (a commit to the table prod already reads).
    let model = s.read("models/full_model.sql").replace(
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE\n  item_id <> 3",
    );
    assert!(
        model.contains("item_id <> 3"),
        "the demo's full_model changed shape"
    );
    s.write("models/full_model.sql", &model);
    s.apply(EXEC);
    let run = s
        .lake()
        .args(["run", "--execution-time", "2024-06-20 12:00:00"])
        .output()
        .expect("run lake");
    assert!(run.status.success(), "{}", crate::common::stderr(&run));
    // Give every reader time to load the new state before it stops.
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&stop, "").expect("the stop file");
    let out = hammer.wait_with_output().expect("rest_hammer.py's output");
    assert!(
        out.status.success(),
        "rest_hammer.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("rest_hammer.py prints JSON");
    assert_eq!(
        seen["errors"],
        json!([]),
        "every load and scan succeeds: {seen}"
    );
    // Each read saw a whole snapshot: the old version's 3 rows or the new one's 2, never a mix or nothing.
    let full = seen["counts"]["demo.full_model"]
        .as_array()
        .expect("counts");
    assert!(
        full.iter().all(|n| n == 3 || n == 2) && full.contains(&json!(2)),
        "{seen}"
    );
    let incremental = s.csv("select count(*) as n from demo.incremental_model");
    assert_eq!(
        seen["counts"]["demo.incremental_model"],
        json!([incremental
            .trim_start_matches("n\n")
            .trim()
            .parse::<u64>()
            .expect("a count")]),
        "{seen}"
    );
    assert!(
        seen["locations"]["demo.full_model"].as_u64() >= Some(3),
        "readers saw the plan's and the run's commits: {seen}"
    );
}
