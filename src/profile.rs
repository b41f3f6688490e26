//! Where a command's time goes: phase timers, summed over threads, that `--profile` prints.
//!
//! A timer counts its own time only: the time of timers started inside it (on the same thread) goes to
//! their phases, so the phases of one thread add up to its wall time and nothing is counted twice.
//! Disabled (the default), a timer is one relaxed atomic load.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A kind of work a command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading config.yaml and models/ into a typed, analysed project.
    LoadProject,
    /// Reading snapshots, environments and intervals from state.
    StateRead,
    /// Opening DuckDB (its file, extensions, storage credentials) and bringing it in line with state.
    OpenEngine,
    /// Fingerprints, the diff against the environment, backfill windows.
    Plan,
    /// Rendering macros and Jinja into the SQL to execute.
    Render,
    /// DuckDB running model queries and pre/post statements.
    Query,
    /// Encoding query rows as Parquet data files.
    Parquet,
    /// Writing Iceberg manifests, manifest lists and table metadata.
    IcebergMetadata,
    /// Catalog reads (which metadata file is current) and reading table metadata not in memory.
    CatalogRead,
    /// Catalog writes: creating tables, the compare-and-swap of each commit.
    CatalogCommit,
    /// (Re)creating DuckDB views of physical tables.
    Views,
    /// Pointing an environment's names (catalog and DuckDB views) at physical tables.
    EnvironmentViews,
    /// Running audits.
    Audits,
    /// Recording snapshots, intervals and promotions in state.
    StateWrite,
    /// The rest of building models: what no other phase names (macro contexts, bookkeeping).
    Build,
    /// The linter and unit tests every plan runs first.
    Checks,
    /// The main thread waiting for worker threads to build models (their time is in the other phases).
    WaitingForWorkers,
    /// The rest of the command, on the main thread: opening storage and the catalog, printing, the remainder.
    Command,
}

impl Phase {
    /// Every phase, in the order a report lists them.
    pub const ALL: [Phase; 18] = [
        Phase::LoadProject,
        Phase::Checks,
        Phase::StateRead,
        Phase::Plan,
        Phase::OpenEngine,
        Phase::Render,
        Phase::Query,
        Phase::Parquet,
        Phase::IcebergMetadata,
        Phase::CatalogRead,
        Phase::CatalogCommit,
        Phase::Views,
        Phase::EnvironmentViews,
        Phase::Audits,
        Phase::StateWrite,
        Phase::Build,
        Phase::WaitingForWorkers,
        Phase::Command,
    ];

    /// How a report names the phase.
    pub fn label(self) -> &'static str {
        match self {
            Phase::LoadProject => "load project",
            Phase::StateRead => "state reads",
            Phase::Plan => "plan (fingerprints, diff)",
            Phase::OpenEngine => "open DuckDB, sync with state",
            Phase::Render => "render SQL",
            Phase::Query => "DuckDB queries",
            Phase::Parquet => "Parquet encoding",
            Phase::IcebergMetadata => "Iceberg metadata writes",
            Phase::CatalogRead => "catalog reads",
            Phase::CatalogCommit => "catalog commits",
            Phase::Views => "DuckDB views of tables",
            Phase::EnvironmentViews => "environment names",
            Phase::Audits => "audits",
            Phase::StateWrite => "state writes",
            Phase::Build => "other build work",
            Phase::Checks => "lint and unit tests",
            Phase::WaitingForWorkers => "main thread waiting for workers",
            Phase::Command => "rest of the command",
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; Phase::ALL.len()] = [const { AtomicU64::new(0) }; Phase::ALL.len()];
static COUNTS: [AtomicU64; Phase::ALL.len()] = [const { AtomicU64::new(0) }; Phase::ALL.len()];

thread_local! {
    /// Time spent in timers nested inside the innermost running one, on this thread.
    static NESTED: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Starts recording (`--profile`).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Times `phase` until the returned guard drops.
#[must_use = "the phase is timed until this guard drops"]
pub fn time(phase: Phase) -> Timer {
    let running = ENABLED.load(Ordering::Relaxed).then(|| Running {
        started: Instant::now(),
        outer_nested: NESTED.with(|n| n.replace(Duration::ZERO)),
    });
    Timer { phase, running }
}

/// Runs `work` timed as `phase`.
pub fn timed<T>(phase: Phase, work: impl FnOnce() -> T) -> T {
    let _timer = time(phase);
    work()
}

/// A running phase timer; see [`time`].
pub struct Timer {
    phase: Phase,
    running: Option<Running>,
}

struct Running {
    started: Instant,
    /// The enclosing timer's nested time so far, restored (plus this timer's time) when this one stops.
    outer_nested: Duration,
}

impl Drop for Timer {
    fn drop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        let elapsed = running.started.elapsed();
        let nested = NESTED.with(|n| n.replace(running.outer_nested + elapsed));
        let own = elapsed.saturating_sub(nested);
        let slot = self.phase as usize;
        NANOS[slot].fetch_add(own.as_nanos() as u64, Ordering::Relaxed);
        COUNTS[slot].fetch_add(1, Ordering::Relaxed);
    }
}

/// One phase's total over the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseTotal {
    pub phase: Phase,
    /// Own time, summed over threads.
    pub time: Duration,
    /// How many times the phase was entered.
    pub count: u64,
}

