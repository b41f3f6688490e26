//! Iceberg storage (the default): models and environment names are Iceberg tables that independent readers
//! (pyiceberg, DuckDB's iceberg extension) open, in a local warehouse and on a real S3 server.

use crate::common::readers::{
    duckdb_extensions, duckdb_iceberg_scan, pyiceberg, read_catalog, read_project_catalog,
    run_python,
};
use crate::common::s3::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use crate::common::{EXEC, Scratch, built_models, stderr, stdout};
use serde_json::{Value, json};

const NEXT_DAY: &str = "2024-06-02 01:00:00";

fn parquet_files(dir: &std::path::Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .count()
}

/// Prod's FULL model is refreshed by `run`; then a breaking edit of it is built in `dev`.
fn prod_refresh_then_dev_change(s: &Scratch) {
    let out = s
        .lake()
        .args(["run", "--ignore-cron", "--execution-time", NEXT_DAY])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        built_models(&out),
        ["demo.incremental_model", "demo.full_model"]
    );
    let edited = s
        .read("models/full_model.sql")
        .replace("COUNT(DISTINCT id) AS", "COUNT(DISTINCT id) * 10 AS");
    s.write("models/full_model.sql", &edited);
    let out = s
        .lake()
        .args(["plan", "dev", "--auto-apply", "--execution-time", NEXT_DAY])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        built_models(&out),
        ["demo__dev.full_model", "demo__dev.view_model"]
    );
    assert_eq!(
        s.csv("select * from demo__dev.full_model order by item_id"),
        "item_id,num_orders\n1,50\n2,10\n3,10\n"
    );
}

/// The tables pyiceberg found, with the version hashes of physical names replaced by `*`.
fn table_names(tables: &Value) -> Vec<String> {
    let mut names: Vec<String> = tables
        .as_object()
        .expect("an object")
        .keys()
        .map(|k| match k.rsplit_once("__") {
            Some((head, _)) if k.starts_with("lake__") => format!("{head}__*"),
            _ => k.clone(),
        })
        .collect();
    names.sort();
    names
}

/// What every Iceberg reader must see after `prod_refresh_then_dev_change` on the demo project.
fn assert_demo_catalog(tables: &Value) {
    assert_eq!(
        table_names(tables),
        [
            "demo.full_model",
            "demo.incremental_model",
            "demo.seed_model",
            "demo__dev.full_model",
            "lake__demo.demo__full_model__*",
            "lake__demo.demo__full_model__*",
            "lake__demo.demo__incremental_model__*",
            "lake__demo.demo__seed_model__*",
        ],
        "VIEW models are DuckDB views only; every other model and environment name is in the catalog"
    );
    let prod = &tables["demo.full_model"];
    assert_eq!(prod["rows"], json!([[1, 5], [2, 1], [3, 1]]));
    assert_eq!(prod["columns"], json!(["item_id:int", "num_orders:long"]));
    assert_eq!(
        prod["operations"],
        json!(["append", "overwrite"]),
        "a FULL refresh is an overwrite snapshot and the history is kept"
    );
    let dev = &tables["demo__dev.full_model"];
    assert_eq!(dev["rows"], json!([[1, 50], [2, 10], [3, 10]]));
    assert_eq!(dev["operations"], json!(["append"]));
    let seed = &tables["demo.seed_model"];
    assert_eq!(
        seed["columns"],
        json!(["id:int", "item_id:int", "event_date:date"])
    );
    assert_eq!(seed["rows"].as_array().map(Vec::len), Some(7));
    assert_eq!(seed["rows"][0], json!([1, 2, "2020-01-01"]));
    // Environment names share their physical table's metadata file: zero data copied.
    let physical: Vec<&Value> = tables
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("lake__demo.demo__full_model__"))
        .map(|(_, v)| &v["metadata"])
        .collect();
    assert!(physical.contains(&&prod["metadata"]), "{tables}");
    assert!(physical.contains(&&dev["metadata"]), "{tables}");
}

