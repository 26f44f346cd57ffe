//! Parser throughput and memory on generated answers of 1,000 to 20,000 pupils.
//! Run: `cargo bench -p connector-uwlr`. Memory is measured with a counting allocator:
//! "working" is the parser's own peak beyond what it returns, which must not grow with size.

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

/// The body as the connector sees it: 16 KiB network chunks behind a 64 KiB BufReader.
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

fn parse(xml: &[u8]) -> Answer {
    parse_answer(BufReader::with_capacity(64 * 1024, Chunks { data: xml })).expect("parses")
}

/// The ceiling: quick-xml's own event loop, with and without namespace resolution.
fn raw_loops(xml: &[u8]) -> (f64, f64) {
    let mb = xml.len() as f64 / 1_000_000.0;
    let mut buf = Vec::new();
    let t = Instant::now();
    for _ in 0..5 {
        let mut r = quick_xml::Reader::from_reader(BufReader::with_capacity(
            64 * 1024,
            Chunks { data: xml },
        ));
        loop {
            buf.clear();
            if let Ok(quick_xml::events::Event::Eof) | Err(_) = r.read_event_into(&mut buf) {
                break;
            }
        }
    }
    let plain = mb * 5.0 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..5 {
        let mut r = quick_xml::NsReader::from_reader(BufReader::with_capacity(
            64 * 1024,
            Chunks { data: xml },
        ));
        loop {
            buf.clear();
            if let Ok((_, quick_xml::events::Event::Eof)) | Err(_) =
                r.read_resolved_event_into(&mut buf)
            {
                break;
            }
        }
    }
    (plain, mb * 5.0 / t.elapsed().as_secs_f64())
}

fn main() {
    let year =
        connector_api::SchoolYear::containing(NaiveDate::from_ymd_opt(2025, 10, 1).expect("date"));
    println!(
        "{:>7}  {:>9}  {:>9}  {:>9}  {:>11}  {:>11}",
        "pupils", "size MB", "MB/s", "ms/parse", "output MiB", "working KiB"
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
        // Warm up, then time repeated parses for about two seconds.
        drop(parse(&xml));
        let mut times = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) || times.len() < 5 {
            let t = Instant::now();
            let a = parse(&xml);
            times.push(t.elapsed());
            drop(a);
        }
        times.sort();
        if pupils == 5_000 {
            let (plain, ns) = raw_loops(&xml);
            eprintln!(
                "ceiling on this machine: quick-xml events {plain:.0} MB/s, with namespaces {ns:.0} MB/s"
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
        println!(
            "{pupils:>7}  {mb:>9.2}  {:>9.0}  {:>9.2}  {:>11.2}  {:>11.0}",
            mb / median.as_secs_f64(),
            median.as_secs_f64() * 1000.0,
            retained as f64 / (1024.0 * 1024.0),
            (peak - retained) as f64 / 1024.0,
        );
    }
}
