//! Crash injection for the crash-safety tests: named points where an apply can be made to die.

/// With `LAKE_FAILPOINT=<name>` set, the process aborts here: no destructors, no cleanup, no commit of an
/// open transaction (what SIGKILL does). Unset, this is one environment lookup.
pub fn hit(name: &str) {
    if std::env::var_os("LAKE_FAILPOINT").is_some_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
