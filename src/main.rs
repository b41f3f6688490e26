//! The `lake` command: everything happens in `lake::cli`, so the binary and the library behave alike.

fn main() -> std::process::ExitCode {
    lake::cli::main()
}
