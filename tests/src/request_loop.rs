//! Requests sent in a loop by a few workers until a deadline, with a count of each answer's
//! status (0 for a request that failed in transport): the abuse test's attacks that are plain
//! HTTP requests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

use crate::client::HttpClient;

/// One request of a loop: method, URL, headers and body.
#[derive(Debug, Clone)]
pub struct LoopRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The answers a loop got, by status.
#[derive(Debug, Clone, Default)]
pub struct LoopOutcome {
    pub statuses: BTreeMap<u16, usize>,
    /// One transport error, as an example (status 0).
    pub transport_error: Option<String>,
}

impl LoopOutcome {
    /// How many requests were answered (or failed).
    pub fn requests(&self) -> usize {
        self.statuses.values().sum()
    }

    /// `422×40 429×3`, for printing.
    pub fn describe(&self) -> String {
        self.statuses
            .iter()
            .map(|(status, n)| format!("{status}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn merge(&mut self, other: LoopOutcome) {
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_error = self.transport_error.take().or(other.transport_error);
    }
}

/// Sends `request(worker, i)` from `workers` workers, each one request at a time, until
/// `deadline`; each worker has a client (and so connections) of its own, closed when it ends.
pub async fn run_until<F>(workers: usize, deadline: Instant, request: F) -> LoopOutcome
where
    F: Fn(usize, u64) -> LoopRequest + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let outcome = Arc::new(Mutex::new(LoopOutcome::default()));
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (request, outcome) = (request.clone(), outcome.clone());
            tokio::spawn(async move {
                let client = HttpClient::new();
                let mut mine = LoopOutcome::default();
                let mut i = 0;
                while Instant::now() < deadline {
                    let LoopRequest {
                        method,
                        url,
                        headers,
                        body,
                    } = request(worker, i);
                    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                    let status = match client.try_send(method, &url, &headers, body).await {
                        Ok(response) => response.status,
                        Err(error) => {
                            mine.transport_error.get_or_insert(error);
                            0
                        }
                    };
                    *mine.statuses.entry(status).or_default() += 1;
                    i += 1;
                }
                outcome.lock().unwrap().merge(mine);
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a request loop panicked");
    }
    let mut outcome = outcome.lock().unwrap();
    std::mem::take(&mut *outcome)
}
