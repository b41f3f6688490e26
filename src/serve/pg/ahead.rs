//! Queries started ahead of their Execute: a Describe of a portal runs the portal's query and keeps it here,
//! so the Execute that follows (libpq, psycopg and JDBC send both in one round trip) reads its rows instead of
//! running the query a second time.

use std::sync::Mutex;

use super::lakehouse::Running;

/// The query a connection's last Describe started, with what identifies the portal it ran for.
struct Started {
    portal: String,
    sql: String,
    params: Vec<duckdb::types::Value>,
    running: Running,
}

/// At most one query per connection: a new Describe replaces (and so stops) an earlier one never executed.
#[derive(Default)]
pub struct Ahead(Mutex<Option<Started>>);

impl Ahead {
    pub fn keep(&self, portal: &str, sql: &str, params: &[duckdb::types::Value], running: Running) {
        let started = Started {
            portal: portal.to_string(),
            sql: sql.to_string(),
            params: params.to_vec(),
            running,
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(started);
    }

    /// The query started for this portal with this statement and these parameters, if that is what was kept.
    /// Anything else kept is dropped, which interrupts it: a portal bound again must run again.
    pub fn take(
        &self,
        portal: &str,
        sql: &str,
        params: &[duckdb::types::Value],
    ) -> Option<Running> {
        let started = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        (started.portal == portal && started.sql == sql && started.params == params)
            .then_some(started.running)
    }

    /// Stops a kept query (a Sync or a simple query ends the exchange it belonged to).
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}
