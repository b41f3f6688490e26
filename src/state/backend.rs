//! Which state store a project uses, in one place: opening it, upgrading it, locking an environment for an
//! apply, and naming it for `lake info`.

use std::path::PathBuf;

use super::StateStore;
use super::postgres::{EnvironmentLock, PostgresState};
use super::sqlite::{self, SqliteState, StateLock};
use super::timed::Timed;
use crate::config::StateChoice;
use crate::error::Result;

/// The state store config.yaml selects: SQLite in the project's `.lake/` folder, or PostgreSQL.
pub struct Backend<'a> {
    choice: &'a StateChoice,
    /// The project's `.lake/` folder (the embedded store and its lock file live there).
    state_dir: PathBuf,
}

/// A held apply lock of either kind; released when dropped.
pub enum Guard {
    File(#[allow(dead_code)] StateLock),
    Advisory(#[allow(dead_code)] EnvironmentLock),
}

impl<'a> Backend<'a> {
    pub fn new(choice: &'a StateChoice, state_dir: PathBuf) -> Self {
        Backend { choice, state_dir }
    }

    pub fn open(&self) -> Result<Box<dyn StateStore>> {
        let _timer = crate::profile::time(crate::profile::Phase::StateRead);
        let store: Box<dyn StateStore> = match self.choice {
            StateChoice::Embedded => Box::new(SqliteState::open(&self.state_dir)?),
            StateChoice::Postgres { uri, schema } => Box::new(PostgresState::open(uri, schema)?),
        };
        Ok(Box::new(Timed(store)))
    }

    /// Serialises applies and runs: a file lock in the project for the embedded state; with PostgreSQL, an
    /// advisory lock per environment (other environments proceed in parallel).
    pub fn lock(&self, environment: &str, on_wait: impl FnOnce()) -> Result<Guard> {
        Ok(match self.choice {
            StateChoice::Embedded => Guard::File(sqlite::lock(&self.state_dir, on_wait)?),
            StateChoice::Postgres { uri, schema } => Guard::Advisory(
                PostgresState::open(uri, schema)?.lock_environment(environment, on_wait)?,
            ),
        })
    }

    /// The lock of `name` for a process that already holds an environment's lock: none more with the embedded
    /// store, whose one lock file covers every environment (taking it again would wait on ourselves).
    pub fn lock_within(&self, name: &str) -> Result<Option<Guard>> {
        match self.choice {
            StateChoice::Embedded => Ok(None),
            StateChoice::Postgres { .. } => self.lock(name, || {}).map(Some),
        }
    }

    /// Upgrades state written by an older lake to this lake's schema, in one transaction.
    pub fn migrate(&self) -> Result<u32> {
        match self.choice {
            StateChoice::Embedded => {
                let _lock = sqlite::lock(&self.state_dir, || {})?;
                SqliteState::open_migrating(&self.state_dir)?;
            }
            StateChoice::Postgres { uri, schema } => {
                PostgresState::open_migrating(uri, schema)?;
            }
        }
        Ok(super::SCHEMA_VERSION)
    }

    /// Puts the state back as the last `lake migrate` found it (SQLMesh's `rollback`); the schema version it
    /// is back at, which an older lake reads.
    pub fn rollback(&self) -> Result<u32> {
        match self.choice {
            StateChoice::Embedded => {
                let _lock = sqlite::lock(&self.state_dir, || {})?;
                sqlite::rollback(&self.state_dir)
            }
            StateChoice::Postgres { uri, schema } => PostgresState::rollback(uri, schema),
        }
    }

    /// Where state is kept, with no credentials.
    pub fn describe(&self) -> String {
        match self.choice {
            StateChoice::Embedded => self.state_dir.join("state.db").display().to_string(),
            StateChoice::Postgres { schema, .. } => format!("PostgreSQL, schema {schema}"),
        }
    }
}
