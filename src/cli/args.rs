//! The command line's grammar: every command, flag and help text, as clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::PROD;

const ABOUT: &str = "Plan and apply SQL models on DuckDB, SQLMesh-style: every model version gets its own \
physical table, environments are views over them, and nothing is rebuilt that has not changed.";

const AFTER_HELP: &str = "\
Getting started:
  lake init demo && cd demo
  lake plan --auto-apply                          # build prod
  lake fetchdf \"select * from demo.full_model\"    # query it
  lake plan dev_alice                             # try a change in an isolated environment

Exit codes: 0 success, 1 failure, 2 usage error.";

/// The heading global options are listed under in every command's `--help`, after the command's own.
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(name = "lake", version, about = ABOUT, after_help = AFTER_HELP, propagate_version = true)]
pub(super) struct Cli {
    /// Project directory (holds config.yaml).
    #[arg(
        short = 'p',
        long = "path",
        visible_alias = "paths",
        global = true,
        default_value = ".",
        help_heading = GLOBAL
    )]
    pub(super) path: PathBuf,

    /// Read this YAML file (relative to the project) instead of config.yaml, e.g. `--config ci.yaml`.
    /// (SQLMesh's `--config` names a config.py object; lake reads YAML only.)
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub(super) config: Option<PathBuf>,

    /// Gateway from config.yaml to use (default: `default_gateway`).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(super) gateway: Option<String>,

    /// More detail on stderr: -v shows configuration warnings in full.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub(super) verbose: u8,

    /// Everything -v shows, and on failure the error's kind and every cause in its chain (for a bug report).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(super) debug: bool,

    /// After the command, print on stderr where its time went: each phase (project load, state, rendering,
    /// DuckDB queries, Parquet encoding, Iceberg metadata, catalog commits, views, audits) with its time,
    /// summed over worker threads, and how often it ran; then wall and CPU time.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(super) profile: bool,

    /// When to use colour. `auto` colours only a terminal and honours NO_COLOR.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, help_heading = GLOBAL)]
    pub(super) color: ColorChoice,

    #[command(subcommand)]
    pub(super) command: Command,
}

