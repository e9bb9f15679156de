use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let options = bench::options::Options::parse();
    // One thread: the driver only polls and waits; the cores belong to what it measures.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pipeline-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::run(options)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
