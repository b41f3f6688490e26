//! The `lake` command. It parses the command line, answers `--help`, `--version` and usage errors itself, and
//! replaces itself with `lake-engine` from its own folder, given the same arguments, for every other command.
//! The engine links DuckDB's shared library, whose loading alone takes several milliseconds; this binary
//! compiles only the command line's grammar (src/cli/args.rs) and so starts in about a millisecond.

use std::process::ExitCode;

use clap::Parser;

// The grammar the engine parses too; this binary only prints help and errors from it, so most of its
// fields are never read here.
#[allow(dead_code)]
#[path = "../cli/args.rs"]
mod args;

/// `args` names the default environment through `crate::PROD`. Not `lake::PROD`: naming anything of the
/// library makes the linker keep every registration its dependencies make at start-up (storage backends,
/// TLS), and with them most of their code.
const PROD: &str = "prod";

/// The binary that runs commands, installed beside `lake`.
const ENGINE_BINARY: &str = "lake-engine";

fn main() -> ExitCode {
    if let Err(e) = args::Cli::try_parse() {
        let _ = e.print();
        return if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let engine = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(ENGINE_BINARY)));
    let Some(engine) = engine else {
        eprintln!("error: cannot find the folder holding `lake`, where {ENGINE_BINARY} must be");
        return ExitCode::from(1);
    };
    let mut command = std::process::Command::new(&engine);
    command.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    let error = {
        use std::os::unix::process::CommandExt;
        // Replaces this process: the engine keeps its pid, terminal, signals and exit code.
        command.arg0("lake").exec()
    };
    #[cfg(not(unix))]
    let error = match command.status() {
        Ok(status) => return ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => e,
    };
    eprintln!(
        "error: cannot start {}: {error}\nhint: `lake` runs commands with {ENGINE_BINARY} from its own folder; \
         install both (cargo install --path .)",
        engine.display()
    );
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_environment_is_the_librarys() {
        assert_eq!(super::PROD, lake::PROD);
    }
}
