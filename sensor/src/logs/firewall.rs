//! Kernel netfilter LOG lines (iptables `-j LOG`, nftables `log`, ufw): `[prefix] IN=eth0 OUT=
//! MAC=.. SRC=192.0.2.1 DST=198.51.100.2 LEN=60 .. PROTO=TCP SPT=51000 DPT=22 ..`.

use super::auth::parse_ip;
use super::classify;
use super::record::{LogEvent, NetworkFields};
use canh_event::Endpoint;
use std::borrow::Cow;

/// Add network fields from a kernel message that is a netfilter LOG line; other kernel messages
/// are left alone.
pub fn kernel_into<'a>(message: &'a str, event: &mut LogEvent<'a>) {
    let text = strip_kernel_time(message.trim());
    let bytes = text.as_bytes();
    // The fields start at IN= (not PHYSIN=); what comes before is the rule's log prefix, which
    // may lack its trailing space ("Drop TCP after 17 attemptsIN=br0 ...").
    // The first IN= (not PHYSIN=), found from the line's `=` signs; it counts only when an
    // " OUT=" follows it somewhere (checked while reading the fields below).
    let Some(start) = memchr::memchr_iter(b'=', bytes)
        .filter(|&at| ends_with_at(bytes, at, b"IN"))
        .map(|at| at - 2)
        .find(|&i| !ends_with_at(bytes, i, b"PHYS"))
    else {
        return;
    };
    let prefix = text[..start].trim();
    let mut src = None;
    let mut dst = None;
    let mut spt = None;
    let mut dpt = None;
    let mut proto = None;
    let mut ingress = None;
    let mut egress = None;
    let mut out_follows = false;
    for (key, value, after_space) in key_values(&text[start..]) {
        // Matched as byte strings: compared in place rather than by a `memcmp` call per key.
        match key.as_bytes() {
            b"SRC" => src = parse_ip(value),
            b"DST" => dst = parse_ip(value),
            b"SPT" => spt = value.parse::<u16>().ok(),
            b"DPT" => dpt = value.parse::<u16>().ok(),
            b"PROTO" => proto = Some(value),
            b"IN" if !value.is_empty() => ingress = Some(value),
            b"OUT" => {
                // " OUT=": a space right before the key.
                out_follows |= after_space;
                if !value.is_empty() {
                    egress = Some(value);
                }
            }
            _ => {}
        }
    }
    if !out_follows || (src.is_none() && dst.is_none()) {
        return;
    }
    event.source = Some(Endpoint { ip: src, port: spt, ..Endpoint::default() });
    event.destination = Some(Endpoint { ip: dst, port: dpt, ..Endpoint::default() });
    let known =
        [("tcp", "tcp", 6), ("udp", "udp", 17), ("icmp", "icmp", 1), ("icmpv6", "ipv6-icmp", 58)];
    let (transport, iana) = match proto {
        Some(p) => match known.iter().find(|(name, _, _)| p.eq_ignore_ascii_case(name)) {
            Some((_, transport, number)) => (Some(Cow::Borrowed(*transport)), Some(*number)),
            None => (Some(lowercase(p)), p.parse::<u8>().ok()),
        },
        None => (None, None),
    };
    event.network = Some(NetworkFields { transport, iana_number: iana });
    event.ingress = ingress.map(Cow::Borrowed);
    event.egress = egress.map(Cow::Borrowed);
    let (denies, allows) = verdict(prefix);
    let (kind, outcome): (&'static [&'static str], _) = if denies {
        (&["connection", "denied"], "failure")
    } else if allows {
        (&["connection", "allowed"], "success")
    } else {
        (&["connection", "info"], "")
    };
    let action = if prefix.is_empty() {
        "packet-logged"
    } else {
        prefix.trim_matches(|c: char| c == '[' || c == ']' || c == ':' || c.is_whitespace())
    };
    classify(event, &["network"], kind, outcome, action);
}

/// Whether `bytes[..at]` ends with `suffix`.
fn ends_with_at(bytes: &[u8], at: usize, suffix: &[u8]) -> bool {
    at.checked_sub(suffix.len()).is_some_and(|from| &bytes[from..at] == suffix)
}

