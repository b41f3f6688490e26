//! PostgreSQL for catalog tests: a fresh database per test on the cluster `scripts/test.sh` starts.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection;

use super::readers::services_required;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The URI of a new, empty database (so tests running at once never share a catalog), or `None` when no
/// server is configured and CI does not require one.
pub fn fresh_database() -> Option<String> {
    let Ok(admin) = std::env::var("LAKE_TEST_PG_URI") else {
        assert!(
            !services_required(),
            "PostgreSQL is required: run the tests through scripts/test.sh, or set LAKE_TEST_PG_URI"
        );
        eprintln!("skipping: no PostgreSQL (LAKE_TEST_PG_URI)");
        return None;
    };
    let name = format!(
        "lake_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("connect to LAKE_TEST_PG_URI");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create a test database");
    });
    let (server, _) = admin.rsplit_once('/').expect("a URI ending in /database");
    Some(format!("{server}/{name}"))
}

/// `type: postgres` and the parts of `uri` (`postgres://user@host:port/database`) as config.yaml keys, each
/// line starting with `indent`.
pub fn connection_yaml(uri: &str, indent: &str) -> String {
    let rest = uri.strip_prefix("postgres://").expect("a postgres URI");
    let (user, rest) = rest.split_once('@').expect("a user");
    let (host_port, database) = rest.split_once('/').expect("a database");
    let (host, port) = host_port.split_once(':').expect("a port");
    [
        "type: postgres".to_string(),
        format!("host: {host}"),
        format!("port: {port}"),
        format!("user: {user}"),
        format!("database: {database}"),
    ]
    .iter()
    .map(|line| format!("{indent}{line}\n"))
    .collect()
}
