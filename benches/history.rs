//! What the status page's history costs: 10,000 ports' last day, recorded
//! as the engine records it (a TCP check every 15 s and a discovery pass
//! every 15 s, each a record), in three kinds of day:
//!
//! - steady: ok all day, loopback connect times wandering 20–80 µs;
//! - a bad minute an hour: 24 down minutes in the day;
//! - flapping: ok and down in turn, every minute, all day (the worst case:
//!   every minute its own run, up to the bound of 120 runs a port).
//!
//! For each: the bytes the histories hold by their own count
//! (`portwarden_history_bytes`), the process's resident memory grown while
//! they filled (the allocator's truth, `/proc/self/statm`), the time of a
//! record, and the time to draw a port's day (its spans and uptimes, as a
//! page or API request does).
//!
//!   cargo bench --bench history

use std::time::Instant;

use portwarden::engine::history::{History, MINUTES};
use portwarden::health::Health;

const PORTS: usize = 10_000;
const START: u32 = 29_000_000;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn day(kind: &str) {
    let before = resident_bytes();
    let mut ports: Vec<History> = vec![History::default(); PORTS];
    let mut records = 0u64;
    let started = Instant::now();
    for m in 0..MINUTES + 60 {
        let minute = START + m;
        for (i, h) in ports.iter_mut().enumerate() {
            let down = match kind {
                "steady" => false,
                "a bad minute an hour" => (m + i as u32).is_multiple_of(60),
                _ => m % 2 == 1,
            };
            for k in 0..4u32 {
                let health = if down { Health::Down } else { Health::Ok };
                let connect =
                    (!down).then(|| (20.0 + f64::from((m * 7 + k * 13 + i as u32) % 60)) / 1e6);
                h.record(minute, health, connect);
                // The discovery pass's record of the same minute.
                h.record(minute, health, None);
                records += 2;
            }
        }
    }
    let per_record = started.elapsed().as_nanos() as f64 / records as f64;
    let grown = resident_bytes().saturating_sub(before);
    let counted: usize = ports.iter().map(|h| h.day().heap_bytes()).sum();
    let now = START + MINUTES + 59;
    let started = Instant::now();
    let mut spans = 0usize;
    let mut up = 0.0;
    for h in &ports {
        let day = h.day();
        spans += day.spans(now).count();
        up += day.uptime(now, 60).unwrap_or(0.0) + day.uptime(now, MINUTES).unwrap_or(0.0);
    }
    let per_port = started.elapsed().as_nanos() as f64 / PORTS as f64;
    println!(
        "| {kind} | {:.0} B | {:.2} MB | {:.2} MB | {:.1} | {per_record:.0} ns | {:.2} µs |",
        counted as f64 / PORTS as f64,
        counted as f64 / 1e6,
        grown as f64 / 1e6,
        spans as f64 / PORTS as f64,
        per_port / 1e3,
    );
    std::hint::black_box(up);
}

const KINDS: [&str; 3] = ["steady", "a bad minute an hour", "flapping"];

/// Each kind of day in a process of its own (memory freed by one is not
/// counted against the next).
fn main() {
    if let Some(kind) = std::env::args()
        .nth(1)
        .filter(|k| KINDS.contains(&k.as_str()))
    {
        day(&kind);
        return;
    }
    println!(
        "{PORTS} ports, a day and an hour of records (a TCP check and a discovery pass every 15 s)"
    );
    println!();
    println!(
        "| day | bytes a port (counted) | all ports (counted) | RSS grown | spans a port | a record | a port's day drawn |"
    );
    println!("|---|---|---|---|---|---|---|");
    let me = std::env::current_exe().expect("this benchmark's path");
    for kind in KINDS {
        let status = std::process::Command::new(&me)
            .arg(kind)
            .status()
            .expect("run a kind of day");
        assert!(status.success(), "{kind} failed");
    }
}
