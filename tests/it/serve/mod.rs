//! `lake serve`: the Iceberg REST catalog read by independent clients (pyiceberg, DuckDB's iceberg extension),
//! spec-shaped errors for bad requests, and a clean stop on SIGTERM. `writes` covers what clients may change,
//! `engines` Sail and many readers during a plan, `pg` the PostgreSQL endpoint.

mod engines;
mod pg;
mod writes;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::readers::{duckdb_extensions, pyiceberg, run_python};
use crate::common::{EXEC, Scratch};

/// A running `lake serve --port 0 --json`, stopped when dropped.
pub struct Server {
    child: Child,
    /// `host:port` it bound.
    address: String,
    /// Its stderr (the access log), read as it comes so a busy server never blocks on a full pipe.
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(s: &Scratch) -> Server {
        Server::start_with(s, &[])
    }

    /// `lake serve --port 0 --json ARGS`, once its startup line says where it listens.
    pub fn start_with(s: &Scratch, args: &[&str]) -> Server {
        let mut command = vec!["serve", "--port", "0", "--json"];
        command.extend_from_slice(args);
        let mut child = s.spawn(&command, Stdio::piped());
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the startup line");
        let started: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("`lake serve --json` printed `{line}`: {e}");
        });
        let url = started["rest"].as_str().expect("a rest URL").to_string();
        let address = url
            .strip_prefix("http://")
            .expect("an http URL")
            .to_string();
        assert!(
            address.starts_with("127.0.0.1:"),
            "loopback by default: {address}"
        );
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let reader = child.stderr.take().map(|stderr| {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            })
        });
        Server {
            child,
            address,
            log,
            reader,
        }
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A GET or HEAD with an optional `Authorization` header value.
    fn request_with(&self, method: &str, path: &str, authorization: Option<&str>) -> (u16, Value) {
        let header =
            authorization.map_or(String::new(), |value| format!("Authorization: {value}\r\n"));
        self.send(method, path, &header, "")
    }

    /// One HTTP/1.1 request; the status and the body parsed as JSON (`Null` when empty).
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.send(method, path, "", body.unwrap_or(""))
    }

    fn send(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, Value) {
        self.exchange(method, path, headers, body.len(), body)
    }

    /// A request that announces a body of `length` bytes but sends none: what a server must refuse from the
    /// headers alone.
    pub fn announce(&self, method: &str, path: &str, length: usize) -> (u16, Value) {
        self.exchange(method, path, "", length, "")
    }

    fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        length: usize,
        body: &str,
    ) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.address).expect("connect to lake serve");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{headers}Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n{body}",
            self.address,
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let status: u16 = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Sends SIGTERM and waits for the process to exit; its exit status and what it wrote to stderr.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // The reader thread ends at the end of the pipe, once the process is gone.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
                return (status, log);
            }
            assert!(
                Instant::now() < deadline,
                "lake serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo applied to prod, and a dev environment where `full_model` has one more column.
pub fn prod_and_dev() -> Scratch {
    let s = Scratch::init();
    s.apply(EXEC);
    let model = s
        .read("models/full_model.sql")
        .replace("  item_id,\n", "  item_id,\n  1 AS one,\n");
    assert!(
        model.contains("1 AS one"),
        "the demo's full_model changed shape"
    );
    s.write("models/full_model.sql", &model);
    s.apply_env("dev", EXEC);
    s
}

#[test]
fn pyiceberg_and_duckdb_read_prod_and_dev_through_the_rest_catalog() {
    let (Some(python), Some(extensions)) = (pyiceberg(), duckdb_extensions()) else {
        return;
    };
    let s = prod_and_dev();
    let server = Server::start(&s);
    let out = run_python(
        &python,
        "rest_read.py",
        &[
            &server.uri(),
            &extensions.to_string_lossy(),
            "demo.full_model",
            "demo__dev.full_model",
        ],
    );
    let read: Value = serde_json::from_str(&out).expect("rest_read.py prints JSON");
    assert_eq!(
        read["namespaces"],
        serde_json::json!(["demo", "demo__dev", "lake__demo"])
    );
    assert_eq!(
        read["pyiceberg"]["demo.full_model"]["columns"],
        serde_json::json!(["item_id", "num_orders"])
    );
    assert_eq!(
        read["pyiceberg"]["demo__dev.full_model"]["columns"],
        serde_json::json!(["item_id", "one", "num_orders"])
    );
    for table in ["demo.full_model", "demo__dev.full_model"] {
        assert_eq!(read["pyiceberg"][table]["rows"], 3, "{table}: {read}");
        assert_eq!(read["duckdb"][table], 3, "{table}: {read}");
    }
}

#[test]
fn a_plan_applied_while_serving_is_seen_by_the_next_request() {
    let s = Scratch::init();
    s.apply(EXEC);
    let server = Server::start(&s);
    let (status, _) = server.request("GET", "/v1/namespaces/demo__dev/tables", None);
    assert_eq!(status, 404, "no dev environment yet");
    let model = s
        .read("models/full_model.sql")
        .replace("  item_id,\n", "  item_id,\n  1 AS one,\n");
    s.write("models/full_model.sql", &model);
    s.apply_env("dev", EXEC);
    let (status, body) = server.request("GET", "/v1/namespaces/demo__dev/tables", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["identifiers"],
        serde_json::json!([{"namespace": ["demo__dev"], "name": "full_model"}])
    );
    let (status, body) = server.request("GET", "/v1/namespaces/demo__dev/tables/full_model", None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["metadata-location"]
            .as_str()
            .is_some_and(|l| l.ends_with(".metadata.json")),
        "{body}"
    );
    assert_eq!(body["metadata"]["format-version"], 2);
}

/// A VIEW model is a DuckDB view, not an Iceberg table: the REST catalog's 404 says where to read it.
#[test]
fn a_view_model_missing_from_the_rest_catalog_says_where_to_read_it() {
    let s = Scratch::init();
    s.apply(EXEC);
    let server = Server::start(&s);
    let (status, body) = server.request("GET", "/v1/namespaces/demo/tables/view_model", None);
    assert_eq!(status, 404, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("a VIEW model is a DuckDB view") && message.contains("--pg-port"),
        "{body}"
    );
}

#[test]
fn bad_requests_get_spec_errors_and_the_server_keeps_serving() {
    let s = Scratch::init();
    s.apply(EXEC);
    let server = Server::start(&s);
    let cases: [(&str, &str, Option<&str>, u16, &str); 8] = [
        (
            "GET",
            "/v1/namespaces/nope",
            None,
            404,
            "NoSuchNamespaceException",
        ),
        (
            "GET",
            "/v1/namespaces/nope/tables",
            None,
            404,
            "NoSuchNamespaceException",
        ),
        (
            "GET",
            "/v1/namespaces/demo/tables/nope",
            None,
            404,
            "NoSuchTableException",
        ),
        (
            "GET",
            "/v1/namespaces/..%2F..%2Fetc/tables/passwd",
            None,
            404,
            "NoSuchNamespaceException",
        ),
        (
            "GET",
            "/v1/namespaces?pageToken=abc",
            None,
            400,
            "BadRequestException",
        ),
        (
            "POST",
            "/v1/namespaces",
            Some("{\"namespace\": [\"x\"]}"),
            403,
            "ForbiddenException",
        ),
        (
            "DELETE",
            "/v1/namespaces/demo/tables/full_model",
            None,
            403,
            "ForbiddenException",
        ),
        ("GET", "/v2/whatever", None, 404, "NotFoundException"),
    ];
    for (method, path, body, status, kind) in cases {
        let (got, answer) = server.request(method, path, body);
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["type"], kind, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], status, "{method} {path}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    // Nothing was created or dropped, and the server still answers.
    let (status, body) = server.request("GET", "/v1/namespaces", None);
    assert_eq!(status, 200);
    assert_eq!(
        body["namespaces"],
        serde_json::json!([["demo"], ["lake__demo"]])
    );
    let (status, _) = server.request("HEAD", "/v1/namespaces/demo/tables/full_model", None);
    assert_eq!(status, 204);
    let (status, body) = server.request("GET", "/v1/namespaces?pageSize=1", None);
    assert_eq!(status, 200);
    assert_eq!(body["namespaces"], serde_json::json!([["demo"]]));
    assert_eq!(body["next-page-token"], "1");
}

/// Random requests to the REST catalog: methods, paths made of its routes with odd segments, query strings
/// and bodies that are garbage, cut JSON or JSON of the wrong shape. Every one is answered 2xx or 4xx, never
/// 5xx, and the server logs no panic.
#[test]
fn random_requests_get_client_errors_never_server_errors() {
    let s = prod_and_dev();
    let server = Server::start(&s);
    let mut rng = pg::Xorshift(0x9e37_79b9_7f4a_7c15);
    let methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"];
    let routes = [
        "/v1/config",
        "/v1/namespaces",
        "/v1/namespaces/{}",
        "/v1/namespaces/{}/tables",
        "/v1/namespaces/{}/tables/{}",
        "/v1/namespaces/{}/tables/{}/metrics",
        "/v1/namespaces/{}/views/{}",
        "/v1/tables/rename",
        "/v1/oauth/tokens",
        "/v1/transactions/commit",
        "/healthz",
        "/{}",
    ];
    let segments = [
        "demo",
        "demo__dev",
        "full_model",
        "%00",
        "..",
        "%2F",
        "a%1Fb",
        "%ZZ",
        "%F0%9F%98%80",
        "",
    ];
    let bodies = [
        "",
        "{",
        "null",
        "[]",
        r#"{"name": 5}"#,
        r#"{"namespace": ["demo"], "properties": {"a": 1}}"#,
        r#"{"identifier": {"namespace": [], "name": ""}, "requirements": [{"type": "nope"}], "updates": [{}]}"#,
        r#"{"source": {"namespace": ["demo"], "name": "full_model"}, "destination": 7}"#,
        r#"{"table-changes": [{"identifier": null}]}"#,
        "grant_type=client_credentials&client_id=x&client_secret=",
    ];
    let mut statuses = std::collections::BTreeMap::new();
    for round in 0..400 {
        let mut path = routes[rng.below(routes.len())].to_string();
        while path.contains("{}") {
            let segment = if rng.below(4) == 0 {
                let mut raw = vec![0u8; rng.below(12)];
                rng.fill(&mut raw);
                raw.iter().map(|b| format!("%{b:02X}")).collect()
            } else {
                segments[rng.below(segments.len())].to_string()
            };
            path = path.replacen("{}", &segment, 1);
        }
        if rng.below(3) == 0 {
            path.push_str(
                [
                    "?pageToken=%FF",
                    "?purgeRequested=maybe",
                    "?snapshots=all&x",
                    "?",
                ][rng.below(4)],
            );
        }
        let mut body = bodies[rng.below(bodies.len())].to_string();
        if !body.is_empty() && rng.below(2) == 0 {
            body.truncate(rng.below(body.len()));
        }
        let method = methods[rng.below(methods.len())];
        let (status, answer) = server.request(method, &path, Some(&body));
        assert!(
            (200..500).contains(&status),
            "round {round}: {method} {path} with `{body}` got {status}: {answer}"
        );
        *statuses.entry(status / 100).or_insert(0) += 1;
    }
    // The requests reached the catalog's routes: some succeeded, many were refused.
    assert!(statuses.get(&2).is_some_and(|n| *n > 10), "{statuses:?}");
    assert!(statuses.get(&4).is_some_and(|n| *n > 100), "{statuses:?}");
    let (status, _) = server.request("GET", "/v1/namespaces", None);
    assert_eq!(status, 200, "still serving");
    let (_, log) = server.terminate();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn allowed_writes_create_and_commit_with_compare_and_swap_outside_lakes_namespaces() {
    let s = Scratch::init();
    s.apply(EXEC);
    let read_only = Server::start(&s);
    let (status, body) =
        read_only.request("POST", "/v1/namespaces", Some("{\"namespace\": [\"ext\"]}"));
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (403, Some("ForbiddenException"))
    );
    drop(read_only);

    let server = Server::start_with(&s, &["--allow-writes"]);
    for (path, body, status) in [
        ("/v1/namespaces", "{not json", 400),
        ("/v1/namespaces", "{\"namespace\": [\"../etc\"]}", 400),
        (
            "/v1/namespaces/nope/tables/t",
            "{\"requirements\": [], \"updates\": []}",
            404,
        ),
    ] {
        let (got, answer) = server.request("POST", path, Some(body));
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert!(answer["error"]["type"].is_string(), "{answer}");
    }

    let Some(python) = pyiceberg() else {
        return;
    };
    let out = run_python(&python, "rest_write.py", &[&server.uri()]);
    let wrote: Value = serde_json::from_str(&out).expect("rest_write.py prints JSON");
    // 3 rows, 1 row, then the stale client's 3 rows, rebased after its first commit was refused.
    assert_eq!(wrote["rows"], 7, "{wrote}");
    assert_eq!(wrote["snapshots"], 3, "{wrote}");
    assert_eq!(wrote["linear"], true, "no snapshot lost or forked: {wrote}");
    // A commit whose requirement no longer holds is refused whole.
    let stale = r#"{"requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 1}],
        "updates": [{"action": "set-properties", "updates": {"x": "y"}}]}"#;
    let (status, answer) = server.request("POST", "/v1/namespaces/ext/tables/events", Some(stale));
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["type"], "CommitFailedException");
    let (_, table) = server.request("GET", "/v1/namespaces/ext/tables/events", None);
    assert!(
        table["metadata"]["properties"].get("x").is_none(),
        "the refused update did not land: {table}"
    );
    // The new table is in lake's catalog, beside lake's own, and lake's environments are untouched.
    let (status, body) = server.request("GET", "/v1/namespaces/ext/tables", None);
    assert_eq!(status, 200);
    assert_eq!(
        body["identifiers"],
        serde_json::json!([{"namespace": ["ext"], "name": "events"}])
    );
    s.assert_demo_results();
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let s = Scratch::init();
    s.apply(EXEC);
    let server = Server::start(&s);
    let (status, _) = server.request("GET", "/healthz", None);
    assert_eq!(status, 200);
    let (exit, log) = server.terminate();
    assert!(exit.success(), "lake serve exited with {exit}: {log}");
    assert!(
        log.contains("GET /healthz 200"),
        "an access log line per request: {log}"
    );
}

