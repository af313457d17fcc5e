//! Authentication and account messages: sshd, PAM, sudo, su, the shadow-utils account tools
//! (useradd, usermod, groupadd, passwd, ...), cron, and a few legacy daemons (ftpd, klogind, login).
//! Each takes the syslog MSG text and adds ECS fields; a message it does not know is left as is.
//!
//! `event.action` uses a fixed vocabulary (kebab-case, listed in `sensor/LOGS.md`), so detection
//! rules can match on it rather than on free text.

use super::classify;
use super::record::{LogEvent, ProcessFields, UserFields};
use canh_event::Endpoint;
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

/// An IP address, also in brackets (`[192.0.2.1]`) or with a trailing `:`/`,`/`.`.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    // The usual case first: a plain dotted quad, which the trimming below would leave alone.
    if let Some(v4) = dotted_quad(text.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    let text = text.trim_matches(|c| matches!(c, '[' | ']' | ',' | ';' | '(' | ')'));
    let text = text.strip_suffix(':').unwrap_or(text);
    text.parse().ok().or_else(|| text.strip_suffix('.').and_then(|t| t.parse().ok()))
}

/// `a.b.c.d` with decimal octets of one to three digits, no leading zero, at most 255: what
/// `Ipv4Addr::from_str` accepts, read in one pass (`None` for anything else, which may still be
/// an address of another form).
fn dotted_quad(bytes: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        if n > 0 {
            if bytes.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut value = 0u32;
        while let Some(&d) = bytes.get(i).filter(|d| d.is_ascii_digit()) {
            if i - start == 3 {
                return None;
            }
            value = value * 10 + u32::from(d - b'0');
            i += 1;
        }
        if i == start || (i - start > 1 && bytes[start] == b'0') {
            return None;
        }
        *octet = u8::try_from(value).ok()?;
    }
    (i == bytes.len()).then_some(Ipv4Addr::from(octets))
}

pub fn set_source(event: &mut LogEvent<'_>, ip: Option<IpAddr>, port: Option<u16>) {
    if ip.is_none() && port.is_none() {
        return;
    }
    let source = event.source.get_or_insert_with(Endpoint::default);
    if ip.is_some() {
        source.ip = ip;
    }
    if port.is_some() {
        source.port = port;
    }
}

pub fn set_user<'a>(event: &mut LogEvent<'a>, name: &'a str) {
    let name = name.trim();
    if name.is_empty() {
        return;
    }
    event.user.get_or_insert_with(UserFields::default).name = Cow::Borrowed(name);
}

fn set_effective<'a>(event: &mut LogEvent<'a>, name: &'a str) {
    let name = name.trim();
    if name.is_empty() {
        return;
    }
    event.user.get_or_insert_with(UserFields::default).effective = Some(Cow::Borrowed(name));
}

fn set_target<'a>(event: &mut LogEvent<'a>, name: &'a str) {
    let name = name.trim();
    if name.is_empty() {
        return;
    }
    event.user.get_or_insert_with(UserFields::default).target = Some(Cow::Borrowed(name));
}

fn set_command<'a>(event: &mut LogEvent<'a>, command: &'a str) {
    let process = event.process.get_or_insert_with(ProcessFields::default);
    process.command_line = Some(Cow::Borrowed(command.trim()));
}

/// `<host> port <n>` or `<host>` at the start of `text`; returns the address, the port and what
/// follows.
fn host_port(text: &str) -> (Option<IpAddr>, Option<u16>, &str) {
    let text = text.trim_start();
    let (host, rest) = text.split_once(' ').unwrap_or((text, ""));
    let ip = parse_ip(host);
    if let Some(after) = rest.strip_prefix("port ") {
        let (port, rest) = after.split_once(' ').unwrap_or((after, ""));
        let digits = port.bytes().take_while(u8::is_ascii_digit).count();
        let port = port[..digits].parse().ok();
        return (ip, port, rest);
    }
    (ip, None, rest)
}

/// `[invalid user |authenticating user |user ]<name> ` before a host, as in
/// "Disconnected from invalid user admin 192.0.2.1 port 22".
fn user_then_host(text: &str) -> (Option<&str>, &str) {
    for prefix in ["invalid user ", "authenticating user ", "user "] {
        if let Some(rest) = text.strip_prefix(prefix) {
            let head_len = rest.find(" port ").unwrap_or(rest.len());
            if let Some(space) = rest[..head_len].rfind(' ') {
                return (Some(&rest[..space]), &rest[space + 1..]);
            }
        }
    }
    (None, text)
}

/// An `Accepted`/`Failed`/`Postponed` line after its first word.
struct Attempt<'a> {
    method: &'a str,
    user: &'a str,
    invalid_user: bool,
    ip: Option<IpAddr>,
    port: Option<u16>,
}

/// `<method> for [invalid user ]<user> from <ip> port <port> ssh2`.
fn auth_attempt(rest: &str) -> Option<Attempt<'_>> {
    let (method, rest) = rest.split_once(" for ")?;
    let (user, host) = rest.rsplit_once(" from ")?;
    // OpenSSH before 3.9 wrote "illegal user".
    let (user, invalid_user) =
        match user.strip_prefix("invalid user ").or_else(|| user.strip_prefix("illegal user ")) {
            Some(u) => (u, true),
            None => (user, false),
        };
    let (ip, port, _) = host_port(host);
    Some(Attempt { method, user, invalid_user, ip, port })
}

