//! A corpus of broken projects: each case breaks one file of an applied demo project (a MODEL block, SQL,
//! config.yaml, a seed, a unit test, an audit, a macro, Jinja, a name, a date, a cron, an environment name, a
//! huge or binary file), runs `lake plan --auto-apply`, and expects a failing exit code, no panic and, for
//! what lives in a file, an error located at `file:line:col`. Every message goes into one snapshot. After each
//! case the project is restored and the next plan must find nothing to do, with prod's rows unchanged.

use crate::common::{EXEC, Scratch, stderr, stdout};

/// How a case breaks its file, given the file's current text ("" for a new file).
enum Edit {
    /// Replace the first occurrence of the text (which must be there).
    Replace(&'static str, &'static str),
    /// The whole file.
    Write(&'static str),
    /// The whole file, made by a function (for large or binary content).
    Make(fn() -> Vec<u8>),
}

struct Case {
    name: &'static str,
    path: &'static str,
    edit: Edit,
    /// The command after `lake`; empty: `plan --auto-apply --execution-time EXEC`.
    args: &'static [&'static str],
    located: Where,
}

/// Where the error must point.
enum Where {
    /// At `file:line:col` of the broken file.
    InFile,
    /// At `file:line:col` of another file (a cycle closes elsewhere; a call site of a broken macro), or of
    /// config.yaml's statements (`config.yaml (before_all)`).
    In(&'static str),
    /// Found only when the model runs (DuckDB reads the seed or binds the query): the message names the model
    /// but not yet the line of the file. Known gaps, listed so they stay visible.
    WhenBuilt(&'static str),
    /// A command-line mistake: no file to point at.
    CommandLine,
}

const FULL: &str = "models/full_model.sql";
const INCREMENTAL: &str = "models/incremental_model.sql";
const SEED_MODEL: &str = "models/seed_model.sql";
const SEED_CSV: &str = "seeds/seed_data.csv";
const AUDIT: &str = "audits/assert_positive_order_ids.sql";
const MACROS: &str = "macros/demo_macros.sql";
const CONFIG: &str = "config.yaml";
const UNIT_TEST: &str = "tests/test_corpus.yaml";

fn case(name: &'static str, path: &'static str, edit: Edit) -> Case {
    Case {
        name,
        path,
        edit,
        args: &[],
        located: Where::InFile,
    }
}

fn case_at(name: &'static str, path: &'static str, edit: Edit, located: Where) -> Case {
    Case {
        located,
        ..case(name, path, edit)
    }
}

fn cli(name: &'static str, args: &'static [&'static str]) -> Case {
    Case {
        name,
        path: FULL,
        edit: Edit::Replace("", ""),
        args,
        located: Where::CommandLine,
    }
}

fn cases() -> Vec<Case> {
    use Edit::{Make, Replace, Write};
    vec![
        // MODEL blocks
        case(
            "block never closed",
            FULL,
            Replace(
                "audits (assert_positive_order_ids)\n);",
                "audits (assert_positive_order_ids)\n",
            ),
        ),
        case(
            "missing comma between properties",
            FULL,
            Replace("kind FULL,\n", "kind FULL\n"),
        ),
        case(
            "misspelt property",
            FULL,
            Replace("grain item_id", "grian item_id"),
        ),
        case("unknown kind", FULL, Replace("kind FULL", "kind FULLL")),
        case(
            "block without a name",
            FULL,
            Replace("  name demo.full_model,\n", ""),
        ),
        case(
            "property given twice",
            FULL,
            Replace("kind FULL,", "kind FULL,\n  kind VIEW,"),
        ),
        case(
            "misspelt kind parameter",
            INCREMENTAL,
            Replace("time_column event_date", "time_colum event_date"),
        ),
        case(
            "time range kind without time_column",
            INCREMENTAL,
            Replace(
                "kind INCREMENTAL_BY_TIME_RANGE (\n    time_column event_date\n  ),",
                "kind INCREMENTAL_BY_TIME_RANGE,",
            ),
        ),
        case(
            "batch_size that is not a number",
            INCREMENTAL,
            Replace(
                "time_column event_date",
                "time_column event_date,\n    batch_size 'ten'",
            ),
        ),
        case(
            "model without a query",
            FULL,
            Write("MODEL (\n  name demo.full_model,\n  kind FULL\n);\n"),
        ),
        case(
            "lists nested too deeply",
            FULL,
            Make(|| {
                let text = std::fs::read_to_string(template(FULL)).expect("template");
                text.replace(
                    "grain item_id",
                    &format!("grain {}item_id{}", "(".repeat(100), ")".repeat(100)),
                )
                .into_bytes()
            }),
        ),
        case(
            "string never closed in the block",
            FULL,
            Replace("cron '@daily'", "cron '@daily"),
        ),
        case(
            "unknown change policy",
            INCREMENTAL,
            Replace(
                "time_column event_date",
                "time_column event_date,\n    on_destructive_change sometimes",
            ),
        ),
        case(
            "when_matched that is not a MERGE clause",
            FULL,
            Replace(
                "kind FULL",
                "kind INCREMENTAL_BY_UNIQUE_KEY (unique_key item_id, when_matched (WHEN NOT MATCHED THEN INSERT VALUES (1)))",
            ),
        ),
        // SQL
        case(
            "syntax error in the query",
            FULL,
            Replace(
                "COUNT(DISTINCT id) AS num_orders",
                "COUNT(DISTINCT id) AS num_orders,,",
            ),
        ),
        case(
            "unbalanced parenthesis in the query",
            FULL,
            Replace("COUNT(DISTINCT id)", "COUNT(DISTINCT id"),
        ),
        case(
            "reference to a model that does not exist",
            FULL,
            Replace("FROM demo.incremental_model", "FROM demo.incremental_modle"),
        ),
        case_at(
            "dependency cycle",
            FULL,
            Replace("FROM demo.incremental_model", "FROM demo.view_model"),
            Where::In("models/view_model.sql"),
        ),
        case(
            "FULL model reading itself",
            FULL,
            Replace("FROM demo.incremental_model", "FROM demo.full_model"),
        ),
        case_at(
            "column that does not exist",
            FULL,
            Replace("COUNT(DISTINCT id)", "COUNT(DISTINCT idd)"),
            Where::WhenBuilt("demo.full_model"),
        ),
        case("empty model file", "models/empty.sql", Write("")),
        case(
            "model file of comments only",
            "models/comments.sql",
            Write("-- nothing here yet\n/* still nothing */\n"),
        ),
        case_at(
            "two models with one name",
            "models/duplicate.sql",
            Write("MODEL (name demo.full_model, kind FULL);\nSELECT 1 AS item_id\n"),
            // Files load in name order: the second definition is the demo's own.
            Where::In(FULL),
        ),
        case(
            "name with a space",
            "models/spaced.sql",
            Write("MODEL (name demo.spaced model, kind FULL);\nSELECT 1 AS x\n"),
        ),
        case(
            "unqualified model name",
            "models/bare.sql",
            Write("MODEL (name bare, kind FULL);\nSELECT 1 AS x\n"),
        ),
        // config.yaml
        case(
            "YAML with a tab",
            CONFIG,
            Replace("gateways:\n", "gateways:\n\tbroken: true\n"),
        ),
        case(
            "YAML that is a list",
            CONFIG,
            Write("- gateways\n- local\n"),
        ),
        case(
            "default_gateway that does not exist",
            CONFIG,
            Replace("default_gateway: local", "default_gateway: nowhere"),
        ),
        case(
            "TTL that is not a duration",
            CONFIG,
            Replace("model_defaults:", "snapshot_ttl: forever\nmodel_defaults:"),
        ),
        case(
            "model_defaults.start that is a list",
            CONFIG,
            Replace("start: 2020-01-01", "start: [1, 2]"),
        ),
        case(
            "model_defaults.cron that is not a schedule",
            CONFIG,
            Replace("cron: '@daily'", "cron: 'every tuesday'"),
        ),
        case(
            "connection type lake does not know",
            CONFIG,
            Replace("type: duckdb", "type: duckdbb"),
        ),
        case(
            "environment variable that is not set",
            CONFIG,
            Replace(
                "database: db.db",
                "database: \"{{ env_var('LAKE_CORPUS_UNSET') }}\"",
            ),
        ),
        case(
            "virtual_environment_mode lake does not know",
            CONFIG,
            Replace(
                "model_defaults:",
                "virtual_environment_mode: dev-only\nmodel_defaults:",
            ),
        ),
        case(
            "MODEL virtual_environment_mode lake does not know",
            FULL,
            Replace(
                "kind FULL,",
                "kind FULL,\n  virtual_environment_mode sometimes,",
            ),
        ),
        case(
            "model_defaults policy lake does not know",
            CONFIG,
            Replace(
                "model_defaults:",
                "model_defaults:\n  on_additive_change: perhaps",
            ),
        ),
        case_at(
            "before_all statement that does not render",
            CONFIG,
            Replace(
                "model_defaults:",
                "before_all:\n  - SELECT @not_a_variable\nmodel_defaults:",
            ),
            Where::In("config.yaml (before_all)"),
        ),
        // seeds
        case(
            "seed file that does not exist",
            SEED_MODEL,
            Replace("seed_data.csv", "no_such_seed.csv"),
        ),
        case(
            "seed value of the wrong type",
            SEED_CSV,
            Replace("3,3,2020-01-03", "three,3,2020-01-03"),
        ),
        case(
            "seed date that does not exist",
            SEED_CSV,
            Replace("3,3,2020-01-03", "3,3,2020-13-45"),
        ),
        case_at(
            "seed row with too few values",
            SEED_CSV,
            Replace("3,3,2020-01-03", "3,3"),
            Where::WhenBuilt("demo.seed_model"),
        ),
        case_at(
            "binary seed file",
            SEED_CSV,
            Make(|| (0..=255u8).cycle().take(4096).collect()),
            Where::WhenBuilt("demo.seed_model"),
        ),
        // unit tests
        case(
            "unit test YAML that does not parse",
            UNIT_TEST,
            Write("test_x:\n  model: [unclosed\n"),
        ),
        case(
            "unit test of a model that does not exist",
            UNIT_TEST,
            Write(
                "test_x:\n  model: demo.nope\n  outputs:\n    query:\n      rows:\n      - item_id: 1\n",
            ),
        ),
        case(
            "unit test without outputs",
            UNIT_TEST,
            Write(
                "test_x:\n  model: demo.full_model\n  inputs:\n    demo.incremental_model:\n      rows:\n      - id: 1\n        item_id: 1\n",
            ),
        ),
        // audits
        case(
            "audit that does not exist",
            FULL,
            Replace(
                "audits (assert_positive_order_ids)",
                "audits (assert_positive_order_idz)",
            ),
        ),
        case(
            "audit block without a name",
            AUDIT,
            Replace("name assert_positive_order_ids\n", "blocking false\n"),
        ),
        case(
            "audit query that does not parse",
            AUDIT,
            Replace("item_id < 0", "item_id <"),
        ),
        case(
            "built-in audit without its columns",
            FULL,
            Replace("audits (assert_positive_order_ids)", "audits (not_null)"),
        ),
        // macros
        case(
            "unknown macro variable",
            INCREMENTAL,
            Replace("@start_date", "@start_dat"),
        ),
        case(
            "unknown macro function",
            INCREMENTAL,
            Replace("@is_positive(id)", "@is_positve(id)"),
        ),
        case(
            "macro call never closed",
            INCREMENTAL,
            Replace("@is_positive(id)", "@is_positive(id"),
        ),
        case(
            "braced macro variable never closed",
            INCREMENTAL,
            Replace("@start_date", "@{start_date"),
        ),
        case(
            "@DEF without its comma",
            MACROS,
            Replace(
                "@DEF(is_positive, x -> x > 0);",
                "@DEF(is_positive x -> x > 0);",
            ),
        ),
        case_at(
            "macro that calls itself forever",
            MACROS,
            Replace(
                "@DEF(is_positive, x -> x > 0);",
                "@DEF(is_positive, x -> @is_positive(x));",
            ),
            // Where the endless call starts.
            Where::In(INCREMENTAL),
        ),
        // Jinja
        case(
            "Jinja expression that does not parse",
            FULL,
            Write(
                "MODEL (name demo.full_model, kind FULL);\nJINJA_QUERY_BEGIN;\nSELECT {{ 1 + }} AS item_id\nJINJA_END;\n",
            ),
        ),
        case(
            "Jinja block without JINJA_END",
            FULL,
            Write(
                "MODEL (name demo.full_model, kind FULL);\nJINJA_QUERY_BEGIN;\nSELECT 1 AS item_id\n",
            ),
        ),
        case(
            "Jinja filter that does not exist",
            FULL,
            Write(
                "MODEL (name demo.full_model, kind FULL);\nJINJA_QUERY_BEGIN;\nSELECT {{ 1 | no_such_filter }} AS item_id\nJINJA_END;\n",
            ),
        ),
        // dates and crons
        case(
            "start date that does not exist",
            INCREMENTAL,
            Replace("start '2020-01-01'", "start '2020-02-30'"),
        ),
        case(
            "start that is not a time",
            INCREMENTAL,
            Replace("start '2020-01-01'", "start 'yesterday-ish'"),
        ),
        case(
            "cron that is not a schedule",
            FULL,
            Replace("cron '@daily'", "cron 'every tuesday'"),
        ),
        case(
            "cron minute out of range",
            FULL,
            Replace("cron '@daily'", "cron '61 * * * *'"),
        ),
        case(
            "interval_unit lake does not know",
            INCREMENTAL,
            Replace(
                "cron '@daily',",
                "cron '@daily',\n  interval_unit fortnight,",
            ),
        ),
        // huge and binary files
        case(
            "binary model file",
            "models/binary.sql",
            Make(|| (0..=255u8).rev().cycle().take(8192).collect()),
        ),
        case(
            "huge model file broken on its last line",
            "models/huge.sql",
            Make(|| {
                let mut text = String::from("MODEL (name demo.huge, kind FULL);\nSELECT\n");
                for i in 0..100_000 {
                    text.push_str(&format!("  {i} AS c{i},\n"));
                }
                text.push_str("  FROM FROM\n");
                text.into_bytes()
            }),
        ),
        // the command line
        cli("environment name with spaces", &["plan", "bad env!"]),
        cli(
            "execution time that is not a time",
            &["plan", "--execution-time", "half past never"],
        ),
        cli(
            "restating a model that does not exist",
            &[
                "plan",
                "--restate-model",
                "demo.nope",
                "--execution-time",
                EXEC,
            ],
        ),
        cli(
            "run of an environment that does not exist",
            &["run", "nowhere", "--execution-time", EXEC],
        ),
        cli(
            "start after end",
            &[
                "plan",
                "dev",
                "--start",
                "2024-02-01",
                "--end",
                "2024-01-01",
                "--execution-time",
                EXEC,
            ],
        ),
    ]
}

/// The file `lake init` writes at `path`.
fn template(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("project-template")
        .join(path)
}

/// Whether `message` names `path` followed by `:line:column`.
fn located_in(message: &str, path: &str) -> bool {
    message
        .match_indices(&format!("{path}:"))
        .any(|(at, found)| {
            let rest = &message[at + found.len()..];
            let mut parts = rest.splitn(3, ':');
            let line = parts.next().unwrap_or_default();
            let column: String = parts
                .next()
                .unwrap_or_default()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            !line.is_empty() && line.chars().all(|c| c.is_ascii_digit()) && !column.is_empty()
        })
}

#[test]
fn broken_projects_fail_located_and_leave_prod_as_it_was() {
    let s = Scratch::init();
    s.apply(EXEC);
    s.assert_demo_results();
    let mut report = String::new();
    let mut unlocated = Vec::new();
    let mut accepted = Vec::new();
    for case in cases() {
        let file = s.project.join(case.path);
        let before = std::fs::read(&file).ok();
        let current = before
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let broken: Vec<u8> = match &case.edit {
            Edit::Replace(from, to) => {
                assert!(
                    current.contains(from),
                    "{}: `{from}` is not in {}",
                    case.name,
                    case.path
                );
                current.replacen(from, to, 1).into_bytes()
            }
            Edit::Write(text) => text.as_bytes().to_vec(),
            Edit::Make(make) => make(),
        };
        std::fs::create_dir_all(file.parent().expect("a folder")).expect("folder");
        std::fs::write(&file, &broken).expect("write the broken file");
        let args: Vec<&str> = if case.args.is_empty() {
            vec!["plan", "--auto-apply", "--execution-time", EXEC]
        } else {
            case.args.to_vec()
        };
        let out = s.lake().args(&args).output().expect("run lake");
        let message = stderr(&out);
        let code = out.status.code().unwrap_or(-1);
        assert!(!message.contains("panicked"), "{}: {message}", case.name);
        if code != 1 && code != 2 {
            accepted.push(format!(
                "{}: exit {code}\n{}{message}",
                case.name,
                stdout(&out)
            ));
        } else {
            let located = match case.located {
                Where::InFile => located_in(&message, case.path),
                Where::In(path) => located_in(&message, path),
                Where::WhenBuilt(model) => {
                    message.contains(&format!("model `{model}` failed"))
                        && message.contains("the environment `prod` was not updated")
                }
                Where::CommandLine => !message.trim().is_empty(),
            };
            if !located {
                unlocated.push(format!("{}: {message}", case.name));
            }
        }
        // Only the first lines (the huge and binary cases quote their source), with control characters a
        // binary file brings shown as `·`, so the snapshot stays text.
        let printable: String = message
            .chars()
            .map(|c| if c.is_control() && c != '\n' { '·' } else { c })
            .collect();
        let lines: Vec<&str> = printable.lines().collect();
        let head = lines.len().min(12);
        let mut shown: Vec<&str> = lines[..head].to_vec();
        // A failed build reports the model's error after the summary: its first lines too.
        if let Some(at) = lines.iter().position(|l| l.starts_with("Error: ")) {
            let until = (at + 5).min(lines.len());
            if at > head {
                shown.push("…");
            }
            let from = at.max(head);
            if from < until {
                shown.extend_from_slice(&lines[from..until]);
            }
        }
        report.push_str(&format!(
            "## {} (exit {code})\n{}\n\n",
            case.name,
            shown.join("\n").trim_end()
        ));

        match before {
            Some(original) => std::fs::write(&file, original).expect("restore"),
            None => std::fs::remove_file(&file).expect("remove the added file"),
        }
        if code == 0 {
            // Accepted (reported below): prod took the change, so the restored files are applied again for the
            // next case to start from the demo.
            s.apply(EXEC);
        }
        eprintln!("restored after `{}`", case.name);
        s.assert_no_changes();
        s.assert_demo_results();
    }
    assert!(
        accepted.is_empty(),
        "broken projects lake accepted:\n{}",
        accepted.join("\n")
    );
    assert!(
        unlocated.is_empty(),
        "errors not located in their file:\n{}",
        unlocated.join("\n")
    );
    assert!(cases().len() >= 50);
    // Build timings, the scratch folder and physical table versions vary between runs; the messages do not.
    insta::with_settings!({filters => vec![
        (r"\d+\.\d\ds", "[time]"),
        // tempfile's folders are `.tmpXXXXXX` under the system's temporary directory, wherever that is.
        (r"(/[\w.-]+)*/\.tmp\w+", "[scratch]"),
        (r"__[0-9a-f]{16}", "__[version]"),
    ]}, {
        insta::assert_snapshot!("broken_projects", report);
    });
}
