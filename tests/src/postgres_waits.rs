//! What a PostgreSQL server's active connections wait on, sampled from `pg_stat_activity`
//! while a bench loads it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Counts of the database's active connections by wait event, summed over samples.
#[derive(Default)]
pub struct WaitSamples {
    samples: u64,
    by_event: BTreeMap<String, u64>,
}

impl WaitSamples {
    /// The busiest wait events: `event avg-connections`, most first.
    pub fn top(&self, n: usize) -> String {
        let mut events: Vec<(&String, &u64)> = self.by_event.iter().collect();
        events.sort_by(|a, b| b.1.cmp(a.1));
        let samples = self.samples.max(1) as f64;
        let parts: Vec<String> = events
            .iter()
            .take(n)
            .map(|(event, count)| format!("{event} {:.2}", **count as f64 / samples))
            .collect();
        if parts.is_empty() { "-".into() } else { parts.join(", ") }
    }

    /// Active connections on average.
    pub fn active(&self) -> f64 {
        self.by_event.values().sum::<u64>() as f64 / self.samples.max(1) as f64
    }
}

/// Samples `pg_stat_activity` every `poll` until `stop` is set: the database's client
/// connections that are running a statement, by wait event (`CPU` when they wait for none).
pub async fn sample_waits(client: Arc<tokio_postgres::Client>, stop: Arc<AtomicBool>, poll: Duration) -> WaitSamples {
    let mut samples = WaitSamples::default();
    let query = "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*) \
                 FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND backend_type = 'client backend' AND state = 'active' \
                 GROUP BY 1";
    while !stop.load(Ordering::Relaxed) {
        if let Ok(rows) = client.query(query, &[]).await {
            samples.samples += 1;
            for row in rows {
                let event: String = row.get(0);
                let count: i64 = row.get(1);
                *samples.by_event.entry(event).or_default() += count as u64;
            }
        }
        tokio::time::sleep(poll).await;
    }
    samples
}
