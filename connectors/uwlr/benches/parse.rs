//! Parser throughput and memory on generated answers of 1,000 to 20,000 pupils.
//! Run: `cargo bench -p connector-uwlr`. Memory is measured with a counting allocator:
//! "working" is the peak during a parse beyond what it returns. The parser's own part (its
//! window, the open elements' names) does not grow with size; what grows is the answer's
//! vectors being reallocated as they fill (the old and the new block, for a moment, both held).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use connector_sim::uwlr::{Operation, answer};
use connector_sim::{SchoolKind, SimSchool};
use connector_uwlr::parse::{Answer, parse_answer};

struct Counting;

// Signed: a block allocated before counting started may be freed while it runs.
static CURRENT: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// Counting costs two atomic operations per allocation: only on during the memory pass.
static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && COUNTING.load(Ordering::Relaxed) {
            let size = layout.size() as isize;
            let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if COUNTING.load(Ordering::Relaxed) {
            CURRENT.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The body as the connector sees it: 16 KiB network chunks.
struct Chunks<'a> {
    data: &'a [u8],
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(16 * 1024).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The parser reads the chunks as the connector hands them over: it keeps a window of its
/// own. quick-xml's reader, the ceiling below, needs a `BufRead` in between.
fn parse(xml: &[u8]) -> Answer {
    parse_answer(Chunks { data: xml }).expect("parses")
}

/// One pass of quick-xml's own event loop over `xml` (behind a 64 KiB `BufReader`): the
/// reference the parser is measured against, though it no longer uses quick-xml's reader.
fn raw_loop(xml: &[u8], namespaces: bool) {
    let mut buf = Vec::new();
    let chunks = BufReader::with_capacity(64 * 1024, Chunks { data: xml });
    if namespaces {
        let mut r = quick_xml::NsReader::from_reader(chunks);
        loop {
            buf.clear();
            if let Ok((_, quick_xml::events::Event::Eof)) | Err(_) =
                r.read_resolved_event_into(&mut buf)
            {
                break;
            }
        }
    } else {
        let mut r = quick_xml::Reader::from_reader(chunks);
        loop {
            buf.clear();
            if let Ok(quick_xml::events::Event::Eof) | Err(_) = r.read_event_into(&mut buf) {
                break;
            }
        }
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let year =
        connector_api::SchoolYear::containing(NaiveDate::from_ymd_opt(2025, 10, 1).expect("date"));
    println!(
        "{:>7}  {:>7}  {:>9}  {:>9}  {:>9}  {:>7}  {:>9}  {:>10}  {:>11}",
        "pupils",
        "size MB",
        "MB/s",
        "best MB/s",
        "ceiling",
        "ratio",
        "ms/parse",
        "output MiB",
        "working KiB"
    );
    for pupils in [1_000usize, 5_000, 20_000] {
        let school = SimSchool::generate(
            "99XX00".parse().expect("id"),
            SchoolKind::Primary,
            pupils,
            year,
            7,
        );
        let xml = answer(&school, Operation::AllInOne, "2.2", &[]).into_bytes();
        let mb = xml.len() as f64 / 1_000_000.0;
        // Warm up, then time parses and the ceiling's loop taking turns for about two seconds:
        // this machine's speed drifts (a shared VM), and turns expose both to the same drift.
        // The best of each is the least disturbed; their ratio is what the parser costs.
        drop(parse(&xml));
        let mut times = Vec::new();
        let mut ceiling = Duration::MAX;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) || times.len() < 5 {
            let t = Instant::now();
            let answer = parse(&xml);
            times.push(t.elapsed());
            drop(answer);
            ceiling = ceiling.min(timed(|| raw_loop(&xml, false)));
        }
        times.sort();
        if pupils == 5_000 {
            let ns = (0..5)
                .map(|_| timed(|| raw_loop(&xml, true)))
                .min()
                .expect("five runs");
            eprintln!(
                "quick-xml with namespace resolution on every event: {:.0} MB/s",
                mb / ns.as_secs_f64()
            );
        }
        let median = times[times.len() / 2];
        // Memory: peak during one parse beyond the baseline, minus what the parse returns.
        CURRENT.store(0, Ordering::Relaxed);
        PEAK.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        let a = parse(&xml);
        let peak = PEAK.load(Ordering::Relaxed);
        let retained = CURRENT.load(Ordering::Relaxed);
        COUNTING.store(false, Ordering::Relaxed);
        if let Answer::Data(p) = &a {
            assert_eq!(p.pupils.len(), pupils);
        }
        drop(a);
        let best = mb / times[0].as_secs_f64();
        let ceiling = mb / ceiling.as_secs_f64();
        println!(
            "{pupils:>7}  {mb:>7.2}  {:>9.0}  {best:>9.0}  {ceiling:>9.0}  {:>7.2}  {:>9.2}  {:>10.2}  {:>11.0}",
            mb / median.as_secs_f64(),
            best / ceiling,
            median.as_secs_f64() * 1000.0,
            retained as f64 / (1024.0 * 1024.0),
            (peak - retained) as f64 / 1024.0,
        );
    }
}
