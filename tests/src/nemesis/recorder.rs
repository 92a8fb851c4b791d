//! Recording endpoints with one listener per replica, so that every request says which replica
//! sent it: the vendor (the echo adapter's `url`) and 3Dolphins (where Outgoing events go). Each
//! side keeps one log, in arrival order across its listeners, with the time of each arrival.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mock_http::{MockServer, Recorded, Reply};

/// One request as it arrived: from which replica's listener, and when (since the run began).
#[derive(Debug, Clone)]
pub struct Received {
    pub replica: usize,
    pub at: Duration,
    pub request: Recorded,
}

impl Received {
    /// The body's `message` (empty when the body is not a JSON object with one).
    pub fn message(&self) -> String {
        serde_json::from_slice::<Value>(&self.request.body)
            .ok()
            .and_then(|body| body["message"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Which side a [`Recorder`] plays, so what it answers.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// The echo adapter's vendor: `200 {"ok":true}` after `delay`.
    Vendor { delay: Duration },
    /// 3Dolphins taking Outgoing events: `200 {"status":"success"}`.
    ThreeDolphins,
}

/// Listeners on `127.0.0.1`, one per replica, recording into one log; they stop when dropped.
pub struct Recorder {
    servers: Vec<MockServer>,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    /// Starts `replicas` listeners answering as `side`; times count from `origin`.
    pub async fn start(side: Side, replicas: usize, origin: Instant) -> Recorder {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut servers = Vec::with_capacity(replicas);
        for replica in 0..replicas {
            let log = log.clone();
            let server = MockServer::start(Arc::new(move |request: &Recorded| {
                log.lock().unwrap().push(Received {
                    replica,
                    at: origin.elapsed(),
                    request: request.clone(),
                });
                match side {
                    Side::Vendor { delay } => Reply::json(200, &json!({"ok": true})).with_delay(delay),
                    Side::ThreeDolphins => Reply::json(200, &json!({"status": "success"})),
                }
            }))
            .await;
            servers.push(server);
        }
        Recorder { servers, log }
    }

    /// `http://127.0.0.1:PORT` of replica `replica`'s listener.
    pub fn base_url(&self, replica: usize) -> String {
        self.servers[replica].base_url()
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }
}