#[test]
fn an_address_other_machines_reach_needs_authentication_or_an_explicit_yes() {
    let s = Scratch::init();
    let serve_everywhere = |more: &[&str]| {
        s.lake()
            .args(["serve", "--host", "0.0.0.0", "--port", "0"])
            .args(more)
            .output()
            .expect("run lake")
    };
    let refused = serve_everywhere(&["--pg-port", "0"]);
    assert_eq!(refused.status.code(), Some(2));
    let words = crate::common::stderr_words(&refused);
    assert!(
        words.contains("--host 0.0.0.0 serves beyond this machine, and the REST catalog (--token-env) and PostgreSQL (--pg-users-env) would have no authentication"),
        "{words}"
    );
    assert!(words.contains("--allow-unauthenticated"), "{words}");
    let writes = serve_everywhere(&["--allow-writes", "--allow-unauthenticated"]);
    assert_eq!(writes.status.code(), Some(2));
    assert!(
        crate::common::stderr_words(&writes).contains("--allow-writes on 0.0.0.0"),
        "{}",
        crate::common::stderr(&writes)
    );
    // On loopback (the default) the start-up line says who can connect.
    s.apply(EXEC);
    let (_, log) = Server::start(&s).terminate();
    assert!(
        log.contains("no authentication; this machine only"),
        "{log}"
    );
}