/// sshd (OpenSSH) messages.
pub fn sshd_into<'a>(message: &'a str, event: &mut LogEvent<'a>) {
    let text = message.trim();
    let (text, preauth) = match text.strip_suffix("[preauth]") {
        Some(t) => (t.trim_end(), true),
        None => (text, false),
    };
    // Solaris adds "[ID 800047 auth.notice] " before the text.
    let text = match text.strip_prefix("[ID ").and_then(|r| r.split_once("] ")) {
        Some((_, rest)) => rest,
        None => text,
    };
    let text = text
        .strip_prefix("error: ")
        .or_else(|| text.strip_prefix("fatal: "))
        .or_else(|| text.strip_prefix("debug1: "))
        .unwrap_or(text);
    if text.starts_with("pam_") {
        pam_into("sshd", text, event);
        return;
    }
    if let Some(rest) = text.strip_prefix("Accepted ") {
        if let Some(a) = auth_attempt(rest) {
            set_user(event, a.user);
            set_source(event, a.ip, a.port);
            let action = attempt_action("accepted", a.method, false);
            classify(event, &["authentication", "session"], &["start"], "success", action);
        }
        return;
    }
    if let Some(rest) = text.strip_prefix("Failed ") {
        if let Some(a) = auth_attempt(rest) {
            set_user(event, a.user);
            set_source(event, a.ip, a.port);
            let action = attempt_action("failed", a.method, a.invalid_user);
            classify(event, &["authentication"], &["start"], "failure", action);
        }
        return;
    }
    if let Some(rest) = text.strip_prefix("Postponed ") {
        if let Some(a) = auth_attempt(rest) {
            set_user(event, a.user);
            set_source(event, a.ip, a.port);
            let action = attempt_action("postponed", a.method, false);
            // An invalid user cannot succeed; otherwise the attempt is still open.
            let outcome = if a.invalid_user { "failure" } else { "unknown" };
            classify(event, &["authentication"], &["info"], outcome, action);
        }
        return;
    }
    if let Some(rest) =
        text.strip_prefix("Invalid user ").or_else(|| text.strip_prefix("Illegal user "))
    {
        // "Invalid user <name> from <ip>[ port <port>]"; the name may be empty.
        let (user, host) = rest.rsplit_once(" from ").unwrap_or(("", rest));
        set_user(event, user);
        let (ip, port, _) = host_port(host);
        set_source(event, ip, port);
        classify(event, &["authentication"], &["start"], "failure", "invalid-user");
        return;
    }
    if let Some(rest) = text.strip_prefix("input_userauth_request: invalid user ") {
        set_user(event, rest);
        classify(event, &["authentication"], &["start"], "failure", "invalid-user");
        return;
    }
    if let Some(rest) = text.strip_prefix("User ") {
        // "User root from 192.0.2.1 not allowed because not listed in AllowUsers"
        if let Some((user, rest)) = rest.split_once(" from ") {
            if rest.contains("not allowed") {
                set_user(event, user);
                let (ip, port, _) = host_port(rest);
                set_source(event, ip, port);
                classify(event, &["authentication"], &["start"], "failure", "user-not-allowed");
                return;
            }
        }
    }
    if let Some(rest) = text.strip_prefix("Connection closed by ") {
        let (user, host) = user_then_host(rest);
        if let Some(user) = user {
            set_user(event, user);
        }
        let (ip, port, _) = host_port(host);
        set_source(event, ip, port);
        let action = if preauth { "connection-closed-preauth" } else { "connection-closed" };
        classify(event, &["network"], &["connection", "end"], "", action);
        return;
    }
    if let Some(rest) = text.strip_prefix("Connection reset by ") {
        let (user, host) = user_then_host(rest);
        if let Some(user) = user {
            set_user(event, user);
        }
        let (ip, port, _) = host_port(host);
        set_source(event, ip, port);
        classify(event, &["network"], &["connection", "end"], "failure", "connection-reset");
        return;
    }
    if let Some(rest) = text.strip_prefix("Received disconnect from ") {
        // "Received disconnect from <ip>[ port <p>]:<code>: <reason>"
        let (ip, port, _) = host_port(rest);
        set_source(event, ip, port);
        let action = if preauth { "disconnect-preauth" } else { "disconnect" };
        classify(event, &["network"], &["connection", "end"], "", action);
        return;
    }
    if let Some(rest) = text.strip_prefix("Disconnected from ") {
        let (user, host) = user_then_host(rest);
        if let Some(user) = user {
            set_user(event, user);
        }
        let (ip, port, _) = host_port(host);
        set_source(event, ip, port);
        let action = if preauth { "disconnect-preauth" } else { "disconnect" };
        classify(event, &["network"], &["connection", "end"], "", action);
        return;
    }
    if let Some(rest) = text.strip_prefix("Did not receive identification string from ") {
        let (ip, port, _) = host_port(rest);
        set_source(event, ip, port);
        classify(event, &["network"], &["connection"], "failure", "no-identification-string");
        return;
    }
    // OpenSSH 8.2+ when a client's identification line is wrong or missing: "banner exchange:
    // Connection from 192.0.2.1 port 41239: invalid format" (or "could not read protocol version").
    if let Some(rest) = text.strip_prefix("banner exchange: Connection from ") {
        let (ip, port, _) = host_port(rest.split_once(": ").map_or(rest, |(host, _)| host));
        set_source(event, ip, port);
        classify(event, &["network"], &["protocol"], "failure", "bad-protocol-version");
        return;
    }
    if text.contains("Too many authentication failures")
        || text.contains("maximum authentication attempts exceeded")
    {
        too_many_failures(text, event);
        return;
    }
    if let Some(rest) = text.strip_prefix("reverse mapping checking getaddrinfo for ") {
        // "<host> [<ip>] failed - POSSIBLE BREAK-IN ATTEMPT!"
        let ip = rest.split_whitespace().nth(1).and_then(parse_ip);
        set_source(event, ip, None);
        classify(event, &["network"], &["info"], "failure", "reverse-mapping-failed");
        return;
    }
    if let Some(rest) = text.strip_prefix("Address ") {
        if text.contains("POSSIBLE BREAK-IN ATTEMPT") {
            let ip = rest.split_whitespace().next().and_then(parse_ip);
            set_source(event, ip, None);
            classify(event, &["network"], &["info"], "failure", "reverse-mapping-failed");
            return;
        }
    }
    if let Some(rest) = text.strip_prefix("PAM ") {
        if rest.contains("more authentication failure") {
            pam_failure_fields(rest, event);
            classify(event, &["authentication"], &["start"], "failure", "authentication-failure");
            return;
        }
        if rest.contains("ignoring max retries") {
            classify(event, &["authentication"], &["info"], "failure", "max-retries-exceeded");
            return;
        }
    }
    if let Some(rest) = text.strip_prefix("scanned from ") {
        // "scanned from 192.0.2.1 with SSH-1.0-SSH_Version_Mapper.  Don't panic."
        let ip = rest.split_whitespace().next().and_then(parse_ip);
        set_source(event, ip, None);
        classify(event, &["network"], &["connection"], "failure", "version-scan");
        return;
    }
    if let Some(rest) = text.strip_prefix("Timeout before authentication for ") {
        let (ip, port, _) = host_port(rest);
        set_source(event, ip, port);
        classify(event, &["network"], &["connection", "end"], "failure", "login-timeout");
        return;
    }
    if let Some(rest) = text.strip_prefix("Connection from ") {
        let (ip, port, _) = host_port(rest);
        set_source(event, ip, port);
        classify(event, &["network"], &["connection", "start"], "", "connection-opened");
        return;
    }
    if let Some(rest) = text.strip_prefix("Read error from remote host ") {
        let ip = rest.split([' ', ':']).next().and_then(parse_ip);
        set_source(event, ip, None);
        classify(event, &["network"], &["connection", "error"], "failure", "read-error");
        return;
    }
    if text.starts_with("Write failed: ") {
        classify(event, &["network"], &["connection", "error"], "failure", "write-failed");
        return;
    }
    if let Some(rest) = text.strip_prefix("Bad protocol version identification ") {
        if let Some((_, host)) = rest.rsplit_once(" from ") {
            let (ip, port, _) = host_port(host);
            set_source(event, ip, port);
        }
        classify(event, &["network"], &["protocol"], "failure", "bad-protocol-version");
        return;
    }
    if let Some(rest) = text.strip_prefix("Unable to negotiate with ") {
        let (ip, port, _) = host_port(rest.trim_end_matches(':'));
        set_source(event, ip, port);
        classify(event, &["network"], &["protocol"], "failure", "negotiation-failed");
        return;
    }
    if text.starts_with("Server listening on ") {
        classify(event, &["process"], &["start"], "success", "server-listening");
        return;
    }
    if text.starts_with("Received signal ") {
        classify(event, &["process"], &["end"], "", "server-stopped");
        return;
    }
    if text.starts_with("channel ") && text.contains("connection failed") {
        classify(event, &["network"], &["connection", "error"], "failure", "channel-failed");
        return;
    }
    if text.starts_with("server_input_channel_open: failure") {
        classify(event, &["network"], &["connection", "error"], "failure", "channel-failed");
        return;
    }
    if let Some(rest) = text.strip_prefix("PAM: ") {
        // "PAM: User not known to the underlying authentication module for illegal user x from ip"
        if let Some((_, rest)) = rest.split_once(" for ") {
            let (user, host) = rest.rsplit_once(" from ").unwrap_or((rest, ""));
            let user = user.strip_prefix("illegal user ").or(user.strip_prefix("invalid user "));
            set_user(event, user.unwrap_or_default());
            set_source(event, parse_ip(host.trim()), None);
        }
        classify(event, &["authentication"], &["start"], "failure", "authentication-failure");
        return;
    }
    if text.starts_with("Authentication refused: ") {
        classify(event, &["authentication"], &["start"], "failure", "authentication-refused");
        return;
    }
    if text.starts_with("subsystem request for ") && text.contains("failed") {
        if let Some((_, rest)) = text.split_once(" by user ") {
            set_user(event, rest.split_whitespace().next().unwrap_or_default());
        }
        classify(event, &["session"], &["error"], "failure", "subsystem-failed");
        return;
    }
    let protocol_errors = [
        "Disconnecting: ",
        "Corrupted MAC on input",
        "Bad packet length",
        "getpeername failed",
        "get_remote_port failed",
        "Unable to negotiate",
    ];
    if protocol_errors.iter().any(|p| text.starts_with(p)) {
        classify(event, &["network"], &["protocol", "error"], "failure", "protocol-error");
        return;
    }
    if text.starts_with("Could not stat AuthorizedKeysCommand")
        || text.starts_with("Could not load host key")
    {
        classify(event, &["configuration"], &["error"], "failure", "configuration-error");
    }
}