#[test]
fn local_warehouse_is_read_by_pyiceberg_and_duckdb_iceberg() {
    let s = Scratch::init();
    assert!(
        !s.read("config.yaml").contains("storage:"),
        "Iceberg is the default, with no configuration"
    );
    s.apply(EXEC);
    s.assert_demo_results();
    assert_eq!(
        parquet_files(&s.project.join("warehouse")),
        3,
        "one data file per materialised model (seed, incremental, full)"
    );
    prod_refresh_then_dev_change(&s);

    let Some(python) = pyiceberg() else { return };
    let tables = read_project_catalog(&python, &s.project);
    assert_demo_catalog(&tables);

    let Some(extensions) = duckdb_extensions() else {
        return;
    };
    let metadata = tables["demo.full_model"]["metadata"].as_str().unwrap();
    assert_eq!(
        duckdb_iceberg_scan(
            &python,
            &extensions,
            metadata,
            "SELECT count(*), sum(num_orders) FROM t"
        ),
        json!([[3, 7]])
    );
}

/// `physical_properties` (a model's own over `model_defaults`) become the Iceberg table properties other engines
/// read; changing them makes a new version, as SQLMesh's fingerprint does.
#[test]
fn physical_properties_are_iceberg_table_properties() {
    let s = Scratch::init();
    s.write(
        "config.yaml",
        &s.read("config.yaml").replace(
            "model_defaults:\n",
            "model_defaults:\n  physical_properties:\n    write.target-file-size-bytes: 134217728\n    \
             owner_team: data\n",
        ),
    );
    s.write(
        "models/full_model.sql",
        &s.read("models/full_model.sql").replace(
            "  grain item_id,\n",
            "  grain item_id,\n  physical_properties (owner_team = 'analytics', 'retention.days' = 30),\n",
        ),
    );
    s.apply(EXEC);
    s.assert_demo_results();
    let Some(python) = pyiceberg() else { return };
    let tables = read_project_catalog(&python, &s.project);
    let full = &tables["demo.full_model"]["properties"];
    assert_eq!(full["owner_team"], "analytics", "{full}");
    assert_eq!(full["retention.days"], "30", "{full}");
    assert_eq!(full["write.target-file-size-bytes"], "134217728", "{full}");
    let incremental = &tables["demo.incremental_model"]["properties"];
    assert_eq!(incremental["owner_team"], "data", "{incremental}");
    assert!(incremental.get("retention.days").is_none(), "{incremental}");

    s.write(
        "models/full_model.sql",
        &s.read("models/full_model.sql")
            .replace("'retention.days' = 30", "'retention.days' = 60"),
    );
    let out = s.apply(EXEC);
    assert!(stdout(&out).contains("demo.full_model"), "{}", stdout(&out));
    let tables = read_project_catalog(&python, &s.project);
    assert_eq!(
        tables["demo.full_model"]["properties"]["retention.days"],
        "60"
    );
}

/// pyiceberg's view of one table of the project's catalog: spec, files' partitions, a filtered scan.
fn partition_scan(python: &str, s: &Scratch, table: &str, row_filter: &str) -> Value {
    let root = s.project.display();
    let out = run_python(
        python,
        "partition_scan.py",
        &[
            &format!("sqlite:///{root}/.lake/catalog.db"),
            &format!("file://{root}/warehouse"),
            table,
            row_filter,
        ],
    );
    serde_json::from_str(&out).expect("partition_scan.py prints JSON")
}