#[test]
fn a_configured_token_is_required_and_never_printed() {
    let secret = "t0p-s3cret-value";
    let mut s = Scratch::init();
    s.apply(EXEC);
    let unset = s
        .lake()
        .args(["serve", "--token-env", "LAKE_TEST_SERVE_TOKEN"])
        .output()
        .expect("run lake");
    assert_eq!(
        unset.status.code(),
        Some(2),
        "a missing token is a usage error"
    );
    assert!(crate::common::stderr(&unset).contains("`LAKE_TEST_SERVE_TOKEN` is not set"));
    s.env.push(("LAKE_TEST_SERVE_TOKEN".into(), secret.into()));
    let server = Server::start_with(&s, &["--token-env", "LAKE_TEST_SERVE_TOKEN"]);

    for header in [None, Some("Bearer wrong"), Some("Basic dDBw")] {
        let (status, body) = server.request_with("GET", "/v1/namespaces", header);
        assert_eq!(status, 401, "{header:?}: {body}");
        assert_eq!(body["error"]["type"], "NotAuthorizedException");
    }
    let bearer = format!("Bearer {secret}");
    let (status, body) = server.request_with("GET", "/v1/namespaces", Some(&bearer));
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.request_with("GET", "/healthz", None);
    assert_eq!(status, 200, "the health check stays open");

    // pyiceberg with the token and with client credentials; DuckDB with client credentials.
    if let (Some(python), Some(extensions)) = (pyiceberg(), duckdb_extensions()) {
        let extensions = extensions.to_string_lossy();
        for mode in ["token", "credential", "duckdb"] {
            let rows = run_python(
                &python,
                "rest_auth.py",
                &[&server.uri(), mode, secret, "demo.full_model", &extensions],
            );
            assert_eq!(rows, "3", "{mode}");
        }
    }
    let (exit, log) = server.terminate();
    assert!(exit.success());
    assert!(!log.contains(secret), "the token reached the log: {log}");
}
