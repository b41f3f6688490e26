//! Helpers shared by the integration tests: run the real `lake` binary in temporary projects.
#![allow(dead_code)]

pub mod pg;
pub mod readers;
pub mod s3;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The execution time tests pin, so the demo's incremental model has a known set of complete intervals.
pub const EXEC: &str = "2024-06-01 12:00:00";

/// A scratch directory holding one project.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub project: PathBuf,
    /// Environment variables every `lake` command of this project gets (e.g. S3 credentials).
    pub env: Vec<(String, String)>,
}

impl Scratch {
    /// A fresh project made by `lake init`.
    /// `lake init demo`, without the demo's unit test: most tests edit the demo's models freely, and a plan
    /// would refuse to run once the unit test no longer matches (tests/it/unit_tests.rs covers that).
    pub fn init() -> Scratch {
        let s = Scratch::init_with_unit_tests();
        std::fs::remove_file(s.project.join("tests/test_full_model.yaml"))
            .expect("the demo's unit test");
        s
    }

    /// `lake init demo`, exactly as a user gets it.
    pub fn init_with_unit_tests() -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        let project = dir.path().join("demo");
        lake(dir.path()).args(["init", "demo"]).assert().success();
        Scratch {
            dir,
            project,
            env: Vec::new(),
        }
    }

    /// An empty project directory to write files into.
    pub fn empty() -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        let project = dir.path().join("p");
        std::fs::create_dir_all(project.join("models")).expect("models dir");
        Scratch {
            dir,
            project,
            env: Vec::new(),
        }
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.project.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write file");
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.project.join(relative)).expect("read file")
    }

    /// `lake` with `-p <project>` and deterministic output settings.
    pub fn lake(&self) -> Command {
        let mut cmd = lake(&self.project);
        cmd.arg("-p")
            .arg(&self.project)
            .envs(self.env.iter().cloned());
        cmd
    }

    /// `lake plan --auto-apply` at a pinned execution time; fails the test unless it succeeds.
    pub fn apply(&self, execution_time: &str) -> std::process::Output {
        self.apply_args(&["plan", "--auto-apply", "--execution-time", execution_time])
    }

    /// `lake plan ENV --auto-apply` at a pinned execution time; fails the test unless it succeeds.
    pub fn apply_env(&self, environment: &str, execution_time: &str) -> std::process::Output {
        self.apply_args(&[
            "plan",
            environment,
            "--auto-apply",
            "--execution-time",
            execution_time,
        ])
    }

    /// `lake ARGS`; fails the test unless it succeeds.
    pub fn apply_args(&self, args: &[&str]) -> std::process::Output {
        let out = self.lake().args(args).output().expect("run lake");
        assert!(out.status.success(), "{}", stderr(&out));
        out
    }

    /// `lake plan --auto-apply` as a child process whose stderr the test reads while it runs.
    pub fn spawn_apply(&self, execution_time: &str) -> std::process::Child {
        self.spawn(
            &["plan", "--auto-apply", "--execution-time", execution_time],
            std::process::Stdio::null(),
        )
    }

    /// `lake ARGS` as a child process, stderr piped.
    pub fn spawn(&self, args: &[&str], stdout: std::process::Stdio) -> std::process::Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("lake"))
            .arg("-p")
            .arg(&self.project)
            .args(args)
            .env("NO_COLOR", "1")
            .envs(self.env.iter().cloned())
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn lake")
    }

    /// Fails the test unless `lake plan` at `EXEC` finds nothing to change and nothing to build.
    pub fn assert_no_changes(&self) {
        let out = self
            .lake()
            .args(["plan", "--execution-time", EXEC])
            .output()
            .expect("run lake");
        assert_eq!(
            stdout(&out),
            "No changes to plan: project files match the `prod` environment\n",
            "{}",
            stderr(&out)
        );
    }

    /// The rows `lake init`'s demo models hold after a build, read through prod's names.
    pub fn assert_demo_results(&self) {
        assert_eq!(
            self.csv("select * from demo.full_model order by item_id"),
            "item_id,num_orders\n1,5\n2,1\n3,1\n"
        );
        assert_eq!(
            self.csv("select * from demo.view_model"),
            "item_id,num_orders\n1,5\n"
        );
    }

    /// Runs `lake fetchdf --format csv SQL` and returns stdout.
    pub fn csv(&self, sql: &str) -> String {
        let out = self
            .lake()
            .args(["fetchdf", "--format", "csv", sql])
            .output()
            .expect("run lake");
        assert!(
            out.status.success(),
            "fetchdf failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    }
}

/// The `lake` binary with colour off and a fixed working directory.
pub fn lake(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("lake").expect("lake binary");
    cmd.current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE");
    cmd
}

pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// stderr as one line of words: a message miette wrapped at the terminal's width (and its `│` gutter) reads
/// as written, for `contains` checks.
pub fn stderr_words(output: &std::process::Output) -> String {
    stderr(output)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lines of stderr that report a model build (`[n/m] name [action] …`).
pub fn built_models(output: &std::process::Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|l| l.starts_with('['))
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect()
}
