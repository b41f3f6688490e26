//! One contract for every state store: the same assertions run against the embedded SQLite store and the
//! PostgreSQL store, so the two cannot drift apart.

use std::collections::HashMap;

use lake::config::Secret;
use lake::snapshot::{Fingerprint, Snapshot, SuffixTarget, VirtualName};
use lake::sql::ModelName;
use lake::state::postgres::PostgresState;
use lake::state::sqlite::SqliteState;
use lake::state::{
    EnvSnapshot, Environment, Interval, PromoteOutcome, SnapshotNode, StateStore, StoredSnapshot,
    StoredVersion,
};

/// Opens the same store again each time it is called (as a new process would).
type Opener = Box<dyn Fn() -> Box<dyn StateStore>>;

fn sqlite() -> (Opener, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_path_buf();
    let open: Opener =
        Box::new(move || Box::new(SqliteState::open(&path).expect("open SQLite state")));
    (open, dir)
}

fn postgres() -> Option<Opener> {
    let uri = crate::common::pg::fresh_database()?;
    Some(Box::new(move || {
        Box::new(
            PostgresState::open(&Secret::new(uri.clone()), "lake").expect("open PostgreSQL state"),
        )
    }))
}

/// Runs `check` against a new SQLite store and a new PostgreSQL store.
fn on_every_backend(check: fn(&Opener)) {
    let (open, _dir) = sqlite();
    check(&open);
    if let Some(open) = postgres() {
        check(&open);
    }
}

fn snapshot(name: &str, version: &str, created_ts: i64, ttl_ms: i64) -> StoredSnapshot {
    StoredSnapshot {
        snapshot: Snapshot {
            name: ModelName::parse(name).expect("a model name"),
            id: format!("{name}-{version}"),
            version: version.into(),
            fingerprint: Fingerprint {
                data_hash: "d".into(),
                metadata_hash: "m".into(),
                parent_data_hash: "pd".into(),
                parent_metadata_hash: "pm".into(),
                data_parts: Default::default(),
            },
            kind_name: "FULL".into(),
            parents: vec![],
            physical_schema: None,
        },
        node: SnapshotNode {
            query: Some("SELECT 1".into()),
            ..SnapshotNode::default()
        },
        created_ts,
        ttl_ms,
    }
}

/// A snapshot whose table `physical_schema_mapping` put in `schema`.
fn mapped(name: &str, version: &str, schema: &str) -> StoredSnapshot {
    let mut stored = snapshot(name, version, 3, 4);
    stored.snapshot.physical_schema = Some(schema.into());
    stored
}

fn environment(name: &str, plan: &str, previous: Option<&str>) -> Environment {
    Environment {
        name: name.into(),
        snapshots: vec![
            EnvSnapshot::from(&snapshot("a.b", "v1", 1, 2).snapshot),
            EnvSnapshot::from(&mapped("a.m", "v1", "internal").snapshot),
        ],
        promoted: vec![ModelName::new("a", "b")],
        plan_id: plan.into(),
        previous_plan_id: previous.map(String::from),
        created_ts: 1,
        updated_ts: 2,
        expiration_ts: None,
        // Both settings round-trip: prod keeps the default, other environments name tables.
        suffix_target: if name == "prod" {
            SuffixTarget::Schema
        } else {
            SuffixTarget::Table
        },
    }
}

fn interval(name: &str, version: &str, start_ts: i64, end_ts: i64) -> Interval {
    Interval {
        name: ModelName::parse(name).expect("a model name"),
        version: version.into(),
        start_ts,
        end_ts,
        created_ts: 5,
        write_id: Some("iceberg:7".into()),
    }
}

fn ranges(state: &dyn StateStore, name: &str, version: &str) -> Vec<(i64, i64)> {
    let mut found: Vec<(i64, i64)> = state
        .intervals(&[(
            ModelName::parse(name).expect("a model name"),
            version.into(),
        )])
        .expect("intervals")
        .into_iter()
        .map(|iv| (iv.start_ts, iv.end_ts))
        .collect();
    found.sort();
    found
}

