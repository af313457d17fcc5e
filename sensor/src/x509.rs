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

/// The elements inside a constructed element's contents, in order: an error at a malformed one
/// or past 256 of them (after which it ends).
struct Children<'a> {
    rest: &'a [u8],
    count: usize,
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<(u8, &'a [u8]), X509Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        self.count += 1;
        let element = element(self.rest).and_then(|(tag, contents, used)| {
            if self.count > 256 {
                return Err(X509Error::Malformed);
            }
            self.rest = &self.rest[used..];
            Ok((tag, contents))
        });
        if element.is_err() {
            self.rest = &[];
        }
        Some(element)
    }
}

fn each_child(b: &[u8]) -> Children<'_> {
    Children { rest: b, count: 0 }
}

/// The elements inside a constructed element's contents.
fn children(b: &[u8]) -> Result<Vec<(u8, &[u8])>, X509Error> {
    each_child(b).collect()
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

/// The dotted text of an OID's DER contents, appended to `out`.
fn oid_text(b: &[u8], out: &mut String) {
    use std::fmt::Write;
    let mut first = true;
    let mut value: u64 = 0;
    for (i, &byte) in b.iter().enumerate() {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if first {
                let arc = if value < 80 { value / 40 } else { 2 };
                let _ = write!(out, "{arc}.{}", value - arc * 40);
                first = false;
            } else {
                let _ = write!(out, ".{value}");
            }
            value = 0;
        }
        if i > 64 {
            break;
        }
    }
}

/// OpenSSL's short name of an attribute type, for those it has one for.
fn attribute_name(oid: &str) -> Option<&'static str> {
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
        _ => return None,
    };
    Some(name)
}

/// RFC 2253 escaping of an attribute value, appended to `out`.
fn escape(value: &str, out: &mut String) {
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
}

fn string_value(tag: u8, b: &[u8]) -> std::borrow::Cow<'_, str> {
    match tag {
        // BMPString: UTF-16BE.
        0x1e => {
            let units: Vec<u16> =
                b.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16_lossy(&units).into()
        }
        _ => String::from_utf8_lossy(b),
    }
}

/// A Name in RFC 2253 form, written into one `String` (an attribute cost ~8 allocations when
/// each part was its own `String`).
fn name(b: &[u8]) -> Result<String, X509Error> {
    let rdns = children(b)?;
    let mut out = String::new();
    let mut oid = String::new();
    for (n, (_, set)) in rdns.iter().rev().enumerate() {
        if n > 0 {
            out.push(',');
        }
        for (k, attr) in each_child(set).enumerate() {
            let (_, attr) = attr?;
            let mut kv = each_child(attr);
            let (Some((_, oid_der)), Some((tag, value))) =
                (kv.next().transpose()?, kv.next().transpose()?)
            else {
                return Err(X509Error::Malformed);
            };
            // The rest of the attribute must be well-formed too.
            for rest in kv {
                rest?;
            }
            if k > 0 {
                out.push('+');
            }
            oid.clear();
            oid_text(oid_der, &mut oid);
            out.push_str(attribute_name(&oid).unwrap_or(&oid));
            out.push('=');
            escape(&string_value(tag, value), &mut out);
        }
    }
    Ok(out)
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
        let mut text = String::new();
        oid_text(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01], &mut text);
        assert_eq!(text, "1.2.840.113549.1.9.1");
    }

    /// `name` as first written (a `String` per part, joined): the reference for the one-buffer
    /// writer.
    fn name_reference(b: &[u8]) -> Result<String, X509Error> {
        let mut rdns = Vec::new();
        for (_, set) in children(b)? {
            let mut parts = Vec::new();
            for (_, attr) in children(set)? {
                let kv = children(attr)?;
                let (Some((_, oid)), Some((tag, value))) = (kv.first(), kv.get(1)) else {
                    return Err(X509Error::Malformed);
                };
                let mut oid_dotted = String::new();
                oid_text(oid, &mut oid_dotted);
                let mut escaped = String::new();
                escape(&string_value(*tag, value), &mut escaped);
                let short = attribute_name(&oid_dotted).map(str::to_string);
                parts.push(format!("{}={}", short.unwrap_or(oid_dotted), escaped));
            }
            rdns.push(parts.join("+"));
        }
        rdns.reverse();
        Ok(rdns.join(","))
    }

    /// An attribute: OID contents, string tag, value.
    type Attribute = (Vec<u8>, u8, Vec<u8>);

    /// A Name's DER from its RDNs, plus optional extra bytes inside each attribute (well-formed
    /// or not).
    fn name_der(rdns: &[Vec<Attribute>], extra: &[u8]) -> Vec<u8> {
        let mut sets = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, tag, value) in rdn {
                let mut attr = der(0x06, oid);
                attr.extend(der(*tag, value));
                attr.extend_from_slice(extra);
                set.extend(der(0x30, &attr));
            }
            sets.extend(der(0x31, &set));
        }
        sets
    }

    #[test]
    fn names_with_more_than_256_parts_are_errors() {
        let rdn = vec![(vec![0x55, 0x04, 0x03], 0x0c, b"a".to_vec())];
        let many = name_der(&vec![rdn.clone(); 257], &[]);
        assert_eq!(name(&many), Err(X509Error::Malformed));
        assert_eq!(name_reference(&many), Err(X509Error::Malformed));
        let most = name_der(&vec![rdn; 256], &[]);
        assert_eq!(name(&most), name_reference(&most));
        assert!(name(&most).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn name_equals_the_joined_reference(
            rdns in proptest::collection::vec(
                proptest::collection::vec(
                    (
                        proptest::prop_oneof![
                            proptest::strategy::Just(vec![0x55, 0x04, 0x03]),
                            proptest::strategy::Just(vec![0x55, 0x04, 0x0a]),
                            proptest::strategy::Just(
                                vec![0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
                            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6),
                        ],
                        proptest::prop_oneof![
                            proptest::strategy::Just(0x0cu8),
                            proptest::strategy::Just(0x13u8),
                            proptest::strategy::Just(0x1eu8),
                        ],
                        proptest::collection::vec(
                            proptest::prop_oneof![
                                proptest::strategy::Just(b' '),
                                proptest::strategy::Just(b','),
                                proptest::strategy::Just(b'#'),
                                proptest::strategy::Just(b'\\'),
                                proptest::strategy::Just(b'a'),
                                proptest::prelude::any::<u8>(),
                            ],
                            0..8,
                        ),
                    ),
                    0..3,
                ),
                0..4,
            ),
            extra in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let b = name_der(&rdns, &extra);
            proptest::prop_assert_eq!(name(&b), name_reference(&b));
            let cut = b[..cut % (b.len() + 1)].to_vec();
            proptest::prop_assert_eq!(name(&cut), name_reference(&cut));
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }
    }
}
