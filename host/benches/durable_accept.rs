//! Accepted durable events per second: group commit vs one disk sync per event, measured in one
//! run on the same machine. Group commit runs three rounds of ten times the events (a round of
//! 2 560 lasts a tenth of a second, too short to tell two versions apart on a noisy machine) and
//! prints each with their median. Run with `cargo bench -p dolphin-bridge --bench durable_accept`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dolphin_bridge::store::{CommitMode, Direction, NewDelivery, SqliteStore, Store, TicketInfo};

const CLIENTS: usize = 64;
/// Events each client sends with one sync per event; group-commit rounds send ten times more.
const EVENTS_PER_CLIENT: usize = 40;
const GROUP_ROUNDS: usize = 3;

async fn measure(mode: CommitMode, events_per_client: usize) -> f64 {
    let dir = std::env::temp_dir().join(format!("dolphin-bench-{}", uuid::Uuid::now_v7()));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("bench.db"), mode).unwrap());
    let payload = r#"{"ticketNumber":"t","channel":"whatsapp","message":"Halo"}"#.to_string();
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (store, payload) = (store.clone(), payload.clone());
        clients.push(tokio::spawn(async move {
            for i in 0..events_per_client {
                let delivery = NewDelivery {
                    delivery_id: uuid::Uuid::now_v7().to_string(),
                    tenant: "bench".into(),
                    owner: "bench".into(),
                    direction: Direction::ToVendor,
                    ticket: format!("ticket-{client}"),
                    payload: payload.clone(),
                    idempotency_key: Some(format!("key-{client}-{i}")),
                    event_key: None,
                    // As an Incoming event does: its ticket is remembered in the same write.
                    ticket_info: Some(TicketInfo {
                        channel: "whatsapp".into(),
                        customer_name: "Budi".into(),
                        contact_id: format!("contact-{client}"),
                    }),
                    trace_context: None,
                };
                store.enqueue(vec![delivery], Duration::from_secs(120)).await.unwrap();
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    let rate = (CLIENTS * events_per_client) as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(dir).ok();
    rate
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (per_write_events, group_events) = (EVENTS_PER_CLIENT, EVENTS_PER_CLIENT * 10);
    println!(
        "durable accept: events from {CLIENTS} concurrent clients, each committed before it returns \
         ({} with one sync per event, {} per group-commit round)",
        CLIENTS * per_write_events,
        CLIENTS * group_events
    );
    let per_write = runtime.block_on(measure(CommitMode::PerWrite, per_write_events));
    println!("one sync per event: {per_write:>9.0} events/s");
    let mut rounds: Vec<f64> = (0..GROUP_ROUNDS)
        .map(|round| {
            let rate = runtime.block_on(measure(CommitMode::Group, group_events));
            println!("group commit, round {}: {rate:>9.0} events/s", round + 1);
            rate
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    let group = rounds[GROUP_ROUNDS / 2];
    println!("group commit:       {group:>9.0} events/s (median of {GROUP_ROUNDS} rounds)");
    println!("ratio group/per-event: {:.1}x", group / per_write);
}
