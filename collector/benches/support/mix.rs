//! The synthetic event mix of the detection benchmark, shared with the test that checks the fast
//! detection path against the plain one (`tests/detect_fast_path.rs`): deterministic, so every run
//! sees the same events.

use canh_event::Timestamp;
use serde_json::{json, Value};

/// A tiny deterministic generator (xorshift), so every run sees the same events.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `count` events: about 50% flow, 20% dns, 15% http, 10% tls, 5% sshd log; about 1% attacks (S0
/// flows, tunnel-like DNS names, SQL injection URLs, sshd failures). Event `i` is the same in every
/// run and for every `count`.
pub fn events(count: usize) -> Vec<Value> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let ts = Timestamp::from_secs_nanos(1_800_000_000 + (i / 200) as i64, 0).to_string();
        let src = format!("10.{}.{}.{}", rng.below(4), rng.below(256), rng.below(254) + 1);
        let dst = format!("203.0.{}.{}", rng.below(256), rng.below(254) + 1);
        let base = |dataset: &str| {
            json!({"@timestamp": ts, "event": {"id": format!("ev{i}"), "kind": "event", "dataset": dataset},
                   "observer": {"id": "hn-01"}, "organization": {"id": "hanoi"}, "canh": {"schema_version": 1},
                   "source": {"ip": src, "port": 40000 + rng_port(i)}, "destination": {"ip": dst}})
        };
        let attack = rng.below(100) == 0;
        let kind = rng.below(100);
        let mut e;
        if kind < 50 {
            e = base("flow");
            let state =
                if attack { "S0" } else { ["SF", "SF", "SF", "S1", "RSTO"][rng.below(5) as usize] };
            e["destination"]["port"] = json!([443, 80, 53, 22, 8080][rng.below(5) as usize]);
            e["network"] = json!({"transport": "tcp", "community_id": "1:abc"});
            e["flow"] = json!({"state": state, "history": "ShADadFf", "orig_payload_bytes": rng.below(100_000)});
            e["source"]["bytes"] = json!(rng.below(2_000_000));
        } else if kind < 70 {
            e = base("dns");
            let name = if attack {
                format!("{:x}{:x}.t.tunnel.example", rng.next(), rng.next())
            } else {
                ["www.gov.vn", "mail.example.com", "cdn.jsdelivr.net", "api.github.com"]
                    [rng.below(4) as usize]
                    .to_string()
            };
            e["dns"] = json!({"type": "query", "question": {"name": name, "type": "A", "class": "IN"}, "response_code": "NOERROR"});
        } else if kind < 85 {
            e = base("http");
            let url = if attack {
                "/item.php?id=1%20union%20select%20password%20from%20users"
            } else {
                "/static/app.js?v=12"
            };
            e["http"] = json!({"version": "1.1", "request": {"method": "GET"}, "response": {"status_code": 200}});
            e["url"] = json!({"domain": "portal.example.vn", "original": url});
            e["user_agent"] =
                json!({"original": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0"});
        } else if kind < 95 {
            e = base("tls");
            e["tls"] = json!({"version": "1.3", "cipher": "TLS_AES_128_GCM_SHA256", "established": true,
                              "client": {"server_name": "login.example.com", "ja3": "771,4865-4866,0-23,29-23,0"}});
        } else {
            e = base("log");
            let outcome = if attack { "failure" } else { "success" };
            e["event"]["category"] = json!(["authentication"]);
            e["event"]["outcome"] = json!(outcome);
            e["process"] = json!({"name": "sshd", "pid": 811});
            e["user"] = json!({"name": "root"});
            e["message"] = json!(format!(
                "{} password for root from {} port 4122 ssh2",
                if attack { "Failed" } else { "Accepted" },
                src
            ));
        }
        out.push(e);
    }
    out
}

fn rng_port(i: usize) -> u64 {
    (i as u64 * 7919) % 20000
}