/// Output formats for rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RowFormat {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Create a new project: config.yaml, SEED, FULL and VIEW models, a seed CSV, tests and audits.
    Init(InitArgs),
    /// Show how the project differs from an environment, then build and promote the changes.
    ///
    /// Without --auto-apply, a terminal is asked to confirm; anything else only prints the plan.
    /// A dev environment reuses prod's tables for every model it does not change (zero copy).
    Plan(PlanArgs),
    /// Write a unit test for MODEL from live data: each --query gives an upstream model's input rows, and the
    /// expected output is what the model's query makes of them now.
    ///
    /// `lake create-test demo.full_model --query demo.incremental_model "SELECT * FROM demo.incremental_model LIMIT 5"`
    CreateTest(CreateTestArgs),
    /// Run the unit tests in tests/*.yaml on in-memory DuckDB; exit 1 if any fails.
    ///
    /// Select tests as `tests/file.yaml`, `tests/file.yaml::test_name` or `test_name`:
    /// `lake test tests/test_full_model.yaml::test_full_model`.
    Test(TestArgs),
    /// Check the models against the rules chosen under `linter:` in config.yaml; exit 1 on an error.
    ///
    /// Rules: ambiguousorinvalidcolumn, invalidselectstarexpansion (both checked by DuckDB's binder on
    /// empty tables), noselectstar, noambiguousprojections, nomissingaudits, nomissingowner,
    /// nomissingunittest. Turn them on with `linter: {enabled: true, rules: ALL}`; `warn_rules` only warn,
    /// `ignored_rules` (also a MODEL property) skip. Every plan lints first unless --skip-linter.
    Lint(LintArgs),
    /// Rewrite models/*.sql and audits/*.sql in one canonical style (`--check` in CI)
    ///
    /// MODEL properties one per line, SQL keywords upper-case at the start of clauses, one select item per
    /// line. Names keep their case and comments stay; a statement lake cannot re-lay without changing its
    /// meaning is kept as written and listed. In CI, `lake format --check` changes nothing and exits 1 when
    /// a file would change.
    Format(FormatArgs),
    /// Upgrade the state written by an older lake to this lake's schema (one transaction).
    Migrate,
    /// Undo the last `lake migrate`, for the older lake that wrote the state.
    ///
    /// The state goes back to the schema and rows it had before the migration (as SQLMesh's `rollback`):
    /// plans applied since then are undone too.
    Rollback,
    /// Export or import the whole state (environments, snapshots, intervals) as one JSON file: to back it
    /// up, or to move it, e.g. from the embedded `.lake/state.db` to a gateway's PostgreSQL
    /// `state_connection` (export, change config.yaml, import).
    #[command(subcommand)]
    State(StateCommand),
    /// Write external_models.yaml: every table models read that lake does not build, with its columns.
    CreateExternalModels,
    /// Show each incremental model's complete and missing intervals in an environment.
    CheckIntervals(CheckIntervalsArgs),
    /// Show how the project differs from an environment; exit 1 if it does, 0 if it matches.
    Diff(DiffArgs),
    /// List environments: when each was last updated and when it expires.
    Environments(EnvironmentsArgs),
    /// Expire an environment now; the janitor then removes its names (prod cannot be invalidated).
    Invalidate(InvalidateArgs),
    /// Remove expired environments, then drop the tables no environment uses once their TTL has passed.
    ///
    /// Best-effort: a failure is reported and the rest still runs (exit 1 if anything failed).
    Janitor(JanitorArgs),
    /// Run the models' audits on the data of the project's versions; exit 1 if a blocking audit finds bad rows.
    ///
    /// Audits the version each model's files define once a plan built it (also when its failing audits kept
    /// the plan from promoting it), else the one the environment serves. Each failing audit prints its query
    /// and a sample of the bad rows: `lake audit --model demo.full_model --start 2024-01-01 --end 2024-01-31`.
    Audit(AuditArgs),
    /// Print the physical table that holds a model's data in an environment.
    TableName(TableNameArgs),
    /// Delete lake's caches (`cache_dir`, kept test fixtures); state and data are untouched.
    Clean,
    /// Delete everything the project made: every environment's views, every model version's table, the
    /// state's records of them, and the caches. Asks first; `--yes` does not.
    Destroy(DestroyArgs),
    /// Compare a model between two environments: schema, row counts and per-column match rates.
    ///
    /// Rows are joined on --on, or on the model's `grain`: `lake table-diff prod:dev demo.full_model`.
    TableDiff(TableDiffArgs),
    /// Rebuild the models of an environment whose cron is due (and any missing data).
    Run(RunArgs),
    /// Print the SQL a model would run, with macros rendered and physical table names.
    ///
    /// `--dialect spark` prints the Spark SQL a Spark gateway's engine runs for it (DuckDB SQL translated).
    Render(RenderArgs),
    /// Run a model's query and print its rows, writing nothing.
    Evaluate(EvaluateArgs),
    /// Run SQL against the warehouse and print the result (environments resolve, e.g. demo__dev.model).
    Fetchdf(FetchdfArgs),
    /// Print the model dependency graph, or write it as a page to open in a browser (`lake dag dag.html`).
    Dag(DagArgs),
    /// Where a model's columns come from, column by column (or with --downstream, what reads them).
    ///
    /// `lake lineage demo.full_model.num_orders` shows the upstream columns it is made of and how (copied,
    /// renamed, cast, expression, aggregate, window), and the columns that select the model's rows (filters,
    /// join keys, groupings). Traced from each model's rendered query; what lake cannot trace is marked
    /// opaque, never guessed.
    Lineage(LineageArgs),
    /// Show the project's models, macros, environments and whether the engine answers.
    Info(InfoArgs),
    /// Serve the lakehouse to other engines: an Iceberg REST catalog over every environment.
    ///
    /// DuckDB: ATTACH 'lake' AS lake (TYPE iceberg, ENDPOINT 'http://127.0.0.1:8181', AUTHORIZATION_TYPE
    /// 'none'); then SELECT * FROM lake.demo.full_model (prod) or lake.demo__dev_alice.full_model.
    /// pyiceberg: load_catalog("lake", type="rest", uri="http://127.0.0.1:8181"). Ctrl-C stops it.
    Serve(ServeArgs),
}

