//! Hot reload under load: a tenant's adapter file swapped between two builds of echo (`echo-v1`,
//! `echo-v2`, which tag every delivered body with `build`) while Incoming events stream in; broken
//! files put where the adapter was; the configuration rewritten (tenants added, changed, removed,
//! invalid versions); reloads by `POST /admin/reload` and SIGHUP; `GET /admin/adapters`.
//!
//! Files are replaced as deploy tools do (a temp file in the same folder renamed over the old
//! one), and a few times overwritten in place. Throughout, no request may fail, no accepted event
//! may be lost or delivered twice, and each event is handled by exactly one whole version.
//! Bridges keep the default layout: the database beside the configuration file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::reload_support::{
    BUILDS, EventStream, IncomingSender, Sent, adapter_info, adapter_reloads, adapters_list, admin_reload,
    config_reloads_rejected, core_module_bytes, echo_build, echo_build_bytes, garbage_bytes, log_lines_since, log_mark,
    overwrite_in_place, replace_by_rename, send_sighup, sha256_hex, wait_for_adapter_hash, wait_for_log_line,
    wasi_command_bytes,
};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, MockVendor, Tenant};
use serde_json::Value;

use crate::common::{API_TOKEN, assert_accepted, assert_refused};

/// Tickets each stream sends on at once, and the pause between two events of one ticket.
const STREAM_TICKETS: usize = 4;
const STREAM_PAUSE: Duration = Duration::from_millis(10);
/// Adapter swaps of the swap test (renames, with an in-place overwrite every [`IN_PLACE_EVERY`]).
const SWAPS: usize = 52;
const IN_PLACE_EVERY: usize = 10;

const BETA_OWNER: &str = "beta0000000000000000000000000001";
const GAMMA_OWNER: &str = "gamma000000000000000000000000001";
const DELTA_OWNER: &str = "delta000000000000000000000000001";

/// An echo tenant `name` for `owner` on the adapter file `adapter`, delivering to `vendor`.
fn echo_on(name: &str, owner: &str, adapter: &Path, vendor: &MockVendor) -> Tenant {
    Tenant::new(name, owner, adapter)
        .allow(&vendor.base_url())
        .config("url", &vendor.url())
        .config("tag", &format!("{name}-tag"))
}

/// A bridge whose tenant `acme` (the example owner) runs `adapters/acme.wasm` in a folder of the
/// test's own, starting on the echo build `build`.
struct SwapEnv {
    // Dropped first: the bridge stops before the mocks free their ports and the folder goes.
    bridge: Bridge,
    _three_dolphins: MockThreeDolphins,
    vendor: MockVendor,
    /// The tenant's adapter file.
    adapter: PathBuf,
    _dir: tempfile::TempDir,
}

/// A fresh folder for a test's config, adapters and store; removed when dropped.
fn reload_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dolphin-bridge-reload-")
        .tempdir()
        .expect("a temp dir")
}

impl SwapEnv {
    async fn start(build: &str) -> SwapEnv {
        let dir = reload_dir();
        let adapters = dir.path().join("adapters");
        std::fs::create_dir(&adapters).expect("create the adapters folder");
        let adapter = adapters.join("acme.wasm");
        std::fs::write(&adapter, echo_build_bytes(build)).expect("write the adapter");
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let vendor = MockVendor::start().await;
        let bridge = Bridge::start(
            BridgeConfig::new(&three_dolphins.base_url())
                .api_token(API_TOKEN)
                .tenant(echo_on("acme", EXAMPLE_OWNER, &adapter, &vendor)),
        )
        .await;
        SwapEnv {
            bridge,
            _three_dolphins: three_dolphins,
            vendor,
            adapter,
            _dir: dir,
        }
    }
}

/// One request a vendor received.
#[derive(Debug, Clone)]
struct Arrival {
    /// Which vendor got it.
    vendor: &'static str,
    body: Value,
}

