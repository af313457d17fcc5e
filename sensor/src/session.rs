//! Protocol metadata per flow: picks the analyser for a flow (DNS by port, HTTP/TLS/SSH by their
//! first bytes, STARTTLS by a ClientHello appearing later), feeds it reassembled TCP bytes or UDP
//! datagrams, and turns what the analysers finish into events carrying the flow's 5-tuple
//! (source = originator) and Community ID. Pure; state per flow and the number of flows with state
//! are capped, and hitting a cap is counted.

use crate::decode::Packet;
use crate::dns::{self, DnsFlow};
use crate::flow::{Analysis, FlowView, Identity};
use crate::http::{self, HttpFlow};
use crate::quic::{self, QuicFlow};
use crate::ssh::{self, SshFlow};
use crate::stream::Stream;
use crate::tls::{self, TlsFlow};
use canh_event::{Dataset, Event, Timestamp};

/// Data chunks per direction in which a TCP flow may still reveal its protocol (STARTTLS comes after
/// a few plaintext exchanges).
const DETECT_CHUNKS: u32 = 24;

enum App {
    Unknown,
    Dns(DnsFlow),
    Http(HttpFlow),
    Tls(TlsFlow),
    /// Boxed: its Initial keys make it several times larger than the other analysers' state.
    Quic(Box<QuicFlow>),
    Ssh(SshFlow),
    /// Nothing we analyse.
    None,
}

/// The analyser state of one flow (held in the flow table's entry for the flow).
pub struct Session {
    app: App,
    /// Client (originator) and server streams, TCP only.
    streams: [Stream; 2],
    /// DNS over TCP: bytes waiting for a complete length-prefixed message, per direction.
    dns_tcp: [Vec<u8>; 2],
    chunks: u32,
}

impl Session {
    /// State for a flow whose analyser is known from its first payload (UDP: DNS, DTLS, QUIC).
    fn with(app: App) -> Session {
        Session {
            app,
            streams: [Stream::default(), Stream::default()],
            dns_tcp: [Vec::new(), Vec::new()],
            chunks: 0,
        }
    }
}

/// What analysers finished, tagged with the flow it belongs to.
pub enum Meta {
    Dns(dns::Transaction),
    Http(http::Transaction),
    /// Boxed: a summary is larger than the other kinds (336 bytes) and rare; every `Meta` is
    /// moved a few times on its way out.
    Tls(Box<tls::Summary>),
    Ssh(SshFlow),
}

impl Meta {
    /// The event's dataset, time and `network.protocol`.
    pub fn header(&self) -> (Dataset, i64, &'static str) {
        match self {
            Meta::Dns(t) => (Dataset::Dns, t.ts_ns, "dns"),
            Meta::Http(t) => (Dataset::Http, t.ts_ns, "http"),
            Meta::Tls(t) => (Dataset::Tls, t.ts_ns, t.carrier.protocol()),
            Meta::Ssh(t) => (Dataset::Ssh, t.ts_ns, "ssh"),
        }
    }
}

/// Counters the caller turns into metrics (fixed reasons).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Flows not analysed because the session table was full.
    pub table_full: u64,
    /// Per-flow buffers or queues that hit their cap.
    pub buffer_full: u64,
    /// Messages that failed to parse.
    pub parse_errors: u64,
}

pub struct Sessions {
    /// Flows counted toward the cap (those with analysis state or waiting for their first payload).
    live: usize,
    max_sessions: usize,
    pub stats: SessionStats,
    scratch: Vec<u8>,
    done: Done,
}

/// Transactions an analyser finished, before they are tagged with their flow: kept between
/// packets, so that finishing one costs no allocation of its own.
#[derive(Default)]
struct Done {
    dns: Vec<dns::Transaction>,
    http: Vec<http::Transaction>,
}

impl Done {
    /// Everything held, tagged with `view`, to `out`.
    fn to(&mut self, view: &FlowView, out: &mut Vec<(FlowView, Meta)>) {
        out.extend(self.dns.drain(..).map(|t| (view.clone(), Meta::Dns(t))));
        out.extend(self.http.drain(..).map(|t| (view.clone(), Meta::Http(t))));
    }
}