/// The method word of an `Accepted`/`Failed` line as it appears in `event.action`.
fn action_word(method: &str) -> usize {
    match method {
        "password" => 0,
        "publickey" => 1,
        "keyboard-interactive/pam" => 2,
        "none" => 3,
        "hostbased" => 4,
        "gssapi-with-mic" => 5,
        _ => 6,
    }
}

/// `event.action` of an `Accepted`/`Failed`/`Postponed` line: `<verb>-<method word>`, and
/// `-invalid-user` after a failure for a user that does not exist.
fn attempt_action(verb: &str, method: &str, invalid_user: bool) -> &'static str {
    const ACCEPTED: [&str; 7] = [
        "accepted-password",
        "accepted-publickey",
        "accepted-keyboard-interactive",
        "accepted-none",
        "accepted-hostbased",
        "accepted-gssapi",
        "accepted-other",
    ];
    const FAILED: [&str; 7] = [
        "failed-password",
        "failed-publickey",
        "failed-keyboard-interactive",
        "failed-none",
        "failed-hostbased",
        "failed-gssapi",
        "failed-other",
    ];
    const FAILED_INVALID: [&str; 7] = [
        "failed-password-invalid-user",
        "failed-publickey-invalid-user",
        "failed-keyboard-interactive-invalid-user",
        "failed-none-invalid-user",
        "failed-hostbased-invalid-user",
        "failed-gssapi-invalid-user",
        "failed-other-invalid-user",
    ];
    const POSTPONED: [&str; 7] = [
        "postponed-password",
        "postponed-publickey",
        "postponed-keyboard-interactive",
        "postponed-none",
        "postponed-hostbased",
        "postponed-gssapi",
        "postponed-other",
    ];
    let word = action_word(method);
    match (verb, invalid_user) {
        ("accepted", _) => ACCEPTED[word],
        ("failed", true) => FAILED_INVALID[word],
        ("failed", false) => FAILED[word],
        _ => POSTPONED[word],
    }
}

