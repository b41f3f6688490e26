fn main() -> std::process::ExitCode {
    lake::cli::main()
}