/// `partitioned_by` becomes the Iceberg table's partition spec: each partition's rows are in their own data
/// files with their partition values, so an independent reader (pyiceberg) prunes files on a filter. Columns
/// sorted into partitions (identity, day) and hashed ones (bucket) are both written.
#[test]
fn partitioned_by_is_the_iceberg_partition_spec_and_readers_prune_files() {
    let s = Scratch::init();
    s.write(
        "models/events_by_day.sql",
        "MODEL (name demo.events_by_day, kind FULL, partitioned_by (day(event_date), item_id));\n\
         SELECT id, item_id, event_date FROM demo.incremental_model\n",
    );
    s.write(
        "models/events_by_bucket.sql",
        "MODEL (name demo.events_by_bucket, kind FULL, partitioned_by [bucket(2, id)]);\n\
         SELECT id, item_id, event_date FROM demo.incremental_model\n",
    );
    // NULL partition values, and identity and bucket terms together (rows scattered: one file per partition).
    s.write(
        "models/events_with_gaps.sql",
        "MODEL (name demo.events_with_gaps, kind FULL, partitioned_by (item_id, bucket(2, id)));\n\
         SELECT id, CASE WHEN id % 2 = 0 THEN NULL ELSE item_id END AS item_id FROM demo.incremental_model\n",
    );
    let out = s.apply(EXEC);
    assert!(out.status.success(), "{}", stderr(&out));
    s.assert_demo_results();
    assert_eq!(
        s.csv("SELECT count(*) AS n, count(item_id) AS items FROM demo.events_with_gaps"),
        "n,items\n7,4\n"
    );
    assert_eq!(
        s.csv("SELECT count(*) AS n, sum(id) AS ids FROM demo.events_by_day"),
        "n,ids\n7,28\n"
    );
    assert_eq!(
        s.csv("SELECT count(*) AS n, sum(id) AS ids FROM demo.events_by_bucket"),
        "n,ids\n7,28\n"
    );
    let Some(python) = pyiceberg() else { return };
    let by_day = partition_scan(
        &python,
        &s,
        "demo.events_by_day",
        "event_date == '2020-01-01'",
    );
    assert_eq!(
        by_day["spec"],
        json!(["event_date_day:day", "item_id:identity"]),
        "{by_day}"
    );
    // One file per (day, item) pair of the seven rows; two of them on 2020-01-01.
    assert_eq!(by_day["files"].as_array().unwrap().len(), 7, "{by_day}");
    assert_eq!(by_day["rows"], 7);
    assert_eq!(by_day["filtered_files"], 2, "{by_day}");
    assert_eq!(by_day["filtered_rows"], 2, "{by_day}");

    let gaps = partition_scan(&python, &s, "demo.events_with_gaps", "item_id IS NULL");
    assert_eq!(gaps["rows"], 7, "{gaps}");
    assert_eq!(gaps["filtered_rows"], 3, "{gaps}");

    let by_bucket = partition_scan(&python, &s, "demo.events_by_bucket", "id == 3");
    assert_eq!(
        by_bucket["spec"],
        json!(["id_bucket_2:bucket[2]"]),
        "{by_bucket}"
    );
    let files = by_bucket["files"].as_array().unwrap().len();
    assert!((1..=2).contains(&files), "{by_bucket}");
    assert_eq!(by_bucket["rows"], 7);
    assert_eq!(by_bucket["filtered_rows"], 1, "{by_bucket}");
    assert!(
        by_bucket["filtered_files"].as_u64().unwrap() <= 1,
        "{by_bucket}"
    );
}

/// A term lake cannot write as a partition field is a located load error; a column the query lacks is an
/// error of the build that names the columns it has, and nothing is committed.
#[test]
fn partitioned_by_terms_are_checked() {
    let s = Scratch::init();
    // The message of a plan that fails with `partitioned_by (terms)` on a model reading the demo's events.
    let failed_apply = |terms: &str| {
        s.write(
            "models/events_by_day.sql",
            &format!(
                "MODEL (name demo.events_by_day, kind FULL, partitioned_by ({terms}));\n\
                 SELECT id, item_id, event_date FROM demo.incremental_model\n"
            ),
        );
        let out = s
            .lake()
            .args(["plan", "--auto-apply", "--execution-time", EXEC])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "partitioned_by ({terms}) was accepted"
        );
        crate::common::stderr_words(&out)
    };
    let message = failed_apply("item_id + 1");
    assert!(
        message.contains("models/events_by_day.sql:1:")
            && message
                .contains("cannot write this `partitioned_by` term as an Iceberg partition field")
            && message.contains("bucket(16, id)"),
        "{message}"
    );
    let message = failed_apply("day(evnt_date)");
    assert!(
        message.contains("names `evnt_date`, which is not a column of the model's query")
            && message.contains("its columns: id, item_id, event_date"),
        "{message}"
    );
    let out = s
        .lake()
        .args(["fetchdf", "SELECT * FROM demo.events_by_day"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the failed model has no name in prod"
    );
}