/// Whether the rule's log prefix names a denying verdict (DROP, REJECT, BLOCK, DENY) and an
/// allowing one (ACCEPT, ALLOW, PASS), in any case, anywhere in it; one pass over its bytes.
fn verdict(prefix: &str) -> (bool, bool) {
    let bytes = prefix.as_bytes();
    let at = |i: usize, word: &[u8]| {
        bytes.get(i..i + word.len()).is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    let (mut denies, mut allows) = (false, false);
    for (i, b) in bytes.iter().enumerate() {
        match b.to_ascii_uppercase() {
            b'D' => denies |= at(i, b"DROP") || at(i, b"DENY"),
            b'R' => denies |= at(i, b"REJECT"),
            b'B' => denies |= at(i, b"BLOCK"),
            b'A' => allows |= at(i, b"ACCEPT") || at(i, b"ALLOW"),
            b'P' => allows |= at(i, b"PASS"),
            _ => {}
        }
    }
    (denies, allows)
}

/// The `KEY=value` items of whitespace-separated text (items without `=` skipped; the key ends
/// at the first `=`), in one pass over the bytes; with each, whether a space (0x20) came right
/// before its key.
fn key_values(text: &str) -> impl Iterator<Item = (&str, &str, bool)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || loop {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        let start = i;
        // To the token's first `=` or its end; control bytes that are not whitespace belong to
        // the token.
        loop {
            i = next_stop(bytes, i, true);
            match bytes.get(i) {
                Some(&b) if b != b'=' && !b.is_ascii_whitespace() => i += 1,
                _ => break,
            }
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        let equals = i;
        loop {
            i = next_stop(bytes, i + 1, false);
            // The end, or whitespace; another byte at most a space is part of the value.
            if bytes.get(i).is_none_or(u8::is_ascii_whitespace) {
                break;
            }
        }
        let after_space = start > 0 && bytes[start - 1] == b' ';
        // Splitting at ASCII bytes keeps the pieces on character boundaries.
        return Some((&text[start..equals], &text[equals + 1..i], after_space));
    })
}

/// The first index from `i` whose byte is at most a space (every ASCII whitespace byte is) or,
/// when `equals`, is `=`; `bytes.len()` when there is none. Eight bytes at a time.
fn next_stop(bytes: &[u8], mut i: usize, equals: bool) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        // The lowest flagged byte is exact (borrows only flag bytes above a true match).
        let mut hits = word.wrapping_sub(ONES * 0x21) & !word;
        if equals {
            let eq = word ^ (ONES * u64::from(b'='));
            hits |= eq.wrapping_sub(ONES) & !eq;
        }
        let hits = hits & HIGH;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(|&b| b > b' ' && !(equals && b == b'=')) {
        i += 1;
    }
    i.min(bytes.len())
}

