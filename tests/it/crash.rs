//! Crash safety: an apply killed at any point (an abort at a failpoint, as SIGKILL would leave it), then
//! rerun, ends with the same data and state as an uninterrupted apply — for the embedded state and for
//! PostgreSQL.

use crate::common::{EXEC, Scratch, stderr, stdout};

const FAILPOINTS: [&str; 6] = [
    "after-snapshots-stored",
    "before-interval-recorded",
    "after-interval-recorded",
    "before-virtual-layer",
    "before-promote",
    // Inside the state transaction that promotes: the environment row is written, not committed.
    "during-promote",
];

/// The observable result of a project: every model's rows, the intervals, and whether a plan is a no-op.
fn fingerprint(s: &Scratch) -> String {
    let mut out = String::new();
    for sql in [
        "select * from demo.seed_model order by id",
        "select * from demo.incremental_model order by id",
        "select * from demo.full_model order by item_id",
        "select * from demo.view_model order by item_id",
    ] {
        out.push_str(&s.csv(sql));
    }
    let intervals = s
        .lake()
        .args(["check-intervals", "--execution-time", EXEC])
        .output()
        .unwrap();
    out.push_str(&stdout(&intervals));
    let plan = s
        .lake()
        .args(["plan", "--execution-time", EXEC])
        .output()
        .unwrap();
    out.push_str(&stdout(&plan));
    out
}

/// A second plan over existing state: a breaking change of the FULL model (its child is rebuilt too).
fn change(s: &Scratch) {
    let edited = s.read("models/full_model.sql").replace(
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE id > 4",
    );
    s.write("models/full_model.sql", &edited);
}

fn crash_then_resume(make: &dyn Fn() -> Option<Scratch>) {
    crash_then_resume_after(make, &|_| {});
    // The same over existing state: prod keeps serving the previous versions until the rerun promotes.
    crash_then_resume_after(
        &|| {
            let s = make()?;
            s.apply(EXEC);
            Some(s)
        },
        &change,
    );
}

pub(crate) fn crash_then_resume_after(
    make: &dyn Fn() -> Option<Scratch>,
    before: &dyn Fn(&Scratch),
) {
    let Some(reference) = make() else { return };
    before(&reference);
    reference.apply(EXEC);
    let expected = fingerprint(&reference);
    for point in FAILPOINTS {
        let Some(s) = make() else { return };
        let prod_rows = || s.csv("select * from demo.full_model order by item_id");
        // Prod's rows before the crashing apply, when prod exists (a project may have a `.lake` folder
        // before its first plan, e.g. from `lake serve`).
        let untouched = s
            .lake()
            .args(["fetchdf", "select 1 from demo.full_model limit 0"])
            .output()
            .is_ok_and(|o| o.status.success())
            .then(prod_rows);
        before(&s);
        let out = s
            .lake()
            .env("LAKE_FAILPOINT", point)
            .args(["plan", "--auto-apply", "--execution-time", EXEC])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{point}: the failpoint did not fire: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!("failpoint {point}")),
            "{point}: {}",
            stderr(&out)
        );
        // From `before-promote` on, the names already point at the new versions while state still records
        // the old plan; the promotion journal makes the next plan repair that (see the test below). Every
        // earlier point leaves prod untouched.
        let names_moved = ["before-promote", "during-promote"].contains(&point);
        if let Some(previous) = untouched.as_ref().filter(|_| !names_moved) {
            assert_eq!(
                &prod_rows(),
                previous,
                "{point}: prod changed before promotion"
            );
        }
        s.apply(EXEC);
        assert_eq!(fingerprint(&s), expected, "after a crash at {point}");
    }
}

/// Real SIGKILLs at several moments of an apply, wherever they land (planning, writing data, moving names,
/// updating state), each followed by a rerun that must end where an uninterrupted apply does. A model of
/// ten million rows makes the apply last long enough (most of a second) for the kills to spread over it.
fn killed_then_resume(make: &dyn Fn() -> Option<Scratch>) {
    let make = || {
        let s = make()?;
        s.write(
            "models/big.sql",
            "MODEL (name demo.big, kind FULL);\nSELECT range AS id, range % 7 AS k FROM range(10000000)\n",
        );
        Some(s)
    };
    let big = "select count(*) as n, sum(id) as total, count(distinct k) as ks from demo.big";
    let Some(reference) = make() else { return };
    reference.apply(EXEC);
    let expected = fingerprint(&reference) + &reference.csv(big);
    for delay_ms in [10, 30, 60, 100, 150, 250, 400, 600, 900] {
        let Some(s) = make() else { return };
        let mut child = s.spawn_apply(EXEC);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        // SIGKILL on Unix; an apply that already finished makes this a no-op.
        let _ = child.kill();
        child.wait().unwrap();
        s.apply(EXEC);
        assert_eq!(
            fingerprint(&s) + &s.csv(big),
            expected,
            "after a SIGKILL {delay_ms} ms into the apply"
        );
    }
}

#[test]
fn embedded_state_survives_a_crash_anywhere() {
    crash_then_resume(&|| Some(Scratch::init()));
}

#[test]
fn embedded_state_survives_sigkill() {
    killed_then_resume(&|| Some(Scratch::init()));
}

#[test]
fn postgres_state_survives_sigkill() {
    killed_then_resume(&postgres_project);
}

#[test]
fn postgres_state_survives_a_crash_anywhere() {
    crash_then_resume(&postgres_project);
}

/// The demo project with its state in a fresh PostgreSQL database.
fn postgres_project() -> Option<Scratch> {
    let uri = crate::common::pg::fresh_database()?;
    let s = Scratch::init();
    let config = s.read("config.yaml").replace(
        "      database: db.db\n",
        &format!(
            "      database: db.db\n    state_connection:\n{}",
            crate::common::pg::connection_yaml(&uri, "      ")
        ),
    );
    assert!(config.contains("state_connection"), "{config}");
    s.write("config.yaml", &config);
    Some(s)
}

#[test]
fn names_moved_by_an_unpromoted_apply_are_repaired_by_the_next_plan() {
    let s = Scratch::init();
    s.apply(EXEC);
    let original = s.read("models/full_model.sql");
    let before = s.csv("select * from demo.full_model order by item_id");
    change(&s);
    let out = s
        .lake()
        .env("LAKE_FAILPOINT", "before-promote")
        .args(["plan", "--auto-apply", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The user gives up on the change: the project matches state again, but names moved.
    s.write("models/full_model.sql", &original);
    let out = s.apply(EXEC);
    assert!(
        stdout(&out).starts_with("No model changes;"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        s.csv("select * from demo.full_model order by item_id"),
        before
    );
    s.assert_no_changes();
}