// `lake init`'s arguments.
#[derive(Args)]
pub(super) struct InitArgs {
    /// Directory to create the project in (default: --path).
    pub(super) dir: Option<PathBuf>,
    /// Write the template even if the directory is not empty (overwrites template files).
    #[arg(long)]
    pub(super) force: bool,
}

// `lake plan`'s arguments.
#[derive(Args)]
pub(super) struct PlanArgs {
    /// Environment to plan for [default: `default_target_environment` of config.yaml, else prod].
    pub(super) environment: Option<String>,
    /// Apply without asking.
    #[arg(long)]
    pub(super) auto_apply: bool,
    /// Never ask; print the plan and apply only with --auto-apply.
    #[arg(long)]
    pub(super) no_prompts: bool,
    /// Give a dev environment names for every model, not only the changed ones.
    #[arg(long)]
    pub(super) include_unmodified: bool,
    /// Pin "now" (YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS", UTC) for reproducible runs.
    #[arg(long)]
    pub(super) execution_time: Option<String>,
    /// Keep every changed model's physical table in prod: the change applies to data built from now on.
    /// Nothing is rebuilt; the next `lake run` uses the new logic. In a dev environment, the change is
    /// previewed in tables of its own that prod never takes over. `plan.forward_only: true` in
    /// config.yaml makes it the default.
    #[arg(long)]
    pub(super) forward_only: bool,
    /// `text`: a tree on a terminal, Markdown in a pipe. `json`: one document for CI (never prompts).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub(super) format: PlanFormat,
    /// Build incremental intervals from this date on (YYYY-MM-DD, a timestamp, or relative: `yesterday`,
    /// `3 days ago`): a dev plan's range, or with --restate-model the range restated in any environment.
    #[arg(short, long)]
    pub(super) start: Option<String>,
    /// Build incremental intervals up to this date, inclusive (as --start).
    #[arg(short, long)]
    pub(super) end: Option<String>,
    /// Rebuild this model (its intervals within --start/--end) and everything downstream; repeatable.
    #[arg(short, long = "restate-model", value_name = "MODEL")]
    pub(super) restate_model: Vec<String>,
    /// Plan without running the unit tests in tests/*.yaml first.
    #[arg(long)]
    pub(super) skip_tests: bool,
    /// Plan without running the linter first (when `linter.enabled` is true).
    #[arg(long)]
    pub(super) skip_linter: bool,
    /// Apply this forward-only model's destructive column changes (a dropped column, a narrowed type)
    /// even though its `on_destructive_change` says otherwise; repeatable.
    #[arg(long = "allow-destructive-model", value_name = "MODEL")]
    pub(super) allow_destructive_model: Vec<String>,
    /// Apply this model's additive column changes even though its `on_additive_change` says otherwise.
    #[arg(long = "allow-additive-model", value_name = "MODEL")]
    pub(super) allow_additive_model: Vec<String>,
    /// Leave out the text differences of changed models (also in --format json). `plan.no_diff: true` in
    /// config.yaml makes it the default.
    #[arg(long)]
    pub(super) no_diff: bool,
    /// A new dev environment starts from this environment's versions instead of prod's (ignored once it
    /// exists).
    #[arg(long, value_name = "ENVIRONMENT")]
    pub(super) create_from: Option<String>,
    /// Prod only: after applying (or when there is nothing to apply), build what `lake run` would: the
    /// models whose cron is due and any missing intervals.
    #[arg(long)]
    pub(super) run: bool,
    /// With --run: rebuild FULL models even if their cron is not due.
    #[arg(long, requires = "run")]
    pub(super) ignore_cron: bool,
    /// Create the tables without rows and promote them; nothing is recorded as built, so the next
    /// `lake run` (or plan) fills them.
    #[arg(long, visible_alias = "dry-run")]
    pub(super) skip_backfill: bool,
    /// Create the tables without rows and record their intervals as built: nothing is ever backfilled.
    #[arg(long)]
    pub(super) empty_backfill: bool,
    /// Plan only the changes of the models this selects; every other model keeps the version the
    /// environment has (a new model must be selected). Selectors as for --backfill-model; repeatable.
    #[arg(long = "select-model", value_name = "SELECTOR")]
    pub(super) select_model: Vec<String>,
    /// Dev plans: backfill only the models this selects, and their upstream; the rest are created empty.
    /// A selector is a name, a glob (`demo.*`), `tag:NAME`, `+name` (with upstream) or `name+` (with
    /// downstream); repeatable.
    #[arg(long = "backfill-model", value_name = "SELECTOR")]
    pub(super) backfill_model: Vec<String>,
    /// Diff the rendered queries (macros expanded, one clause per line) instead of the model files.
    #[arg(long)]
    pub(super) diff_rendered: bool,
    /// Say why each model is in the plan (its change, its category, what it builds and why), then stop:
    /// nothing is applied.
    #[arg(long)]
    pub(super) explain: bool,
    /// Choose each directly modified model's category yourself: a terminal asks for every one (no
    /// default); anywhere else the plan stops.
    #[arg(long)]
    pub(super) no_auto_categorization: bool,
    /// Dev plans with --start: still cover at least this many of each incremental model's intervals (a
    /// weekly model planned from yesterday gets its last N weeks).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(super) min_intervals: u32,
    /// Refuse the plan if a new version of an incremental model would lack intervals the version it
    /// replaces has (e.g. when --start/--end leave them out).
    #[arg(long)]
    pub(super) no_gaps: bool,
    /// Dev plans: preview forward-only changes in tables of their own, even where config.yaml's
    /// `plan.enable_preview: false` turns previews off (then dev shows prod's tables of those models).
    #[arg(long)]
    pub(super) enable_preview: bool,
    /// Prod: apply this plan's forward-only changes to data from this date on (those intervals are rebuilt
    /// with the new logic, in the kept tables), not only to data built from now on.
    #[arg(long, value_name = "DATE")]
    pub(super) effective_from: Option<String>,
}

