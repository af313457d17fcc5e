//! Compress a file of JSON lines as the sensor's uplink compresses packs (one zstd frame per
//! pack of `--pack-bytes`, cut at line ends) at each given level, and print the ratio and the
//! CPU time of compressing and of reading the packs back (sensor/UPLINK.md, "Packs").
//!
//! `cargo run --release -p canh-event --example pack_levels -- FILE.jsonl [PACK_BYTES] [LEVEL...]`

use canh_event::pack::{PackReader, PackWriter};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    // utime + stime of this thread, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or("usage: pack_levels FILE.jsonl [PACK_BYTES] [LEVEL...]")?;
    let pack_bytes: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(128 << 10);
    let levels: Vec<i32> = if args.len() > 2 {
        args[2..].iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    } else {
        vec![1]
    };
    let mut text = std::fs::read(path)?;
    if text.last() == Some(&b'\n') {
        text.pop();
    }
    // Packs cut as the uplink cuts them: whole lines, closed before the next line would pass
    // `pack_bytes`.
    let mut packs: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut last_end = 0;
    for end in memchr_lines(&text) {
        if end - start > pack_bytes && last_end > start {
            packs.push(&text[start..last_end]);
            start = last_end + 1;
        }
        last_end = end;
    }
    if start < text.len() {
        packs.push(&text[start..]);
    }
    println!("{} bytes in {} packs of up to {pack_bytes} bytes", text.len(), packs.len());
    let mut writer_out = Vec::new();
    let mut reader = PackReader::new()?;
    for level in levels {
        let mut writer = PackWriter::new(level)?;
        let mut compressed = Vec::with_capacity(packs.len());
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        for pack in &packs {
            writer.compress(pack, &mut writer_out)?;
            compressed.push(writer_out.clone());
        }
        let (compress_cpu, compress_wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
        let total: usize = compressed.iter().map(Vec::len).sum();
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        let mut lines = 0usize;
        for frame in &compressed {
            lines += reader.lines(frame)?.len();
        }
        let (read_cpu, read_wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
        assert_eq!(lines + packs.len() - 1, text.len(), "every byte read back");
        println!(
            "level {level:>3}: {total:>11} bytes (ratio {:.2}), compress {compress_cpu:.2} CPU s \
             ({compress_wall:.2} wall, {:.0} MB/s), read back {read_cpu:.2} CPU s ({read_wall:.2} wall)",
            text.len() as f64 / total as f64,
            text.len() as f64 / compress_wall / 1e6,
        );
    }
    Ok(())
}

fn memchr_lines(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    text.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i)
}
