//! The `portier` binary: everything happens in the library's `cli` module.

fn main() -> std::process::ExitCode {
    portier::cli::main_with_args(std::env::args_os())
}