#[test]
fn snapshots_round_trip_and_pushing_twice_changes_nothing() {
    on_every_backend(|open| {
        let mut state = open();
        state
            .push_snapshots(&[
                snapshot("a.b", "v1", 1, 2),
                snapshot("a.c", "v1", 1, 2),
                mapped("a.m", "v1", "internal"),
            ])
            .unwrap();
        state
            .push_snapshots(&[snapshot("a.b", "v1", 1, 2)])
            .unwrap();
        let version = |version: &str, physical_schema: Option<&str>| StoredVersion {
            version: version.into(),
            physical_schema: physical_schema.map(String::from),
        };
        assert_eq!(
            state.stored_versions(&["a.b-v1", "a.m-v1", "zz"]).unwrap(),
            HashMap::from([
                ("a.b-v1".to_string(), version("v1", None)),
                ("a.m-v1".to_string(), version("v1", Some("internal")))
            ])
        );
        drop(state);
        let state = open();
        assert_eq!(
            state.snapshots(&["a.c-v1"]).unwrap(),
            vec![snapshot("a.c", "v1", 1, 2)]
        );
        assert_eq!(
            state.snapshots(&["a.m-v1"]).unwrap(),
            vec![mapped("a.m", "v1", "internal")]
        );
        assert!(state.snapshots(&["missing"]).unwrap().is_empty());
    });
}

#[test]
fn intervals_are_recorded_replaced_and_cut_by_restatement() {
    on_every_backend(|open| {
        let mut state = open();
        state.add_interval(&interval("a.b", "v1", 0, 100)).unwrap();
        // Re-recording the same range replaces the row rather than adding a second one.
        state.add_interval(&interval("a.b", "v1", 0, 100)).unwrap();
        state.add_interval(&interval("a.c", "v1", 0, 10)).unwrap();
        assert_eq!(ranges(state.as_ref(), "a.b", "v1"), [(0, 100)]);
        let got = state
            .intervals(&[(ModelName::new("a", "b"), "v1".into())])
            .unwrap();
        assert_eq!(got, vec![interval("a.b", "v1", 0, 100)]);
        state
            .remove_intervals(&ModelName::new("a", "b"), "v1", 40, 60)
            .unwrap();
        assert_eq!(ranges(state.as_ref(), "a.b", "v1"), [(0, 40), (60, 100)]);
        assert_eq!(
            ranges(state.as_ref(), "a.c", "v1"),
            [(0, 10)],
            "other models untouched"
        );
    });
}

#[test]
fn promotion_is_a_compare_and_swap_on_the_plan_id() {
    on_every_backend(|open| {
        let mut state = open();
        assert_eq!(state.environment("prod").unwrap(), None);
        assert_eq!(
            state
                .promote(&environment("prod", "p1", None), None)
                .unwrap(),
            PromoteOutcome::Promoted
        );
        // A second plan computed before p1 landed expected no environment at all.
        assert_eq!(
            state
                .promote(&environment("prod", "p2", None), None)
                .unwrap(),
            PromoteOutcome::Conflict {
                current_plan_id: Some("p1".into())
            }
        );
        assert_eq!(state.environment("prod").unwrap().unwrap().plan_id, "p1");
        assert_eq!(
            state
                .promote(&environment("prod", "p2", Some("p1")), Some("p1"))
                .unwrap(),
            PromoteOutcome::Promoted
        );
        drop(state);
        let state = open();
        assert_eq!(
            state.environment("prod").unwrap().unwrap(),
            environment("prod", "p2", Some("p1"))
        );
    });
}

#[test]
fn environments_expire_and_are_removed_only_at_the_expected_plan() {
    on_every_backend(|open| {
        let mut state = open();
        state
            .promote(&environment("prod", "p1", None), None)
            .unwrap();
        state
            .promote(&environment("dev", "d1", None), None)
            .unwrap();
        let mut names: Vec<String> = state
            .environments()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, ["dev", "prod"]);
        assert_eq!(
            state.environment("dev").unwrap().unwrap(),
            environment("dev", "d1", None)
        );
        // The stamps a server checks before each query move with every change to an environment.
        let stamps = |state: &dyn StateStore| {
            let quick = state.environment_stamps().unwrap();
            let full: Vec<_> = state
                .environments()
                .unwrap()
                .into_iter()
                .map(|e| (e.name, e.plan_id, e.updated_ts, e.expiration_ts))
                .collect();
            let read: Vec<_> = quick
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        s.plan_id.clone(),
                        s.updated_ts,
                        s.expiration_ts,
                    )
                })
                .collect();
            assert_eq!(read, full, "the stamps are the environments' own fields");
            quick
        };
        let before = stamps(state.as_ref());
        assert!(state.set_expiration("dev", 42).unwrap());
        assert_ne!(stamps(state.as_ref()), before, "an expiry moves the stamps");
        assert!(!state.set_expiration("nowhere", 42).unwrap());
        assert_eq!(
            state.environment("dev").unwrap().unwrap().expiration_ts,
            Some(42)
        );
        assert!(
            !state.remove_environment("dev", "stale").unwrap(),
            "changed meanwhile"
        );
        assert!(state.environment("dev").unwrap().is_some());
        assert!(state.remove_environment("dev", "d1").unwrap());
        assert_eq!(state.environment("dev").unwrap(), None);
    });
}

