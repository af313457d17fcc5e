//! The sensor's admin port: `GET /metrics` (Prometheus text) and `GET /healthz`. A plain blocking
//! responder on its own thread; one request per connection.

use prometheus::{Encoder, Registry, TextEncoder};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Bind `listen` and serve on a background thread. Returns the bound address (port 0 picks one).
pub fn serve(listen: SocketAddr, registry: Registry) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("admin".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    if let Err(err) = answer(stream, &registry) {
                        tracing::debug!(error = %err, "admin request failed");
                    }
                }
                Err(err) => tracing::debug!(error = %err, "admin accept failed"),
            }
        }
    })?;
    Ok(local)
}

/// The status line and body for a request path.
pub fn respond(path: &str, registry: &Registry) -> (&'static str, String) {
    match path {
        "/metrics" => {
            let mut body = Vec::new();
            match TextEncoder::new().encode(&registry.gather(), &mut body) {
                Ok(()) => ("200 OK", String::from_utf8_lossy(&body).into_owned()),
                Err(err) => ("500 Internal Server Error", format!("encoding metrics: {err}\n")),
            }
        }
        "/healthz" => ("200 OK", "ok\n".into()),
        _ => ("404 Not Found", "not found\n".into()),
    }
}

fn answer(stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Read the headers up to the blank line; they are not needed.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method == "GET" {
        respond(path, registry)
    } else {
        ("405 Method Not Allowed", "GET only\n".into())
    };
    let mut stream = reader.into_inner();
    write!(
        stream,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_and_health_are_served() {
        let metrics = crate::metrics::Metrics::new();
        metrics.spooled.inc_by(3);
        let (status, body) = respond("/metrics", &metrics.registry);
        assert_eq!(status, "200 OK");
        assert!(body.contains("canh_sensor_spooled_events_total 3"), "{body}");
        assert_eq!(respond("/healthz", &metrics.registry).1, "ok\n");
        assert_eq!(respond("/nope", &metrics.registry).0, "404 Not Found");
    }

    #[test]
    fn answers_over_tcp() {
        use std::io::Read;
        let metrics = crate::metrics::Metrics::new();
        let addr =
            serve("127.0.0.1:0".parse().expect("addr"), metrics.registry.clone()).expect("bind");
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        assert!(response.starts_with("HTTP/1.0 200 OK"), "{response}");
        assert!(response.ends_with("ok\n"), "{response}");
    }
}
