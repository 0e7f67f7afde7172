//! The `tollgate` binary: parse the command line, run the command, map the outcome to an exit
//! status (0 success, 1 the operation failed, 2 bad usage: clap's own exit for parse errors).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tollgate::cli::Cli::parse();
    match tollgate::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {}", tollgate::ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}