fn looks_like_http_request(data: &[u8]) -> bool {
    let end = data.iter().take(24).position(|&c| c == b' ');
    match end {
        Some(n) if n > 0 => {
            data[..n].iter().all(|c| c.is_ascii_uppercase() || *c == b'_' || *c == b'-')
        }
        _ => false,
    }
}

impl Sessions {
    pub fn new(max_sessions: usize) -> Sessions {
        Sessions {
            live: 0,
            max_sessions,
            stats: SessionStats::default(),
            scratch: Vec::new(),
            done: Done::default(),
        }
    }

    /// One packet of the flow `view`, whose analysis state is `slot`; finished metadata goes to
    /// `out`.
    pub fn packet(
        &mut self,
        slot: &mut Analysis,
        view: &FlowView,
        ts_ns: i64,
        p: &Packet<'_>,
        out: &mut Vec<(FlowView, Meta)>,
    ) {
        if matches!(slot, Analysis::Off) && !self.start(slot, view, ts_ns, p) {
            return;
        }
        match slot {
            Analysis::Pending { dns: true, .. } => {
                if p.payload.is_empty() {
                    return;
                }
                *slot = Analysis::Active(Box::new(Session::with(App::Dns(DnsFlow::default()))));
            }
            Analysis::Pending { dns: false, has_next, next, chunks } => {
                if p.payload.is_empty() {
                    // Without payload only a SYN changes anything: where its direction's stream
                    // starts (as `Stream::segment` would record it).
                    if let Some(tcp) = p.tcp.filter(|t| t.syn) {
                        let dir = usize::from(!view.from_orig);
                        if *has_next & (1 << dir) == 0 {
                            *has_next |= 1 << dir;
                            next[dir] = tcp.seq.wrapping_add(1);
                        }
                    }
                    return;
                }
                // Payload: run the analysis on a session rebuilt from what was kept, and keep
                // it only if it learned something that needs it.
                let start = |dir: usize| (*has_next & (1 << dir) != 0).then_some(next[dir]);
                let mut session = Session {
                    app: App::Unknown,
                    streams: [Stream::starting_at(start(0)), Stream::starting_at(start(1))],
                    dns_tcp: [Vec::new(), Vec::new()],
                    chunks: *chunks,
                };
                self.analyse(&mut session, view, ts_ns, p, out);
                *slot = match session.app {
                    // Nothing recognised within the detection budget: nothing left to do.
                    App::None => Analysis::Idle,
                    App::Unknown if session.streams.iter().all(Stream::holds_nothing) => {
                        let mut has_next = 0;
                        let mut next = [0; 2];
                        for (dir, stream) in session.streams.iter().enumerate() {
                            if let Some(n) = stream.next() {
                                has_next |= 1 << dir;
                                next[dir] = n;
                            }
                        }
                        Analysis::Pending { dns: false, has_next, next, chunks: session.chunks }
                    }
                    _ => Analysis::Active(Box::new(session)),
                };
                return;
            }
            _ => {}
        }
        if let Analysis::Active(session) = slot {
            self.analyse(session, view, ts_ns, p, out);
        }
    }

    /// The first packet of a flow, or a later one of a flow nothing was found in yet: give the
    /// flow analysis state if it may carry something we analyse (false: it does not, yet).
    fn start(&mut self, slot: &mut Analysis, view: &FlowView, ts_ns: i64, p: &Packet<'_>) -> bool {
        let udp_dns =
            p.proto == 17 && (dns::is_dns_port(view.orig_port) || dns::is_dns_port(view.resp_port));
        if p.proto == 17 && !udp_dns {
            // Other UDP flows only when a datagram (from either side, at any point: WebRTC sends
            // STUN first) starts with a DTLS ClientHello, as Zeek's signature finds it, or with
            // a client's QUIC Initial. Most datagrams fail the first byte's test.
            let first = p.payload.first().copied().unwrap_or(0);
            return (first == 0x16 || first & 0xc0 == 0xc0)
                && self.start_datagrams(slot, view, ts_ns, p);
        }
        if !udp_dns && p.proto != 6 {
            return false;
        }
        if !self.count_session() {
            return false;
        }
        // Like Zeek, a TCP connection joined without its SYN or SYN-ACK is not analysed: the
        // stream's start, and with it the protocol's framing, is unknown.
        *slot = match p.tcp {
            _ if p.proto == 17 => {
                Analysis::Pending { dns: true, has_next: 0, next: [0; 2], chunks: 0 }
            }
            Some(tcp) if tcp.syn => {
                Analysis::Pending { dns: false, has_next: 0, next: [0; 2], chunks: 0 }
            }
            _ => Analysis::Idle,
        };
        true
    }

