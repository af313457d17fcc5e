//! The libpcap read floor: read a capture with the sensor's own reader and do nothing with the
//! frames but count them and their bytes. `canh-sensor pcap` cannot be faster than this.
//!
//! `cargo run --release -p canh-sensor --example pcap_floor -- FILE...`

fn main() {
    let mut frames = 0u64;
    let mut bytes = 0u64;
    for path in std::env::args_os().skip(1) {
        let path = std::path::PathBuf::from(path);
        let result = canh_sensor::capture::read_file(&path, |_, _, data| {
            frames += 1;
            bytes += data.len() as u64;
        });
        if let Err(e) = result {
            eprintln!("pcap_floor: {e}");
            std::process::exit(1);
        }
    }
    println!("{frames} frames, {bytes} captured bytes");
}
