//! What REST clients may change with `--allow-writes`: their own namespaces and tables (staged creates, renames,
//! registers, drops, purges, properties, multi-table commits, all or nothing), commits to lake's existing tables,
//! and never lake's names or anything outside the warehouse.

use serde_json::{Value, json};

use super::Server;
use crate::common::readers::{pyiceberg, run_python};
use crate::common::{EXEC, Scratch};

/// A table schema in the REST protocol's JSON.
const SCHEMA: &str = r#"{"type": "struct", "schema-id": 0, "fields": [
    {"id": 1, "name": "id", "required": false, "type": "long"}]}"#;

fn create_table(server: &Server, namespace: &str, body: &str) -> (u16, Value) {
    server.request(
        "POST",
        &format!("/v1/namespaces/{namespace}/tables"),
        Some(body),
    )
}

fn table_body(name: &str, location: Option<&str>) -> String {
    let location = location.map_or(String::new(), |l| format!(r#""location": "{l}", "#));
    format!(r#"{{"name": "{name}", {location}"schema": {SCHEMA}}}"#)
}

/// The table's properties as the server loads them.
fn properties(server: &Server, namespace: &str, table: &str) -> Value {
    let (status, body) = server.request(
        "GET",
        &format!("/v1/namespaces/{namespace}/tables/{table}"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["metadata"]["properties"].clone()
}

#[test]
fn tools_manage_their_own_tables_through_rest() {
    let s = Scratch::init();
    s.apply(EXEC);
    let server = Server::start_with(&s, &["--allow-writes"]);
    let Some(python) = pyiceberg() else {
        return;
    };
    let out = run_python(&python, "rest_manage.py", &[&server.uri()]);
    let seen: Value = serde_json::from_str(&out).expect("rest_manage.py prints JSON");
    assert_eq!(
        seen["properties"],
        json!({
            "removed": ["stale"],
            "updated": ["team"],
            "missing": ["never"],
            "now": {"owner": "alice", "team": "data"},
        })
    );
    assert_eq!(seen["staged_visible_before_commit"], false, "{seen}");
    assert_eq!(seen["staged"], json!({"rows": 3, "snapshots": 1}));
    assert_eq!(seen["renamed"], json!({"old_exists": false, "rows": 3}));
    assert_eq!(seen["registered"]["rows"], 3, "{seen}");
    assert_eq!(seen["drop_non_empty"], "refused");
    assert_eq!(seen["purged"], true);
    assert_eq!(seen["namespaces_after"], json!(["demo", "lake__demo"]));
    let metadata_file = seen["registered"]["location"]
        .as_str()
        .and_then(|l| l.strip_prefix("file://"))
        .expect("a local metadata file");
    assert!(
        !std::path::Path::new(metadata_file).exists(),
        "a purge deletes the table's files: {metadata_file}"
    );
    s.assert_demo_results();
}

#[test]
fn a_multi_table_commit_lands_whole_or_not_at_all() {
    let s = Scratch::init();
    s.apply(EXEC);
    let server = Server::start_with(&s, &["--allow-writes"]);
    let (status, _) = server.request("POST", "/v1/namespaces", Some(r#"{"namespace": ["ext"]}"#));
    assert_eq!(status, 200);
    let mut uuids = Vec::new();
    for name in ["a", "b"] {
        let (status, body) = create_table(&server, "ext", &table_body(name, None));
        assert_eq!(status, 200, "{body}");
        uuids.push(
            body["metadata"]["table-uuid"]
                .as_str()
                .expect("a uuid")
                .to_string(),
        );
    }
    let change = |name: &str, uuid: &str, value: &str| {
        format!(
            r#"{{"identifier": {{"namespace": ["ext"], "name": "{name}"}},
                "requirements": [{{"type": "assert-table-uuid", "uuid": "{uuid}"}}],
                "updates": [{{"action": "set-properties", "updates": {{"x": "{value}"}}}}]}}"#
        )
    };
    let transaction =
        |changes: &[String]| format!(r#"{{"table-changes": [{}]}}"#, changes.join(","));
    let wrong_uuid = "00000000-0000-0000-0000-000000000000";

    // b's requirement fails: a's change, although valid, does not land either.
    let (status, body) = server.request(
        "POST",
        "/v1/transactions/commit",
        Some(&transaction(&[
            change("a", &uuids[0], "1"),
            change("b", wrong_uuid, "1"),
        ])),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["type"], "CommitFailedException");
    for name in ["a", "b"] {
        assert_eq!(properties(&server, "ext", name).get("x"), None, "{name}");
    }

    let (status, body) = server.request(
        "POST",
        "/v1/transactions/commit",
        Some(&transaction(&[
            change("a", &uuids[0], "2"),
            change("b", &uuids[1], "2"),
        ])),
    );
    assert_eq!(status, 204, "{body}");
    for name in ["a", "b"] {
        assert_eq!(properties(&server, "ext", name)["x"], "2", "{name}");
    }

    for (body, status, kind) in [
        (
            transaction(&[change("a", &uuids[0], "3"), change("a", &uuids[0], "4")]),
            400,
            "BadRequestException",
        ),
        (transaction(&[]), 400, "BadRequestException"),
        (
            transaction(&[change("nope", &uuids[0], "3")]),
            404,
            "NoSuchTableException",
        ),
        (
            "{\"table-changes\": 7}".to_string(),
            400,
            "BadRequestException",
        ),
    ] {
        let (got, answer) = server.request("POST", "/v1/transactions/commit", Some(&body));
        assert_eq!(
            (got, answer["error"]["type"].as_str()),
            (status, Some(kind)),
            "{body}: {answer}"
        );
    }
    assert_eq!(
        properties(&server, "ext", "a")["x"],
        "2",
        "refused commits change nothing"
    );

    // An oversized body is refused in the spec's shape, and the server goes on answering.
    let (status, answer) = server.announce("POST", "/v1/transactions/commit", 2 << 20);
    assert_eq!(
        (status, answer["error"]["code"].as_u64()),
        (413, Some(413)),
        "{answer}"
    );
    assert_eq!(properties(&server, "ext", "a")["x"], "2");
}

#[test]
fn lakes_names_and_files_stay_lakes_and_its_tables_take_commits() {
    let s = Scratch::init();
    s.apply(EXEC);
    let server = Server::start_with(&s, &["--allow-writes"]);
    let (_, prod) = server.request("GET", "/v1/namespaces/demo/tables/full_model", None);
    let version_location = prod["metadata"]["location"]
        .as_str()
        .expect("a location")
        .to_string();
    let warehouse = version_location
        .rsplit_once("/lake__demo/")
        .map(|(w, _)| w.to_string())
        .expect("versions live in lake__demo");
    let (_, versions) = server.request("GET", "/v1/namespaces/lake__demo/tables", None);
    let version = versions["identifiers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id["name"].as_str())
        .find(|name| name.starts_with("demo__full_model__"))
        .expect("full_model's version")
        .to_string();

    // Names in lake's namespaces change only through `lake plan`.
    let rename = r#"{"source": {"namespace": ["demo"], "name": "full_model"},
        "destination": {"namespace": ["demo"], "name": "renamed"}}"#
        .to_string();
    let register = format!(
        r#"{{"name": "copy", "metadata-location": "{}"}}"#,
        prod["metadata-location"].as_str().unwrap_or_default()
    );
    for (method, path, body) in [
        (
            "POST",
            "/v1/namespaces/demo/tables".to_string(),
            table_body("x", None),
        ),
        (
            "POST",
            "/v1/namespaces/lake__demo/tables".to_string(),
            table_body("x", None),
        ),
        (
            "DELETE",
            "/v1/namespaces/demo/tables/full_model".to_string(),
            String::new(),
        ),
        (
            "DELETE",
            format!("/v1/namespaces/lake__demo/tables/{version}?purgeRequested=true"),
            String::new(),
        ),
        ("DELETE", "/v1/namespaces/demo".to_string(), String::new()),
        (
            "POST",
            "/v1/namespaces/demo/properties".to_string(),
            r#"{"updates": {"a": "b"}}"#.to_string(),
        ),
        ("POST", "/v1/tables/rename".to_string(), rename),
        ("POST", "/v1/namespaces/demo/register".to_string(), register),
        (
            "POST",
            "/v1/namespaces/demo/tables/full_model".to_string(),
            format!(
                r#"{{"updates": [{{"action": "set-location", "location": "{warehouse}/elsewhere"}}]}}"#
            ),
        ),
    ] {
        let (status, answer) = server.request(method, &path, Some(&body));
        assert_eq!(
            (status, answer["error"]["type"].as_str()),
            (403, Some("ForbiddenException")),
            "{method} {path}: {answer}"
        );
    }

    // Other engines' tables stay inside the warehouse and off every other table's files.
    let (status, _) = server.request("POST", "/v1/namespaces", Some(r#"{"namespace": ["ext"]}"#));
    assert_eq!(status, 200);
    for location in [
        "file:///tmp/outside".to_string(),
        format!("{warehouse}/ext/../../escape"),
        version_location.clone(),
        format!("{version_location}/inside"),
        warehouse.clone(),
    ] {
        let (status, answer) = create_table(&server, "ext", &table_body("t", Some(&location)));
        assert_eq!(
            (status, answer["error"]["type"].as_str()),
            (400, Some("BadRequestException")),
            "{location}: {answer}"
        );
    }
    let chosen = format!("{warehouse}/ext/chosen_place");
    let (status, answer) = create_table(&server, "ext", &table_body("t", Some(&chosen)));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["metadata"]["location"], chosen.as_str());
    let (status, answer) = create_table(&server, "ext", &table_body("t", None));
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (409, Some("AlreadyExistsException"))
    );

    // A commit through prod's name lands on the version it shows, so every name sharing it moves together.
    let (status, answer) = server.request(
        "POST",
        "/v1/namespaces/demo/tables/full_model",
        Some(r#"{"updates": [{"action": "set-properties", "updates": {"owner": "bi"}}]}"#),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(properties(&server, "demo", "full_model")["owner"], "bi");
    assert_eq!(properties(&server, "lake__demo", &version)["owner"], "bi");
    s.assert_no_changes();
    s.assert_demo_results();
}
