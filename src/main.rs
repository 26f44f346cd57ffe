//! The `rostersync` binary: parse arguments, load configuration, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser;
use rostersync::cli::{self, Cli};
use rostersync::settings::{self, Settings};
use rostersync::telemetry;

fn main() -> ExitCode {
    rostersync::memory::bound_malloc_arenas();
    let mut args = Cli::parse();
    // `init` may run before the configuration exists (it writes it); `assets` needs none.
    if !args.command.stands_alone() {
        args.config = args.config.or_else(settings::installed_config);
    }
    let config = (!args.command.stands_alone())
        .then_some(args.config.as_deref())
        .flatten();
    let settings = match Settings::load(config) {
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
