//! The process's memory under glibc's allocator: how many arenas it may use, and giving memory
//! that was freed back to the system.
//!
//! A night of 8,000 schools frees far more than it keeps: at its end glibc held 128 MiB of heap
//! of which 21 MiB were in use. Freed chunks stay in their arena for reuse, but a night's
//! allocations never line up with the last night's holes, so the process grew every night
//! (peak 105.6 / 134.7 / 156.8 / 175.8 / 175.8 MiB over five days with eight arenas; a fixed
//! mmap threshold, 94.7 ... 167.7, did not help). `malloc_trim` returns every whole free page of
//! every arena; done at most once a second while schools finish, the same five days peaked at
//! 94.0 / 105.7 / 99.7 / 99.6 / 101.2 MiB, the nights no slower (106-109 s). A trim takes ~1.4
//! ms (an experiment trimming every 250 schools: 32 a night, ~45 ms in all). Other allocators
//! and platforms need none of this: there it does nothing.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Freed memory is given back at most this often: often enough that a night cannot pile up
/// much between two trims, rarely enough that the trims (a millisecond or two, holding each
/// arena's lock) cost nothing measurable.
const GIVE_BACK_EVERY_MS: u64 = 1_000;

/// When memory was last given back, in [`now_ms`].
static LAST_GIVEN_BACK_MS: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since this module first read the clock.
fn now_ms() -> u64 {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    let started = *STARTED.get_or_init(Instant::now);
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Whether a trim is due `now_ms` when the last was at `last_ms`.
fn due(last_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(last_ms) >= GIVE_BACK_EVERY_MS
}

/// Give freed memory back if the last time was a while ago. Cheap to call after each unit of
/// work (a school's run, an API response): one of the threads that find it due does it.
pub fn give_back() {
    let now = now_ms();
    let last = LAST_GIVEN_BACK_MS.load(Ordering::Relaxed);
    if !due(last, now) {
        return;
    }
    let claimed = LAST_GIVEN_BACK_MS
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok();
    if claimed {
        trim();
    }
}

/// Give freed memory back now: after a cycle, before the process idles until the next one.
pub fn give_back_now() {
    LAST_GIVEN_BACK_MS.store(now_ms(), Ordering::Relaxed);
    trim();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists (under its locks) and
    // advises the kernel that whole free pages are unused; it touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// glibc gives threads that allocate at once arenas of their own, up to eight per core, and
/// memory freed in one arena is not reused by another. With tokio's workers and sqlx's thread
/// per SQLite connection, the syncing process grew by about 3.5 KB per school every night (the
/// bench's third night of 8,000 schools peaked at 163 MiB, the first at 110). Measured over
/// 2,000 schools, nights 2 and 3: unbounded 25.2 s and 26.4 s, 75.1 rising to 82.5 MiB; eight
/// arenas 26.5 s and 26.6 s, 71.5 MiB both nights; four 30.4 s and 30.9 s, 63.2 MiB (with four,
/// 8,000 schools held 109.5 and 110.6 MiB on nights 2 and 3). Over 8,000 schools on one day
/// (same build): eight arenas 322.7 / 111.5 / 107.3 s at 106.3 / 114.8 / 135.5 MiB, four
/// 359.6 / 151.8 / 122.1 s at 97.9 / 127.7 / 130.6 MiB. Eight: as fast as unbounded; what still
/// piles up within the arenas is given back by [`give_back`]. MALLOC_ARENA_MAX in the
/// environment still overrides this. Call first in `main`, before any other thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn bound_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt only sets a parameter of the allocator; the caller runs this first in
    // main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 8);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn bound_malloc_arenas() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_is_due_once_a_second() {
        assert!(!due(0, 0));
        assert!(!due(5_000, 5_999));
        assert!(due(5_000, 6_000));
        assert!(due(0, 60_000));
        // A clock that reads earlier than the last trim (two threads racing) is never due.
        assert!(!due(6_000, 5_000));
    }
}
