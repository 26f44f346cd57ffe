//! The `rostersync` binary: parse arguments, load configuration, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser;
use rostersync::cli::{self, Cli};
use rostersync::settings::Settings;
use rostersync::telemetry;

fn main() -> ExitCode {
    let args = Cli::parse();
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(2, &anyhow::Error::new(e)),
    };
    let format = args.log_format.unwrap_or(settings.log.format);
    // The demo explains itself on stdout; its per-school log lines would only interleave.
    let filter = if args.command.explains_itself() {
        "warn"
    } else {
        settings.log.filter.as_str()
    };
    if let Err(e) = telemetry::init(format, filter) {
        return fail(2, &anyhow::anyhow!(e));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, &anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(cli::run(settings, args.config.clone(), args.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(f.code, &f.error),
    }
}

/// One line on stderr: what failed and why, causes joined by ": ". No backtrace.
fn fail(code: u8, error: &anyhow::Error) -> ExitCode {
    eprintln!("rostersync: {error:#}");
    ExitCode::from(code)
}
