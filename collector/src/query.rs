//! The responders' query language, and its compilation to parameterised ClickHouse SQL.
//!
//! ```text
//! query      := or
//! or         := and ("OR" and)*
//! and        := not ("AND" not)*
//! not        := "NOT" not | "(" or ")" | comparison
//! comparison := FIELD op VALUE | FIELD ("in" | "IN") VALUE
//! op         := ":" | "=" | "!=" | "<" | ">" | "<=" | ">="
//! VALUE      := "quoted \" string" | bare (no space, no parenthesis)
//! ```
//! `:` matches: a wildcard when the value holds `*` (`url.original:*admin*`), a network when the
//! field is an address and the value a CIDR (`source.ip:10.0.0.0/8`), equality otherwise. `in`
//! takes a CIDR. Field names are ECS names from a fixed list per dataset; values are never written
//! into the SQL text, only bound.

use std::net::{IpAddr, Ipv6Addr};

/// Longest query text accepted.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Deepest nesting of parentheses and NOT.
pub const MAX_DEPTH: usize = 32;
/// Most comparisons in one query.
pub const MAX_TERMS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Match,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    In,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ast {
    And(Box<Ast>, Box<Ast>),
    Or(Box<Ast>, Box<Ast>),
    Not(Box<Ast>),
    Compare { field: String, op: Op, value: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query error at character {position}: {message}")]
pub struct ParseError {
    /// Character offset (0-based) where the problem was found.
    pub position: usize,
    pub message: String,
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    terms: usize,
    _text: &'a str,
}

/// Parse a query. Empty input is an error: a search without a query uses no filter at all and
/// never calls this.
pub fn parse(text: &str) -> Result<Ast, ParseError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(ParseError {
            position: 0,
            message: format!("query is {} bytes; at most {MAX_QUERY_BYTES}", text.len()),
        });
    }
    let mut parser =
        Parser { chars: text.chars().collect(), pos: 0, depth: 0, terms: 0, _text: text };
    let ast = parser.or()?;
    parser.skip_space();
    if parser.pos < parser.chars.len() {
        return Err(parser.error(format!("unexpected {:?}", parser.chars[parser.pos])));
    }
    Ok(ast)
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError { position: self.pos, message: message.into() }
    }

    fn skip_space(&mut self) {
        while self.pos < self.chars.len() && self.chars[self.pos].is_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// True (and consumed) when the next word is `keyword`, case-insensitive, followed by a space,
    /// a parenthesis or the end.
    fn keyword(&mut self, keyword: &str) -> bool {
        self.skip_space();
        let n = keyword.len();
        let Some(word) = self.chars.get(self.pos..self.pos + n) else { return false };
        let word: String = word.iter().collect();
        if !word.eq_ignore_ascii_case(keyword) {
            return false;
        }
        match self.chars.get(self.pos + n) {
            None => {}
            Some(c) if c.is_whitespace() || *c == '(' || *c == ')' => {}
            Some(_) => return false,
        }
        self.pos += n;
        true
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Ast, ParseError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            let right = self.and()?;
            left = Ast::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Ast, ParseError> {
        let mut left = self.not()?;
        while self.keyword("and") {
            let right = self.not()?;
            left = Ast::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Ast, ParseError> {
        self.enter()?;
        let result = self.not_inner();
        self.depth -= 1;
        result
    }

    fn not_inner(&mut self) -> Result<Ast, ParseError> {
        if self.keyword("not") {
            return Ok(Ast::Not(Box::new(self.not()?)));
        }
        self.skip_space();
        match self.peek() {
            None => Err(self.error("expected a comparison such as source.ip:10.0.0.0/8")),
            Some('(') => {
                self.pos += 1;
                let inner = self.or()?;
                self.skip_space();
                if self.peek() != Some(')') {
                    return Err(self.error("expected ')'"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(_) => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Ast, ParseError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '@' {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.error("expected a field name"));
        }
        let field: String = self.chars[start..self.pos].iter().collect();
        if field.eq_ignore_ascii_case("and")
            || field.eq_ignore_ascii_case("or")
            || field.eq_ignore_ascii_case("not")
        {
            self.pos = start;
            return Err(self.error(format!("expected a comparison, found {field:?}")));
        }
        self.skip_space();
        let op = if self.keyword("in") {
            Op::In
        } else {
            let two: String =
                self.chars.get(self.pos..self.pos + 2).unwrap_or(&[]).iter().collect();
            let (op, len) = match (two.as_str(), self.peek()) {
                ("!=", _) => (Op::Ne, 2),
                ("<=", _) => (Op::Le, 2),
                (">=", _) => (Op::Ge, 2),
                (_, Some(':')) => (Op::Match, 1),
                (_, Some('=')) => (Op::Eq, 1),
                (_, Some('<')) => (Op::Lt, 1),
                (_, Some('>')) => (Op::Gt, 1),
                (_, Some(c)) => {
                    return Err(self.error(format!(
                        "expected an operator (: = != < > <= >= in) after {field}, found {c:?}"
                    )))
                }
                (_, None) => return Err(self.error(format!("expected an operator after {field}"))),
            };
            self.pos += len;
            op
        };
        self.skip_space();
        let value = self.value()?;
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.error(format!("more than {MAX_TERMS} comparisons")));
        }
        Ok(Ast::Compare { field, op, value })
    }

    fn value(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some('"') {
            self.pos += 1;
            let mut out = String::new();
            loop {
                match self.peek() {
                    None => return Err(self.error("unterminated quoted value")),
                    Some('"') => {
                        self.pos += 1;
                        return Ok(out);
                    }
                    Some('\\') => {
                        self.pos += 1;
                        match self.peek() {
                            Some(c @ ('"' | '\\')) => out.push(c),
                            _ => return Err(self.error("only \\\" and \\\\ escapes are allowed")),
                        }
                        self.pos += 1;
                    }
                    Some(c) => {
                        out.push(c);
                        self.pos += 1;
                    }
                }
            }
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == '(' || c == ')' || c == '"' {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected a value"));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }
}

/// How a column is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// FixedString(16), IPv6-mapped.
    Address,
    /// Unsigned or signed integers (also Nullable ones).
    Number,
}

/// One searchable field: its ECS name, its column, and how it compares.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub column: &'static str,
    pub kind: Kind,
}

const fn f(name: &'static str, column: &'static str, kind: Kind) -> Field {
    Field { name, column, kind }
}

/// Fields every dataset table has.
const COMMON: &[Field] = &[
    f("event.id", "event_id", Kind::Text),
    f("observer.id", "observer_id", Kind::Text),
    f("organization.id", "organization_id", Kind::Text),
    f("source.ip", "source_ip", Kind::Address),
    f("source.port", "source_port", Kind::Number),
    f("destination.ip", "destination_ip", Kind::Address),
    f("destination.port", "destination_port", Kind::Number),
];

const FLOW: &[Field] = &[
    f("network.transport", "transport", Kind::Text),
    f("network.community_id", "community_id", Kind::Text),
    f("network.iana_number", "iana_number", Kind::Number),
    f("source.packets", "source_packets", Kind::Number),
    f("source.bytes", "source_bytes", Kind::Number),
    f("destination.packets", "destination_packets", Kind::Number),
    f("destination.bytes", "destination_bytes", Kind::Number),
    f("event.duration", "duration_ns", Kind::Number),
    f("flow.state", "state", Kind::Text),
    f("flow.history", "history", Kind::Text),
];

const DNS: &[Field] = &[
    f("network.transport", "transport", Kind::Text),
    f("network.community_id", "community_id", Kind::Text),
    f("dns.id", "dns_id", Kind::Number),
    f("dns.type", "dns_type", Kind::Text),
    f("dns.op_code", "op_code", Kind::Text),
    f("dns.question.name", "question_name", Kind::Text),
    f("dns.question.type", "question_type", Kind::Text),
    f("dns.response_code", "response_code", Kind::Text),
];

const HTTP: &[Field] = &[
    f("network.transport", "transport", Kind::Text),
    f("network.community_id", "community_id", Kind::Text),
    f("http.version", "version", Kind::Text),
    f("http.request.method", "method", Kind::Text),
    f("http.request.referrer", "referrer", Kind::Text),
    f("http.response.status_code", "status_code", Kind::Number),
    f("url.domain", "url_domain", Kind::Text),
    f("url.original", "url_original", Kind::Text),
    f("user_agent.original", "user_agent", Kind::Text),
];

const TLS: &[Field] = &[
    f("network.transport", "transport", Kind::Text),
    f("network.community_id", "community_id", Kind::Text),
    f("tls.version", "version", Kind::Text),
    f("tls.cipher", "cipher", Kind::Text),
    f("tls.next_protocol", "next_protocol", Kind::Text),
    f("tls.client.server_name", "server_name", Kind::Text),
    f("tls.client.ja3", "ja3", Kind::Text),
    f("tls.client.ja4", "ja4", Kind::Text),
    f("tls.server.ja3s", "ja3s", Kind::Text),
    f("tls.server.subject", "server_subject", Kind::Text),
    f("tls.server.issuer", "server_issuer", Kind::Text),
];

const SSH: &[Field] = &[
    f("network.transport", "transport", Kind::Text),
    f("network.community_id", "community_id", Kind::Text),
    f("ssh.client", "client_banner", Kind::Text),
    f("ssh.server", "server_banner", Kind::Text),
];

const ICMP: &[Field] = &[
    f("network.transport", "transport", Kind::Text),
    f("network.community_id", "community_id", Kind::Text),
    f("icmp.type", "icmp_type", Kind::Number),
    f("icmp.code", "icmp_code", Kind::Number),
];

const LOG: &[Field] = &[
    f("host.hostname", "hostname", Kind::Text),
    f("log.syslog.appname", "appname", Kind::Text),
    f("log.syslog.facility.name", "facility", Kind::Text),
    f("log.syslog.severity.name", "severity", Kind::Text),
    f("event.outcome", "outcome", Kind::Text),
    f("user.name", "user_name", Kind::Text),
    f("process.name", "process_name", Kind::Text),
    f("process.pid", "process_pid", Kind::Number),
    f("file.path", "file_path", Kind::Text),
    f("message", "message", Kind::Text),
];

/// A dataset the search reads: its name in the API, its table, its own fields.
#[derive(Debug, Clone, Copy)]
pub struct Dataset {
    pub name: &'static str,
    pub table: &'static str,
    pub fields: &'static [Field],
}

pub const DATASETS: &[Dataset] = &[
    Dataset { name: "flow", table: "flows", fields: FLOW },
    Dataset { name: "dns", table: "dns", fields: DNS },
    Dataset { name: "http", table: "http", fields: HTTP },
    Dataset { name: "tls", table: "tls", fields: TLS },
    Dataset { name: "ssh", table: "ssh", fields: SSH },
    Dataset { name: "icmp", table: "icmp", fields: ICMP },
    Dataset { name: "log", table: "logs", fields: LOG },
];

pub fn dataset(name: &str) -> Option<&'static Dataset> {
    DATASETS.iter().find(|d| d.name == name)
}

impl Dataset {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        COMMON.iter().chain(self.fields).find(|f| f.name == name)
    }

    /// Every field, common ones first.
    pub fn all_fields(&self) -> impl Iterator<Item = &'static Field> {
        COMMON.iter().chain(self.fields.iter())
    }

    /// The SELECT list: every field under its ECS name, addresses as text.
    pub fn select_list(&self) -> String {
        let mut out = vec!["ts_ns AS `@timestamp_ns`".to_string()];
        for field in self.all_fields() {
            out.push(format!("{} AS `{}`", column_text(field), field.name));
        }
        out.join(", ")
    }
}

/// A column as text for output: addresses without the `::ffff:` of IPv4-mapped ones.
pub fn column_text(field: &Field) -> String {
    match field.kind {
        Kind::Address => address_text(field.column),
        _ => field.column.to_string(),
    }
}

/// The SQL reading a FixedString(16) column as an address text.
pub fn address_text(column: &str) -> String {
    format!("replaceRegexpOne(IPv6NumToString({column}), '^::ffff:', '')")
}

/// A value bound to a `?` of the SQL text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Int(i64),
    UInt(u64),
    Texts(Vec<String>),
}

/// SQL text with `?` placeholders and their values, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Value>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql { text: text.to_string(), binds: Vec::new() }
    }

    /// Append SQL text holding as many `?` as `values`.
    pub fn push(&mut self, text: &str, values: impl IntoIterator<Item = Value>) {
        self.text.push_str(text);
        self.binds.extend(values);
    }

    /// Append another statement fragment with its values.
    pub fn append(&mut self, other: Sql) {
        self.text.push_str(&other.text);
        self.binds.extend(other.binds);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("unknown field {field:?} in dataset {dataset}; known fields: {known}")]
    UnknownField { field: String, dataset: &'static str, known: String },
    #[error("{field}: {message}")]
    BadValue { field: String, message: String },
}

/// Compile a parsed query into a boolean SQL expression over `dataset`'s table.
pub fn compile(ast: &Ast, dataset: &Dataset) -> Result<Sql, CompileError> {
    let mut sql = Sql::default();
    compile_into(ast, dataset, &mut sql)?;
    Ok(sql)
}

fn compile_into(ast: &Ast, dataset: &Dataset, sql: &mut Sql) -> Result<(), CompileError> {
    match ast {
        Ast::And(a, b) | Ast::Or(a, b) => {
            sql.push("(", []);
            compile_into(a, dataset, sql)?;
            sql.push(if matches!(ast, Ast::And(..)) { " AND " } else { " OR " }, []);
            compile_into(b, dataset, sql)?;
            sql.push(")", []);
        }
        Ast::Not(inner) => {
            sql.push("NOT (", []);
            compile_into(inner, dataset, sql)?;
            sql.push(")", []);
        }
        Ast::Compare { field, op, value } => {
            let Some(known) = dataset.field(field) else {
                let known: Vec<&str> = dataset.all_fields().map(|f| f.name).collect();
                return Err(CompileError::UnknownField {
                    field: field.clone(),
                    dataset: dataset.name,
                    known: known.join(", "),
                });
            };
            compare(known, *op, value, sql)?;
        }
    }
    Ok(())
}

fn compare(field: &Field, op: Op, value: &str, sql: &mut Sql) -> Result<(), CompileError> {
    let bad = |message: String| CompileError::BadValue { field: field.name.into(), message };
    let column = field.column;
    match field.kind {
        Kind::Text => match op {
            Op::Match if value.contains('*') => {
                sql.push(&format!("{column} LIKE ?"), [Value::Text(like_pattern(value))]);
            }
            Op::Match | Op::Eq => sql.push(&format!("{column} = ?"), [Value::Text(value.into())]),
            Op::Ne => sql.push(&format!("{column} != ?"), [Value::Text(value.into())]),
            _ => return Err(bad("text fields take ':', '=' or '!='".into())),
        },
        Kind::Number => {
            let number: i64 =
                value.parse().map_err(|_| bad(format!("{value:?} is not a whole number")))?;
            let symbol = match op {
                Op::Match | Op::Eq => "=",
                Op::Ne => "!=",
                Op::Lt => "<",
                Op::Gt => ">",
                Op::Le => "<=",
                Op::Ge => ">=",
                Op::In => return Err(bad("'in' takes an address field and a CIDR".into())),
            };
            sql.push(&format!("{column} {symbol} ?"), [Value::Int(number)]);
        }
        Kind::Address => {
            let is_network = value.contains('/');
            match op {
                Op::In | Op::Match if is_network => {
                    let (low, high) = cidr_range(value).map_err(bad)?;
                    sql.push(
                        &format!("{column} BETWEEN IPv6StringToNum(?) AND IPv6StringToNum(?)"),
                        [Value::Text(low.to_string()), Value::Text(high.to_string())],
                    );
                }
                Op::In => return Err(bad(format!("{value:?} is not a CIDR such as 10.0.0.0/8"))),
                Op::Match | Op::Eq | Op::Ne => {
                    let ip: IpAddr = value
                        .parse()
                        .map_err(|_| bad(format!("{value:?} is not an IP address or CIDR")))?;
                    let symbol = if op == Op::Ne { "!=" } else { "=" };
                    sql.push(
                        &format!("{column} {symbol} IPv6StringToNum(?)"),
                        [Value::Text(mapped(ip).to_string())],
                    );
                }
                _ => return Err(bad("address fields take ':', '=', '!=' or 'in'".into())),
            }
        }
    }
    Ok(())
}

/// A wildcard (`*`) pattern as a LIKE pattern: LIKE's own `%`, `_` and `\` escaped.
pub fn like_pattern(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// An address in the IPv6-mapped form the tables store.
pub fn mapped(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The first and last address of a CIDR, IPv6-mapped.
pub fn cidr_range(text: &str) -> Result<(Ipv6Addr, Ipv6Addr), String> {
    let Some((addr, bits)) = text.split_once('/') else {
        return Err(format!("{text:?} is not a CIDR such as 10.0.0.0/8"));
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
    let bits: u32 = bits.parse().map_err(|_| format!("{bits:?} is not a prefix length"))?;
    let (max, offset) = if ip.is_ipv4() { (32, 96) } else { (128, 0) };
    if bits > max {
        return Err(format!("prefix /{bits} is longer than {max} bits"));
    }
    let base = u128::from(mapped(ip));
    let host_bits = 128 - (bits + offset);
    let mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
    Ok((Ipv6Addr::from(base & !mask), Ipv6Addr::from(base | mask)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(field: &str, op: Op, value: &str) -> Ast {
        Ast::Compare { field: field.into(), op, value: value.into() }
    }

    fn compiled(q: &str, ds: &str) -> Result<Sql, String> {
        let ast = parse(q).map_err(|e| e.to_string())?;
        compile(&ast, dataset(ds).expect("dataset")).map_err(|e| e.to_string())
    }

    #[test]
    fn precedence_not_and_or() {
        let ast = parse("a:1 OR b:2 AND NOT c:3").expect("parses");
        let want = Ast::Or(
            Box::new(cmp("a", Op::Match, "1")),
            Box::new(Ast::And(
                Box::new(cmp("b", Op::Match, "2")),
                Box::new(Ast::Not(Box::new(cmp("c", Op::Match, "3")))),
            )),
        );
        assert_eq!(ast, want);
        let grouped = parse("(a:1 or b:2) and c >= 3").expect("parses");
        assert!(matches!(grouped, Ast::And(..)));
    }

    #[test]
    fn operators_and_values() {
        assert_eq!(parse("source.port>=1024").expect("p"), cmp("source.port", Op::Ge, "1024"));
        assert_eq!(parse("source.port != 22").expect("p"), cmp("source.port", Op::Ne, "22"));
        assert_eq!(
            parse("source.ip in 10.0.0.0/8").expect("p"),
            cmp("source.ip", Op::In, "10.0.0.0/8")
        );
        assert_eq!(
            parse("source.ip:2001:db8::1").expect("p"),
            cmp("source.ip", Op::Match, "2001:db8::1")
        );
        assert_eq!(
            parse(r#"url.original:"/a b\"c\\""#).expect("p"),
            cmp("url.original", Op::Match, "/a b\"c\\")
        );
    }

    #[test]
    fn compiles_to_placeholders_only() {
        let sql = compiled(
            "source.ip:10.0.0.0/8 AND url.original:*admin* AND NOT http.response.status_code < 400",
            "http",
        )
        .expect("compiles");
        assert_eq!(
            sql.text,
            "((source_ip BETWEEN IPv6StringToNum(?) AND IPv6StringToNum(?) AND url_original LIKE ?) \
             AND NOT (status_code < ?))"
        );
        assert_eq!(
            sql.binds,
            vec![
                Value::Text("::ffff:10.0.0.0".into()),
                Value::Text("::ffff:10.255.255.255".into()),
                Value::Text("%admin%".into()),
                Value::Int(400),
            ]
        );
    }

    #[test]
    fn cidr_ranges() {
        let (lo, hi) = cidr_range("192.168.1.77/24").expect("cidr");
        assert_eq!(
            (lo.to_string(), hi.to_string()),
            ("::ffff:192.168.1.0".into(), "::ffff:192.168.1.255".into())
        );
        let (lo, hi) = cidr_range("2001:db8::/32").expect("cidr");
        assert_eq!(
            (lo.to_string(), hi.to_string()),
            ("2001:db8::".into(), "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".into())
        );
        let (lo, hi) = cidr_range("0.0.0.0/0").expect("cidr");
        assert_eq!(
            (lo.to_string(), hi.to_string()),
            ("::ffff:0.0.0.0".into(), "::ffff:255.255.255.255".into())
        );
        assert!(cidr_range("10.0.0.0/33").is_err());
        assert!(cidr_range("::/129").is_err());
        assert!(cidr_range("x/8").is_err());
    }

    #[test]
    fn wildcards_escape_like_specials() {
        assert_eq!(like_pattern("*50%_off\\*"), "%50\\%\\_off\\\\%");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let err = compiled("url.original:x", "flow").expect_err("not a flow field");
        assert!(err.contains("unknown field \"url.original\" in dataset flow"), "{err}");
        assert!(compiled("source.port:abc", "flow")
            .expect_err("nan")
            .contains("not a whole number"));
        assert!(compiled("source.ip:300.1.1.1", "flow").is_err());
        assert!(compiled("source.ip < 10.0.0.1", "flow").is_err());
        assert!(compiled("flow.state > S0", "flow").is_err());
        assert!(compiled("source.port in 10.0.0.0/8", "flow").is_err());
    }

    /// Hostile input: each is refused with an error, or parsed with the hostile text confined to a
    /// bound value, never the SQL text.
    #[test]
    fn hostile_inputs_never_reach_the_sql_text() {
        let hostile = [
            "url.original:\"'; DROP TABLE flows; --\"",
            "url.original:'x' OR 1=1",
            "url.original:x;DROP",
            "url.original:x/*comment*/",
            "url.original:\"\\' OR ''='\"",
            "url.original:\"ừ ư ơ 🙂\"",
            "url.original:\"\u{0}\u{202e}\"",
            "url.original:??",
            "url.original:x) OR (1=1",
            "source_ip:x",
            "url.original`:x",
            "url.original:x; SELECT * FROM system.users",
            "flows.raw:x",
            "url.original:x --",
        ];
        for q in hostile {
            match compiled(q, "http") {
                Ok(sql) => {
                    for bad in ["DROP", "'", ";", "--", "/*", "1=1", "🙂", "system", "??"] {
                        assert!(
                            !sql.text.contains(bad),
                            "{q:?} leaked {bad:?} into {:?}",
                            sql.text
                        );
                    }
                }
                Err(err) => assert!(!err.is_empty()),
            }
        }
        // Column names never come from the query: only the whitelist's.
        assert!(compiled("source_ip:1.2.3.4", "flow").is_err());
    }

    #[test]
    fn limits_hold() {
        let deep = format!("{}a:1{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).expect_err("too deep").message.contains("nested"));
        let nots = format!("{}a:1", "NOT ".repeat(100));
        assert!(parse(&nots).is_err());
        let huge = "a:1 AND ".repeat(1000) + "a:1";
        assert!(parse(&huge).is_err());
        let many = vec!["a:1"; 70].join(" OR ");
        assert!(parse(&many).expect_err("too many").message.contains("comparisons"));
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = parse("source.ip:1.2.3.4 AND").expect_err("dangling");
        assert_eq!(err.position, 21);
        assert!(parse("(a:1").expect_err("open").message.contains("')'"));
        assert!(parse("a:1)").is_err());
        assert!(parse("a ~ 1").expect_err("op").message.contains("operator"));
        assert!(parse("a:\"open").expect_err("quote").message.contains("unterminated"));
        assert!(parse("").is_err());
        assert!(parse("AND a:1").is_err());
    }

    #[test]
    fn every_prefix_parses_or_errs_without_panic() {
        let q = r#"(source.ip in 10.0.0.0/8 OR NOT destination.ip:"2001:db8::1") AND url.original:*adm\in* AND source.port >= 1024"#;
        for (i, _) in q.char_indices() {
            let _ = parse(&q[..i]);
        }
        assert!(parse(q).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_and_compile_never_panic_on_query_like_text(
            s in "[()a-z._:=!<>*/0-9\" ]{0,120}|(NOT |AND |OR |source\\.ip:|url\\.original:|\\(|\\))*"
        ) {
            if let Ok(ast) = parse(&s) {
                let _ = compile(&ast, dataset("http").expect("http"));
            }
        }
    }
}