fn too_many_failures<'a>(text: &'a str, event: &mut LogEvent<'a>) {
    // "Disconnecting: Too many authentication failures for root"
    // "Disconnecting authenticating user root 192.0.2.1 port 22: Too many authentication failures"
    // "Disconnecting invalid user admin 192.0.2.1 port 22: Too many authentication failures"
    // "maximum authentication attempts exceeded for [invalid user ]root from 192.0.2.1 port 22 ssh2"
    if let Some((_, user)) = text.split_once("Too many authentication failures for ") {
        set_user(event, user.split_whitespace().next().unwrap_or_default());
    } else if let Some(rest) = text.strip_prefix("Disconnecting ") {
        let head = rest.split(": ").next().unwrap_or_default();
        let (user, host) = user_then_host(head);
        if let Some(user) = user {
            set_user(event, user);
        }
        let (ip, port, _) = host_port(host);
        set_source(event, ip, port);
    } else if let Some((_, rest)) = text.split_once("exceeded for ") {
        let (user, host) = rest.rsplit_once(" from ").unwrap_or((rest, ""));
        set_user(event, user.strip_prefix("invalid user ").unwrap_or(user));
        let (ip, port, _) = host_port(host);
        set_source(event, ip, port);
    }
    classify(event, &["authentication"], &["start"], "failure", "too-many-authentication-failures");
}

/// `key=value` pairs of a PAM failure line (`logname= uid=0 euid=0 tty=ssh ruser= rhost=x  user=y`).
fn pam_failure_fields<'a>(text: &'a str, event: &mut LogEvent<'a>) {
    let fields = text.split_once("; ").map_or(text, |(_, f)| f);
    for pair in fields.split_whitespace() {
        if let Some(host) = pair.strip_prefix("rhost=") {
            set_source(event, parse_ip(host), None);
        } else if let Some(user) = pair.strip_prefix("user=") {
            set_user(event, user);
        }
    }
}

/// PAM messages: `pam_unix(sshd:auth): authentication failure; ...` (module prefix in the
/// message) or, from old syslogs, the same text under a `program(pam_unix)` tag.
pub fn pam_into<'a>(program: &str, message: &'a str, event: &mut LogEvent<'a>) {
    let text = message.trim();
    // Drop a "pam_unix(sshd:session): " prefix.
    let text = match text.split_once("): ") {
        Some((head, rest)) if head.starts_with("pam_") && !head.contains(' ') => rest,
        _ => text,
    };
    if text.starts_with("authentication failure") || text.contains("more authentication failure") {
        pam_failure_fields(text, event);
        classify(event, &["authentication"], &["start"], "failure", "authentication-failure");
    } else if text.starts_with("check pass; user unknown") {
        classify(event, &["authentication"], &["start"], "failure", "user-unknown");
    } else if let Some(rest) = text.strip_prefix("session opened for user ") {
        // "root by (uid=0)", "root by LOGIN(uid=0)", "root(uid=0) by alice(uid=1000)"
        let (user, by) = rest.split_once(" by ").unwrap_or((rest, ""));
        let user = user.split('(').next().unwrap_or(user);
        set_user(event, user);
        if program == "su" {
            // su: the session is the target user's, opened by the invoking one.
            let by = by.split('(').next().unwrap_or_default();
            if !by.is_empty() {
                set_user(event, by);
                set_effective(event, user);
            }
        }
        classify(event, &["session"], &["start"], "success", "session-opened");
    } else if let Some(rest) = text.strip_prefix("session closed for user ") {
        set_user(event, rest.split(['(', ' ']).next().unwrap_or(rest));
        classify(event, &["session"], &["end"], "success", "session-closed");
    } else if let Some(rest) = text.strip_prefix("password changed for ") {
        set_user(event, rest);
        classify(event, &["iam"], &["user", "change"], "success", "password-changed");
    } else if text.starts_with("Failed to create session") {
        classify(event, &["session"], &["start", "error"], "failure", "session-failed");
    } else if text.starts_with("account ") && text.contains("has expired") {
        classify(event, &["authentication"], &["start"], "failure", "account-expired");
    }
}