/// Every request the `vendors` received, by `deliveryId`, each vendor's in arrival order.
fn arrivals(vendors: &[(&'static str, &MockVendor)]) -> HashMap<String, Vec<Arrival>> {
    let mut by_id: HashMap<String, Vec<Arrival>> = HashMap::new();
    for (name, vendor) in vendors {
        for body in vendor.bodies() {
            let id = body["deliveryId"].as_str().unwrap_or_default().to_string();
            by_id.entry(id).or_default().push(Arrival { vendor: name, body });
        }
    }
    by_id
}

/// Sends one event on a fresh ticket of `owner`, waits until it is delivered, and returns where
/// it arrived.
async fn probe(bridge: &Bridge, owner: &str, vendors: &[(&'static str, &MockVendor)]) -> Arrival {
    let id = assert_accepted(&bridge.send_event(Event::fresh().owner(owner).message("probe")).await);
    bridge.wait_for_delivery(&id, "delivered").await;
    let mut found = arrivals(vendors).remove(&id).unwrap_or_default();
    assert_eq!(
        found.len(),
        1,
        "probe {id} should have arrived exactly once: {found:#?}"
    );
    found.remove(0)
}

/// The requests that failed: every answer that is not a 202 for a new event.
fn failures(sent: &[Sent]) -> Vec<String> {
    sent.iter().filter(|s| !s.accepted()).map(Sent::describe).collect()
}

/// Checks the vendors' side of the accepted events in `sent`: each arrived exactly once, as the
/// event sent, handled by one of the two echo builds, in order per ticket. Returns how many each
/// build handled.
fn check_delivered_once_by_one_build(
    sent: &[Sent],
    vendors: &[(&'static str, &MockVendor)],
) -> BTreeMap<String, usize> {
    let by_id = arrivals(vendors);
    let mut problems = Vec::new();
    let mut per_build: BTreeMap<String, usize> = BTreeMap::new();
    // ticket -> seq of its events in the order they arrived (each vendor's arrival order).
    let mut order: HashMap<(&'static str, String), Vec<u64>> = HashMap::new();
    for event in sent.iter().filter(|s| s.accepted()) {
        let id = event.delivery_id.as_deref().unwrap_or_default();
        let got = by_id.get(id).map(Vec::as_slice).unwrap_or_default();
        match got {
            [] => problems.push(format!("{}: accepted as {id} but never delivered", event.describe())),
            [arrival] => {
                let body = &arrival.body;
                let build = body["build"].as_str().unwrap_or_default().to_string();
                if !BUILDS.contains(&build.as_str()) {
                    problems.push(format!(
                        "{id}: handled by no known build (`build` = {}): {body}",
                        body["build"]
                    ));
                }
                if body["ticketNumber"] != event.ticket.as_str() || body["message"] != format!("#{}", event.seq) {
                    problems.push(format!("{id}: the vendor got another event than was sent: {body}"));
                }
                *per_build.entry(build).or_default() += 1;
            }
            several => {
                let builds: Vec<&Value> = several.iter().map(|a| &a.body["build"]).collect();
                problems.push(format!(
                    "{id}: delivered {} times (builds {builds:?}): {}",
                    several.len(),
                    event.describe()
                ));
            }
        }
    }
    for (name, vendor) in vendors {
        for body in vendor.bodies() {
            let ticket = body["ticketNumber"].as_str().unwrap_or_default().to_string();
            if let Some(seq) = body["message"].as_str().and_then(|m| m.strip_prefix('#')) {
                order
                    .entry((name, ticket))
                    .or_default()
                    .push(seq.parse().unwrap_or(u64::MAX));
            }
        }
    }
    for ((vendor, ticket), seqs) in &order {
        if seqs.windows(2).any(|w| w[0] >= w[1]) {
            problems.push(format!("ticket {ticket} arrived out of order at {vendor}: {seqs:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with the delivered events (first 20):\n  {}",
        problems.len(),
        problems.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
    );
    per_build
}

/// Asserts no request failed, every accepted event was delivered once by one build, and the
/// outbox holds nothing pending or dead; returns the events each build handled.
async fn assert_nothing_failed_or_lost(
    bridge: &Bridge,
    sent: &[Sent],
    vendors: &[(&'static str, &MockVendor)],
) -> BTreeMap<String, usize> {
    let failed = failures(sent);
    assert!(
        failed.is_empty(),
        "{} of {} request(s) failed (first 20):\n  {}",
        failed.len(),
        sent.len(),
        failed.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
    );
    let stats = bridge.wait_until_settled().await;
    assert_eq!(stats["dead"], 0, "dead letters: {:#?}", bridge.dead_letters(None).await);
    check_delivered_once_by_one_build(sent, vendors)
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_swapping_the_adapter_under_load_fails_and_loses_nothing() {
    let env = SwapEnv::start("v1").await;
    let vendors = [("vendor", &env.vendor)];
    let builds = [echo_build_bytes("v1"), echo_build_bytes("v2")];
    let hashes = [sha256_hex(&builds[0]), sha256_hex(&builds[1])];
    wait_for_adapter_hash(&env.bridge, "acme", &hashes[0]).await;

    let stream = EventStream::start(
        &IncomingSender::new(&env.bridge),
        EXAMPLE_OWNER,
        STREAM_TICKETS,
        STREAM_PAUSE,
    );
    stream.wait_for_more(20).await;
    let mut current = 0;
    let (mut renames, mut in_place) = (0, 0);
    // Deploys one after the other, each waited for, with events flowing on every version.
    for swap in 1..=SWAPS {
        let next = 1 - current;
        if swap % IN_PLACE_EVERY == 0 {
            overwrite_in_place(&env.adapter, &builds[next]);
            in_place += 1;
        } else {
            replace_by_rename(&env.adapter, &builds[next]);
            renames += 1;
        }
        wait_for_adapter_hash(&env.bridge, "acme", &hashes[next]).await;
        current = next;
        stream.wait_for_more(2 * STREAM_TICKETS).await;
    }
    // A burst of deploys closer together than the watcher's quiet period: the last one wins
    // (an odd number, so that it is the other version).
    for _ in 0..7 {
        current = 1 - current;
        replace_by_rename(&env.adapter, &builds[current]);
        renames += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    wait_for_adapter_hash(&env.bridge, "acme", &hashes[current]).await;
    stream.wait_for_more(4 * STREAM_TICKETS).await;
    let last = probe(&env.bridge, EXAMPLE_OWNER, &vendors).await;
    assert_eq!(
        last.body["build"], BUILDS[current],
        "after the burst the last deploy serves"
    );

    let sent = stream.stop().await;
    let per_build = assert_nothing_failed_or_lost(&env.bridge, &sent, &vendors).await;
    println!(
        "adapter swaps: {renames} by rename, {in_place} in place; events: {} sent, {} failed; handled per build: {per_build:?}",
        sent.len(),
        failures(&sent).len()
    );
    for build in BUILDS {
        assert!(
            per_build.get(build).copied().unwrap_or(0) > 0,
            "build {build} handled no event: {per_build:?}"
        );
    }
    assert!(
        adapter_reloads(&env.bridge, "acme", "loaded").await >= SWAPS as f64,
        "every swap counts as a loaded adapter"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_rejects_broken_adapter_files_and_keeps_serving_the_previous_version() {
    let env = SwapEnv::start("v1").await;
    let vendors = [("vendor", &env.vendor)];
    let v1 = sha256_hex(&echo_build_bytes("v1"));
    wait_for_adapter_hash(&env.bridge, "acme", &v1).await;
    let stream = EventStream::start(
        &IncomingSender::new(&env.bridge),
        EXAMPLE_OWNER,
        STREAM_TICKETS,
        STREAM_PAUSE,
    );
    stream.wait_for_more(20).await;

    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "garbage bytes",
            garbage_bytes(64 << 10, 7),
            "does not start with the component header",
        ),
        (
            "a core WebAssembly module",
            core_module_bytes(),
            "it is a core WebAssembly module",
        ),
        (
            "a component of another world (wasi:cli command)",
            wasi_command_bytes(),
            "does not implement the adapter world",
        ),
    ];
    for (what, bytes, reason) in cases {
        let rejected_before = adapter_reloads(&env.bridge, "acme", "rejected").await;
        let mark = log_mark(&env.bridge);
        replace_by_rename(&env.adapter, &bytes);
        let line = wait_for_log_line(&env.bridge, mark, &["adapter file rejected", "tenant=acme"]).await;
        assert!(
            line.contains(reason),
            "{what}: the rejection should say why ({reason:?}): {line}"
        );
        assert!(
            line.contains("previous version keeps serving"),
            "{what}: the log says the previous version serves: {line}"
        );
        assert_eq!(
            adapter_reloads(&env.bridge, "acme", "rejected").await,
            rejected_before + 1.0,
            "{what}: dolphin_bridge_adapter_reloads_total{{tenant=\"acme\",outcome=\"rejected\"}} counts it"
        );
        assert_eq!(
            adapter_info(&env.bridge, "acme").await["contentHash"],
            v1.as_str(),
            "{what}: the tenant stays on v1"
        );
        assert!(
            log_lines_since(&env.bridge, mark, &["adapter loaded", "tenant=acme"]).is_empty(),
            "{what}: nothing was loaded"
        );
        // The previous version keeps serving, the stream included.
        let served = probe(&env.bridge, EXAMPLE_OWNER, &vendors).await;
        assert_eq!(served.body["build"], "v1", "{what}: v1 still serves");
        stream.wait_for_more(2 * STREAM_TICKETS).await;
    }
    let before_v2 = env.vendor.bodies();

    // A good file of the other version is picked up.
    let v2_bytes = echo_build_bytes("v2");
    let mark = log_mark(&env.bridge);
    replace_by_rename(&env.adapter, &v2_bytes);
    wait_for_adapter_hash(&env.bridge, "acme", &sha256_hex(&v2_bytes)).await;
    wait_for_log_line(&env.bridge, mark, &["adapter loaded", "tenant=acme"]).await;
    assert_eq!(probe(&env.bridge, EXAMPLE_OWNER, &vendors).await.body["build"], "v2");
    stream.wait_for_more(2 * STREAM_TICKETS).await;

    let sent = stream.stop().await;
    let per_build = assert_nothing_failed_or_lost(&env.bridge, &sent, &vendors).await;
    let not_v1: Vec<&Value> = before_v2.iter().filter(|b| b["build"] != "v1").collect();
    assert!(
        not_v1.is_empty(),
        "before v2 was written, only v1 may have served: {not_v1:#?}"
    );
    println!(
        "broken files: 3 rejected; events: {} sent, {} failed; handled per build: {per_build:?}",
        sent.len(),
        failures(&sent).len()
    );
}

/// The tenants of the config reload test.
struct ConfigEnv {
    bridge: Bridge,
    _three_dolphins: MockThreeDolphins,
    acme: MockVendor,
    beta: MockVendor,
    beta_moved: MockVendor,
    gamma: MockVendor,
    delta: MockVendor,
    /// A vendor no valid configuration names (only rejected ones).
    nowhere: MockVendor,
    config: BridgeConfig,
}

impl ConfigEnv {
    /// The configuration with `acme`, `beta` and `gamma`.
    async fn start() -> ConfigEnv {
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let (acme, beta, beta_moved, gamma, delta, nowhere) = (
            MockVendor::start().await,
            MockVendor::start().await,
            MockVendor::start().await,
            MockVendor::start().await,
            MockVendor::start().await,
            MockVendor::start().await,
        );
        let echo = echo_build("v1");
        let config = BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(echo_on("acme", EXAMPLE_OWNER, &echo, &acme))
            .tenant(echo_on("beta", BETA_OWNER, &echo, &beta))
            .tenant(echo_on("gamma", GAMMA_OWNER, &echo, &gamma));
        let bridge = Bridge::start(config.clone()).await;
        ConfigEnv {
            bridge,
            _three_dolphins: three_dolphins,
            acme,
            beta,
            beta_moved,
            gamma,
            delta,
            nowhere,
            config,
        }
    }

    fn vendors(&self) -> [(&'static str, &MockVendor); 6] {
        [
            ("acme", &self.acme),
            ("beta", &self.beta),
            ("beta-moved", &self.beta_moved),
            ("gamma", &self.gamma),
            ("delta", &self.delta),
            ("nowhere", &self.nowhere),
        ]
    }

    /// Rewrites the bridge's config file atomically with `text`.
    fn write_config(&self, text: &str) {
        replace_by_rename(self.bridge.config_path(), text.as_bytes());
    }

    /// Writes `config` and waits until the bridge says it reloaded.
    async fn apply(&mut self, config: BridgeConfig) {
        let mark = log_mark(&self.bridge);
        self.write_config(&config.to_toml());
        wait_for_log_line(&self.bridge, mark, &["configuration reloaded"]).await;
        self.config = config;
    }

    /// Writes an invalid `text` and waits until the reload is rejected (logged and counted);
    /// returns the log line.
    async fn reject(&self, what: &str, text: &str) -> String {
        let rejected_before = config_reloads_rejected(&self.bridge).await;
        let mark = log_mark(&self.bridge);
        self.write_config(text);
        let line = wait_for_log_line(&self.bridge, mark, &["configuration reload rejected"]).await;
        assert!(
            line.contains("previous one keeps serving"),
            "{what}: the log says the old configuration serves: {line}"
        );
        assert_eq!(
            config_reloads_rejected(&self.bridge).await,
            rejected_before + 1.0,
            "{what}: dolphin_bridge_config_reloads_rejected_total counts it"
        );
        assert!(
            log_lines_since(&self.bridge, mark, &["configuration reloaded"]).is_empty(),
            "{what}: nothing was reloaded"
        );
        line
    }
}

/// `config` with tenant `name` delivering to `vendor`.
fn retarget(mut config: BridgeConfig, name: &str, vendor: &MockVendor) -> BridgeConfig {
    let tenant = config
        .tenants
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tenant {name}"));
    tenant.allowed_hosts = vec![vendor.base_url()];
    tenant.config.insert("url".into(), vendor.url());
    config
}

/// Which vendor each accepted event of `sent` reached, in sending order per ticket.
fn reached(sent: &[Sent], by_id: &HashMap<String, Vec<Arrival>>) -> Vec<(String, u64, Vec<&'static str>)> {
    sent.iter()
        .filter(|s| s.accepted())
        .map(|s| {
            let id = s.delivery_id.as_deref().unwrap_or_default();
            let vendors = by_id
                .get(id)
                .map(|a| a.iter().map(|a| a.vendor).collect())
                .unwrap_or_default();
            (s.ticket.clone(), s.seq, vendors)
        })
        .collect()
}

/// `true` when the statuses of every ticket in `sent` (sorted by ticket and seq) are a run of
/// `first` followed by a run of `then` (either run may be empty).
fn switches_once(sent: &[Sent], first: impl Fn(&Sent) -> bool, then: impl Fn(&Sent) -> bool) -> Result<(), String> {
    let mut by_ticket: BTreeMap<&str, Vec<&Sent>> = BTreeMap::new();
    for s in sent {
        by_ticket.entry(&s.ticket).or_default().push(s);
    }
    for (ticket, events) in by_ticket {
        let switch = events.iter().position(|s| !first(s)).unwrap_or(events.len());
        if let Some(bad) = events[switch..].iter().find(|s| !then(s)) {
            return Err(format!(
                "ticket {ticket}: {} after the switch at #{switch}",
                bad.describe()
            ));
        }
    }
    Ok(())
}

fn is_unknown_tenant(s: &Sent) -> bool {
    s.status == 422 && s.error.as_deref() == Some("unknown_tenant")
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_of_the_configuration_under_load_adds_changes_and_removes_tenants() {
    let mut env = ConfigEnv::start().await;
    let sender = IncomingSender::new(&env.bridge);
    let acme = EventStream::start(&sender, EXAMPLE_OWNER, 2, STREAM_PAUSE);
    let beta = EventStream::start(&sender, BETA_OWNER, 2, STREAM_PAUSE);
    let gamma = EventStream::start(&sender, GAMMA_OWNER, 2, STREAM_PAUSE);
    let delta = EventStream::start(&sender, DELTA_OWNER, 2, STREAM_PAUSE);
    delta
        .wait_until("delta's owner is refused before it is configured", |sent| {
            sent.len() >= 4 && sent.iter().all(is_unknown_tenant)
        })
        .await;

    // 1. A tenant is added: its owner is routed from then on.
    let echo = echo_build("v1");
    let added = env
        .config
        .clone()
        .tenant(echo_on("delta", DELTA_OWNER, &echo, &env.delta));
    env.apply(added).await;
    let mark = delta.count();
    delta
        .wait_until("delta's owner is accepted", |sent| {
            sent[mark..].iter().filter(|s| s.accepted()).count() >= 4
        })
        .await;
    assert_eq!(probe(&env.bridge, DELTA_OWNER, &env.vendors()).await.vendor, "delta");

    // 2. A tenant's vendor URL changes: its later events reach the new vendor.
    let moved = retarget(env.config.clone(), "beta", &env.beta_moved);
    env.apply(moved).await;
    assert_eq!(
        probe(&env.bridge, BETA_OWNER, &env.vendors()).await.vendor,
        "beta-moved"
    );
    // Delivered by the new configuration: whatever beta sends from now on is too.
    let beta_moved_at = Instant::now();
    beta.wait_for_more(4).await;

    // 3. A tenant is removed: its owner is refused from then on.
    let mut removed = env.config.clone();
    removed.tenants.retain(|t| t.name != "gamma");
    env.apply(removed).await;
    let mark = gamma.count();
    gamma
        .wait_until("gamma's owner is refused", |sent| {
            sent[mark..].iter().filter(|s| is_unknown_tenant(s)).count() >= 4
        })
        .await;
    assert_refused(
        &env.bridge.send_event(Event::fresh().owner(GAMMA_OWNER)).await,
        422,
        "unknown_tenant",
        &[],
    );

    // 4. Invalid configurations are rejected whole; the current one keeps serving. Each also
    // moves acme to the `nowhere` vendor, which must never see a request.
    let valid = env.config.clone();
    let moves_acme = retarget(valid.clone(), "acme", &env.nowhere);
    let syntax_error = format!("{}\n[[tenants]\nname = \"broken", moves_acme.to_toml());
    let line = env.reject("a TOML syntax error", &syntax_error).await;
    assert!(line.contains("bridge.toml"), "the error names the file: {line}");
    let bad_name = moves_acme.clone().tenant(echo_on(
        "not a valid name!",
        "0wner0000000000000000000000000001",
        &echo,
        &env.nowhere,
    ));
    let line = env.reject("an invalid tenant name", &bad_name.to_toml()).await;
    assert!(line.contains("tenants[3].name"), "the error names the field: {line}");
    let missing_adapter = moves_acme.clone().tenant(echo_on(
        "epsilon",
        "0wner0000000000000000000000000002",
        Path::new("no-such-adapter.wasm"),
        &env.nowhere,
    ));
    let line = env
        .reject("a new tenant whose adapter is missing", &missing_adapter.to_toml())
        .await;
    assert!(line.contains("epsilon"), "the error names the tenant: {line}");
    // While the file is invalid, an explicit reload is refused too.
    env.write_config(&syntax_error);
    let response = admin_reload(&env.bridge).await;
    assert_refused(&response, 422, "reload_rejected", &[]);
    assert!(
        response.error_message().unwrap_or_default().contains("bridge.toml"),
        "{}",
        response.describe()
    );
    assert_eq!(probe(&env.bridge, EXAMPLE_OWNER, &env.vendors()).await.vendor, "acme");
    assert_eq!(
        probe(&env.bridge, BETA_OWNER, &env.vendors()).await.vendor,
        "beta-moved"
    );
    assert_eq!(probe(&env.bridge, DELTA_OWNER, &env.vendors()).await.vendor, "delta");
    assert_refused(
        &env.bridge.send_event(Event::fresh().owner(GAMMA_OWNER)).await,
        422,
        "unknown_tenant",
        &[],
    );
    // 5. A valid file again is picked up.
    env.apply(valid).await;
    acme.wait_for_more(4).await;

    let (acme, beta, gamma, delta) = (
        acme.stop().await,
        beta.stop().await,
        gamma.stop().await,
        delta.stop().await,
    );
    let stats = env.bridge.wait_until_settled().await;
    let by_id = arrivals(&env.vendors());
    assert!(env.nowhere.requests().is_empty(), "a rejected configuration served");

    // acme: untouched by every reload.
    let failed = failures(&acme);
    assert!(failed.is_empty(), "acme's requests failed: {failed:#?}");
    let wrong: Vec<_> = reached(&acme, &by_id)
        .into_iter()
        .filter(|(_, _, v)| v != &["acme"])
        .collect();
    assert!(
        wrong.is_empty(),
        "acme's events not delivered once to its vendor: {wrong:#?}"
    );

    // beta: every event delivered once; per ticket, the old vendor's share comes first; every
    // event sent after the reload was seen reached the new vendor.
    let failed = failures(&beta);
    assert!(failed.is_empty(), "beta's requests failed: {failed:#?}");
    let beta_reached = reached(&beta, &by_id);
    let wrong: Vec<_> = beta_reached
        .iter()
        .filter(|(_, _, v)| v != &["beta"] && v != &["beta-moved"])
        .collect();
    assert!(wrong.is_empty(), "beta's events not delivered exactly once: {wrong:#?}");
    let sent_after_change: HashSet<(String, u64)> = beta
        .iter()
        .filter(|s| s.sent_at >= beta_moved_at)
        .map(|s| (s.ticket.clone(), s.seq))
        .collect();
    assert!(!sent_after_change.is_empty());
    for (ticket, seq, vendors) in &beta_reached {
        if sent_after_change.contains(&(ticket.clone(), *seq)) {
            assert_eq!(
                vendors,
                &["beta-moved"],
                "beta {ticket} #{seq} was sent after the change was reloaded"
            );
        }
    }
    // (Every accepted beta event arrived exactly once: checked above.)
    let vendor_of = |s: &Sent| by_id[s.delivery_id.as_deref().unwrap_or_default()][0].vendor;
    let beta_accepted: Vec<Sent> = beta.iter().filter(|s| s.accepted()).cloned().collect();
    switches_once(
        &beta_accepted,
        |s| vendor_of(s) == "beta",
        |s| vendor_of(s) == "beta-moved",
    )
    .unwrap_or_else(|e| panic!("beta's events moved vendor more than once: {e}"));

    // gamma: accepted, then refused as unknown, never back; what was accepted is delivered or,
    // when the tenant was gone before its turn, a dead letter saying so.
    switches_once(&gamma, Sent::accepted, is_unknown_tenant)
        .unwrap_or_else(|e| panic!("gamma's owner was not cleanly removed: {e}"));
    let dead = env.bridge.dead_letters(Some("gamma")).await;
    for (ticket, seq, vendors) in reached(&gamma, &by_id) {
        if vendors.is_empty() {
            let id = gamma
                .iter()
                .find(|s| s.ticket == ticket && s.seq == seq)
                .and_then(|s| s.delivery_id.clone())
                .unwrap_or_default();
            let letter = dead.iter().find(|d| d["delivery_id"] == id.as_str());
            assert!(
                letter.is_some_and(|d| d["last_error"].as_str().unwrap_or_default().contains("not configured")),
                "gamma {ticket} #{seq} ({id}) was accepted but neither delivered nor dead-lettered: {letter:?}"
            );
        } else {
            assert_eq!(vendors, ["gamma"], "gamma {ticket} #{seq}");
        }
    }

    // delta: refused as unknown, then accepted, never back; everything accepted delivered.
    switches_once(&delta, is_unknown_tenant, Sent::accepted)
        .unwrap_or_else(|e| panic!("delta's owner was not cleanly added: {e}"));
    let wrong: Vec<_> = reached(&delta, &by_id)
        .into_iter()
        .filter(|(_, _, v)| v != &["delta"])
        .collect();
    assert!(
        wrong.is_empty(),
        "delta's events not delivered once to its vendor: {wrong:#?}"
    );

    let count = |sent: &[Sent]| sent.iter().filter(|s| s.accepted()).count();
    println!(
        "config reloads: accepted acme {}, beta {} ({} at the new vendor), gamma {} then {} refused, \
         delta {} refused then {} accepted; outbox {stats}",
        count(&acme),
        count(&beta),
        beta_reached.iter().filter(|(_, _, v)| v == &["beta-moved"]).count(),
        count(&gamma),
        gamma.iter().filter(|s| is_unknown_tenant(s)).count(),
        delta.iter().filter(|s| is_unknown_tenant(s)).count(),
        count(&delta),
    );
}

/// Whether `text` looks like an RFC 3339 UTC timestamp (`2025-01-02T03:04:05.678+00:00`).
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (text.ends_with('Z') || text.ends_with("+00:00"))
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_by_admin_endpoint_and_sighup_and_the_adapters_listing() {
    // The tenant's adapter is a symlink into a folder the watcher does not watch (it watches the
    // folders of the config and of the adapter paths), so a change there is picked up by an
    // explicit reload only.
    let dir = reload_dir();
    let (adapters, versions) = (dir.path().join("adapters"), dir.path().join("versions"));
    std::fs::create_dir(&adapters).unwrap();
    std::fs::create_dir(&versions).unwrap();
    let target = versions.join("acme.wasm");
    let adapter = adapters.join("acme.wasm");
    let (v1, v2) = (echo_build_bytes("v1"), echo_build_bytes("v2"));
    std::fs::write(&target, &v1).unwrap();
    std::os::unix::fs::symlink(&target, &adapter).unwrap();
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    let vendors = [("vendor", &vendor)];
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(echo_on("acme", EXAMPLE_OWNER, &adapter, &vendor)),
    )
    .await;

    // GET /admin/adapters: file, content hash, WIT version, loaded at, calls, errors.
    for _ in 0..3 {
        assert_eq!(probe(&bridge, EXAMPLE_OWNER, &vendors).await.body["build"], "v1");
    }
    let listing = adapters_list(&bridge).await;
    assert_eq!(listing.len(), 1, "{listing:#?}");
    let first = listing[0].clone();
    assert_eq!(first["tenant"], "acme", "{first:#}");
    assert_eq!(first["owner"], EXAMPLE_OWNER, "{first:#}");
    assert_eq!(first["file"], adapter.display().to_string(), "{first:#}");
    assert_eq!(first["contentHash"], sha256_hex(&v1), "{first:#}");
    let wit = first["witVersion"].as_str().unwrap_or_default();
    // The echo adapter is built for the current world.
    assert!(wit.starts_with("dolphin:bridge@0.2."), "{first:#}");
    let loaded_at = first["loadedAt"].as_str().unwrap_or_default().to_string();
    assert!(is_rfc3339(&loaded_at), "{first:#}");
    assert_eq!(first["calls"], 3, "three events, three calls: {first:#}");
    assert_eq!(first["errors"], 0, "{first:#}");

    // Nothing changed: an explicit reload reports nothing.
    let response = admin_reload(&bridge).await;
    assert_eq!(response.status, 200, "{}", response.describe());
    assert_eq!(
        response.json(),
        serde_json::json!({"loaded": [], "kept_previous": [], "removed": []})
    );

    // POST /admin/reload picks up the new version.
    replace_by_rename(&target, &v2);
    let response = admin_reload(&bridge).await;
    assert_eq!(response.status, 200, "{}", response.describe());
    assert_eq!(
        response.json(),
        serde_json::json!({"loaded": ["acme"], "kept_previous": [], "removed": []})
    );
    let info = adapter_info(&bridge, "acme").await;
    assert_eq!(
        info["contentHash"],
        sha256_hex(&v2),
        "swapped in before the answer: {info:#}"
    );
    assert_eq!(info["witVersion"], wit, "{info:#}");
    let v2_loaded_at = info["loadedAt"].as_str().unwrap_or_default().to_string();
    assert!(
        is_rfc3339(&v2_loaded_at) && v2_loaded_at > loaded_at,
        "loadedAt moves on: {loaded_at} -> {info:#}"
    );
    assert_eq!(
        (&info["calls"], &info["errors"]),
        (&0.into(), &0.into()),
        "a new version: {info:#}"
    );
    assert_eq!(probe(&bridge, EXAMPLE_OWNER, &vendors).await.body["build"], "v2");
    assert_eq!(adapter_info(&bridge, "acme").await["calls"], 1);

    // A broken file: the reload succeeds, and says the tenant kept its previous version.
    replace_by_rename(&target, &garbage_bytes(4096, 11));
    let response = admin_reload(&bridge).await;
    assert_eq!(response.status, 200, "{}", response.describe());
    assert_eq!(
        response.json(),
        serde_json::json!({"loaded": [], "kept_previous": ["acme"], "removed": []})
    );
    assert_eq!(adapter_info(&bridge, "acme").await["contentHash"], sha256_hex(&v2));
    assert_eq!(probe(&bridge, EXAMPLE_OWNER, &vendors).await.body["build"], "v2");

    // SIGHUP reloads too.
    replace_by_rename(&target, &v1);
    let mark = log_mark(&bridge);
    send_sighup(&bridge);
    wait_for_log_line(&bridge, mark, &["SIGHUP: reloading"]).await;
    let line = wait_for_log_line(&bridge, mark, &["configuration reloaded"]).await;
    assert!(line.contains("loaded=[\"acme\"]"), "{line}");
    wait_for_adapter_hash(&bridge, "acme", &sha256_hex(&v1)).await;
    assert_eq!(probe(&bridge, EXAMPLE_OWNER, &vendors).await.body["build"], "v1");
    assert!(bridge.dead_letters(None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_loaded_at_of_adapters_that_did_not_change() {
    let dir = reload_dir();
    let (acme_file, beta_file) = (dir.path().join("acme.wasm"), dir.path().join("beta.wasm"));
    let (v1, v2) = (echo_build_bytes("v1"), echo_build_bytes("v2"));
    std::fs::write(&acme_file, &v1).unwrap();
    std::fs::write(&beta_file, &v1).unwrap();
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(echo_on("acme", EXAMPLE_OWNER, &acme_file, &vendor))
            .tenant(echo_on("beta", BETA_OWNER, &beta_file, &vendor)),
    )
    .await;
    // Served once first, so the file watcher (started after `listening on`) is surely up.
    probe(&bridge, BETA_OWNER, &[("vendor", &vendor)]).await;
    let acme_loaded_at = adapter_info(&bridge, "acme").await["loadedAt"].clone();

    // Beta's adapter changes; acme's does not.
    replace_by_rename(&beta_file, &v2);
    let beta = wait_for_adapter_hash(&bridge, "beta", &sha256_hex(&v2)).await;
    let acme = adapter_info(&bridge, "acme").await;
    assert_eq!(
        acme["loadedAt"], acme_loaded_at,
        "acme's adapter did not change, yet its loadedAt moved: {acme:#}"
    );

    // Beta's new file is broken: it keeps v2, loaded when it was.
    let mark = log_mark(&bridge);
    replace_by_rename(&beta_file, &core_module_bytes());
    wait_for_log_line(&bridge, mark, &["adapter file rejected", "tenant=beta"]).await;
    let kept = adapter_info(&bridge, "beta").await;
    assert_eq!(kept["contentHash"], sha256_hex(&v2), "{kept:#}");
    assert_eq!(
        kept["loadedAt"], beta["loadedAt"],
        "beta kept the version it had, yet its loadedAt moved: {kept:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_happens_once_per_change_not_again_on_its_own() {
    let env = SwapEnv::start("v1").await;
    let vendors = [("vendor", &env.vendor)];
    probe(&env.bridge, EXAMPLE_OWNER, &vendors).await;
    let loaded_before = adapter_reloads(&env.bridge, "acme", "loaded").await;

    // One deploy: one reload, then quiet (the reload's own reading of the files is no change).
    let mark = log_mark(&env.bridge);
    replace_by_rename(&env.adapter, &echo_build_bytes("v2"));
    wait_for_log_line(&env.bridge, mark, &["configuration reloaded"]).await;
    // Six times the watcher's quiet period, with nothing written.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let reloads = log_lines_since(&env.bridge, mark, &["configuration reloaded"]);
    assert_eq!(reloads.len(), 1, "one change, one reload; got:\n{}", reloads.join("\n"));
    assert_eq!(
        adapter_reloads(&env.bridge, "acme", "loaded").await,
        loaded_before + 1.0
    );

    // One broken file: rejected once, not again and again while it stays.
    let rejected_before = adapter_reloads(&env.bridge, "acme", "rejected").await;
    let mark = log_mark(&env.bridge);
    replace_by_rename(&env.adapter, &core_module_bytes());
    wait_for_log_line(&env.bridge, mark, &["adapter file rejected", "tenant=acme"]).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let rejections = log_lines_since(&env.bridge, mark, &["adapter file rejected"]);
    assert_eq!(
        rejections.len(),
        1,
        "one broken file, one rejection; got:\n{}",
        rejections.join("\n")
    );
    assert_eq!(
        adapter_reloads(&env.bridge, "acme", "rejected").await,
        rejected_before + 1.0
    );
    assert_eq!(probe(&env.bridge, EXAMPLE_OWNER, &vendors).await.body["build"], "v2");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_sees_an_adapter_deployed_right_after_the_bridge_starts() {
    // A deploy script that starts the bridge and then installs the new adapter at once.
    let env = SwapEnv::start("v1").await;
    let v2 = echo_build_bytes("v2");
    replace_by_rename(&env.adapter, &v2);
    wait_for_adapter_hash(&env.bridge, "acme", &sha256_hex(&v2)).await;
    let served = probe(&env.bridge, EXAMPLE_OWNER, &[("vendor", &env.vendor)]).await;
    assert_eq!(served.body["build"], "v2");
}
