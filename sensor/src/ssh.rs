//! SSH identification strings (RFC 4253 section 4.2): the first line starting with `SSH-` from each
//! side. Pure and bounded: at most `MAX_BANNER` bytes are looked at per side.

/// RFC 4253 caps the identification line at 255 bytes including CR LF; lines before it may exist.
const MAX_BANNER: usize = 4096;

#[derive(Debug, Default)]
pub struct SshFlow {
    pub ts_ns: i64,
    pub client: Option<String>,
    pub server: Option<String>,
    client_buf: Vec<u8>,
    server_buf: Vec<u8>,
}

/// Does this look like the start of an SSH identification string?
pub fn looks_like_ssh(data: &[u8]) -> bool {
    data.starts_with(b"SSH-")
}

/// The identification string within `buf`, once its line is complete.
pub fn banner(buf: &[u8]) -> Option<String> {
    for line in buf.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b"SSH-") {
            // The line must have ended: it is followed by '\n' within `buf`.
            let start = line.as_ptr() as usize - buf.as_ptr() as usize;
            if buf.get(start..)?.contains(&b'\n') {
                return Some(String::from_utf8_lossy(&line[..line.len().min(255)]).into_owned());
            }
        }
    }
    None
}

impl SshFlow {
    pub fn new(ts_ns: i64) -> SshFlow {
        SshFlow { ts_ns, ..SshFlow::default() }
    }

    pub fn data(&mut self, from_client: bool, data: &[u8]) {
        let (slot, buf) = if from_client {
            (&mut self.client, &mut self.client_buf)
        } else {
            (&mut self.server, &mut self.server_buf)
        };
        if slot.is_some() || buf.len() >= MAX_BANNER {
            return;
        }
        let room = MAX_BANNER - buf.len();
        buf.extend_from_slice(&data[..data.len().min(room)]);
        *slot = banner(buf);
        if slot.is_some() {
            buf.clear();
            buf.shrink_to_fit();
        }
    }

    pub fn done(&self) -> bool {
        self.client.is_some() && self.server.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_banners() {
        let mut flow = SshFlow::new(0);
        flow.data(false, b"SSH-2.0-OpenSSH_9.2p1 Debian\r");
        assert_eq!(flow.server, None);
        flow.data(false, b"\n");
        flow.data(true, b"SSH-2.0-PuTTY\r\n\0\0");
        assert_eq!(flow.server.as_deref(), Some("SSH-2.0-OpenSSH_9.2p1 Debian"));
        assert_eq!(flow.client.as_deref(), Some("SSH-2.0-PuTTY"));
        assert!(flow.done());
    }

    #[test]
    fn every_prefix_is_handled() {
        let line = b"junk\r\nSSH-2.0-x\r\n";
        for len in 0..line.len() {
            assert_eq!(banner(&line[..len]), None);
        }
        assert_eq!(banner(line).as_deref(), Some("SSH-2.0-x"));
    }
}