/// Other programs: PAM lines and a few legacy daemons' authentication messages.
pub fn generic_pam_into<'a>(message: &'a str, event: &mut LogEvent<'a>) {
    let text = message.trim();
    if text.starts_with("pam_") {
        let program = event.process.as_ref().and_then(|p| p.name.clone()).unwrap_or_default();
        pam_into(&program, text, event);
        return;
    }
    // ftpd: "connection from 192.0.2.1 (host.example) at Sun Jul 17 ..."
    if let Some(rest) = text.strip_prefix("connection from ") {
        let ip = rest.split_whitespace().next().and_then(parse_ip);
        set_source(event, ip, None);
        classify(event, &["network"], &["connection", "start"], "", "connection-opened");
        return;
    }
    // ftpd: "ANONYMOUS FTP LOGIN FROM 192.0.2.1,  (anonymous)"
    if let Some(rest) = text.strip_prefix("ANONYMOUS FTP LOGIN FROM ") {
        let ip = rest.split_whitespace().next().and_then(parse_ip);
        set_source(event, ip, None);
        set_user(event, "anonymous");
        classify(event, &["authentication"], &["start"], "success", "anonymous-login");
        return;
    }
    // klogind: "Authentication failed from 192.0.2.1 (host): Software caused connection abort"
    if let Some(rest) = text.strip_prefix("Authentication failed from ") {
        let ip = rest.split_whitespace().next().and_then(parse_ip);
        set_source(event, ip, None);
        classify(event, &["authentication"], &["start"], "failure", "authentication-failure");
        return;
    }
    // login: "ROOT LOGIN ON tty2", "FAILED LOGIN 1 FROM (null) FOR root, Authentication failure"
    // The tag is sometimes mangled ("-- root[2421]: ROOT LOGIN ON tty2"): match anywhere.
    if text.contains("ROOT LOGIN ON ") {
        set_user(event, "root");
        classify(event, &["authentication"], &["start"], "success", "login");
        return;
    }
    if text.starts_with("FAILED LOGIN ") {
        if let Some((_, rest)) = text.split_once(" FOR ") {
            set_user(event, rest.split([',', ' ']).next().unwrap_or_default());
        }
        if let Some((_, rest)) = text.split_once(" FROM ") {
            set_source(event, rest.split_whitespace().next().and_then(parse_ip), None);
        }
        classify(event, &["authentication"], &["start"], "failure", "login-failed");
        return;
    }
    // xinetd: "START: pop3 pid=21823 from=192.0.2.1", "EXIT: pop3 pid=21823 duration=9(sec)"
    if let Some(rest) = text.strip_prefix("START: ") {
        if let Some(from) = rest.split_whitespace().find_map(|w| w.strip_prefix("from=")) {
            set_source(event, parse_ip(from), None);
        }
        classify(event, &["network"], &["connection", "start"], "", "service-start");
        return;
    }
    if text.starts_with("EXIT: ") {
        classify(event, &["network"], &["connection", "end"], "", "service-exit");
        return;
    }
    // klogind: "Kerberos authentication failed", "Couldn't authenticate user"
    if text == "Kerberos authentication failed" || text == "Couldn't authenticate user" {
        classify(event, &["authentication"], &["start"], "failure", "authentication-failure");
        return;
    }
    // snmpd: "Received SNMP packet(s) from 192.0.2.1"
    if let Some(rest) = text.strip_prefix("Received SNMP packet(s) from ") {
        set_source(event, rest.split_whitespace().next().and_then(parse_ip), None);
        classify(event, &["network"], &["connection"], "", "snmp-packet");
    }
}

/// sudo: `alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls`, with an optional
/// first item saying what went wrong (`3 incorrect password attempts`, `user NOT in sudoers`).
pub fn sudo_into<'a>(message: &'a str, event: &mut LogEvent<'a>) {
    let text = message.trim();
    if text.starts_with("pam_") {
        pam_into("sudo", text, event);
        return;
    }
    let Some((user, rest)) = text.split_once(" : ") else { return };
    if user.contains(' ') {
        return;
    }
    set_user(event, user);
    let mut problem = None;
    for item in rest.split(" ; ") {
        match item.split_once('=') {
            Some(("USER", target)) => set_effective(event, target),
            Some(("COMMAND", command)) => set_command(event, command),
            Some((key, _)) if key.chars().all(|c| c.is_ascii_uppercase()) => {}
            _ => problem = Some(item.trim()),
        }
    }
    match problem {
        None => classify(event, &["process"], &["start"], "success", "sudo-command"),
        Some(p) if p.contains("incorrect password") => {
            classify(event, &["authentication"], &["start"], "failure", "sudo-incorrect-password")
        }
        Some(p) if p.contains("NOT in sudoers") || p.contains("not allowed") => {
            classify(event, &["process"], &["start", "denied"], "failure", "sudo-denied")
        }
        Some(_) => classify(event, &["process"], &["start"], "failure", "sudo-failed"),
    }
}

