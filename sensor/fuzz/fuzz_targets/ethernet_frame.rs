//! Arbitrary bytes as one Ethernet frame through the sensor's packet path.
#![no_main]

#[path = "../../tests/robustness_support/mod.rs"]
mod robustness_support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    robustness_support::ethernet_frame(data);
});