/// The phases entered so far, in [`Phase::ALL`] order.
pub fn report() -> Vec<PhaseTotal> {
    Phase::ALL
        .iter()
        .map(|&phase| PhaseTotal {
            phase,
            time: Duration::from_nanos(NANOS[phase as usize].load(Ordering::Relaxed)),
            count: COUNTS[phase as usize].load(Ordering::Relaxed),
        })
        .filter(|t| t.count > 0)
        .collect()
}

/// The process's CPU time so far, user and system (Linux; `None` elsewhere).
pub fn cpu_times() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses; the fields after it follow its last `)`.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let user: u64 = fields.nth(11)?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    // /proc reports USER_HZ ticks, 100 per second on every Linux ABI.
    let tick = Duration::from_millis(10);
    Some((tick * user as u32, tick * system as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(phase: Phase) -> Duration {
        Duration::from_nanos(NANOS[phase as usize].load(Ordering::Relaxed))
    }

    #[test]
    fn nested_time_goes_to_the_inner_phase_only() {
        enable();
        // Other tests may time phases concurrently: compare growth of two phases no other test uses.
        let (outer_before, inner_before) = (own(Phase::Audits), own(Phase::StateWrite));
        let total = Instant::now();
        timed(Phase::Audits, || {
            std::thread::sleep(Duration::from_millis(20));
            timed(Phase::StateWrite, || {
                std::thread::sleep(Duration::from_millis(40))
            });
        });
        let total = total.elapsed();
        let outer = own(Phase::Audits) - outer_before;
        let inner = own(Phase::StateWrite) - inner_before;
        assert!(inner >= Duration::from_millis(40), "{inner:?}");
        assert!(outer >= Duration::from_millis(20), "{outer:?}");
        // Had the inner time also been counted as the outer phase's, the two would add up to more.
        assert!(outer + inner <= total, "{outer:?} + {inner:?} > {total:?}");
        assert!(
            report()
                .iter()
                .any(|t| t.phase == Phase::StateWrite && t.count >= 1)
        );
    }

    #[test]
    fn cpu_times_are_read_on_linux() {
        if cfg!(target_os = "linux") {
            let busy_until = Instant::now() + Duration::from_millis(50);
            let mut spins = 0u64;
            while Instant::now() < busy_until {
                spins = std::hint::black_box(spins + 1);
            }
            let (user, system) = cpu_times().expect("/proc/self/stat");
            assert!(
                user + system >= Duration::from_millis(10),
                "{user:?} {system:?}"
            );
        }
    }
}
