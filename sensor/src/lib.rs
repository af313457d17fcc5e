//! Canh's sensor: captures packets into flow records and protocol metadata and publishes them as
//! events. `main.rs` is a thin command-line shell over these modules.

pub mod admin;
pub mod capture;
pub mod config;
pub mod decode;
pub mod defrag;
pub mod dns;
pub mod flow;
pub mod http;
pub mod json_out;
pub mod logs;
pub mod metrics;
pub mod packets;
pub mod produce;
pub mod quic;
pub mod sequence;
pub mod session;
mod slot_index;
pub mod spool;
pub mod ssh;
pub mod stream;
pub mod syslog;
pub mod tls;
pub mod uplink;
pub mod x509;
