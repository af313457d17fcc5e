//! Threat-intelligence indicators: IP addresses (and CIDR blocks), domains and TLS client
//! fingerprints (JA3, JA4) from CSV files and STIX 2.1 bundles, matched by hash lookups against
//! flow, dns, http and tls events. Parsing takes text and returns values; the detector turns a hit
//! into an alert like a Sigma match.
//!
//! CSV (one indicator a line, `#` starts a comment, a first line starting with `type,` is a header):
//!
//! ```text
//! type,value,description
//! ip,192.0.2.10,known scanner
//! cidr,198.51.100.0/24,bulletproof hosting range
//! domain,bad.example.com,phishing kit host
//! ja3,e7d705a3286e19ea42f587b344ee6865,tool X client
//! ```
//!
//! STIX 2.1: a bundle (`{"type": "bundle", "objects": [..]}`) whose `indicator` objects carry a
//! `pattern` of one or more comparisons joined by `OR`: `[ipv4-addr:value = '192.0.2.1']`,
//! `[ipv6-addr:value = '2001:db8::1']`, `[domain-name:value = 'x.example']`. Any other pattern
//! (file hashes, URLs, `AND`, `FOLLOWEDBY`, ...) is counted as unsupported and reported; it never
//! stops the file from loading.

use crate::detect::tape::TapeEvent;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// What kind of value an indicator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ip,
    Domain,
    Ja3,
    Ja4,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Domain => "domain",
            Kind::Ja3 => "ja3",
            Kind::Ja4 => "ja4",
        }
    }

    /// The rule an indicator hit of this kind raises (id, title).
    pub fn rule(self) -> (&'static str, &'static str) {
        match self {
            Kind::Ip => ("canh-intel-ip", "Traffic to or from a threat-intelligence IP indicator"),
            Kind::Domain => {
                ("canh-intel-domain", "Lookup or request of a threat-intelligence domain indicator")
            }
            Kind::Ja3 => {
                ("canh-intel-ja3", "TLS client matching a threat-intelligence JA3 indicator")
            }
            Kind::Ja4 => {
                ("canh-intel-ja4", "TLS client matching a threat-intelligence JA4 indicator")
            }
        }
    }

    pub const ALL: [Kind; 4] = [Kind::Ip, Kind::Domain, Kind::Ja3, Kind::Ja4];
}

/// Load every file into one set. A file that cannot be read or parsed is an error naming it (and
/// the line); the caller keeps its previous set.
pub fn load_files(paths: &[std::path::PathBuf]) -> Result<(IntelSet, IntelReport), IntelError> {
    let mut set = IntelSet::default();
    let mut report = IntelReport::default();
    for path in paths {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| IntelError {
            path: shown.clone(),
            line: 0,
            message: format!("reading: {e}"),
        })?;
        set.load_text(&text, &shown, &mut report)?;
    }
    Ok((set, report))
}

/// One indicator: its value as written and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    pub kind: Kind,
    pub value: String,
    /// The file it came from, and for STIX the indicator's `name` or `id`.
    pub source: String,
    pub description: String,
}

/// An indicator file that could not be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct IntelError {
    pub path: String,
    pub line: usize,
    pub message: String,
}

/// What the loaded files held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntelReport {
    pub files: usize,
    /// Indicators loaded, by kind (`ip` counts CIDR blocks too).
    pub loaded: BTreeMap<&'static str, usize>,
    /// STIX indicators whose pattern Canh cannot match, by reason.
    pub unsupported: BTreeMap<&'static str, usize>,
    /// A few of them, for the log: `path: indicator id: pattern`.
    pub unsupported_examples: Vec<String>,
}

/// Where in the event a hit was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub indicator: usize,
    /// The event field that matched (`destination.ip`, `dns.question.name`, ...).
    pub field: &'static str,
}

/// Every loaded indicator, indexed for lookups.
#[derive(Debug, Clone, Default)]
pub struct IntelSet {
    pub indicators: Vec<Indicator>,
    ips: HashMap<IpAddr, usize>,
    /// CIDR blocks by prefix length: (length, v6) -> network address -> indicator. One hash
    /// lookup per distinct prefix length.
    nets: BTreeMap<(u8, bool), HashMap<IpAddr, usize>>,
    domains: HashMap<String, usize>,
    ja3: HashMap<String, usize>,
    ja4: HashMap<String, usize>,
}

