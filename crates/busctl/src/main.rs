//! `busctl`: parse the command line, run it, print errors plainly.

use std::process::ExitCode;

use bus_core::tokio_util::sync::CancellationToken;
use busctl::{Cli, run};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let shutdown = CancellationToken::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });
    let mut stdout = std::io::stdout();
    match run(cli, &mut stdout, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("busctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