    /// A flow in the session count, unless the table is full (counted).
    fn count_session(&mut self) -> bool {
        if self.live >= self.max_sessions {
            self.stats.table_full += 1;
            return false;
        }
        self.live += 1;
        true
    }

    /// A UDP flow off DNS's ports whose datagram may start a DTLS or QUIC handshake.
    #[inline(never)]
    fn start_datagrams(
        &mut self,
        slot: &mut Analysis,
        view: &FlowView,
        ts_ns: i64,
        p: &Packet<'_>,
    ) -> bool {
        let dtls = tls::looks_like_dtls_client_hello(p.payload);
        if !dtls && !quic::looks_like_initial(p.payload) {
            return false;
        }
        // The table is checked before a QUIC flow's keys are derived.
        if !self.count_session() {
            return false;
        }
        let app = if dtls {
            App::Tls(TlsFlow::new_dtls(ts_ns, view.from_orig))
        } else if let Some(flow) = QuicFlow::new(ts_ns, p.payload, view.from_orig) {
            App::Quic(Box::new(flow))
        } else {
            self.live -= 1;
            return false;
        };
        *slot = Analysis::Active(Box::new(Session::with(app)));
        true
    }

    /// One packet through a flow's analyser state.
    fn analyse(
        &mut self,
        session: &mut Session,
        view: &FlowView,
        ts_ns: i64,
        p: &Packet<'_>,
        out: &mut Vec<(FlowView, Meta)>,
    ) {
        let has_payload = !p.payload.is_empty();
        // Nothing left to learn: no analyser, or the handshake/banners are complete.
        let done = match &session.app {
            App::None => true,
            App::Tls(flow) => flow.done(),
            App::Quic(flow) => flow.done(),
            App::Ssh(flow) => flow.done(),
            _ => false,
        };
        if done {
            return;
        }
        if p.proto == 17 {
            if !has_payload {
                return;
            }
            match &mut session.app {
                App::Tls(flow) => return flow.datagram(view.from_orig, p.payload),
                App::Quic(flow) => return flow.datagram(view.from_orig, p.payload),
                _ => {}
            }
            let netbios = view.orig_port == 137 || view.resp_port == 137;
            match dns::parse(p.payload, netbios) {
                Ok(msg) => {
                    // A bad record: counted, and the records before it still logged (as Zeek).
                    self.stats.parse_errors += u64::from(msg.error.is_some());
                    if let App::Dns(flow) = &mut session.app {
                        flow.message(ts_ns, msg, &mut self.done.dns);
                        self.stats.buffer_full += std::mem::take(&mut flow.dropped);
                        self.done.to(view, out);
                    }
                }
                Err(_) => self.stats.parse_errors += 1,
            }
            return;
        }
        let Some(tcp) = p.tcp else { return };
        let dir = usize::from(!view.from_orig);
        if tcp.fin {
            let fin = tcp.seq.wrapping_add(u32::from(tcp.syn)).wrapping_add(p.payload_len);
            session.streams[dir].fin_at(fin);
        }
        // What this packet acknowledges of the other direction and was never seen is a hole:
        // the other direction's analyser hears of it, and of what was held after it, first.
        if tcp.ack && !tcp.rst {
            let other = 1 - dir;
            loop {
                self.scratch.clear();
                let Some(hole) = session.streams[other].acked(tcp.ack_number, &mut self.scratch)
                else {
                    break;
                };
                let (stats, done) = (&mut self.stats, &mut self.done);
                let gap = Some(u64::from(hole));
                feed(session, view, stats, done, ts_ns, !view.from_orig, &self.scratch, gap, out);
            }
        }
        let (data, delivery) =
            session.streams[dir].segment_bytes(tcp.seq, tcp.syn, p.payload, &mut self.scratch);
        if delivery.gap.is_some() {
            // The out-of-order hold was full: a hole was skipped.
            self.stats.buffer_full += 1;
        }
        if data.is_empty() && delivery.gap.is_none() {
            return;
        }
        let (stats, done) = (&mut self.stats, &mut self.done);
        let gap = delivery.gap.map(u64::from);
        feed(session, view, stats, done, ts_ns, view.from_orig, data, gap, out);
    }

