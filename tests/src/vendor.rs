//! `MockVendor`: a generic vendor endpoint (what the `echo` adapter posts to). Records every
//! request; answers 200 `{"ok":true}` unless told to fail, to refuse one adapter build's
//! bodies, or to be slow.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::mock_http::{MockServer, Recorded, Reply};
use crate::wait::{WAIT, wait_for};

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    /// Requests to other paths (e.g. from another test's bridge on a reused port).
    strays: Vec<Recorded>,
    fail_next: u32,
    fail_status: u16,
    /// Headers of the failed answers (e.g. `Retry-After`).
    fail_headers: Vec<(String, String)>,
    delay: Duration,
    /// Bodies whose `build` is this are answered with the status (a version whose payload the
    /// vendor does not take).
    refused_build: Option<(String, u16)>,
}

/// A recording vendor on 127.0.0.1.
pub struct MockVendor {
    server: MockServer,
    state: Arc<Mutex<State>>,
    /// This vendor's own path: only requests to it count.
    path: String,
}

impl MockVendor {
    pub async fn start() -> MockVendor {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("start the mock vendor")
    }

    pub async fn start_on(addr: SocketAddr) -> std::io::Result<MockVendor> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let path = format!("/echo/{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let state = Arc::new(Mutex::new(State::default()));
        let handler_state = state.clone();
        let own_path = path.clone();
        let server = MockServer::start_on(
            addr,
            Arc::new(move |req: &Recorded| {
                let mut state = handler_state.lock().unwrap();
                if req.path != own_path {
                    state.strays.push(req.clone());
                    return Reply::json(404, &json!({"error": "not this vendor"}));
                }
                state.requests.push(req.clone());
                let build = serde_json::from_slice::<Value>(&req.body)
                    .ok()
                    .and_then(|body| body["build"].as_str().map(str::to_string));
                let refused = state
                    .refused_build
                    .as_ref()
                    .filter(|(refused, _)| build.as_deref() == Some(refused.as_str()))
                    .map(|(_, status)| *status);
                let reply = if let Some(status) = refused {
                    Reply::json(status, &json!({"error": "mock vendor refuses this build's payload"}))
                } else if state.fail_next > 0 {
                    state.fail_next -= 1;
                    let mut reply = Reply::json(state.fail_status, &json!({"error": "mock vendor failure"}));
                    reply.headers.extend(state.fail_headers.iter().cloned());
                    reply
                } else {
                    Reply::json(200, &json!({"ok": true}))
                };
                reply.with_delay(state.delay)
            }),
        )
        .await?;
        Ok(MockVendor { server, state, path })
    }

    /// `http://127.0.0.1:PORT`: what a tenant's `allowed_hosts` must hold.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The endpoint to give the echo adapter as its `url` (unique to this vendor).
    pub fn url(&self) -> String {
        format!("{}{}", self.server.base_url(), self.path)
    }

    /// This vendor's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Requests that came to another path (none, unless something is misrouted).
    pub fn strays(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().strays.clone()
    }

    /// Every request to [`url`](Self::url), failed ones included, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The JSON bodies of every request received, in order.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// Waits until at least `n` requests arrived; returns all bodies.
    pub async fn wait_for_bodies(&self, n: usize) -> Vec<Value> {
        wait_for(&format!("{n} request(s) at the mock vendor"), WAIT, || {
            let bodies = self.bodies();
            (bodies.len() >= n).then_some(bodies)
        })
        .await
    }

    /// The next `n` requests are answered with `status`.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.fail_next_with(n, status, &[]);
    }

    /// The next `n` requests are answered with `status` and `headers`.
    pub fn fail_next_with(&self, n: u32, status: u16, headers: &[(&str, &str)]) {
        let mut state = self.state.lock().unwrap();
        state.fail_next = n;
        state.fail_status = status;
        state.fail_headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }

    /// Bodies whose `build` field is `build` are answered with `status` from now on (`None`:
    /// no more).
    pub fn refuse_build(&self, refused: Option<(&str, u16)>) {
        self.state.lock().unwrap().refused_build = refused.map(|(build, status)| (build.to_string(), status));
    }

    /// Every answer waits this long first (zero: answer at once).
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }
}

/// A port on 127.0.0.1 that refuses connections for as long as this value lives: bound, never
/// listening, so no other server can take it meanwhile.
pub struct RefusingPort {
    _socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl RefusingPort {
    pub fn new() -> RefusingPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0");
        let addr = socket.local_addr().expect("the bound address");
        RefusingPort { _socket: socket, addr }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Default for RefusingPort {
    fn default() -> Self {
        Self::new()
    }
}