// `lake create-test`'s arguments.
#[derive(Args)]
pub(super) struct CreateTestArgs {
    /// The model to test, as `schema.name`.
    pub(super) model: String,
    /// `UPSTREAM_MODEL SQL`; repeatable.
    #[arg(long = "query", num_args = 2, value_names = ["UPSTREAM", "SQL"], required = true)]
    pub(super) queries: Vec<String>,
    /// The test's name [default: test_<model>]; it also names the file, tests/<NAME>.yaml.
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Where to write it, relative to the project [default: tests/<NAME>.yaml].
    #[arg(long, visible_alias = "path", value_name = "FILE")]
    pub(super) file: Option<PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    pub(super) overwrite: bool,
    /// `NAME VALUE`: a variable the model reads (`@VAR('NAME')`, `{{ var('NAME') }}`, `start`, `end`,
    /// `execution_time`), written to the test's `vars`; repeatable.
    #[arg(long = "var", num_args = 2, value_names = ["NAME", "VALUE"])]
    pub(super) vars: Vec<String>,
    /// Also write the rows each CTE of the model's query makes, as `outputs.ctes`.
    #[arg(long)]
    pub(super) include_ctes: bool,
}

// `lake test`'s arguments.
#[derive(Args)]
pub(super) struct TestArgs {
    /// Tests to run: `tests/file.yaml`, `tests/file.yaml::test_name` or `test_name` [default: all].
    pub(super) tests: Vec<String>,
    /// Only tests whose name contains this text, or matches it as a glob (`test_*_totals`).
    #[arg(short = 'k', value_name = "PATTERN")]
    pub(super) pattern: Option<String>,
    /// Keep each test's input tables in a DuckDB file under .lake/test-fixtures/ to inspect after it ran.
    #[arg(long)]
    pub(super) preserve_fixtures: bool,
}

// `lake lint`'s arguments.
#[derive(Args)]
pub(super) struct LintArgs {
    /// Only these models (repeatable); default: every model.
    #[arg(long = "model", value_name = "MODEL")]
    pub(super) models: Vec<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub(super) json: bool,
}

// `lake format`'s arguments.
#[derive(Args)]
pub(super) struct FormatArgs {
    /// Only report the files that would change; exit 1 if any would.
    #[arg(long)]
    pub(super) check: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub(super) json: bool,
}

// `lake check-intervals`'s arguments.
#[derive(Args)]
pub(super) struct CheckIntervalsArgs {
    /// The environment whose intervals to show.
    #[arg(default_value = PROD)]
    pub(super) environment: String,
    /// Pin "now" (UTC).
    #[arg(long)]
    pub(super) execution_time: Option<String>,
}

