//! The few X.509 certificate fields the sensor reports (subject, issuer, validity), read from DER
//! with a minimal bounds-checked reader. Names are written as OpenSSL's RFC 2253 form, which is how
//! Zeek prints them (last RDN first, `,` between RDNs, `+` inside one, short attribute names).

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("certificate DER truncated or malformed")]
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub subject: String,
    pub issuer: String,
    /// Validity bounds, nanoseconds since the Unix epoch.
    pub not_before_ns: i64,
    pub not_after_ns: i64,
}

/// One DER element: (tag, contents, total length including header).
fn element(b: &[u8]) -> Result<(u8, &[u8], usize), X509Error> {
    let tag = *b.first().ok_or(X509Error::Malformed)?;
    let first = *b.get(1).ok_or(X509Error::Malformed)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(X509Error::Malformed);
        }
        let bytes = b.get(2..2 + n).ok_or(X509Error::Malformed)?;
        (bytes.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)), 2 + n)
    };
    let contents = b.get(header..header + len).ok_or(X509Error::Malformed)?;
    Ok((tag, contents, header + len))
}

/// The elements inside a constructed element's contents.
fn children(mut b: &[u8]) -> Result<Vec<(u8, &[u8])>, X509Error> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (tag, contents, used) = element(b)?;
        out.push((tag, contents));
        b = &b[used..];
        if out.len() > 256 {
            return Err(X509Error::Malformed);
        }
    }
    Ok(out)
}

pub fn parse(der: &[u8]) -> Result<Certificate, X509Error> {
    let (_, cert, _) = element(der)?;
    let (_, tbs, _) = element(cert)?;
    let fields = children(tbs)?;
    // An explicit [0] version comes first when present.
    let skip = usize::from(fields.first().map(|f| f.0) == Some(0xa0));
    let get = |i: usize| fields.get(skip + i).ok_or(X509Error::Malformed);
    let issuer = name(get(2)?.1)?;
    let validity = children(get(3)?.1)?;
    let subject = name(get(4)?.1)?;
    let time_at = |i: usize| -> Result<i64, X509Error> {
        let (tag, text) = validity.get(i).ok_or(X509Error::Malformed)?;
        time(*tag, text)
    };
    Ok(Certificate { subject, issuer, not_before_ns: time_at(0)?, not_after_ns: time_at(1)? })
}

fn oid_text(b: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut value: u64 = 0;
    for (i, &byte) in b.iter().enumerate() {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if parts.is_empty() {
                let first = if value < 80 { value / 40 } else { 2 };
                parts.push(first);
                parts.push(value - first * 40);
            } else {
                parts.push(value);
            }
            value = 0;
        }
        if i > 64 {
            break;
        }
    }
    parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

fn attribute_name(oid: &str) -> String {
    let name = match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.42" => "GN",
        "2.5.4.46" => "dnQualifier",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        other => return other.to_string(),
    };
    name.to_string()
}

/// RFC 2253 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::new();
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn string_value(tag: u8, b: &[u8]) -> String {
    match tag {
        // BMPString: UTF-16BE.
        0x1e => {
            let units: Vec<u16> =
                b.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::from_utf8_lossy(b).into_owned(),
    }
}

fn name(b: &[u8]) -> Result<String, X509Error> {
    let mut rdns = Vec::new();
    for (_, set) in children(b)? {
        let mut parts = Vec::new();
        for (_, attr) in children(set)? {
            let kv = children(attr)?;
            let (Some((_, oid)), Some((tag, value))) = (kv.first(), kv.get(1)) else {
                return Err(X509Error::Malformed);
            };
            parts.push(format!(
                "{}={}",
                attribute_name(&oid_text(oid)),
                escape(&string_value(*tag, value))
            ));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn digits(b: &[u8]) -> Result<i64, X509Error> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return Err(X509Error::Malformed);
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Ok(v)
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), as nanoseconds since the epoch.
fn time(tag: u8, b: &[u8]) -> Result<i64, X509Error> {
    let (year, rest) = match tag {
        0x17 => {
            let yy = digits(b.get(..2).ok_or(X509Error::Malformed)?)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &b[2..])
        }
        0x18 => (digits(b.get(..4).ok_or(X509Error::Malformed)?)?, &b[4..]),
        _ => return Err(X509Error::Malformed),
    };
    let field = |i: usize| digits(rest.get(i..i + 2).ok_or(X509Error::Malformed)?);
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(X509Error::Malformed);
    }
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute) * 60 * 1_000_000_000 + second * 1_000_000_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if contents.len() < 0x80 {
            out.push(contents.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(contents.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(contents);
        out
    }

    fn rdn(oid: &[u8], value: &str) -> Vec<u8> {
        let mut attr = der(0x06, oid);
        attr.extend(der(0x0c, value.as_bytes()));
        der(0x31, &der(0x30, &attr))
    }

    fn cert() -> Vec<u8> {
        let mut issuer = rdn(&[0x55, 0x04, 0x06], "DE");
        issuer.extend(rdn(&[0x55, 0x04, 0x03], "Test CA, Inc"));
        let mut validity = der(0x17, b"200101000000Z");
        validity.extend(der(0x18, b"20300101000000Z"));
        let subject = rdn(&[0x55, 0x04, 0x03], "example.org");
        let mut tbs = der(0xa0, &der(0x02, &[2]));
        tbs.extend(der(0x02, &[1]));
        tbs.extend(der(0x30, &der(0x06, &[0x2a, 0x86, 0x48])));
        tbs.extend(der(0x30, &issuer));
        tbs.extend(der(0x30, &validity));
        tbs.extend(der(0x30, &subject));
        der(0x30, &der(0x30, &tbs))
    }

    #[test]
    fn reads_names_and_validity() {
        let c = parse(&cert()).expect("parses");
        assert_eq!(c.subject, "CN=example.org");
        // RFC 2253: last RDN first, the comma in the value escaped.
        assert_eq!(c.issuer, "CN=Test CA\\, Inc,C=DE");
        assert_eq!(c.not_before_ns, 1_577_836_800 * 1_000_000_000);
        assert_eq!(c.not_after_ns, 1_893_456_000 * 1_000_000_000);
    }

    #[test]
    fn every_truncated_prefix_is_an_error() {
        let c = cert();
        for len in 0..c.len() {
            assert!(parse(&c[..len]).is_err(), "prefix {len}");
        }
    }

    #[test]
    fn oids_print_dotted() {
        assert_eq!(
            oid_text(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
            "1.2.840.113549.1.9.1"
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }
    }
}
