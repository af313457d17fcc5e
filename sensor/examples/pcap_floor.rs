//! The read floor: read a capture with the sensor's own reader and do nothing with the frames but
//! count them and their bytes. `canh-sensor pcap` cannot be faster than this. With `--libpcap`
//! first, the frames are read through libpcap instead (the reader pcapng files take).
//!
//! `cargo run --release -p canh-sensor --example pcap_floor -- [--libpcap] FILE...`

fn main() {
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut libpcap = false;
    for arg in std::env::args_os().skip(1) {
        if arg == "--libpcap" {
            libpcap = true;
            continue;
        }
        let path = std::path::PathBuf::from(arg);
        let count = |_, _, data: &[u8]| {
            frames += 1;
            bytes += data.len() as u64;
        };
        let result = if libpcap {
            canh_sensor::capture::read_file_libpcap(&path, count)
        } else {
            canh_sensor::capture::read_file(&path, count)
        };
        if let Err(e) = result {
            eprintln!("pcap_floor: {e}");
            std::process::exit(1);
        }
    }
    println!("{frames} frames, {bytes} captured bytes");
}
