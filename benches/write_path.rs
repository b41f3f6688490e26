//! Write-path benchmark: lake's Iceberg write (DuckDB query → Arrow batches → Parquet data files → snapshot
//! commit) against DuckDB's own `COPY … TO 'x.parquet'` of the same query, in one run on a local warehouse.
//!
//! `cargo bench --bench write_path [-- ROWS]` (default 10 million rows); prints rows/s for both and the ratio.

use std::time::Instant;

use lake::config::{CatalogSettings, EngineConnection, IcebergSettings, Warehouse};
use lake::engine::Engine;
use lake::snapshot::PhysicalTable;
use lake::storage::Storage;
use lake::storage::duckdb_file::DuckDbStorage;
use lake::storage::iceberg::IcebergStorage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(&EngineConnection::DuckDb {
        database: Some(dir.path().join("bench.db")),
        concurrent_tasks: 1,
        extensions: vec![],
    })?;
    let session = engine.session()?;
    let query = format!(
        "SELECT range AS id, range * 2 AS amount, 'row-' || range AS label, \
         DATE '2024-01-01' + (range % 365)::INTEGER AS day FROM range({rows})"
    );

    let copy_target = dir.path().join("copy.parquet");
    let started = Instant::now();
    session.execute(
        &format!(
            "COPY ({query}) TO '{}' (FORMAT parquet, COMPRESSION zstd)",
            copy_target.display()
        ),
        || "DuckDB COPY".into(),
    )?;
    let copy_seconds = started.elapsed().as_secs_f64();

    let storage = IcebergStorage::open(
        &IcebergSettings {
            warehouse: Warehouse::Local(dir.path().join("warehouse")),
            catalog: CatalogSettings::Sqlite(dir.path().join("catalog.db")),
            catalog_name: "lake".into(),
            duckdb_extension_directory: None,
        },
        DuckDbStorage::new("bench"),
    )?;
    storage.ensure_schema(&session, "lake__bench")?;
    let table = PhysicalTable {
        schema: "lake__bench".into(),
        table: "bench__write__1".into(),
    };
    let started = Instant::now();
    let stats = storage.replace_all(&session, &table, &query)?;
    let lake_seconds = started.elapsed().as_secs_f64();
    assert_eq!(stats.rows, Some(rows), "every row was written");

    let size = |path: &std::path::Path| -> u64 {
        walkdir::WalkDir::new(path)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let rate = |seconds: f64| rows as f64 / seconds / 1e6;
    println!("rows: {rows}");
    println!(
        "duckdb COPY TO parquet (zstd): {copy_seconds:.2} s, {:.2} M rows/s, {:.0} MiB",
        rate(copy_seconds),
        mib(size(&copy_target))
    );
    println!(
        "lake Iceberg replace_all:      {lake_seconds:.2} s, {:.2} M rows/s, {:.0} MiB",
        rate(lake_seconds),
        mib(size(&dir.path().join("warehouse")))
    );
    println!(
        "lake / duckdb throughput ratio: {:.2}",
        copy_seconds / lake_seconds
    );
    Ok(())
}
