//! Accepted durable events per second: group commit vs one disk sync per event, measured in one
//! run on the same machine. Run with `cargo bench -p dolphin-bridge --bench durable_accept`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dolphin_bridge::store::{CommitMode, Direction, NewDelivery, SqliteStore, Store, TicketInfo};

const CLIENTS: usize = 64;
const EVENTS_PER_CLIENT: usize = 40;

async fn measure(mode: CommitMode) -> f64 {
    let dir = std::env::temp_dir().join(format!("dolphin-bench-{}", uuid::Uuid::now_v7()));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("bench.db"), mode).unwrap());
    let payload = r#"{"ticketNumber":"t","channel":"whatsapp","message":"Halo"}"#.to_string();
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (store, payload) = (store.clone(), payload.clone());
        clients.push(tokio::spawn(async move {
            for i in 0..EVENTS_PER_CLIENT {
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
    let rate = (CLIENTS * EVENTS_PER_CLIENT) as f64 / started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(dir).ok();
    rate
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let total = CLIENTS * EVENTS_PER_CLIENT;
    println!("durable accept: {total} events from {CLIENTS} concurrent clients, each committed before it returns");
    let per_write = runtime.block_on(measure(CommitMode::PerWrite));
    let group = runtime.block_on(measure(CommitMode::Group));
    println!("one sync per event: {per_write:>9.0} events/s");
    println!("group commit:       {group:>9.0} events/s");
    println!("ratio group/per-event: {:.1}x", group / per_write);
}
