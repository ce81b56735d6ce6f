fn main() -> std::process::ExitCode {
    imagegen::cli::main()
}
