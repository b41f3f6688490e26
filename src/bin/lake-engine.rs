//! `lake-engine`: every `lake` command; `lake` starts it for anything but help, version and usage errors.
//! Everything happens in `lake::cli`, so the binary and the library behave alike.

// Loading a project allocates and frees millions of small strings and AST nodes across worker threads;
// mimalloc does that markedly faster than glibc's malloc (DuckDB's C++ heap is unaffected).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lake::cli::main()
}
