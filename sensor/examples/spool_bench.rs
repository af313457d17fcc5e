//! Spool write and read-back throughput (a benchmark, not a test):
//! `cargo run --release -p canh-sensor --example spool_bench -- DIR [RECORDS] [PAYLOAD_BYTES]`.
//! Writes RECORDS records into a fresh spool in DIR, flushes, then reads every segment back and
//! acknowledges it (which deletes it), and prints both rates.

use canh_sensor::spool::{Appended, Class, Record, Spool, SpoolLimits};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: spool_bench DIR [RECORDS] [PAYLOAD_BYTES]");
        std::process::exit(2);
    };
    let records: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let payload_bytes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(700);
    let dir = std::path::PathBuf::from(dir);
    let _ = std::fs::remove_dir_all(&dir);
    let limits = SpoolLimits {
        max_bytes: u64::MAX / 2,
        segment_bytes: 8 << 20,
        sync_interval: std::time::Duration::ZERO,
    };
    let mut spool = match Spool::open(&dir, limits) {
        Ok(spool) => spool,
        Err(err) => {
            eprintln!("spool_bench: {err}");
            std::process::exit(1);
        }
    };
    let payload = vec![b'x'; payload_bytes];
    let start = Instant::now();
    for seq in 0..records {
        let record = Record {
            seq,
            spooled_at_ns: 0,
            class: Class::Bulk,
            dataset: 0,
            topic: "canh-flow".into(),
            key: b"1:Nh7c8cRbvOJZaV0+4RXmxlvWvQQ=".to_vec(),
            payload: payload.clone(),
        };
        if !matches!(spool.append(&record), Ok(Appended::Written)) {
            eprintln!("spool_bench: append failed at record {seq}");
            std::process::exit(1);
        }
    }
    if let Err(err) = spool.flush() {
        eprintln!("spool_bench: {err}");
        std::process::exit(1);
    }
    let write = start.elapsed().as_secs_f64();
    let bytes = spool.bytes();
    let start = Instant::now();
    let mut read = 0u64;
    loop {
        match spool.next_batch() {
            Ok(Some(batch)) => {
                read += batch.records.len() as u64;
                if let Err(err) = spool.ack(batch.segment, batch.records.len() as u64) {
                    eprintln!("spool_bench: {err}");
                    std::process::exit(1);
                }
            }
            Ok(None) => break,
            Err(err) => {
                eprintln!("spool_bench: {err}");
                std::process::exit(1);
            }
        }
    }
    let drain = start.elapsed().as_secs_f64();
    let mib = bytes as f64 / (1 << 20) as f64;
    println!(
        "write: {records} records, {mib:.0} MiB in {write:.2} s = {:.0} records/s, {:.0} MiB/s",
        records as f64 / write,
        mib / write
    );
    println!(
        "read+ack: {read} records in {drain:.2} s = {:.0} records/s, {:.0} MiB/s",
        read as f64 / drain,
        mib / drain
    );
}
