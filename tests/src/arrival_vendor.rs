//! `ArrivalVendor`: a vendor for benchmarks that answers 200 at once and keeps when each
//! delivery id (the `echo` adapter's `deliveryId`) first arrived.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use crate::mock_http::{MockServer, Recorded, Reply};

/// The vendor; requests to another path than its own are answered 404.
pub struct ArrivalVendor {
    /// The server, on a port of 127.0.0.1 the OS picked.
    pub server: MockServer,
    path: String,
    arrivals: Arc<Mutex<Arrivals>>,
}

#[derive(Default)]
struct Arrivals {
    first: HashMap<String, Instant>,
    requests: u64,
}

impl ArrivalVendor {
    /// Starts a vendor serving `path`.
    pub async fn start(path: &str) -> ArrivalVendor {
        let arrivals: Arc<Mutex<Arrivals>> = Arc::default();
        let recorder = arrivals.clone();
        let own_path = path.to_string();
        let server = MockServer::start(Arc::new(move |request: &Recorded| {
            let now = Instant::now();
            if request.path != own_path {
                return Reply::json(404, &json!({"error": "not this vendor"}));
            }
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let mut arrivals = recorder.lock().unwrap();
            arrivals.requests += 1;
            if let Some(id) = body["deliveryId"].as_str() {
                arrivals.first.entry(id.to_string()).or_insert(now);
            }
            Reply::json(200, &json!({"ok": true}))
        }))
        .await;
        ArrivalVendor {
            server,
            path: path.to_string(),
            arrivals,
        }
    }

    /// The URL adapters post to.
    pub fn url(&self) -> String {
        format!("{}{}", self.server.base_url(), self.path)
    }

    /// Distinct delivery ids received so far.
    pub fn distinct(&self) -> usize {
        self.arrivals.lock().unwrap().first.len()
    }

    /// Requests received so far, repeats included.
    pub fn requests(&self) -> u64 {
        self.arrivals.lock().unwrap().requests
    }

    /// Whether delivery `id` has arrived.
    pub fn has(&self, id: &str) -> bool {
        self.arrivals.lock().unwrap().first.contains_key(id)
    }

    /// When each of `ids` first arrived (`None`: not yet).
    pub fn first_arrivals<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Vec<Option<Instant>> {
        let arrivals = self.arrivals.lock().unwrap();
        ids.into_iter().map(|id| arrivals.first.get(id).copied()).collect()
    }
}
