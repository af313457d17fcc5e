//! Arbitrary bytes as one raw IPv4 or IPv6 packet through the sensor's packet path.
#![no_main]

#[path = "../../tests/robustness_support/mod.rs"]
mod robustness_support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    robustness_support::ip_packet(data);
});