    /// The flow `view` ended with analysis state `analysis`: flush whatever its analyser holds.
    pub fn end(&mut self, analysis: Analysis, view: &FlowView, out: &mut Vec<(FlowView, Meta)>) {
        let session = match analysis {
            Analysis::Off => return,
            Analysis::Idle | Analysis::Pending { .. } => {
                self.live -= 1;
                return;
            }
            Analysis::Active(session) => {
                self.live -= 1;
                session
            }
        };
        match session.app {
            App::Dns(mut flow) => {
                flow.finish(&mut self.done.dns);
                self.done.to(view, out);
            }
            App::Http(mut flow) => {
                flow.finish(&mut self.done.http);
                self.done.to(view, out);
            }
            App::Tls(flow) => tls_event(flow.summary, view, out),
            App::Quic(flow) => tls_event(flow.summary, view, out),
            App::Ssh(flow) => {
                if flow.client.is_some() || flow.server.is_some() {
                    out.push((view.clone(), Meta::Ssh(flow)));
                }
            }
            App::Unknown | App::None => {}
        }
    }

    /// Flows counted toward the cap.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

/// The tls event of a finished handshake. As Zeek: an ssl.log row only for a connection whose
/// handshake showed a hello (bytes that merely looked like TLS, or a ClientHello from the
/// responder, give none).
fn tls_event(summary: tls::Summary, view: &FlowView, out: &mut Vec<(FlowView, Meta)>) {
    if summary.client_hello.is_some() || summary.server_hello.is_some() {
        out.push((view.clone(), Meta::Tls(Box::new(summary))));
    }
}

#[allow(clippy::too_many_arguments)]
fn feed(
    s: &mut Session,
    view: &FlowView,
    stats: &mut SessionStats,
    done: &mut Done,
    ts_ns: i64,
    from_orig: bool,
    data: &[u8],
    gap: Option<u64>,
    out: &mut Vec<(FlowView, Meta)>,
) {
    if matches!(s.app, App::Unknown) {
        s.chunks += 1;
        if dns::is_dns_port(view.resp_port) || dns::is_dns_port(view.orig_port) {
            s.app = App::Dns(DnsFlow::default());
        } else if tls::looks_like_tls(data) {
            s.app = App::Tls(TlsFlow::new(ts_ns));
        } else if ssh::looks_like_ssh(data) {
            s.app = App::Ssh(SshFlow::new(ts_ns));
        } else if from_orig
            && (looks_like_http_request(data) || matches!(view.resp_port, 80 | 8000 | 8080 | 3128))
        {
            s.app = App::Http(HttpFlow::default());
        } else if s.chunks > DETECT_CHUNKS {
            s.app = App::None;
            return;
        } else {
            return;
        }
    }
    // A plaintext protocol that upgrades (STARTTLS): a ClientHello from the client starts TLS.
    if from_orig && !matches!(s.app, App::Tls(_) | App::Dns(_)) && tls::looks_like_tls(data) {
        if let App::Http(flow) = &mut s.app {
            flow.finish(&mut done.http);
            done.to(view, out);
        }
        s.app = App::Tls(TlsFlow::new(ts_ns));
    }
    match &mut s.app {
        App::Dns(flow) => {
            let buf = &mut s.dns_tcp[usize::from(!from_orig)];
            if gap.is_some() {
                buf.clear();
            }
            buf.extend_from_slice(data);
            let mut pos = 0;
            while let Some(len) =
                buf.get(pos..pos + 2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            {
                let Some(msg) = buf.get(pos + 2..pos + 2 + len) else { break };
                match dns::parse(msg, false) {
                    Ok(m) => {
                        stats.parse_errors += u64::from(m.error.is_some());
                        flow.message(ts_ns, m, &mut done.dns);
                        stats.buffer_full += std::mem::take(&mut flow.dropped);
                        done.to(view, out);
                    }
                    Err(_) => stats.parse_errors += 1,
                }
                pos += 2 + len;
            }
            buf.drain(..pos);
        }
        App::Http(flow) => {
            if let Some(len) = gap {
                flow.gap(from_orig, len, &mut done.http);
            }
            if from_orig {
                flow.request_data(ts_ns, data, &mut done.http);
            } else {
                flow.response_data(data, &mut done.http);
            }
            if flow.overflowed {
                stats.buffer_full += 1;
                flow.overflowed = false;
            }
            done.to(view, out);
        }
        App::Tls(flow) => {
            if gap.is_some() {
                flow.gap();
            }
            flow.data(from_orig, data);
        }
        App::Ssh(flow) => flow.data(from_orig, data),
        // QUIC is UDP only.
        App::Quic(_) | App::Unknown | App::None => {}
    }
}

/// The event for one piece of metadata.
pub fn to_event(view: &FlowView, meta: &Meta, who: &Identity, seq: u64) -> Event {
    use canh_event::{
        Body, DnsAnswer, DnsQuestion, Endpoint, Http, HttpRequest, HttpResponse, InnerNetwork,
        Network, Ssh, SshPeer, Tls, TlsClient, TlsServer, Url, UserAgent, Vlan,
    };
    let (dataset, ts_ns, protocol) = meta.header();
    let mut event = Event::new(
        dataset,
        canh_event::event_id(&who.sensor_id, seq),
        Timestamp(ts_ns),
        &who.sensor_id,
        &who.tenant,
    );
    event.source = Some(Endpoint {
        ip: Some(view.orig_ip),
        port: Some(view.orig_port),
        ..Endpoint::default()
    });
    event.destination = Some(Endpoint {
        ip: Some(view.resp_ip),
        port: Some(view.resp_port),
        ..Endpoint::default()
    });
    event.network = Some(Network {
        transport: Some(crate::flow::transport_name(view.proto)),
        protocol: Some(protocol.to_string()),
        iana_number: Some(view.proto),
        community_id: Some(canh_event::community_id::community_id_v1(
            who.community_id_seed,
            view.orig_ip,
            view.resp_ip,
            view.proto,
            view.orig_port,
            view.resp_port,
        )),
        vlan: view.vlan.map(|id| Vlan { id }),
        inner: view.inner_vlan.map(|id| InnerNetwork { vlan: Some(Vlan { id }) }),
    });
    match meta {
        Meta::Dns(t) => {
            let main = t.response.as_ref().or(t.query.as_ref());
            let mut d = canh_event::Dns {
                r#type: Some(if t.response.is_some() { "answer" } else { "query" }.to_string()),
                rtt: t.rtt_ns,
                ..canh_event::Dns::default()
            };
            if let Some(m) = main {
                d.id = Some(m.id);
                d.op_code = Some(match m.opcode {
                    0 => "QUERY".to_string(),
                    1 => "IQUERY".to_string(),
                    2 => "STATUS".to_string(),
                    4 => "NOTIFY".to_string(),
                    5 => "UPDATE".to_string(),
                    other => other.to_string(),
                });
                let mut flags = Vec::new();
                for (on, name) in [
                    (m.aa, "AA"),
                    (m.tc, "TC"),
                    (m.rd, "RD"),
                    (m.ra, "RA"),
                    (m.ad, "AD"),
                    (m.cd, "CD"),
                ] {
                    if on {
                        flags.push(name.to_string());
                    }
                }
                d.header_flags = Some(flags);
            }
            // As Zeek: the question's name (`Transaction::question`); its type and class only
            // from a query.
            let question = t.question();
            if let Some((m, q)) = question {
                d.question = Some(DnsQuestion {
                    name: Some(m.text(q.name).to_string()),
                    r#type: t.query.as_ref().map(|_| m.question_type_name(q.qtype).into_owned()),
                    class: t.query.as_ref().map(|_| dns::class_name(q.qclass).into_owned()),
                });
            }
            // A response without a question (mDNS announcements): Zeek names the first answer
            // it logs.
            if question.is_none() {
                if let Some(name) = t.response.as_ref().and_then(|r| r.first_logged_answer_name()) {
                    d.question = Some(DnsQuestion {
                        name: Some(name.to_string()),
                        ..DnsQuestion::default()
                    });
                }
            }
            if let Some(r) = &t.response {
                d.response_code = Some(dns::rcode_name(r.rcode).into_owned());
                let answers: Vec<DnsAnswer> = r
                    .answers
                    .iter()
                    .filter(|a| a.data.is_some())
                    .map(|a| DnsAnswer {
                        name: Some(r.text(a.name).to_string()),
                        r#type: Some(dns::type_name(a.rtype).into_owned()),
                        class: Some(dns::class_name(a.class).into_owned()),
                        ttl: Some(a.ttl),
                        data: a.data.map(|d| r.text(d).to_string()),
                    })
                    .collect();
                if !answers.is_empty() {
                    d.answers = Some(answers);
                }
            }
            event.dns = Some(d);
        }
        Meta::Http(t) => {
            event.http = Some(Http {
                // The response's version only: Zeek logs none for a request without a reply.
                version: t.response_version.as_deref().map(str::to_string),
                request: Some(HttpRequest {
                    method: t.method.as_deref().map(str::to_string),
                    referrer: t.referrer().map(str::to_string),
                    body: Some(Body {
                        bytes: t.request_body_bytes,
                        content: http::body_text(&t.request_body),
                    }),
                }),
                response: Some(HttpResponse {
                    status_code: t.status_code,
                    body: Some(Body { bytes: t.response_body_bytes, content: None }),
                }),
            });
            event.url = Some(Url {
                domain: t.host().map(str::to_string),
                original: t.uri().map(str::to_string),
            });
            event.user_agent =
                t.user_agent().map(|original| UserAgent { original: original.to_string() });
        }
        Meta::Tls(t) => {
            let client = t.client_hello.as_ref();
            let server = t.server_hello.as_ref();
            let version = server.and_then(tls::negotiated_version);
            event.tls = Some(Tls {
                version_protocol: version.map(|(protocol, _)| protocol.to_string()),
                version: version.map(|(_, v)| v.to_string()),
                cipher: server.map(|s| tls::cipher_name(s.cipher).into_owned()),
                established: Some(t.established),
                next_protocol: server.and_then(|s| s.alpn.clone()),
                client: client.map(|c| TlsClient {
                    server_name: c.server_name.clone(),
                    ja3: Some(tls::ja3(c).as_str().to_string()),
                    ja4: Some(tls::ja4(c, t.carrier).as_str().to_string()),
                }),
                server: server.map(|s| {
                    let cert = t.server_certificate.as_ref();
                    TlsServer {
                        ja3s: Some(tls::ja3s(s).as_str().to_string()),
                        subject: cert.map(|c| c.subject.clone()),
                        issuer: cert.map(|c| c.issuer.clone()),
                        not_before: cert.map(|c| Timestamp(c.not_before_ns)),
                        not_after: cert.map(|c| Timestamp(c.not_after_ns)),
                    }
                }),
            });
        }
        Meta::Ssh(t) => {
            event.ssh = Some(Ssh {
                client: t.client.clone().map(|banner| SshPeer { banner }),
                server: t.server.clone().map(|banner| SshPeer { banner }),
            });
        }
    }
    event
}
