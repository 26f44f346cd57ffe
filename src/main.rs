//! The `rostersync` binary: parse arguments, load configuration, start logging, dispatch.

use std::process::ExitCode;

use clap::Parser;
use rostersync::cli::{self, Cli};
use rostersync::settings::{self, Settings};
use rostersync::telemetry;

fn main() -> ExitCode {
    bound_malloc_arenas();
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

/// glibc gives threads that allocate at once arenas of their own, up to eight per core, and
/// memory freed in one arena is not reused by another. With tokio's workers and sqlx's thread
/// per SQLite connection, the syncing process grew by about 3.5 KB per school every night (the
/// bench's third night of 8,000 schools peaked at 163 MiB, the first at 110). Measured over
/// 2,000 schools, nights 2 and 3: unbounded 25.2 s and 26.4 s, 75.1 rising to 82.5 MiB; eight
/// arenas 26.5 s and 26.6 s, 71.5 MiB both nights; four 30.4 s and 30.9 s, 63.2 MiB (with four,
/// 8,000 schools held 109.5 and 110.6 MiB on nights 2 and 3). Over 8,000 schools on one day
/// (same build): eight arenas 322.7 / 111.5 / 107.3 s at 106.3 / 114.8 / 135.5 MiB, four
/// 359.6 / 151.8 / 122.1 s at 97.9 / 127.7 / 130.6 MiB. Eight: as fast as unbounded, and
/// bounded. MALLOC_ARENA_MAX in the environment still overrides this.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only sets a parameter of the allocator; this runs first in main, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 8);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn bound_malloc_arenas() {}

/// One line on stderr: what failed and why, causes joined by ": ". No backtrace.
fn fail(code: u8, error: &anyhow::Error) -> ExitCode {
    eprintln!("rostersync: {error:#}");
    ExitCode::from(code)
}
