//! `lake serve --pg-port`: psql, psycopg and SQLAlchemy query prod and a dev environment over the PostgreSQL
//! wire protocol; types round-trip exactly, writes and files outside the warehouse are refused with the right
//! SQLSTATE, cancel and statement_timeout stop queries, and the server keeps serving.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::prod_and_dev;
use crate::common::readers::{psycopg, run_python, services_required};
use crate::common::{EXEC, Scratch};

/// A running `lake serve --pg-port 0 --no-rest --json`, stopped when dropped.
struct PgServer {
    child: Child,
    host: String,
    port: String,
}

impl PgServer {
    fn start(s: &Scratch) -> PgServer {
        PgServer::start_with(s, &[])
    }

    fn start_with(s: &Scratch, args: &[&str]) -> PgServer {
        let mut command = vec!["serve", "--pg-port", "0", "--no-rest", "--json"];
        command.extend_from_slice(args);
        let mut child = s.spawn(&command, Stdio::piped());
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the startup line");
        let started: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("`lake serve --json` printed `{line}`: {e}"));
        assert!(
            started.get("rest").is_none(),
            "--no-rest serves no catalog: {line}"
        );
        let address = started["pg"].as_str().expect("a pg address").to_string();
        let (host, port) = address.rsplit_once(':').expect("host:port");
        assert_eq!(host, "127.0.0.1", "loopback by default");
        PgServer {
            child,
            host: host.to_string(),
            port: port.to_string(),
        }
    }

    /// `psql -X -A -t` (unaligned, tuples only) running `commands` against `database`.
    fn psql(&self, psql: &PathBuf, database: &str, commands: &[&str]) -> std::process::Output {
        let mut command = Command::new(psql);
        command.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        command.args([
            "-h", &self.host, "-p", &self.port, "-U", "lake", "-d", database,
        ]);
        for c in commands {
            command.args(["-c", c]);
        }
        command
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run psql")
    }
}

impl PgServer {
    /// psql as `user` with `password`, over TLS when `sslmode` asks for it.
    fn psql_login(
        &self,
        psql: &PathBuf,
        user: &str,
        password: &str,
        sslmode: &str,
        sql: &str,
    ) -> std::process::Output {
        let conninfo = format!(
            "host={} port={} dbname=prod user={user} sslmode={sslmode}",
            self.host, self.port
        );
        Command::new(psql)
            .args(["-X", "-A", "-t", "-c", sql, &conninfo])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run psql")
    }

    /// Stops the server and returns everything it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let mut log = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut log);
        }
        log
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// psql from PATH or PostgreSQL's own folders, or `None` when missing and CI does not require it.
fn psql() -> Option<PathBuf> {
    let candidates = std::iter::once(PathBuf::from("psql")).chain(
        std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin/psql")),
    );
    for candidate in candidates {
        if Command::new(&candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(candidate);
        }
    }
    assert!(
        !services_required(),
        "psql is required (apt-get install postgresql-client)"
    );
    eprintln!("skipping: no psql");
    None
}