const MAX_EXAMPLES: usize = 20;

/// Event fields holding IP addresses that are looked up.
/// Where `IntelSet::matches_by` reads a string: a dotted path as `mapping::lookup` reads it, or
/// object keys from the root (`Value::pointer("/a/b")`).
#[derive(Clone, Copy)]
enum Read<'p> {
    Path(&'p str),
    Keys(&'p [&'p str]),
}

const IP_FIELDS: [&str; 2] = ["source.ip", "destination.ip"];

impl IntelSet {
    pub fn is_empty(&self) -> bool {
        self.indicators.is_empty()
    }

    /// Which kinds have at least one indicator.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut kinds: Vec<Kind> = self.indicators.iter().map(|i| i.kind).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// Load one file's text, CSV or STIX by its content (a STIX bundle starts with `{`).
    pub fn load_text(
        &mut self,
        text: &str,
        path: &str,
        report: &mut IntelReport,
    ) -> Result<(), IntelError> {
        report.files += 1;
        if text.trim_start().starts_with('{') {
            self.load_stix(text, path, report)
        } else {
            self.load_csv(text, path, report)
        }
    }

    fn load_csv(
        &mut self,
        text: &str,
        path: &str,
        report: &mut IntelReport,
    ) -> Result<(), IntelError> {
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if number == 1 && line.to_ascii_lowercase().starts_with("type,") {
                continue;
            }
            let mut parts = line.splitn(3, ',');
            let kind = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let value = parts.next().unwrap_or_default().trim();
            let description = parts.next().unwrap_or_default().trim().trim_matches('"');
            let error =
                |message: String| IntelError { path: path.to_string(), line: number, message };
            if value.is_empty() {
                return Err(error("expected `type,value[,description]`".into()));
            }
            let indicator = Indicator {
                kind: Kind::Ip,
                value: value.to_string(),
                source: path.to_string(),
                description: description.to_string(),
            };
            let added = match kind.as_str() {
                "ip" | "ipv4" | "ipv6" | "cidr" => self.add_ip(indicator),
                "domain" => self.add_domain(indicator),
                "ja3" => self.add_hash(Kind::Ja3, indicator),
                "ja4" => self.add_hash(Kind::Ja4, indicator),
                other => {
                    Err(format!("unknown indicator type {other:?} (ip, cidr, domain, ja3, ja4)"))
                }
            };
            match added {
                Ok(kind) => *report.loaded.entry(kind.as_str()).or_default() += 1,
                Err(message) => return Err(error(message)),
            }
        }
        Ok(())
    }

    fn load_stix(
        &mut self,
        text: &str,
        path: &str,
        report: &mut IntelReport,
    ) -> Result<(), IntelError> {
        let bundle: Value = serde_json::from_str(text).map_err(|e| IntelError {
            path: path.to_string(),
            line: e.line(),
            message: format!("not a STIX bundle: {e}"),
        })?;
        let objects = match (bundle.get("type").and_then(Value::as_str), bundle.get("objects")) {
            (Some("bundle"), Some(Value::Array(objects))) => objects,
            _ => {
                return Err(IntelError {
                    path: path.to_string(),
                    line: 1,
                    message:
                        "not a STIX bundle: expected {\"type\": \"bundle\", \"objects\": [..]}"
                            .into(),
                })
            }
        };
        for object in objects {
            if object.get("type").and_then(Value::as_str) != Some("indicator") {
                continue;
            }
            let id = object.get("id").and_then(Value::as_str).unwrap_or("indicator without id");
            let name = object.get("name").and_then(Value::as_str).unwrap_or(id);
            let description = object.get("description").and_then(Value::as_str).unwrap_or_default();
            let pattern_type = object.get("pattern_type").and_then(Value::as_str).unwrap_or("stix");
            let pattern = object.get("pattern").and_then(Value::as_str).unwrap_or_default();
            let unsupported = |reason: &'static str, report: &mut IntelReport| {
                *report.unsupported.entry(reason).or_default() += 1;
                if report.unsupported_examples.len() < MAX_EXAMPLES {
                    report.unsupported_examples.push(format!("{path}: {id}: {reason}: {pattern}"));
                }
            };
            if pattern_type != "stix" {
                unsupported("pattern_type_not_stix", report);
                continue;
            }
            let comparisons = match parse_pattern(pattern) {
                Ok(comparisons) => comparisons,
                Err(reason) => {
                    unsupported(reason, report);
                    continue;
                }
            };
            for (object_path, value) in comparisons {
                let indicator = Indicator {
                    kind: Kind::Ip,
                    value,
                    source: format!("{path}: {name}"),
                    description: description.to_string(),
                };
                let added = match object_path.as_str() {
                    "ipv4-addr:value" | "ipv6-addr:value" => self.add_ip(indicator),
                    "domain-name:value" => self.add_domain(indicator),
                    _ => {
                        unsupported("object_path_not_matched", report);
                        continue;
                    }
                };
                match added {
                    Ok(kind) => *report.loaded.entry(kind.as_str()).or_default() += 1,
                    Err(_) => unsupported("invalid_value", report),
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, indicator: Indicator) -> usize {
        self.indicators.push(indicator);
        self.indicators.len() - 1
    }

    fn add_ip(&mut self, mut indicator: Indicator) -> Result<Kind, String> {
        indicator.kind = Kind::Ip;
        let value = indicator.value.clone();
        if let Some((address, length)) = value.split_once('/') {
            let address: IpAddr =
                address.parse().map_err(|_| format!("not an IP network: {value:?}"))?;
            let length: u8 = length.parse().map_err(|_| format!("not an IP network: {value:?}"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            if length > max {
                return Err(format!("prefix length over {max}: {value:?}"));
            }
            if length == max {
                let index = self.push(indicator);
                self.ips.insert(address, index);
                return Ok(Kind::Ip);
            }
            let index = self.push(indicator);
            self.nets
                .entry((length, address.is_ipv6()))
                .or_default()
                .insert(network(address, length), index);
            return Ok(Kind::Ip);
        }
        let address: IpAddr = value.parse().map_err(|_| format!("not an IP address: {value:?}"))?;
        let index = self.push(indicator);
        self.ips.insert(address, index);
        Ok(Kind::Ip)
    }

    fn add_domain(&mut self, mut indicator: Indicator) -> Result<Kind, String> {
        indicator.kind = Kind::Domain;
        let domain = indicator.value.trim_end_matches('.').to_ascii_lowercase();
        let valid = !domain.is_empty()
            && domain.contains('.')
            && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid {
            return Err(format!("not a domain name: {:?}", indicator.value));
        }
        let index = self.push(indicator);
        self.domains.insert(domain, index);
        Ok(Kind::Domain)
    }

    fn add_hash(&mut self, kind: Kind, mut indicator: Indicator) -> Result<Kind, String> {
        indicator.kind = kind;
        let value = indicator.value.to_ascii_lowercase();
        let valid = match kind {
            Kind::Ja3 => value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()),
            _ => !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        };
        if !valid {
            return Err(format!("not a {} fingerprint: {:?}", kind.as_str(), indicator.value));
        }
        let index = self.push(indicator);
        match kind {
            Kind::Ja3 => self.ja3.insert(value, index),
            _ => self.ja4.insert(value, index),
        };
        Ok(kind)
    }

    /// The indicators this event hits, in a fixed order (IPs, then domains, then fingerprints).
    /// Only flow, dns, http and tls events are looked at.
    pub fn matches(&self, event: &Value, out: &mut Vec<Hit>) {
        self.matches_by(
            |read| match read {
                Read::Path(path) => super::mapping::lookup(event, path).and_then(Value::as_str),
                Read::Keys(keys) => {
                    keys.iter().try_fold(event, |value, key| value.get(key)).and_then(Value::as_str)
                }
            },
            out,
        )
    }

    /// `matches` for an event of a tape.
    pub fn matches_tape(&self, event: &TapeEvent, out: &mut Vec<Hit>) {
        self.matches_by(
            |read| match read {
                Read::Path(path) => event.str_at(path),
                Read::Keys(keys) => event.str_under(keys),
            },
            out,
        )
    }

    /// `matches`, the event's strings read through `text`.
    fn matches_by<'e>(&self, text: impl Fn(Read) -> Option<&'e str>, out: &mut Vec<Hit>) {
        out.clear();
        let dataset = text(Read::Keys(&["event", "dataset"])).unwrap_or_default();
        if !matches!(dataset, "flow" | "dns" | "http" | "tls") {
            return;
        }
        if !self.ips.is_empty() || !self.nets.is_empty() {
            for field in IP_FIELDS {
                let Some(address) = text(Read::Path(field)).and_then(|t| t.parse::<IpAddr>().ok())
                else {
                    continue;
                };
                if let Some(index) = self.ip_hit(address) {
                    out.push(Hit { indicator: index, field });
                }
            }
        }
        if !self.domains.is_empty() {
            let name_fields: &[(&[&str], &'static str)] = match dataset {
                "dns" => &[(&["dns", "question", "name"], "dns.question.name")],
                "http" => &[(&["url", "domain"], "url.domain")],
                "tls" => &[(&["tls", "client", "server_name"], "tls.client.server_name")],
                _ => &[],
            };
            for (keys, field) in name_fields {
                let Some(name) = text(Read::Keys(keys)) else { continue };
                if let Some(index) = self.domain_hit(name) {
                    out.push(Hit { indicator: index, field });
                }
            }
        }
        if dataset == "tls" {
            let fingerprints: [(&HashMap<String, usize>, &[&str], &'static str); 2] = [
                (&self.ja3, &["tls", "client", "ja3"], "tls.client.ja3"),
                (&self.ja4, &["tls", "client", "ja4"], "tls.client.ja4"),
            ];
            for (table, keys, field) in fingerprints {
                if table.is_empty() {
                    continue;
                }
                let Some(value) = text(Read::Keys(keys)) else { continue };
                let hit = match table.get(value) {
                    Some(&index) => Some(index),
                    None => table.get(&value.to_ascii_lowercase()).copied(),
                };
                if let Some(index) = hit {
                    out.push(Hit { indicator: index, field });
                }
            }
        }
    }

    fn ip_hit(&self, address: IpAddr) -> Option<usize> {
        // An IPv4-mapped IPv6 address is the IPv4 address.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        if let Some(&index) = self.ips.get(&address) {
            return Some(index);
        }
        // Longest prefix first: the most specific block names the hit.
        for ((length, v6), table) in self.nets.iter().rev() {
            if *v6 != address.is_ipv6() {
                continue;
            }
            if let Some(&index) = table.get(&network(address, *length)) {
                return Some(index);
            }
        }
        None
    }

    /// The name or its nearest parent domain on the list.
    fn domain_hit(&self, name: &str) -> Option<usize> {
        let name = name.trim_end_matches('.');
        let lowered;
        let mut name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        loop {
            if let Some(&index) = self.domains.get(name) {
                return Some(index);
            }
            match name.split_once('.') {
                Some((_, parent)) if parent.contains('.') => name = parent,
                _ => return None,
            }
        }
    }
}

/// The first `length` bits of `address`.
fn network(address: IpAddr, length: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = if length == 0 { 0 } else { u32::MAX << (32 - u32::from(length)) };
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if length == 0 { 0 } else { u128::MAX << (128 - u32::from(length)) };
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// `[a:b = 'x'] OR [c:d = 'y' OR e:f = 'z']` -> [(a:b, x), (c:d, y), (e:f, z)]. Anything else
/// (other operators, AND, qualifiers, escapes) is an unsupported pattern.
fn parse_pattern(pattern: &str) -> Result<Vec<(String, String)>, &'static str> {
    let mut out = Vec::new();
    let mut rest = pattern.trim();
    loop {
        let Some(inner_start) = rest.strip_prefix('[') else { return Err("pattern_syntax") };
        let Some(end) = inner_start.find(']') else { return Err("pattern_syntax") };
        let inner = &inner_start[..end];
        for comparison in split_or(inner) {
            let Some((path, value)) = comparison.split_once('=') else {
                return Err("operator_not_equals");
            };
            let path = path.trim();
            if path.ends_with('!') || path.ends_with('<') || path.ends_with('>') {
                return Err("operator_not_equals");
            }
            let value = value.trim();
            let Some(value) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) else {
                return Err("value_not_a_string");
            };
            if value.contains('\'') || value.contains('\\') {
                return Err("value_not_a_string");
            }
            if path.contains(' ') || !path.contains(':') {
                return Err("and_or_complex_comparison");
            }
            out.push((path.to_ascii_lowercase(), value.to_string()));
        }
        rest = inner_start[end + 1..].trim();
        if rest.is_empty() {
            return Ok(out);
        }
        match rest.strip_prefix("OR") {
            Some(after) => rest = after.trim(),
            None => return Err("and_or_complex_comparison"),
        }
    }
}

/// The comparisons of one bracket, split on ` OR ` outside quotes.
fn split_or(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            quoted = !quoted;
        } else if !quoted && inner[i..].starts_with(" OR ") {
            parts.push(inner[start..i].trim());
            start = i + 4;
            i += 4;
            continue;
        }
        i += 1;
    }
    parts.push(inner[start..].trim());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CSV: &str = "type,value,description\n\
        # comment\n\
        ip,192.0.2.10,known scanner\n\
        cidr,198.51.100.0/24,hosting range, with a comma\n\
        ip,2001:db8::66,v6 host\n\
        domain,Bad.Example.com.,phishing host\n\
        ja3,E7D705A3286E19EA42F587B344EE6865,tool client\n\
        ja4,t13d1516h2_8daaf6152771_02713d6af862,tool client ja4\n";

    fn set(text: &str) -> (IntelSet, IntelReport) {
        let mut set = IntelSet::default();
        let mut report = IntelReport::default();
        set.load_text(text, "t", &mut report).expect("loads");
        (set, report)
    }

    fn hits(set: &IntelSet, event: &Value) -> Vec<(String, &'static str)> {
        let mut out = Vec::new();
        set.matches(event, &mut out);
        out.iter().map(|h| (set.indicators[h.indicator].value.clone(), h.field)).collect()
    }

    #[test]
    fn csv_loads_every_kind() {
        let (set, report) = set(CSV);
        assert_eq!(set.indicators.len(), 6);
        assert_eq!(report.loaded.get("ip"), Some(&3));
        assert_eq!(report.loaded.get("domain"), Some(&1));
        assert_eq!(report.loaded.get("ja3"), Some(&1));
        assert_eq!(report.loaded.get("ja4"), Some(&1));
        assert_eq!(set.indicators[1].description, "hosting range, with a comma");
    }

    #[test]
    fn flows_hit_addresses_and_blocks() {
        let (set, _) = set(CSV);
        let flow = json!({"event": {"dataset": "flow"}, "source": {"ip": "10.0.0.1"},
                          "destination": {"ip": "198.51.100.77"}});
        assert_eq!(hits(&set, &flow), [("198.51.100.0/24".to_string(), "destination.ip")]);
        let flow = json!({"event": {"dataset": "flow"}, "source": {"ip": "192.0.2.10"},
                          "destination": {"ip": "2001:db8::66"}});
        assert_eq!(hits(&set, &flow).len(), 2);
        let mapped = json!({"event": {"dataset": "flow"}, "source": {"ip": "::ffff:192.0.2.10"}});
        assert_eq!(hits(&set, &mapped).len(), 1);
        let miss = json!({"event": {"dataset": "flow"}, "source": {"ip": "198.51.101.1"},
                          "destination": {"ip": "192.0.2.11"}});
        assert!(hits(&set, &miss).is_empty());
        let log = json!({"event": {"dataset": "log"}, "source": {"ip": "192.0.2.10"}});
        assert!(hits(&set, &log).is_empty(), "logs are left to Sigma rules");
    }

    #[test]
    fn names_hit_themselves_and_their_subdomains_only() {
        let (set, _) = set(CSV);
        let dns =
            |name: &str| json!({"event": {"dataset": "dns"}, "dns": {"question": {"name": name}}});
        assert_eq!(hits(&set, &dns("bad.example.com")).len(), 1);
        assert_eq!(hits(&set, &dns("X.Y.BAD.example.com.")).len(), 1);
        assert!(hits(&set, &dns("notbad.example.com")).is_empty());
        assert!(hits(&set, &dns("example.com")).is_empty());
        let http = json!({"event": {"dataset": "http"}, "url": {"domain": "cdn.bad.example.com"}});
        assert_eq!(hits(&set, &http), [("Bad.Example.com.".to_string(), "url.domain")]);
        let tls = json!({"event": {"dataset": "tls"}, "tls": {"client": {
            "server_name": "bad.example.com", "ja3": "e7d705a3286e19ea42f587b344ee6865",
            "ja4": "t13d1516h2_8daaf6152771_02713d6af862"}}});
        let fields: Vec<&str> = hits(&set, &tls).into_iter().map(|(_, f)| f).collect();
        assert_eq!(fields, ["tls.client.server_name", "tls.client.ja3", "tls.client.ja4"]);
    }

    #[test]
    fn a_broken_csv_line_names_file_and_line() {
        for (text, line) in [
            ("ip,192.0.2.1,a\nip,192.0.2.300,b\n", 2),
            ("type,value\n\nurl,http://x,b\n", 3),
            ("ja3,nothex,x\n", 1),
            ("cidr,192.0.2.0/33,x\n", 1),
            ("domain,localhost,x\n", 1),
            ("ip\n", 1),
        ] {
            let mut set = IntelSet::default();
            let err = set.load_text(text, "f.csv", &mut IntelReport::default()).expect_err(text);
            assert_eq!((err.path.as_str(), err.line), ("f.csv", line), "{err}");
        }
    }

    #[test]
    fn stix_simple_patterns_load_and_the_rest_is_counted() {
        let bundle = json!({"type": "bundle", "id": "bundle--1", "objects": [
            {"type": "indicator", "id": "indicator--1", "name": "c2 address", "description": "c2",
             "pattern_type": "stix", "pattern": "[ipv4-addr:value = '203.0.113.5']"},
            {"type": "indicator", "id": "indicator--2", "pattern_type": "stix",
             "pattern": "[domain-name:value = 'evil.example.net'] OR [ipv4-addr:value = '203.0.113.0/28']"},
            {"type": "indicator", "id": "indicator--3", "pattern_type": "stix",
             "pattern": "[file:hashes.'SHA-256' = 'aa']"},
            {"type": "indicator", "id": "indicator--4", "pattern_type": "stix",
             "pattern": "[ipv4-addr:value = '1.2.3.4' AND network-traffic:dst_port = 80]"},
            {"type": "indicator", "id": "indicator--5", "pattern_type": "snort", "pattern": "alert ip"},
            {"type": "indicator", "id": "indicator--6", "pattern_type": "stix",
             "pattern": "[ipv4-addr:value = 'not-an-ip']"},
            {"type": "indicator", "id": "indicator--7"},
            {"type": "malware", "id": "malware--1", "name": "x"}
        ]});
        let (set, report) = set(&bundle.to_string());
        assert_eq!(report.loaded.get("ip"), Some(&2));
        assert_eq!(report.loaded.get("domain"), Some(&1));
        assert_eq!(report.unsupported.values().sum::<usize>(), 5, "{:?}", report.unsupported);
        assert_eq!(report.unsupported.get("pattern_type_not_stix"), Some(&1));
        assert_eq!(set.indicators[0].source, "t: c2 address");
        let flow = json!({"event": {"dataset": "flow"}, "destination": {"ip": "203.0.113.9"}});
        assert_eq!(hits(&set, &flow).len(), 1);
    }

    #[test]
    fn a_broken_bundle_names_its_line_and_hostile_text_never_panics() {
        let mut set = IntelSet::default();
        let err = set
            .load_text(
                "{\"type\": \"bundle\",\n\"objects\": [\n,]}",
                "b.json",
                &mut IntelReport::default(),
            )
            .expect_err("broken");
        assert_eq!(err.line, 3);
        for text in ["{}", "{\"type\":\"bundle\",\"objects\":{}}", "[", "\u{0},\u{1}", ",,,"] {
            let _ = IntelSet::default().load_text(text, "x", &mut IntelReport::default());
        }
        for pattern in
            ["", "[", "]", "[a]", "[a:b = 'x' OR", "[a:b = 'x'] OR", "[a:b != 'x']", "[' OR ']"]
        {
            let _ = parse_pattern(pattern);
        }
    }
}