#[test]
fn s3_warehouse_on_a_real_s3_server() {
    let Some(extensions) = duckdb_extensions() else {
        return;
    };
    let server = S3Server::start(&["lake"]);
    let mut s = Scratch::init();
    s.write(
        "config.yaml",
        &format!(
            "{}\nstorage:\n  warehouse: s3://lake/warehouse\n  s3:\n    endpoint: {}\n    region: {REGION}\n",
            s.read("config.yaml"),
            server.endpoint
        ),
    );
    // Credentials come from the standard AWS variables here; config.yaml can also use env_var().
    s.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        (
            "LAKE_DUCKDB_EXTENSION_DIRECTORY".into(),
            extensions.display().to_string(),
        ),
    ];
    let first = s.apply(EXEC);
    s.assert_demo_results();
    assert!(
        !s.project.join("warehouse").exists(),
        "nothing is written to a local warehouse"
    );
    let objects = server.objects("lake");
    let data: Vec<_> = objects.iter().filter(|o| o.ends_with(".parquet")).collect();
    assert_eq!(data.len(), 3, "{objects:?}");
    assert!(
        data.iter().all(|o| o.starts_with("warehouse/lake__demo/")),
        "{objects:?}"
    );
    prod_refresh_then_dev_change(&s);

    // The secret appears in no output and in no file lake wrote.
    assert!(!stdout(&first).contains(SECRET_KEY) && !stderr(&first).contains(SECRET_KEY));
    for entry in walkdir::WalkDir::new(s.project.join(".lake"))
        .into_iter()
        .chain(walkdir::WalkDir::new(s.project.join("db.db")))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
    {
        let bytes = std::fs::read(entry.path()).unwrap();
        assert!(
            !bytes
                .windows(SECRET_KEY.len())
                .any(|w| w == SECRET_KEY.as_bytes()),
            "the secret was written to {}",
            entry.path().display()
        );
    }

    // Wrong credentials: the S3 server refuses the signature; lake says so without echoing the secret.
    s.env[1].1 = "not-the-secret".into();
    let out = s
        .lake()
        .args(["fetchdf", "select count(*) from demo.full_model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("not-the-secret"), "{}", stderr(&out));

    let Some(python) = pyiceberg() else { return };
    let root = s.project.display().to_string();
    let tables = read_catalog(
        &python,
        &format!("sqlite:///{root}/.lake/catalog.db"),
        "s3://lake/warehouse",
        &json!({
            "s3.endpoint": server.endpoint,
            "s3.access-key-id": ACCESS_KEY,
            "s3.secret-access-key": SECRET_KEY,
            "s3.region": REGION,
        }),
    );
    assert_demo_catalog(&tables);
}

/// The production shape: a PostgreSQL catalog and an S3 warehouse.
#[test]
fn postgres_catalog_with_s3_warehouse() {
    let Some(catalog_uri) = crate::common::pg::fresh_database() else {
        return;
    };
    let Some(extensions) = duckdb_extensions() else {
        return;
    };
    let server = S3Server::start(&["lake"]);
    let mut s = Scratch::init();
    s.write(
        "config.yaml",
        &format!(
            "{}\nstorage:\n  warehouse: s3://lake/prod\n  s3:\n    endpoint: {}\n    access_key_id: \"{{{{ env_var('TEST_S3_KEY') }}}}\"\n    secret_access_key: \"{{{{ env_var('TEST_S3_SECRET') }}}}\"\n  catalog:\n    type: postgres\n    uri: \"{{{{ env_var('TEST_CATALOG_URI') }}}}\"\n",
            s.read("config.yaml"),
            server.endpoint
        ),
    );
    s.env = vec![
        ("TEST_S3_KEY".into(), ACCESS_KEY.into()),
        ("TEST_S3_SECRET".into(), SECRET_KEY.into()),
        ("TEST_CATALOG_URI".into(), catalog_uri.clone()),
        (
            "LAKE_DUCKDB_EXTENSION_DIRECTORY".into(),
            extensions.display().to_string(),
        ),
    ];
    s.apply(EXEC);
    s.assert_demo_results();
    assert!(
        !s.project.join(".lake/catalog.db").exists(),
        "the catalog lives in PostgreSQL"
    );
    prod_refresh_then_dev_change(&s);

    let Some(python) = pyiceberg() else { return };
    let read = || {
        read_catalog(
            &python,
            &catalog_uri.replacen("postgres://", "postgresql+psycopg2://", 1),
            "s3://lake/prod",
            &json!({
                "s3.endpoint": server.endpoint,
                "s3.access-key-id": ACCESS_KEY,
                "s3.secret-access-key": SECRET_KEY,
                "s3.region": REGION,
            }),
        )
    };
    let tables = read();
    assert_demo_catalog(&tables);
    // The janitor drops dev's tables and their names from the PostgreSQL catalog.
    for args in [&["invalidate", "dev"][..], &["janitor", "--ignore-ttl"][..]] {
        let out = s.lake().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let tables = read();
    assert!(tables.get("demo__dev.full_model").is_none(), "{tables}");
    s.assert_demo_results();
}
