//! A slow name server of the test's own, and a way to run the bridge with it as its resolver.
//!
//! [`SlowDns`] answers every look-up after a delay: `A` queries with `127.0.0.1` and a TTL of 0
//! (so nothing is cached), any other type with no records. [`SlowDns::resolver_wrapper`] is the
//! command line that starts a program in a mount namespace of its own whose `/etc/resolv.conf`
//! names that server, so the bridge's `getaddrinfo` waits for it while the machine's resolver
//! is untouched. This needs port 53 on a loopback address (the system resolver asks nothing
//! else) and `unshare`; [`SlowDns::start`] answers why not when either is missing.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A name server on `127.53.X.Y:53` answering after a delay.
pub struct SlowDns {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    resolv_conf: PathBuf,
    task: JoinHandle<()>,
}

impl SlowDns {
    /// Starts the server (answers after `delay`) and writes a `resolv.conf` naming it into
    /// `dir`; an error when port 53 cannot be bound or `unshare` cannot make a mount namespace.
    pub async fn start(delay: Duration, dir: &Path) -> Result<SlowDns, String> {
        unshare_works()?;
        // A loopback address of this process's own, so parallel runs do not meet.
        let pid = std::process::id();
        let ip = Ipv4Addr::new(127, 53, (pid >> 8) as u8, (pid as u8).max(1));
        let socket = UdpSocket::bind((ip, 53))
            .await
            .map_err(|e| format!("cannot bind a name server on {ip}:53: {e}"))?;
        let addr = socket.local_addr().map_err(|e| e.to_string())?;
        let resolv_conf = dir.join("resolv.conf");
        std::fs::write(
            &resolv_conf,
            format!("nameserver {ip}\noptions timeout:30 attempts:1\n"),
        )
        .map_err(|e| format!("cannot write {}: {e}", resolv_conf.display()))?;
        let queries = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(serve(Arc::new(socket), delay, queries.clone()));
        Ok(SlowDns {
            addr,
            queries,
            resolv_conf,
            task,
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries it received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }

    /// `unshare ... sh -c 'mount --bind RESOLV_CONF /etc/resolv.conf && exec "$@"' RESOLV_CONF`:
    /// put in front of a command, it runs that command with this server as its resolver.
    pub fn resolver_wrapper(&self) -> Vec<OsString> {
        let mut wrapper: Vec<OsString> = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c"]
            .into_iter()
            .map(OsString::from)
            .collect();
        wrapper.push(r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#.into());
        wrapper.push(self.resolv_conf.clone().into_os_string());
        wrapper
    }
}

impl Drop for SlowDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `unshare` can give a program a mount namespace of its own (an error saying why not).
fn unshare_works() -> Result<(), String> {
    let status = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("unshare cannot make a mount namespace here ({status})"))
    }
}

async fn serve(socket: Arc<UdpSocket>, delay: Duration, queries: Arc<AtomicUsize>) {
    let mut buf = [0u8; 512];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        queries.fetch_add(1, Ordering::Relaxed);
        let Some(answer) = answer(&buf[..len]) else {
            continue;
        };
        let socket = socket.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = socket.send_to(&answer, from).await;
        });
    }
}

/// The answer to one query: `A` → `127.0.0.1` (TTL 0), any other type → no records.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    loop {
        let len = *query.get(end)? as usize;
        end += 1;
        if len == 0 {
            break;
        }
        end += len;
    }
    let question = query.get(12..end + 4)?;
    let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
    let answers: u16 = if qtype == 1 { 1 } else { 0 };
    let mut out = Vec::with_capacity(end + 20);
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&[0x81, 0x80, 0, 1]);
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    if answers == 1 {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `a.test`, type `qtype`.
    fn query(qtype: u8) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(&[1, b'a', 4, b't', b'e', b's', b't', 0, 0, qtype, 0, 1]);
        q
    }

    #[test]
    fn answers_a_with_loopback_and_others_with_nothing() {
        let a = answer(&query(1)).unwrap();
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(&a[6..8], &[0, 1], "one answer");
        assert_eq!(&a[a.len() - 4..], &[127, 0, 0, 1]);
        let aaaa = answer(&query(28)).unwrap();
        assert_eq!(&aaaa[6..8], &[0, 0], "no answer");
        assert_eq!(answer(&[0x12, 0x34, 1]), None);
    }
}