// `lake diff`'s arguments.
#[derive(Args)]
pub(super) struct DiffArgs {
    /// The environment to compare the project with.
    #[arg(default_value = PROD)]
    pub(super) environment: String,
}

// `lake environments`'s arguments.
#[derive(Args)]
pub(super) struct EnvironmentsArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub(super) json: bool,
}

// `lake invalidate`'s arguments.
#[derive(Args)]
pub(super) struct InvalidateArgs {
    /// The development environment to expire (prod cannot be).
    pub(super) environment: String,
    /// Run the janitor for this environment at once.
    #[arg(long)]
    pub(super) sync: bool,
}

// `lake janitor`'s arguments.
#[derive(Args)]
pub(super) struct JanitorArgs {
    /// Drop unused tables even if their snapshot TTL has not passed yet.
    #[arg(long)]
    pub(super) ignore_ttl: bool,
    /// Only this environment, and the tables only it used.
    #[arg(long, visible_alias = "env", value_name = "ENV")]
    pub(super) environment: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub(super) json: bool,
}

// `lake audit`'s arguments.
#[derive(Args)]
pub(super) struct AuditArgs {
    /// Only these models (repeatable); default: every model with audits.
    #[arg(long = "model", value_name = "MODEL")]
    pub(super) models: Vec<String>,
    /// Audit this environment's versions of the models whose own versions no plan has built.
    #[arg(long, visible_alias = "env", value_name = "ENV", default_value = PROD)]
    pub(super) environment: String,
    /// Pin "now" (UTC) for time macros in audit queries.
    #[arg(long)]
    pub(super) execution_time: Option<String>,
    /// Audit only the rows of time-range models from this date or time on (other kinds: all rows); a
    /// relative time such as `yesterday` or `3 days ago` works too.
    #[arg(short, long)]
    pub(super) start: Option<String>,
    /// ... up to this date (inclusive) or time (exclusive).
    #[arg(short, long)]
    pub(super) end: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub(super) json: bool,
}

// `lake table-name`'s arguments.
#[derive(Args)]
pub(super) struct TableNameArgs {
    /// The model, as `schema.name`.
    pub(super) model: String,
    /// The environment to look in.
    #[arg(long, visible_alias = "env", value_name = "ENV", default_value = PROD)]
    pub(super) environment: String,
    /// The table the environment's version will have in prod once promoted (a forward-only change previewed
    /// in dev is applied to prod's own table).
    #[arg(long, conflicts_with = "dev")]
    pub(super) prod: bool,
    /// The table the environment reads now, a dev preview's included (the default).
    #[arg(long)]
    pub(super) dev: bool,
}

// `lake destroy`'s arguments.
#[derive(Args)]
pub(super) struct DestroyArgs {
    /// Destroy without asking (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub(super) yes: bool,
}

// `lake table-diff`'s arguments.
#[derive(Args)]
pub(super) struct TableDiffArgs {
    /// `SOURCE:TARGET` environments.
    pub(super) environments: String,
    /// The model to compare, as `schema.name`.
    pub(super) model: String,
    /// Columns identifying a row (comma-separated); default: the model's grain.
    #[arg(long, value_delimiter = ',')]
    pub(super) on: Vec<String>,
    /// Compare only the rows this SQL condition keeps, on both sides (`--where "event_date >= '2024-05-01'"`).
    #[arg(long = "where", value_name = "CONDITION")]
    pub(super) filter: Option<String>,
    /// Leave these columns out of the comparison (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub(super) skip_columns: Vec<String>,
    /// Also show some rows only one side has, and joined rows whose values differ.
    #[arg(long)]
    pub(super) show_sample: bool,
    /// Sample rows to show with --show-sample.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub(super) limit: usize,
    /// Machine-readable output.
    #[arg(long)]
    pub(super) json: bool,
}

