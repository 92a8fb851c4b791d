//! Uploads that never finish: a deploy (`PUT`) that declares a large body, sends most of it at
//! once and then stalls, holding whatever the server buffered. When the server gives up on one
//! (its body read timeout), the worker starts another, until stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// `workers` connections each uploading to the same endpoint.
pub struct SlowUploads {
    stop: Arc<AtomicBool>,
    started: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

/// What each upload looks like.
#[derive(Debug, Clone)]
pub struct UploadShape {
    /// `host:port` of the server.
    pub addr: String,
    /// The request's path.
    pub path: String,
    /// `Authorization: Bearer` value.
    pub token: String,
    /// The declared `Content-Length`.
    pub declared: usize,
    /// Bytes sent before stalling (less than `declared`).
    pub sent: usize,
}

impl SlowUploads {
    /// Starts `workers` stalled uploads of `shape`.
    pub fn start(shape: UploadShape, workers: usize) -> SlowUploads {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicUsize::new(0));
        let shape = Arc::new(shape);
        let tasks = (0..workers)
            .map(|_| {
                let (shape, stop, started) = (shape.clone(), stop.clone(), started.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        started.fetch_add(1, Ordering::Relaxed);
                        if stalled_upload(&shape, &stop).await.is_err() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                })
            })
            .collect();
        SlowUploads { stop, started, tasks }
    }

    /// How many uploads were started so far.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }

    /// Stops the workers and closes their connections.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// One upload: the head, `sent` bytes, then waiting for the server's answer or the stop.
async fn stalled_upload(shape: &UploadShape, stop: &AtomicBool) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(&shape.addr).await?;
    let head = format!(
        "PUT {} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\n\r\n",
        shape.path, shape.addr, shape.token, shape.declared
    );
    stream.write_all(head.as_bytes()).await?;
    let chunk = vec![0x5au8; 64 * 1024];
    let mut left = shape.sent;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n]).await?;
        left -= n;
    }
    let mut answer = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut answer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    Ok(())
}