/// su: `Successful su for root by alice`, `FAILED su for root by alice`, `+ pts/0 alice:root`,
/// `(to root) alice on pts/0`, `'su root' failed for lonvick on /dev/pts/8` (RFC 3164's sample).
pub fn su_into<'a>(message: &'a str, event: &mut LogEvent<'a>) {
    let text = message.trim();
    if text.starts_with("pam_") {
        pam_into("su", text, event);
        return;
    }
    let (outcome, rest) = if let Some(rest) = text.strip_prefix("Successful su for ") {
        ("success", rest)
    } else if let Some(rest) = text.strip_prefix("FAILED su for ") {
        ("failure", rest)
    } else if let Some(rest) = text.strip_prefix("+ ") {
        return su_tty_form("success", rest, event);
    } else if let Some(rest) = text.strip_prefix("- ") {
        return su_tty_form("failure", rest, event);
    } else if let Some(rest) = text.strip_prefix("(to ") {
        return su_to_form("success", rest, event);
    } else if let Some(rest) = text.strip_prefix("FAILED SU (to ") {
        return su_to_form("failure", rest, event);
    } else if let Some(rest) = text.strip_prefix("'su ") {
        if let Some((target, rest)) = rest.split_once("' failed for ") {
            set_effective(event, target);
            set_user(event, rest.split_whitespace().next().unwrap_or_default());
            classify(event, &["authentication"], &["start"], "failure", "su");
        }
        return;
    } else {
        return;
    };
    if let Some((target, user)) = rest.split_once(" by ") {
        set_user(event, user);
        set_effective(event, target);
    }
    classify(event, &["authentication"], &["start"], outcome, "su");
}

fn su_tty_form<'a>(outcome: &'static str, rest: &'a str, event: &mut LogEvent<'a>) {
    // "pts/0 alice:root"
    if let Some((user, target)) = rest.split_whitespace().nth(1).and_then(|p| p.split_once(':')) {
        set_user(event, user);
        set_effective(event, target);
        classify(event, &["authentication"], &["start"], outcome, "su");
    }
}

fn su_to_form<'a>(outcome: &'static str, rest: &'a str, event: &mut LogEvent<'a>) {
    // "root) alice on pts/0"
    if let Some((target, rest)) = rest.split_once(") ") {
        set_effective(event, target);
        set_user(event, rest.split_whitespace().next().unwrap_or_default());
        classify(event, &["authentication"], &["start"], outcome, "su");
    }
}

/// `name=bob, UID=1001, ...` -> the value of `key`.
fn keyed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split(',').map(str::trim).find_map(|item| item.strip_prefix(key)?.strip_prefix('='))
}

/// The first `'quoted'` word and what follows it.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let (_, rest) = text.split_once('\'')?;
    rest.split_once('\'')
}

/// shadow-utils and friends: useradd, usermod, userdel, groupadd, groupmod, groupdel, passwd,
/// chpasswd, chage, gpasswd.
pub fn account_into<'a>(program: &str, message: &'a str, event: &mut LogEvent<'a>) {
    let text = message.trim();
    if text.starts_with("pam_") {
        pam_into(program, text, event);
        return;
    }
    let user_event = |event: &mut LogEvent<'a>,
                      user: &'a str,
                      kind: &'static [&'static str],
                      outcome: &'static str,
                      action: &'static str| {
        set_user(event, user);
        classify(event, &["iam"], kind, outcome, action);
    };
    if let Some(rest) = text.strip_prefix("new user: ") {
        let name = keyed(rest, "name").unwrap_or_default();
        return user_event(event, name, &["user", "creation"], "success", "user-created");
    }
    if let Some(rest) =
        text.strip_prefix("new group: ").or_else(|| text.strip_prefix("group added to "))
    {
        let name = keyed(rest.split_once(": ").map_or(rest, |(_, r)| r), "name");
        event.group = name.map(Cow::Borrowed);
        classify(event, &["iam"], &["group", "creation"], "success", "group-created");
        return;
    }
    if text.starts_with("failed adding user ") {
        if let Some((user, _)) = quoted(text) {
            user_event(event, user, &["user", "creation"], "failure", "user-creation-failed");
        }
        return;
    }
    if let Some(rest) = text.strip_prefix("delete user ") {
        if let Some((user, _)) = quoted(rest) {
            user_event(event, user, &["user", "deletion"], "success", "user-deleted");
        }
        return;
    }
    if text.starts_with("removed group ")
        || (text.starts_with("group '") && text.contains("removed"))
    {
        if let Some((group, _)) = quoted(text) {
            event.group = Some(Cow::Borrowed(group));
        }
        classify(event, &["iam"], &["group", "deletion"], "success", "group-deleted");
        return;
    }
    if let Some(rest) = text.strip_prefix("add ") {
        // usermod: "add 'bob' to group 'sudo'" / "add 'bob' to shadow group 'sudo'"
        if let Some((user, rest)) = quoted(rest) {
            if let Some((group, _)) = quoted(rest) {
                event.group = Some(Cow::Borrowed(group));
            }
            return user_event(event, user, &["user", "change"], "success", "user-added-to-group");
        }
    }
    if let Some(rest) = text.strip_prefix("user ") {
        // gpasswd: "user bob added by root to group sudo"
        if let Some((user, rest)) = rest.split_once(" added by ") {
            if let Some((by, group)) = rest.split_once(" to group ") {
                set_user(event, by);
                set_target(event, user);
                event.group = Some(Cow::Borrowed(group.trim()));
                classify(event, &["iam"], &["user", "change"], "success", "user-added-to-group");
                return;
            }
        }
    }
    if text.starts_with("change user ")
        || text.starts_with("lock user ")
        || text.starts_with("unlock user ")
    {
        if let Some((user, rest)) = quoted(text) {
            let action = if rest.contains("password") && text.starts_with("change") {
                "password-changed"
            } else {
                "user-changed"
            };
            return user_event(event, user, &["user", "change"], "success", action);
        }
    }
    if let Some(rest) = text.strip_prefix("password for ") {
        // passwd: "password for 'bob' changed by 'root'"
        if let Some((user, rest)) = quoted(rest) {
            if let Some((by, _)) = quoted(rest) {
                set_user(event, by);
                set_target(event, user);
            } else {
                set_user(event, user);
            }
            classify(event, &["iam"], &["user", "change"], "success", "password-changed");
        }
        return;
    }
    if let Some(rest) = text.strip_prefix("changed password expiry for ") {
        user_event(event, rest, &["user", "change"], "success", "password-expiry-changed");
    }
}