// `lake run`'s arguments.
#[derive(Args)]
pub(super) struct RunArgs {
    /// Environment to run [default: `default_target_environment` of config.yaml, else prod].
    pub(super) environment: Option<String>,
    /// Rebuild FULL models even if their cron is not due.
    #[arg(long)]
    pub(super) ignore_cron: bool,
    /// Pin "now" (UTC).
    #[arg(long)]
    pub(super) execution_time: Option<String>,
    /// Only the models this selects, and their upstream: a name, a glob (`demo.*`), `tag:NAME`, `+name`
    /// (with upstream) or `name+` (with downstream); repeatable.
    #[arg(long = "select-model", value_name = "SELECTOR")]
    pub(super) select_model: Vec<String>,
    /// With --select-model: leave out the selected models' upstream (they may read stale or missing data).
    #[arg(long, requires = "select_model")]
    pub(super) no_auto_upstream: bool,
    /// Only intervals from this date on (or a relative time: `yesterday`, `3 days ago`).
    #[arg(short, long)]
    pub(super) start: Option<String>,
    /// Only intervals up to this date, inclusive.
    #[arg(short, long)]
    pub(super) end: Option<String>,
    /// Exit with this code, building nothing, when a plan updated the environment while the run waited
    /// for it.
    #[arg(long, value_name = "CODE")]
    pub(super) exit_on_env_update: Option<u8>,
    /// Do not run the janitor after the run (by default it removes expired environments and the tables no
    /// environment uses once their TTL has passed, as `lake janitor` does).
    #[arg(long)]
    pub(super) skip_janitor: bool,
}

// `lake render`'s arguments.
#[derive(Args)]
pub(super) struct RenderArgs {
    /// The model to render, as `schema.name`.
    pub(super) model: String,
    #[command(flatten)]
    pub(super) interval: IntervalArgs,
    /// Read these upstream models as their queries (subqueries) instead of their tables; repeatable. Bare
    /// `--expand`: every upstream model.
    #[arg(long, num_args = 0.., value_name = "MODEL")]
    pub(super) expand: Option<Vec<String>>,
    /// SQL dialect to print: `duckdb` as lake runs it locally, `spark` as a Spark gateway runs it.
    #[arg(long, value_enum, default_value_t = RenderDialect::Duckdb)]
    pub(super) dialect: RenderDialect,
}

/// The interval `lake render` and `lake evaluate` fill the time macros with (`@start_ds`, `@end_ds`, …).
#[derive(Args)]
pub(super) struct IntervalArgs {
    /// The interval's start (YYYY-MM-DD, a timestamp, or relative: `yesterday`) [default: the model's
    /// start].
    #[arg(short, long)]
    pub(super) start: Option<String>,
    /// The interval's end, inclusive for a date [default: the execution time].
    #[arg(short, long)]
    pub(super) end: Option<String>,
    /// Pin "now" (YYYY-MM-DD or "YYYY-MM-DD HH:MM:SS", UTC) for the macros' dates.
    #[arg(long)]
    pub(super) execution_time: Option<String>,
}

// `lake evaluate`'s arguments.
#[derive(Args)]
pub(super) struct EvaluateArgs {
    /// The model to run, as `schema.name`.
    pub(super) model: String,
    /// Rows to show at most.
    #[arg(long, default_value_t = 1000)]
    pub(super) limit: usize,
    /// `table` for people, `csv` (with a header row) or `json` for scripts.
    #[arg(long, value_enum, default_value_t = RowFormat::Table)]
    pub(super) format: RowFormat,
    #[command(flatten)]
    pub(super) interval: IntervalArgs,
}

// `lake fetchdf`'s arguments.
#[derive(Args)]
pub(super) struct FetchdfArgs {
    /// The SQL to run; environments resolve (`demo__dev_alice.full_model`).
    pub(super) sql: String,
    /// `table` for people, `csv` (with a header row) or `json` for scripts.
    #[arg(long, value_enum, default_value_t = RowFormat::Table)]
    pub(super) format: RowFormat,
}

// `lake lineage`'s arguments.
#[derive(Args)]
pub(super) struct LineageArgs {
    /// `schema.model` (every column) or `schema.model.column`.
    pub(super) target: String,
    /// Follow the columns that read it, instead of those it reads.
    #[arg(long)]
    pub(super) downstream: bool,
    /// Follow the columns it reads (the default).
    #[arg(long, conflicts_with = "downstream")]
    pub(super) upstream: bool,
    /// Levels to follow [default: all].
    #[arg(long, value_name = "N")]
    pub(super) depth: Option<usize>,
    /// Trace the models as this environment has them (the versions its last plan recorded), not the
    /// project files: e.g. what prod reads while a change is in review.
    #[arg(long, visible_alias = "env", value_name = "ENV")]
    pub(super) environment: Option<String>,
    /// `text`: a tree. `json`: the same tree as one document, for tools. `dot` (Graphviz) or `mermaid`: the
    /// columns as a graph, each edge labelled with how the column is used.
    #[arg(long, value_enum, default_value_t = LineageFormat::Text)]
    pub(super) format: LineageFormat,
}

