//! The `benchrun` binary: every role lives in the library; see `benchrun --help`.

fn main() -> std::process::ExitCode {
    benchrun::cli::main()
}
