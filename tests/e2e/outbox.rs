//! The outbox's promises where a careful operator would look: attempt numbers that survive a
//! crash and a replay, one server per store, one slow tenant not holding another back, an idle
//! dispatcher that sleeps, a ticket re-routed by a reload still in order, dead letters moved to
//! another tenant or purged, readiness, and back-pressure when the store does not keep up.

use std::time::Duration;

use dolphin_bridge_tests::bridge::{INCOMING_TOKEN, run_on_config_file, start_on_config_file};
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::reload_support::{admin_post, admin_reload, metric_value};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, MockVendor, WAIT, wait_for};
use serde_json::{Value, json};

use crate::common::{API_TOKEN, ECHO_TENANT, EchoEnv, assert_accepted, attempts_seen, echo_tenant};

async fn metrics_text(bridge: &Bridge) -> String {
    let response = bridge.client().get(&format!("{}/metrics", bridge.url())).await;
    assert_eq!(response.status, 200, "{}", response.describe());
    response.text()
}

/// User + system CPU time of process `pid` so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_cut_short_by_sigkill_is_retried_as_attempt_2_with_its_delivery_id() {
    let mut env = EchoEnv::start().await;
    // The vendor takes the request and never answers while the bridge runs.
    env.vendor.set_delay(Duration::from_secs(600));
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    env.vendor.wait_for_bodies(1).await;
    env.bridge.kill_hard();
    env.vendor.set_delay(Duration::ZERO);
    let restarted = start_on_config_file(env.bridge.config_path(), Some(INCOMING_TOKEN)).await;
    restarted.wait_for_delivery(&id, "delivered").await;
    let seen = attempts_seen(&env.vendor);
    println!("vendor saw (attempt, delivery id): {seen:?}");
    assert_eq!(
        seen,
        [(1, id.clone()), (2, id)],
        "the re-run is attempt 2, never attempt 1 again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_dead_letter_goes_on_counting_attempts() {
    let env = EchoEnv::start().await;
    env.vendor.fail_next(1, 400);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    env.bridge.wait_for_delivery(&id, "dead").await;
    let replay = admin_post(&env.bridge, "dead-letters/replay", &json!({ "deliveryId": id })).await;
    assert_eq!(replay.json()["replayed"], 1, "{}", replay.describe());
    env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(attempts_seen(&env.vendor), [(1, id.clone()), (2, id)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_the_same_store_refuses_to_start_and_names_the_lock() {
    let env = EchoEnv::start().await;
    let second = Bridge::start_from_file(
        &dolphin_bridge_tests::adapters::bridge_binary(),
        env.bridge.config_path(),
        &[],
        false,
    )
    .await;
    let error = match second {
        Ok(_) => panic!("a second `serve` on the same store started"),
        Err(error) => error,
    };
    assert!(error.contains("run one server per store"), "{error}");
    // The first one serves on.
    assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    env.vendor.wait_for_bodies(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_at_its_cap_with_a_deep_backlog_does_not_delay_another_tenants_delivery() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let (slow, quick) = (MockVendor::start().await, MockVendor::start().await);
    slow.set_delay(Duration::from_secs(600));
    let slow_owner = "owner-with-a-hanging-vendor";
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(
            echo_tenant("slow", slow_owner, &slow)
                .call_timeout_ms(600_000)
                .http_timeout_ms(600_000),
        )
        .tenant(echo_tenant("quick", EXAMPLE_OWNER, &quick));
    let bridge = Bridge::start(config).await;
    // 320 heads of the slow tenant, each on its own ticket: more than a due read's window.
    for _ in 0..320 {
        assert_accepted(&bridge.send_event(Event::fresh().owner(slow_owner)).await);
    }
    slow.wait_for_bodies(8).await;
    let id = assert_accepted(&bridge.send_event(Event::fresh()).await);
    quick.wait_for_bodies(1).await;
    assert_eq!(quick.bodies()[0]["deliveryId"], id.as_str());
    // Delivered while the slow tenant's first eight still hang: nothing of its backlog moved.
    assert_eq!(slow.requests().len(), 8, "the slow tenant is held at its cap of 8");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_bridge_with_a_retry_hours_away_and_events_behind_it_does_not_spin() {
    let env = EchoEnv::start_with(|config, tenant| config.retry_schedule_ms(&[36_000_000]).tenant(tenant)).await;
    env.vendor.fail_next(1, 503);
    let ticket = dolphin_bridge_tests::events::fresh_ticket();
    let head = assert_accepted(
        &env.bridge
            .send_event(Event::fresh().ticket(&ticket).message("head"))
            .await,
    );
    let behind = assert_accepted(
        &env.bridge
            .send_event(Event::fresh().ticket(&ticket).message("behind"))
            .await,
    );
    wait_for("the head's first attempt recorded", WAIT, || {
        (env.vendor.requests().len() == 1).then_some(())
    })
    .await;
    let head_state = env.bridge.delivery(&head).await;
    assert_eq!(
        (head_state["state"].as_str(), head_state["attempts"].as_u64()),
        (Some("pending"), Some(1))
    );
    let dispatches = |text: &str| metric_value(text, "dolphin_bridge_outbox_dispatches_total", &[]);
    let before = (
        dispatches(&metrics_text(&env.bridge).await),
        cpu_seconds(env.bridge.pid()),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = (
        dispatches(&metrics_text(&env.bridge).await),
        cpu_seconds(env.bridge.pid()),
    );
    let (passes, cpu) = (after.0 - before.0, after.1 - before.1);
    println!("idle with a waiting head: {passes} dispatch passes and {cpu:.3} s CPU in 3 s");
    assert!(passes <= 10.0, "the dispatcher polls: {passes} passes");
    assert!(cpu < 0.3, "the idle bridge burns CPU: {cpu:.3} s");
    assert_eq!(env.bridge.delivery(&behind).await["state"], "pending");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_rerouted_by_a_reload_keeps_its_order_and_a_dead_letter_can_be_moved_to_another_tenant() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let (general, whatsapp) = (MockVendor::start().await, MockVendor::start().await);
    let schedule: Vec<u64> = vec![100; 200];
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .retry_schedule_ms(&schedule)
        .tenant(echo_tenant(ECHO_TENANT, EXAMPLE_OWNER, &general));
    let bridge = Bridge::start(config.clone()).await;
    general.fail_next(10_000, 503);
    let ticket = dolphin_bridge_tests::events::fresh_ticket();
    let event = || Event::fresh().ticket(&ticket).with("channel", "whatsapp");
    let first = assert_accepted(&bridge.send_event(event()).await);
    general.wait_for_bodies(1).await;

    // A reload gives the owner's WhatsApp channel its own tenant: the ticket's next event goes
    // there, but waits for the first one.
    let rerouted = config
        .clone()
        .tenant(echo_tenant("acme-whatsapp", EXAMPLE_OWNER, &whatsapp).channels(&["whatsapp"]));
    std::fs::write(bridge.config_path(), rerouted.to_toml()).unwrap();
    assert_eq!(admin_reload(&bridge).await.status, 200);
    let second = assert_accepted(&bridge.send_event(event()).await);
    let failed_so_far = general.requests().len();
    // Several more failed attempts of the first event: time in which the second would have gone.
    general.wait_for_bodies(failed_so_far + 3).await;
    assert!(whatsapp.requests().is_empty(), "the second event overtook the first");
    general.fail_next(0, 503);
    bridge.wait_for_delivery(&second, "delivered").await;
    assert_eq!(bridge.delivery(&first).await["state"], "delivered");
    assert_eq!(whatsapp.bodies()[0]["deliveryId"], second.as_str());

    // A dead letter of a tenant that is then removed can be moved to another tenant.
    general.fail_next(1, 400);
    let other_ticket = Event::fresh().with("channel", "telegram");
    let dead = assert_accepted(&bridge.send_event(other_ticket).await);
    bridge.wait_for_delivery(&dead, "dead").await;
    let only_whatsapp = BridgeConfig {
        tenants: Vec::new(),
        ..config.clone()
    }
    .tenant(echo_tenant("acme-whatsapp", EXAMPLE_OWNER, &whatsapp).channels(&["whatsapp"]));
    std::fs::write(bridge.config_path(), only_whatsapp.to_toml()).unwrap();
    assert_eq!(admin_reload(&bridge).await.status, 200);
    let unknown = run_on_config_file(
        bridge.config_path(),
        &["dead-letters", "replay", &dead, "--to-tenant", "nobody"],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no tenant named `nobody`"));
    let moved = run_on_config_file(
        bridge.config_path(),
        &["dead-letters", "replay", &dead, "--to-tenant", "acme-whatsapp"],
    );
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    bridge.wait_for_delivery(&dead, "delivered").await;
    let last = whatsapp.bodies().last().cloned().unwrap_or(Value::Null);
    assert_eq!(
        (last["deliveryId"].as_str(), last["attempt"].as_u64()),
        (Some(dead.as_str()), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_can_be_purged_from_the_command_line() {
    let env = EchoEnv::start().await;
    env.vendor.fail_next(2, 400);
    let ids = [
        assert_accepted(&env.bridge.send_event(Event::fresh()).await),
        assert_accepted(&env.bridge.send_event(Event::fresh()).await),
    ];
    for id in &ids {
        env.bridge.wait_for_delivery(id, "dead").await;
    }
    let recent = run_on_config_file(
        env.bridge.config_path(),
        &["dead-letters", "purge", "--all", "--older-than-hours", "1"],
    );
    assert_eq!(
        String::from_utf8_lossy(&recent.stdout).trim(),
        "0 dead letter(s) deleted"
    );
    let one = run_on_config_file(env.bridge.config_path(), &["dead-letters", "purge", &ids[0]]);
    assert_eq!(String::from_utf8_lossy(&one.stdout).trim(), "1 dead letter(s) deleted");
    let response = env.bridge.admin_get(&format!("dead-letters/{}", ids[0])).await;
    assert_eq!(response.status, 404, "{}", response.describe());
    assert_eq!(env.bridge.dead_letters(None).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_shows_a_durable_store_and_a_wedged_store_gets_503s_that_lose_nothing() {
    let env = EchoEnv::start().await;
    let ready = env.bridge.client().get(&format!("{}/readyz", env.bridge.url())).await;
    assert_eq!(ready.status, 200, "{}", ready.describe());
    assert_eq!(ready.json()["store"]["synchronous"], "full");
    assert_eq!(ready.json()["store"]["journalMode"], "wal");

    // Another process holds the database's write lock: the writer waits, its queue fills.
    let db = env.bridge.config_path().parent().unwrap().join("bridge.db");
    let side = rusqlite::Connection::open(&db).unwrap();
    side.execute_batch("BEGIN IMMEDIATE").unwrap();
    let not_ready = env.bridge.client().get(&format!("{}/readyz", env.bridge.url())).await;
    assert_eq!(not_ready.status, 503, "{}", not_ready.describe());
    assert_eq!(not_ready.json()["error"]["code"], "store_not_ready");
    let sending = {
        let client = env.bridge.client().clone();
        let url = env.bridge.incoming_url();
        tokio::spawn(async move {
            let auth = format!("Bearer {INCOMING_TOKEN}");
            let body = Event::fresh().bytes();
            client
                .send(
                    "POST",
                    &url,
                    &[("content-type", "application/json"), ("authorization", &auth)],
                    body,
                )
                .await
        })
    };
    side.execute_batch("COMMIT").unwrap();
    let answered = sending.await.unwrap();
    assert_eq!(
        answered.status,
        202,
        "a write that waited for the lock: {}",
        answered.describe()
    );
    let ready = env.bridge.client().get(&format!("{}/readyz", env.bridge.url())).await;
    assert_eq!(ready.status, 200, "ready again: {}", ready.describe());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_write_queue_answers_503_store_busy_with_retry_after() {
    let env = EchoEnv::start().await;
    // A bridge with a writer queue of 1 on the same kind of store.
    let dir = env.bridge.config_path().parent().unwrap().to_path_buf();
    let text = std::fs::read_to_string(env.bridge.config_path()).unwrap();
    let small = dir.join("small-queue.toml");
    std::fs::write(
        &small,
        text.replace("path = \"bridge.db\"", "path = \"small.db\"\nwrite_queue = 1"),
    )
    .unwrap();
    let bridge = start_on_config_file(&small, Some(INCOMING_TOKEN)).await;
    let side = rusqlite::Connection::open(dir.join("small.db")).unwrap();
    side.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut answers = Vec::new();
    for _ in 0..6 {
        let client = bridge.client().clone();
        let url = bridge.incoming_url();
        answers.push(tokio::spawn(async move {
            let auth = format!("Bearer {INCOMING_TOKEN}");
            client
                .send(
                    "POST",
                    &url,
                    &[("content-type", "application/json"), ("authorization", &auth)],
                    Event::fresh().bytes(),
                )
                .await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // While the lock is held, at most the writer's batch and one queued write wait; the rest
    // are refused at once.
    wait_for("a request answered while the lock is held", WAIT, || {
        answers.iter().any(|a| a.is_finished()).then_some(())
    })
    .await;
    side.execute_batch("COMMIT").unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for answer in answers {
        let response = answer.await.unwrap();
        match response.status {
            202 => accepted += 1,
            503 => {
                assert_eq!(
                    response.json()["error"]["code"],
                    "store_busy",
                    "{}",
                    response.describe()
                );
                assert_eq!(response.header("retry-after"), Some("1"));
                refused += 1;
            }
            _ => panic!("unexpected answer: {}", response.describe()),
        }
    }
    println!("with the write lock held: {accepted} accepted after it was released, {refused} refused at once");
    assert!(refused >= 1 && accepted >= 1, "accepted {accepted}, refused {refused}");
    let stats = bridge.wait_until_settled().await;
    assert_eq!(
        stats["delivered"], accepted,
        "every accepted event is delivered: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn long_idempotency_keys_that_share_a_prefix_are_different_events() {
    let env = EchoEnv::start().await;
    let auth = format!("Bearer {INCOMING_TOKEN}");
    let prefix = "k".repeat(300);
    let mut ids = Vec::new();
    for suffix in ["-first", "-second"] {
        let key = format!("{prefix}{suffix}");
        let response = env
            .bridge
            .send_incoming_with_headers(
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                    ("idempotency-key", &key),
                ],
                Event::fresh().bytes(),
            )
            .await;
        assert_eq!(response.json()["duplicate"], false, "{}", response.describe());
        ids.push(assert_accepted(&response));
    }
    assert_ne!(ids[0], ids[1]);
    env.vendor.wait_for_bodies(2).await;
}
