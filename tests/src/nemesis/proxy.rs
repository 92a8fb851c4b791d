//! A TCP proxy the test controls, between one replica and PostgreSQL: the nemesis partitions a
//! replica from the database by changing its proxy's [`LinkMode`], without touching the
//! replica's other connections (the vendor, 3Dolphins, its clients).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with the bytes between the replica and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Forwards both ways at once: no fault.
    Pass,
    /// Closes every open connection and every new one at once (a refused or reset link).
    Drop,
    /// Accepts connections and holds their bytes without forwarding them (a link that went
    /// silent: packets lost, no reset). Back in [`LinkMode::Pass`], what was held goes on, as
    /// TCP would retransmit it.
    Blackhole,
    /// Forwards every chunk of bytes, either way, after this added latency.
    Slow(Duration),
}

/// A proxy on `127.0.0.1`, forwarding to one upstream address; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<LinkMode>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `upstream` on a free port, in [`LinkMode::Pass`].
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the proxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("the proxy's address");
        let (mode, watcher) = watch::channel(LinkMode::Pass);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(client, upstream, watcher.clone()));
            }
        });
        Proxy { addr, mode, accept }
    }

    /// Where the replica connects (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches every connection, open or new, to `mode`.
    pub fn set_mode(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Open connections end too: every pump sees the mode drop.
        self.mode.send_replace(LinkMode::Drop);
    }
}

/// One client connection: held while blackholed, closed when dropped, otherwise joined to a
/// new upstream connection and pumped both ways.
async fn serve(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<LinkMode>) {
    if !wait_until_open(&mut mode).await {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending ends the connection (both sockets close when the pumps return).
    tokio::select! {
        _ = pump(client_read, server_write, mode.clone()) => {}
        _ = pump(server_read, client_write, mode) => {}
    }
}

/// Waits while the link is blackholed; false when it is (or becomes) dropped.
async fn wait_until_open(mode: &mut watch::Receiver<LinkMode>) -> bool {
    loop {
        let now = *mode.borrow_and_update();
        match now {
            LinkMode::Drop => return false,
            LinkMode::Blackhole => {
                if mode.changed().await.is_err() {
                    return false;
                }
            }
            LinkMode::Pass | LinkMode::Slow(_) => return true,
        }
    }
}

/// Copies `from` to `to` chunk by chunk, as the mode says; returns when either side closes or
/// the link is dropped.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<LinkMode>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == LinkMode::Drop {
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !wait_until_open(&mut mode).await {
            return;
        }
        let now = *mode.borrow();
        if let LinkMode::Slow(latency) = now {
            tokio::time::sleep(latency).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes what it reads.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 || stream.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        stream.write_all(b"ping").await.ok()?;
        let mut answer = [0u8; 4];
        match tokio::time::timeout(within, stream.read_exact(&mut answer)).await {
            Ok(Ok(_)) => Some(answer.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn passes_holds_slows_and_drops_as_told() {
        let proxy = Proxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(
            round_trip(&mut stream, Duration::from_secs(5)).await,
            Some(b"ping".to_vec())
        );

        // Blackholed: nothing comes back; healed: what was held arrives.
        proxy.set_mode(LinkMode::Blackhole);
        assert_eq!(round_trip(&mut stream, Duration::from_millis(300)).await, None);
        proxy.set_mode(LinkMode::Pass);
        let mut held = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut held))
            .await
            .expect("the held bytes arrive once healed")
            .unwrap();

        proxy.set_mode(LinkMode::Slow(Duration::from_millis(200)));
        let started = std::time::Instant::now();
        assert_eq!(
            round_trip(&mut stream, Duration::from_secs(5)).await,
            Some(b"ping".to_vec())
        );
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );

        // Dropped: the open connection closes, and a new one is closed at once.
        proxy.set_mode(LinkMode::Drop);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the open connection was not closed");
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut fresh, Duration::from_millis(500)).await, None);
    }
}
