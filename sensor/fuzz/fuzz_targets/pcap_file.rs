//! Arbitrary bytes as a classic pcap file through the sensor's packet path: many frames, so
//! flows, sessions and fragment reassembly see sequences, not single packets.
#![no_main]

#[path = "../../tests/robustness_support/mod.rs"]
mod robustness_support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    robustness_support::pcap_file(data);
});