fn text(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[test]
fn psql_queries_and_lists_prod_and_dev() {
    let Some(psql) = psql() else {
        return;
    };
    let s = prod_and_dev();
    let server = PgServer::start(&s);

    let prod = server.psql(&psql, "prod", &["select * from demo.full_model order by 1"]);
    assert!(
        prod.status.success(),
        "{}",
        String::from_utf8_lossy(&prod.stderr)
    );
    assert_eq!(text(&prod), "1|5\n2|1\n3|1\n");
    // The database name picks the environment: dev's full_model has the extra column.
    let dev = server.psql(&psql, "dev", &["select * from demo.full_model order by 1"]);
    assert_eq!(
        text(&dev),
        "1|1|5\n2|1|1\n3|1|1\n",
        "{}",
        String::from_utf8_lossy(&dev.stderr)
    );

    let listed = server.psql(&psql, "prod", &["\\dt demo.*", "\\dn", "\\l"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed = text(&listed);
    for line in [
        "demo|full_model|table|lake",
        "demo|incremental_model|table|lake",
        "demo|seed_model|table|lake",
        "demo|lake",
        "dev|lake|UTF8",
        "prod|lake|UTF8",
    ] {
        assert!(
            listed.lines().any(|l| l.starts_with(line)),
            "`{line}` missing from:\n{listed}"
        );
    }

    // `\d` runs psql's dozen catalog queries (columns, policies, statistics, publications, inheritance).
    let described = server.psql(&psql, "dev", &["\\d demo.full_model"]);
    assert!(
        described.status.success(),
        "{}",
        String::from_utf8_lossy(&described.stderr)
    );
    assert_eq!(
        text(&described),
        "item_id|integer|||\none|integer|||\nnum_orders|bigint|||\n",
        "PostgreSQL's names for the types, as psql shows them"
    );

    // psql's \copy sends COPY … TO STDOUT and writes what comes back: text format, CSV with and without a
    // header; and a COPY followed by a query in one query string.
    let copied = server.psql(
        &psql,
        "dev",
        &[
            "\\copy (select * from demo.full_model order by 1) to stdout",
            "\\copy (select 'a,b' as name, null as note union all select 'say \"hi\"', 'x' order by name) to stdout with csv header",
            "\\copy (select item_id from demo.full_model order by 1) to stdout csv",
            "copy (select 7) to stdout; select 8",
        ],
    );
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&copied.stdout),
        "1\t1\t5\n2\t1\t1\n3\t1\t1\nname,note\n\"a,b\",\n\"say \"\"hi\"\"\",x\n1\n2\n3\n7\n8\n"
    );
    let to_file = server.psql(&psql, "prod", &["copy (select 1) to '/tmp/lake-copy.csv'"]);
    assert!(
        !to_file.status.success(),
        "COPY to a server file stays refused"
    );

    let unknown = server.psql(&psql, "nope", &["select 1"]);
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("database \"nope\" does not exist"),
        "{stderr}"
    );

    let refused = server.psql(&psql, "prod", &["drop view demo.full_model"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("read-only"), "{stderr}");
    // Still serving, and nothing changed.
    let again = server.psql(&psql, "prod", &["select count(*) from demo.full_model"]);
    assert_eq!(text(&again), "3\n");
}

#[test]
fn psycopg_and_sqlalchemy_round_trip_every_type_and_get_postgres_errors() {
    let Some(python) = psycopg() else {
        return;
    };
    let s = prod_and_dev();
    let server = PgServer::start(&s);
    let seen: Value = serde_json::from_str(&run_python(
        &python,
        "pg_client.py",
        &[&server.host, &server.port],
    ))
    .expect("pg_client.py prints JSON");

    assert_eq!(seen["prod_columns"], json!(["item_id", "num_orders"]));
    assert_eq!(seen["dev_columns"], json!(["item_id", "one", "num_orders"]));
    assert_eq!(seen["prod_rows"], json!([[1, 5], [2, 1], [3, 1]]));
    assert_eq!(seen["param_text"], json!([[5]]));
    assert_eq!(seen["param_binary"], json!([[5]]));
    assert_eq!(seen["params_typed"], json!(["x!", "42", "2024-01-02"]));
    assert_eq!(seen["multi"], json!([[[1]], [[2]]]));
    assert_eq!(
        seen["params_binary_types"],
        json!({}),
        "binary parameters that differ"
    );
    assert_eq!(
        seen["jdbc"],
        json!({"prepared": "COMMAND_OK", "params": [23], "fields": [["num_orders", 20]], "runs": [5, 1]})
    );
    // Every value equals Python's exact value, in text and in binary results.
    assert_eq!(seen["types_text"], json!({}), "text results that differ");
    assert_eq!(
        seen["types_binary"],
        json!({}),
        "binary results that differ"
    );
    // bool, int2 ×2, int4, int8, numeric ×2, float4, float8, text, date, time, timestamp, timestamptz,
    // interval, uuid, bytea, json, int4[], text[], json (struct), json (map), int4.
    assert_eq!(
        seen["type_oids"],
        json!([
            16, 21, 21, 23, 20, 1700, 1700, 700, 701, 25, 1082, 1083, 1114, 1184, 1186, 2950, 17,
            114, 1007, 1009, 114, 114, 23
        ])
    );
    assert_eq!(
        seen["errors"],
        json!({
            "select * from no_such_table": "42P01",
            "select no_such_column from demo.full_model": "42703",
            "selec 1": "42601",
            "create table t (a int)": "42501",
            "insert into demo.full_model values (1, 2)": "42501",
            "copy (select 1) to 'x.csv'": "42501",
            "attach ':memory:' as other": "42501",
            "select * from read_csv('/etc/passwd')": "42501",
            "set memory_limit = '1GB'": "42704",
        })
    );
    assert_eq!(
        seen["errors_again"],
        json!({
            "create table t (a int)": "42501",
            "attach ':memory:' as other": "42501",
            "use memory": "42501",
            "use prod": "42501",
        })
    );
    assert_eq!(
        seen["copy_csv"],
        json!("id,name,note\n1,\"a,b\",\n2,\"x\"\"y\",z\n")
    );
    assert_eq!(
        seen["copy_rows"],
        json!([["1", "5"], ["2", "1"], ["3", "1"]])
    );
    assert_eq!(seen["copy_rowcount"], json!(3));
    assert_eq!(seen["after_errors"], json!(3));
    assert_eq!(seen["cancel"], json!("57014"));
    assert!(
        seen["cancel_took_s"].as_f64().is_some_and(|t| t < 10.0),
        "{seen}"
    );
    assert_eq!(seen["after_cancel"], json!(42));
    assert_eq!(seen["timeout"], json!("57014"));
    assert_eq!(seen["after_timeout"], json!(43));
    assert_eq!(seen["show"], json!("on"));
    assert!(
        seen["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("PostgreSQL 16")),
        "{seen}"
    );
    assert_eq!(
        seen["sa_tables"],
        json!([
            "full_model",
            "incremental_model",
            "seed_model",
            "view_model"
        ])
    );
    assert!(
        seen["sa_schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&json!("demo"))),
        "{seen}"
    );
    assert_eq!(seen["sa_columns"], json!(["item_id", "one", "num_orders"]));
    assert_eq!(seen["sa_types"], json!(["INTEGER", "INTEGER", "BIGINT"]));
    assert_eq!(seen["sa_rows"], json!(3));
}

#[test]
fn thirty_two_clients_see_whole_versions_while_a_plan_promotes() {
    let Some(python) = psycopg() else {
        return;
    };
    let s = Scratch::init();
    s.apply(EXEC);
    let server = PgServer::start_with(&s, &["--max-concurrent-queries", "2"]);
    let stop = s.dir.path().join("stop");
    // Both models in one query: a client must see prod's full_model and its downstream view from one version.
    let sql = "select (select list(item_id order by item_id) from demo.full_model) as full_items, \
               (select list(item_id order by item_id) from demo.view_model) as view_items";
    let mut hammer = Command::new(&python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/pg_hammer.py"))
        .args([&server.host, &server.port])
        .arg(&stop)
        .arg(sql)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pg_hammer.py");
    let mut ready = String::new();
    BufReader::new(hammer.stderr.as_mut().expect("piped stderr"))
        .read_line(&mut ready)
        .expect("pg_hammer.py's ready line");
    assert_eq!(ready.trim(), "ready", "pg_hammer.py did not start");

    // A breaking change: prod's names move to new versions of full_model (item 1 gone) and of the view over it
    // (which kept only item 1, so it becomes empty): a query reading one old and one new would see either
    // full_model without item 1 beside a view with it, or the reverse.
    let model = s.read("models/full_model.sql").replace(
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE\n  item_id <> 1",
    );
    assert!(
        model.contains("item_id <> 1"),
        "the demo's full_model changed shape"
    );
    s.write("models/full_model.sql", &model);
    s.apply(EXEC);
    std::thread::sleep(std::time::Duration::from_secs(2));
    std::fs::write(&stop, "").expect("the stop file");
    let out = hammer.wait_with_output().expect("pg_hammer.py's output");
    assert!(
        out.status.success(),
        "pg_hammer.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("pg_hammer.py prints JSON");
    assert_eq!(seen["errors"], json!([]), "{seen}");
    assert!(seen["queries"].as_u64().is_some_and(|q| q > 32), "{seen}");
    // Every answer is one whole version: the old pair or the new pair, never one model from each.
    assert_eq!(
        seen["results"],
        json!(["[[[1, 2, 3], [1]]]", "[[[2, 3], null]]"]),
        "{seen}"
    );
    assert_eq!(seen["final"], json!("[[[2, 3], null]]"));
}

#[test]
fn passwords_by_scram_or_md5_over_tls_are_required_and_never_printed() {
    let Some(psql) = psql() else {
        return;
    };
    let mut s = Scratch::init();
    s.apply(EXEC);
    let secret = "Sup3r-s3cret-pw";
    s.env.push((
        "LAKE_TEST_PG_USERS".into(),
        format!("alice:{secret},bob:other-pw"),
    ));
    let cert = s.dir.path().join("server.crt");
    let key = s.dir.path().join("server.key");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        assert!(
            !services_required(),
            "openssl is required to make a test certificate"
        );
        eprintln!("skipping: no openssl to make a test certificate");
        return;
    }
    let (cert, key) = (
        cert.to_string_lossy().to_string(),
        key.to_string_lossy().to_string(),
    );

    // Cleartext passwords need TLS.
    let refused = s
        .lake()
        .args([
            "serve",
            "--pg-port",
            "0",
            "--no-rest",
            "--pg-users-env",
            "LAKE_TEST_PG_USERS",
        ])
        .args(["--pg-auth", "password"])
        .output()
        .expect("run lake");
    assert_eq!(refused.status.code(), Some(2));
    assert!(crate::common::stderr(&refused).contains("needs TLS"));

    for method in ["scram-sha-256", "md5", "password"] {
        let server = PgServer::start_with(
            &s,
            &[
                "--pg-users-env",
                "LAKE_TEST_PG_USERS",
                "--pg-auth",
                method,
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ],
        );
        let ok = server.psql_login(
            &psql,
            "alice",
            secret,
            "require",
            "select count(*) from demo.full_model",
        );
        assert!(
            ok.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(text(&ok), "3\n");
        // `sslmode=require` fails unless the server negotiated TLS; without it the server still takes logins.
        let plain = server.psql_login(&psql, "bob", "other-pw", "disable", "select 2");
        if method == "password" {
            // A cleartext password is never asked for over a connection without TLS.
            assert!(!plain.status.success());
            let stderr = String::from_utf8_lossy(&plain.stderr);
            assert!(stderr.contains("requires TLS"), "{stderr}");
        } else {
            assert_eq!(
                text(&plain),
                "2\n",
                "{method}: {}",
                String::from_utf8_lossy(&plain.stderr)
            );
        }
        for (user, password) in [("alice", "wrong"), ("nobody", secret)] {
            let denied = server.psql_login(&psql, user, password, "prefer", "select 1");
            assert!(!denied.status.success(), "{method}: {user} got in");
            let stderr = String::from_utf8_lossy(&denied.stderr);
            assert!(
                stderr.contains("authentication failed"),
                "{method}: {stderr}"
            );
        }
        let log = server.stop();
        assert!(
            !log.contains(secret),
            "{method}: the server printed a password:\n{log}"
        );
        assert!(
            !log.contains("other-pw"),
            "{method}: the server printed a password:\n{log}"
        );
    }
}

/// A dev_only project whose DuckDB file (`shop.db`) is named like its schema: psql reads prod's in-place
/// tables and dev's preview by their plain names, `shop.events` meaning the schema, not the engine's catalog.
#[test]
fn psql_reads_in_place_prod_tables_of_a_project_named_like_its_schema() {
    let Some(psql) = psql() else {
        return;
    };
    let s = crate::dev_only::project("dev_only", "");
    for args in [
        &["plan", "--auto-apply", "--execution-time", "2024-01-03"][..],
        &["run", "--execution-time", "2024-01-05"][..],
    ] {
        let out = s.lake().args(args).output().unwrap();
        assert!(out.status.success(), "{}", crate::common::stderr(&out));
    }
    s.write("models/events.sql", crate::dev_only::EVENTS_DOUBLED);
    let out = s
        .lake()
        .args([
            "plan",
            "dev",
            "--auto-apply",
            "--execution-time",
            "2024-01-05",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let server = PgServer::start(&s);
    let prod = server.psql(
        &psql,
        "prod",
        &[
            "select count(*), sum(amount) from shop.events",
            "select * from shop.total",
        ],
    );
    assert!(
        prod.status.success(),
        "{}",
        String::from_utf8_lossy(&prod.stderr)
    );
    assert_eq!(text(&prod), "4|100\n100\n");
    let dev = server.psql(&psql, "dev", &["select sum(doubled) from shop.events"]);
    assert!(
        dev.status.success(),
        "{}",
        String::from_utf8_lossy(&dev.stderr)
    );
    assert_eq!(text(&dev), "200\n");
}

/// A small deterministic random source, so a failure repeats.
pub(super) struct Xorshift(pub(super) u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(super) fn fill(&mut self, bytes: &mut [u8]) {
        for b in bytes {
            *b = self.next() as u8;
        }
    }
}

/// A startup packet for `user` on database `prod`.
fn startup_packet() -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0lake\0database\0prod\0\0");
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

fn frontend(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Sends `bytes` on a fresh connection and reads what comes back until the server closes or goes quiet.
fn exchange(address: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let quiet = Some(std::time::Duration::from_millis(200));
    stream.set_read_timeout(quiet).expect("timeout");
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    answer
}

/// Random frontend traffic: garbage, mutated startup packets, and a valid startup followed by random or
/// mutated messages (short Parse and Bind bodies among them). Every connection gets an answer or a close,
/// never a panic, and the server still answers a real query afterwards.
#[test]
fn malformed_frontend_messages_get_a_protocol_error_never_a_panic() {
    let s = prod_and_dev();
    let server = PgServer::start(&s);
    let address = format!("{}:{}", server.host, server.port);
    let mut rng = Xorshift(0x2545_f491_4f6c_dd1d);
    let query = frontend(b'Q', b"SELECT 1 AS one\0");
    let parse = frontend(b'P', b"s\0SELECT 1\0\0\0");
    let kinds = b"QPBCDESHXcdfpFz";
    let mut payloads = Vec::new();
    for round in 0..300 {
        let mut bytes = match round % 3 {
            0 => {
                let mut garbage = vec![0u8; rng.below(64)];
                rng.fill(&mut garbage);
                garbage
            }
            1 => {
                let mut packet = startup_packet();
                let at = rng.below(packet.len());
                packet[at] = rng.below(256) as u8;
                packet.truncate(1 + rng.below(packet.len()));
                packet
            }
            _ => startup_packet(),
        };
        if round % 3 == 2 {
            for _ in 0..1 + rng.below(3) {
                let mut message = match rng.below(3) {
                    0 => query.clone(),
                    1 => parse.clone(),
                    _ => {
                        let mut body = vec![0u8; rng.below(16)];
                        rng.fill(&mut body);
                        frontend(kinds[rng.below(kinds.len())], &body)
                    }
                };
                // Lie about the length now and then: shorter than the header, or than the fields.
                if rng.below(2) == 0 {
                    let len = rng.below(12) as i32;
                    message[1..5].copy_from_slice(&len.to_be_bytes());
                }
                bytes.extend_from_slice(&message);
            }
        }
        payloads.push(bytes);
    }
    // 08P01: the guard's protocol error, sent before the connection is closed.
    let refused: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = payloads
            .chunks(50)
            .map(|chunk| {
                let address = &address;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter(|bytes| exchange(address, bytes).windows(5).any(|w| w == b"08P01"))
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    assert!(refused > 0, "no message was refused as malformed");
    let mut real = startup_packet();
    real.extend_from_slice(&query);
    let answer = exchange(&address, &real);
    assert!(
        answer.windows(b"one".len()).any(|w| w == b"one") && answer.contains(&b'Z'),
        "the server still answers: {answer:?}"
    );
    let log = server.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// With every engine session busy, a query waits its turn for `--query-wait-timeout`, then fails with 53000
/// (insufficient resources) and a message saying what to raise; the server goes on serving.
#[test]
fn a_query_that_waits_too_long_for_a_session_gets_a_clear_error() {
    let Some(psql) = psql() else {
        return;
    };
    let s = prod_and_dev();
    let server = PgServer::start_with(
        &s,
        &[
            "--max-concurrent-queries",
            "1",
            "--query-wait-timeout",
            "300ms",
        ],
    );
    std::thread::scope(|scope| {
        let long = scope.spawn(|| {
            server.psql(
                &psql,
                "prod",
                &[
                    "SET statement_timeout = '4s'",
                    "SELECT sum(i % 7) FROM range(40000000000) t(i)",
                ],
            )
        });
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let started = std::time::Instant::now();
        let waited = server.psql(&psql, "prod", &["SELECT 1"]);
        let stderr = String::from_utf8_lossy(&waited.stderr).into_owned();
        assert!(!waited.status.success(), "the session was busy: {stderr}");
        assert!(
            stderr.contains("no engine session came free within 300ms")
                && stderr.contains("--max-concurrent-queries"),
            "{stderr}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        let long = long.join().expect("the long query");
        assert!(
            String::from_utf8_lossy(&long.stderr).contains("statement timeout"),
            "{}",
            String::from_utf8_lossy(&long.stderr)
        );
    });
    let after = server.psql(&psql, "prod", &["SELECT 1"]);
    assert_eq!(
        text(&after),
        "1\n",
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
}

/// `lake run` commits new snapshots of prod's tables without touching prod's environment; the next query
/// sees them, on a SQLite catalog and on a PostgreSQL one (the server learns of commits from the catalog's
/// change counter, not from a listing of every table).
#[test]
fn rows_a_run_commits_are_seen_by_the_next_query() {
    let Some(psql) = psql() else {
        return;
    };
    let postgres = crate::common::pg::fresh_database();
    let mut storages = vec![String::new()];
    if let Some(uri) = &postgres {
        storages.push(format!(
            "storage:\n  catalog:\n    type: postgres\n    uri: \"{uri}\"\n"
        ));
    }
    for storage in storages {
        let s = crate::dev_only::project("full", &storage);
        let out = s
            .lake()
            .args(["plan", "--auto-apply", "--execution-time", "2024-01-03"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", crate::common::stderr(&out));
        let server = PgServer::start(&s);
        let count = || {
            let out = server.psql(
                &psql,
                "prod",
                &["select count(*), sum(amount) from shop.events"],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            text(&out)
        };
        assert_eq!(count(), "2|30\n", "{storage}");
        let before = catalog_changes(
            &s,
            &psql,
            postgres.as_deref().filter(|_| !storage.is_empty()),
        );
        let out = s
            .lake()
            .args(["run", "--execution-time", "2024-01-05"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", crate::common::stderr(&out));
        let after = catalog_changes(
            &s,
            &psql,
            postgres.as_deref().filter(|_| !storage.is_empty()),
        );
        assert!(
            after > before,
            "the run's commits move the counter: {before} → {after}"
        );
        assert_eq!(count(), "4|100\n", "{storage}");
    }
}

/// The catalog's change counter, read from the PostgreSQL catalog at `postgres` or the project's SQLite one.
fn catalog_changes(s: &Scratch, psql: &PathBuf, postgres: Option<&str>) -> i64 {
    let query = "select changes from lake_catalog_changes";
    let out = match postgres {
        Some(uri) => Command::new(psql)
            .args(["-X", "-A", "-t", "-d", uri, "-c", query])
            .output()
            .unwrap(),
        None => Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])",
            ])
            .arg(s.project.join(".lake/catalog.db"))
            .arg(query)
            .output()
            .unwrap(),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text(&out).trim().parse().expect("a count")
}