/// cron: `(root) CMD (command)`, `(root) RELOAD (crontabs/root)`, and its PAM session lines.
pub fn cron_into<'a>(message: &'a str, event: &mut LogEvent<'a>) {
    let text = message.trim();
    if text.starts_with("pam_") {
        pam_into("cron", text, event);
        return;
    }
    let Some(rest) = text.strip_prefix('(') else { return };
    let Some((user, rest)) = rest.split_once(") ") else { return };
    if let Some(command) = rest.strip_prefix("CMD (") {
        set_user(event, user);
        set_command(event, command.strip_suffix(')').unwrap_or(command));
        classify(event, &["process"], &["start"], "success", "cron-command");
    } else if rest.starts_with("RELOAD ") {
        classify(event, &["configuration"], &["change"], "success", "cron-reload");
    }
}

#[cfg(test)]
mod tests {
    use crate::logs::record::into_event;
    use canh_event::Event;

    fn sshd_into(message: &str, event: &mut Event) {
        into_event(event, |f| super::sshd_into(message, f))
    }
    fn pam_into(program: &str, message: &str, event: &mut Event) {
        into_event(event, |f| super::pam_into(program, message, f))
    }
    fn sudo_into(message: &str, event: &mut Event) {
        into_event(event, |f| super::sudo_into(message, f))
    }
    fn su_into(message: &str, event: &mut Event) {
        into_event(event, |f| super::su_into(message, f))
    }
    fn account_into(program: &str, message: &str, event: &mut Event) {
        into_event(event, |f| super::account_into(program, message, f))
    }
    fn cron_into(message: &str, event: &mut Event) {
        into_event(event, |f| super::cron_into(message, f))
    }
    fn generic_pam_into(message: &str, event: &mut Event) {
        into_event(event, |f| super::generic_pam_into(message, f))
    }

    use canh_event::{Dataset, Timestamp};

    fn event() -> Event {
        Event::new(Dataset::Log, "x".into(), Timestamp(0), "s", "t")
    }

    fn user(e: &Event) -> Option<&str> {
        e.user.as_ref().map(|u| u.name.as_str())
    }

    fn ip(e: &Event) -> Option<String> {
        e.source.as_ref().and_then(|s| s.ip).map(|ip| ip.to_string())
    }

    // Expected values below are read off the input lines themselves (user, address, port).

    #[test]
    fn sshd_accepted_and_failed() {
        let mut e = event();
        sshd_into(
            "Accepted publickey for alice from 2001:db8::7 port 50122 ssh2: RSA SHA256:abc",
            &mut e,
        );
        assert_eq!(user(&e), Some("alice"));
        assert_eq!(ip(&e).as_deref(), Some("2001:db8::7"));
        assert_eq!(e.source.as_ref().and_then(|s| s.port), Some(50122));
        assert_eq!(e.event.outcome.as_deref(), Some("success"));
        assert_eq!(e.event.action.as_deref(), Some("accepted-publickey"));

        let mut e = event();
        sshd_into("Failed password for invalid user ad min from 192.0.2.9 port 4122 ssh2", &mut e);
        assert_eq!(user(&e), Some("ad min"));
        assert_eq!(ip(&e).as_deref(), Some("192.0.2.9"));
        assert_eq!(e.event.outcome.as_deref(), Some("failure"));
        assert_eq!(e.event.action.as_deref(), Some("failed-password-invalid-user"));
    }