#[test]
fn versions_carry_their_latest_expiry_and_are_forgotten_whole() {
    on_every_backend(|open| {
        let mut state = open();
        let mut later = snapshot("a.b", "v1", 10, 5);
        later.snapshot.id = "a.b-v1-metadata".into();
        state
            .push_snapshots(&[
                snapshot("a.b", "v1", 1, 2),
                later,
                mapped("a.c", "v2", "internal"),
            ])
            .unwrap();
        state.add_interval(&interval("a.b", "v1", 0, 10)).unwrap();
        let mut expiry = state.versions_with_expiry().unwrap();
        expiry.sort();
        let version = |version: &str, physical_schema: Option<&str>| StoredVersion {
            version: version.into(),
            physical_schema: physical_schema.map(String::from),
        };
        assert_eq!(
            expiry,
            vec![
                (ModelName::new("a", "b"), version("v1", None), 15),
                (ModelName::new("a", "c"), version("v2", Some("internal")), 7)
            ]
        );
        state
            .remove_versions(&[(ModelName::new("a", "b"), "v1".into())])
            .unwrap();
        assert!(
            state
                .stored_versions(&["a.b-v1", "a.b-v1-metadata"])
                .unwrap()
                .is_empty()
        );
        assert!(ranges(state.as_ref(), "a.b", "v1").is_empty());
        assert_eq!(state.versions_with_expiry().unwrap().len(), 1);
    });
}

#[test]
fn in_place_models_are_those_with_an_in_place_snapshot_or_interval_until_forgotten() {
    on_every_backend(|open| {
        let mut state = open();
        let in_place = lake::snapshot::IN_PLACE;
        state
            .push_snapshots(&[
                snapshot("a.stored", in_place, 1, 2),
                snapshot("a.versioned", "v1", 1, 2),
            ])
            .unwrap();
        // A first build records the interval before the plan's snapshot says so (e.g. a dev snapshot's id).
        state
            .add_interval(&interval("a.built", in_place, 0, 10))
            .unwrap();
        state
            .add_interval(&interval("a.versioned", "v1", 0, 10))
            .unwrap();
        assert_eq!(
            state.in_place_models().unwrap(),
            vec![ModelName::new("a", "built"), ModelName::new("a", "stored")]
        );
        state
            .remove_versions(&[(ModelName::new("a", "built"), in_place.into())])
            .unwrap();
        assert_eq!(
            state.in_place_models().unwrap(),
            vec![ModelName::new("a", "stored")]
        );
    });
}

#[test]
fn the_promotion_journal_accumulates_until_a_promotion_clears_it() {
    on_every_backend(|open| {
        let mut state = open();
        let name = |schema: &str| VirtualName {
            schema: schema.into(),
            name: "b".into(),
        };
        assert!(state.pending_promotion("dev").unwrap().is_empty());
        state.begin_promotion("dev", &[name("a__dev")]).unwrap();
        // An interrupted apply's names stay journaled alongside the next apply's.
        state
            .begin_promotion("dev", &[name("a__dev"), name("c__dev")])
            .unwrap();
        drop(state);
        let mut state = open();
        assert_eq!(
            state.pending_promotion("dev").unwrap(),
            vec![name("a__dev"), name("c__dev")]
        );
        assert!(
            state.pending_promotion("prod").unwrap().is_empty(),
            "per environment"
        );
        state
            .promote(&environment("dev", "d1", None), None)
            .unwrap();
        assert!(state.pending_promotion("dev").unwrap().is_empty());
    });
}
