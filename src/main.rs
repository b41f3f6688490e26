//! The `lake` command. It answers `--help`, `--version` and usage errors itself and hands every other command,
//! unchanged, to `lake-engine` beside it (see `lake::cli::launch`): the engine links DuckDB's shared library,
//! whose loading alone costs several milliseconds, and a command that needs no DuckDB should not pay for it.

fn main() -> std::process::ExitCode {
    lake::cli::launch()
}