    #[test]
    fn sshd_preauth_and_limits() {
        let mut e = event();
        sshd_into("Disconnecting: Too many authentication failures for root [preauth]", &mut e);
        assert_eq!(user(&e), Some("root"));
        assert_eq!(e.event.action.as_deref(), Some("too-many-authentication-failures"));

        let mut e = event();
        sshd_into(
            "Disconnecting authenticating user root 192.0.2.4 port 5022: Too many authentication failures [preauth]",
            &mut e,
        );
        assert_eq!(user(&e), Some("root"));
        assert_eq!(ip(&e).as_deref(), Some("192.0.2.4"));

        let mut e = event();
        sshd_into(
            "Connection closed by invalid user oracle 192.0.2.5 port 41000 [preauth]",
            &mut e,
        );
        assert_eq!(user(&e), Some("oracle"));
        assert_eq!(ip(&e).as_deref(), Some("192.0.2.5"));
        assert_eq!(e.source.as_ref().and_then(|s| s.port), Some(41000));
        assert_eq!(e.event.action.as_deref(), Some("connection-closed-preauth"));

        let mut e = event();
        sshd_into("Received disconnect from 192.0.2.6: 11: Bye Bye [preauth]", &mut e);
        assert_eq!(ip(&e).as_deref(), Some("192.0.2.6"));
        assert_eq!(e.event.action.as_deref(), Some("disconnect-preauth"));

        let mut e = event();
        sshd_into("Received disconnect from 192.0.2.6 port 3333:11: Bye Bye [preauth]", &mut e);
        assert_eq!(e.source.as_ref().and_then(|s| s.port), Some(3333));

        let mut e = event();
        sshd_into("banner exchange: Connection from 192.0.2.8 port 41239: invalid format", &mut e);
        assert_eq!(ip(&e).as_deref(), Some("192.0.2.8"));
        assert_eq!(e.source.as_ref().and_then(|s| s.port), Some(41239));
        assert_eq!(e.event.action.as_deref(), Some("bad-protocol-version"));
    }

    #[test]
    fn pam_and_sudo_and_su() {
        let mut e = event();
        pam_into(
            "sshd",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.3  user=root",
            &mut e,
        );
        assert_eq!(user(&e), Some("root"));
        assert_eq!(ip(&e).as_deref(), Some("198.51.100.3"));
        assert_eq!(e.event.outcome.as_deref(), Some("failure"));

        let mut e = event();
        sudo_into("    mike : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/bin/ls", &mut e);
        assert_eq!(user(&e), Some("mike"));
        assert_eq!(e.event.outcome.as_deref(), Some("failure"));
        assert_eq!(e.process.as_ref().and_then(|p| p.command_line.as_deref()), Some("/bin/ls"));
        assert_eq!(
            e.user.as_ref().and_then(|u| u.effective.as_ref()).map(|t| t.name.as_str()),
            Some("root")
        );

        let mut e = event();
        su_into("FAILED su for root by alice", &mut e);
        assert_eq!(user(&e), Some("alice"));
        assert_eq!(e.event.outcome.as_deref(), Some("failure"));
    }

    #[test]
    fn accounts_and_cron() {
        let mut e = event();
        account_into(
            "useradd",
            "new user: name=bob, UID=1001, GID=1001, home=/home/bob, shell=/bin/bash",
            &mut e,
        );
        assert_eq!(user(&e), Some("bob"));
        assert_eq!(e.event.r#type, Some(vec!["user".to_string(), "creation".to_string()]));

        let mut e = event();
        account_into("usermod", "add 'bob' to group 'sudo'", &mut e);
        assert_eq!(e.group.as_ref().map(|g| g.name.as_str()), Some("sudo"));

        let mut e = event();
        account_into("groupadd", "group added to /etc/group: name=devs, GID=1002", &mut e);
        assert_eq!(e.group.as_ref().map(|g| g.name.as_str()), Some("devs"));

        let mut e = event();
        cron_into("(root) CMD (run-parts /etc/cron.hourly)", &mut e);
        assert_eq!(user(&e), Some("root"));
        assert_eq!(
            e.process.as_ref().and_then(|p| p.command_line.as_deref()),
            Some("run-parts /etc/cron.hourly")
        );
    }

    #[test]
    fn hostile_text_does_not_panic() {
        for text in [
            "",
            " : ",
            "Accepted ",
            "Failed  for  from ",
            "Connection closed by ",
            "(",
            "(x) CMD (",
            "'",
            "add '",
            "Disconnecting ",
            "Invalid user ",
            "Received disconnect from :",
            "PAM ",
            "user  added by  to group ",
        ] {
            let mut e = event();
            sshd_into(text, &mut e);
            sudo_into(text, &mut e);
            su_into(text, &mut e);
            account_into("usermod", text, &mut e);
            cron_into(text, &mut e);
            pam_into("su", text, &mut e);
            generic_pam_into(text, &mut e);
        }
    }

    #[test]
    fn dotted_quads_as_the_standard_parser_reads_them() {
        for text in [
            "1.2.3.4",
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.",
            "1.2.3.4 ",
            "1..2.3",
            "1.2.3.04",
            "1000.1.1.1",
            "",
            "1.2.3.4:",
            "::1",
            "a.b.c.d",
            "10.0.0.255",
            "1.2.3.-4",
        ] {
            assert_eq!(super::dotted_quad(text.as_bytes()), text.parse().ok(), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_dotted_text_parses_as_the_standard_parser_does(text in "[0-9.]{0,18}") {
            proptest::prop_assert_eq!(super::dotted_quad(text.as_bytes()), text.parse().ok());
        }
    }
}