/// `lake lineage --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LineageFormat {
    Text,
    Json,
    Dot,
    Mermaid,
}

// `lake dag`'s arguments.
#[derive(Args)]
pub(super) struct DagArgs {
    /// Write the graph as an HTML page to this file, as `sqlmesh dag FILE` does (open it in a browser).
    pub(super) file: Option<PathBuf>,
    /// `text` (model <- parents), `dot` (Graphviz), `mermaid`, or `html` [default: html with FILE, else text].
    #[arg(long, value_enum)]
    pub(super) format: Option<DagFormat>,
    /// Write to a file instead of stdout.
    #[arg(short, long, conflicts_with = "file")]
    pub(super) output: Option<PathBuf>,
    /// Only the models this selects: a name, a glob (`demo.*`), `tag:NAME`, `+name` (with upstream) or
    /// `name+` (with downstream); repeatable.
    #[arg(long = "select-model", value_name = "SELECTOR")]
    pub(super) select_model: Vec<String>,
}

// `lake info`'s arguments.
#[derive(Args)]
pub(super) struct InfoArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub(super) json: bool,
}

// `lake serve`'s arguments.
#[derive(Args)]
pub(super) struct ServeArgs {
    /// Address to listen on; loopback by default so nothing outside this machine can connect.
    #[arg(long, default_value = "127.0.0.1")]
    pub(super) host: String,
    /// Port for the REST catalog; 0 picks a free one (see --json).
    #[arg(long, default_value_t = 8181)]
    pub(super) port: u16,
    /// Print the bound address as one JSON line on stdout once requests are accepted (for scripts).
    #[arg(long)]
    pub(super) json: bool,
    /// Require a bearer token: the value of this environment variable (never printed). Clients send it
    /// as `Authorization: Bearer …`, or as the client secret of OAuth2 client credentials.
    #[arg(long, value_name = "NAME")]
    pub(super) token_env: Option<String>,
    /// Accept commits to existing tables (how a Spark gateway's engine writes model versions) and, outside
    /// the namespaces of the project's models, namespace and table creation (the names of lake's own
    /// namespaces change only through `lake plan`). Without it the catalog is read-only. On
    /// the PostgreSQL endpoint it lets statements other than queries run, on the server's private
    /// in-memory database (they never change the lakehouse).
    #[arg(long)]
    pub(super) allow_writes: bool,
    /// Also serve the PostgreSQL wire protocol on this port (pgduck_server's is 5332): `psql -h 127.0.0.1
    /// -p 5332 -d prod`; the database name picks the environment (prod by default). 0 picks a free port.
    #[arg(long, value_name = "PORT")]
    pub(super) pg_port: Option<u16>,
    /// Serve no REST catalog (with --pg-port: only the PostgreSQL endpoint).
    #[arg(long, requires = "pg_port")]
    pub(super) no_rest: bool,
    /// Default `statement_timeout` of PostgreSQL clients, e.g. `30s` or `500ms` (clients may SET their own).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(super) statement_timeout: Option<std::time::Duration>,
    /// PostgreSQL connections served at once; more are refused (SQLSTATE 53300). An idle connection costs
    /// about 20 KiB.
    #[arg(long, default_value_t = 256)]
    pub(super) max_connections: usize,
    /// Queries the PostgreSQL endpoint runs at once; the rest wait their turn.
    #[arg(long, default_value_t = 4)]
    pub(super) max_concurrent_queries: usize,
    /// How long a query waits for its turn before it fails with SQLSTATE 53000, e.g. `2m` (its
    /// statement_timeout, when shorter, bounds the wait too).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2m")]
    pub(super) query_wait_timeout: std::time::Duration,
    /// DuckDB's memory limit for the PostgreSQL endpoint's queries, e.g. `4GB`.
    #[arg(long, value_name = "SIZE")]
    pub(super) memory_limit: Option<String>,
    /// PostgreSQL users, from this environment variable (never printed): `user:password`, several
    /// separated by commas. Clients then prove their password (see --pg-auth).
    #[arg(long, value_name = "NAME")]
    pub(super) pg_users_env: Option<String>,
    /// How PostgreSQL clients prove their password: scram-sha-256 (the default with --pg-users-env), md5,
    /// or password (cleartext; only with --tls-cert). Without users: trust.
    #[arg(long, value_name = "METHOD")]
    pub(super) pg_auth: Option<String>,
    /// TLS certificate chain (PEM) for PostgreSQL clients that ask for TLS (`sslmode=require`).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(super) tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(super) tls_key: Option<std::path::PathBuf>,
    /// With a --host other machines reach: serve the endpoints that have no authentication anyway
    /// (read-only; --allow-writes off loopback always needs --token-env and --pg-users-env).
    #[arg(long)]
    pub(super) allow_unauthenticated: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderDialect {
    Duckdb,
    Spark,
}

/// `lake state …`.
#[derive(Subcommand)]
pub enum StateCommand {
    /// Write the state as JSON to FILE (standard output without -o).
    Export {
        /// Where to write the JSON [default: standard output].
        #[arg(short, long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Read a `lake state export` file into the configured state, which must have no environments yet.
    /// An import that stops halfway leaves no environment behind, and running it again finishes it.
    Import {
        /// The export file (`-` for standard input).
        #[arg(value_name = "FILE")]
        input: std::path::PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum PlanFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DagFormat {
    Text,
    Dot,
    Mermaid,
    Html,
}

/// Why a duration flag's value is not a duration.
#[derive(Debug, thiserror::Error)]
enum DurationError {
    #[error("`{0}` is not a duration (examples: 30s, 500ms, 2min)")]
    NotANumber(String),
    #[error("unknown unit `{unit}` in `{text}` (use ms, s, min or h)")]
    UnknownUnit { unit: String, text: String },
}

/// `30s`, `500ms`, `2min`, `1h` or plain seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, DurationError> {
    let t = text.trim();
    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    let number: u64 = digits
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_string()))?;
    let millis = match t[digits.len()..].trim() {
        "ms" => number,
        "" | "s" => number * 1000,
        "min" | "m" => number * 60_000,
        "h" => number * 3_600_000,
        other => {
            return Err(DurationError::UnknownUnit {
                unit: other.to_string(),
                text: text.to_string(),
            });
        }
    };
    Ok(std::time::Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command, argument and flag says what it is for in `--help`: none is listed bare.
    #[test]
    fn no_help_entry_is_blank() {
        fn blanks(command: &clap::Command, path: &str, out: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_hide_set() && arg.get_help().is_none() {
                    out.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    out.push(format!("{path} {} (the command)", sub.get_name()));
                }
                blanks(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut found = Vec::new();
        blanks(&Cli::command(), "lake", &mut found);
        assert!(found.is_empty(), "no help for: {}", found.join(", "));
    }

    /// `-s` is `--start` and `-e` is `--end` wherever they exist (as in SQLMesh's plan, run, render,
    /// evaluate and audit); no other flag takes those letters.
    #[test]
    fn short_flags_s_and_e_mean_start_and_end_everywhere() {
        fn misused(command: &clap::Command, path: &str, out: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let expected = match arg.get_short() {
                    Some('s') => "start",
                    Some('e') => "end",
                    _ => continue,
                };
                if arg.get_long() != Some(expected) {
                    out.push(format!("{path} -{}", arg.get_short().unwrap_or(' ')));
                }
            }
            for sub in command.get_subcommands() {
                misused(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut found = Vec::new();
        misused(&Cli::command(), "lake", &mut found);
        assert!(
            found.is_empty(),
            "-s/-e used otherwise: {}",
            found.join(", ")
        );
    }

    /// Global options are listed under their own heading, not among a command's.
    #[test]
    fn global_options_have_their_own_heading() {
        let mut plan = Cli::command();
        plan.build();
        let plan = plan.find_subcommand_mut("plan").expect("plan");
        let help = plan.render_long_help().to_string();
        let own = help.find("--auto-apply").expect("plan's own flag");
        let global = help.find("Global options:").expect("the heading");
        let gateway = help.find("--gateway").expect("a global flag");
        assert!(own < global && global < gateway, "{help}");
    }
}