/// `text` in lower case, copied only when it has upper-case letters.
fn lowercase(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// Drop a `[ 1234.567890] ` kernel uptime stamp.
fn strip_kernel_time(text: &str) -> &str {
    if let Some(rest) = text.strip_prefix('[') {
        if let Some((stamp, after)) = rest.split_once(']') {
            if stamp.trim().bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return after.trim_start();
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::into_event;
    use canh_event::Event;

    fn kernel_into(message: &str, event: &mut Event) {
        into_event(event, |f| super::kernel_into(message, f))
    }

    use canh_event::{Dataset, Timestamp};

    #[test]
    fn iptables_line_from_sotm34() {
        let mut e = Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t");
        kernel_into("INBOUND TCP: IN=br0 PHYSIN=eth0 OUT=br0 PHYSOUT=eth1 SRC=220.228.136.38 DST=11.11.79.83 LEN=64 TOS=0x00 PREC=0x00 TTL=47 ID=17159 DF PROTO=TCP SPT=1629 DPT=139 WINDOW=44620 RES=0x00 SYN URGP=0  ", &mut e);
        let src = e.source.as_ref().expect("source");
        assert_eq!(src.ip.map(|i| i.to_string()).as_deref(), Some("220.228.136.38"));
        assert_eq!(src.port, Some(1629));
        let dst = e.destination.as_ref().expect("destination");
        assert_eq!(dst.ip.map(|i| i.to_string()).as_deref(), Some("11.11.79.83"));
        assert_eq!(dst.port, Some(139));
        assert_eq!(e.network.as_ref().and_then(|n| n.transport.as_deref()), Some("tcp"));
        assert_eq!(e.observer.ingress.as_ref().map(|i| i.interface.name.as_str()), Some("br0"));
        assert_eq!(e.event.action.as_deref(), Some("INBOUND TCP"));
    }

    #[test]
    fn ufw_block_with_uptime_and_ipv6() {
        let mut e = Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t");
        kernel_into("[ 8123.456789] [UFW BLOCK] IN=eth0 OUT= MAC=aa SRC=2001:db8::1 DST=2001:db8::2 LEN=80 PROTO=UDP SPT=5353 DPT=5353 LEN=40", &mut e);
        assert_eq!(e.event.outcome.as_deref(), Some("failure"));
        assert_eq!(e.event.r#type, Some(vec!["connection".to_string(), "denied".to_string()]));
        assert_eq!(e.observer.egress, None);
        assert_eq!(e.network.as_ref().and_then(|n| n.iana_number), Some(17));
    }

    #[test]
    fn prefix_without_trailing_space() {
        let mut e = Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t");
        kernel_into("Drop TCP after 17 attemptsIN=br0 PHYSIN=eth1 OUT=br0 PHYSOUT=eth0 SRC=11.11.79.67 DST=129.27.3.14 LEN=60 PROTO=TCP SPT=1068 DPT=6667", &mut e);
        assert_eq!(e.observer.ingress.as_ref().map(|i| i.interface.name.as_str()), Some("br0"));
        assert_eq!(e.destination.as_ref().and_then(|d| d.port), Some(6667));
        assert_eq!(e.event.action.as_deref(), Some("Drop TCP after 17 attempts"));
        assert_eq!(e.event.outcome.as_deref(), Some("failure"));
    }

    #[test]
    fn key_values_split_as_whitespace_and_first_equals() {
        let text = " IN=br0  OUT=\tMAC=a=b DF  SRC=1.2.3.4 =x é=ü ";
        let ours: Vec<_> = key_values(text).map(|(k, v, _)| (k, v)).collect();
        let theirs: Vec<_> =
            text.split_ascii_whitespace().filter_map(|item| item.split_once('=')).collect();
        assert_eq!(ours, theirs);
        let spaces: Vec<_> = key_values(text).map(|(_, _, space)| space).collect();
        assert_eq!(spaces, [true, true, false, true, true, true]);
        assert_eq!(key_values("").count(), 0);
        assert_eq!(key_values("   ").count(), 0);
    }

    #[test]
    fn verdict_words_anywhere_in_any_case() {
        // What a substring search per word gives, on prefixes with words at every place.
        let contains = |text: &str, word: &str| {
            let (text, word) = (text.as_bytes(), word.as_bytes());
            text.len() >= word.len()
                && text.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word))
        };
        for prefix in [
            "",
            "D",
            "DRO",
            "drop",
            "[UFW BLOCK]",
            "xxREJECTyy",
            "Deny",
            "ACCEPT",
            "allow in",
            "PASS",
            "pas",
            "ACCEPT then DROP",
            "AccepT",
            "BLOCKED",
            "é drop ü",
            "DDROP",
            "AALLOW",
        ] {
            let denies = ["DROP", "REJECT", "BLOCK", "DENY"].iter().any(|w| contains(prefix, w));
            let allows = ["ACCEPT", "ALLOW", "PASS"].iter().any(|w| contains(prefix, w));
            assert_eq!(verdict(prefix), (denies, allows), "{prefix}");
        }
    }

    proptest::proptest! {
        #[test]
        fn key_values_as_whitespace_split(text in "([aZé\x01]{0,12}[ \t\n\r\x0c\x1f=]{0,2}){0,6}") {
            let ours: Vec<_> = key_values(&text).map(|(k, v, _)| (k, v)).collect();
            let theirs: Vec<_> =
                text.split_ascii_whitespace().filter_map(|item| item.split_once('=')).collect();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn other_kernel_messages_untouched() {
        let mut e = Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t");
        kernel_into("usb 1-1: new high-speed USB device number 2 using ehci-pci", &mut e);
        assert_eq!(e.source, None);
        kernel_into("[", &mut e);
        kernel_into("x IN=", &mut e);
        kernel_into("OUT= IN=x SRC=1.2.3.4", &mut e);
        kernel_into("PHYSIN=a OUT=b SRC=1.2.3.4", &mut e);
        assert_eq!(e.event.category, None);
    }
}
