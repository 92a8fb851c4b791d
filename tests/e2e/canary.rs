//! Canary deployments against a running bridge: `PUT /admin/tenants/{t}/adapter?canary=P`
//! sends P% of a tenant's tickets to the new version, chosen per ticket; the figures of both
//! versions are judged every `check_interval_ms`; a canary that fails more than the current
//! version is rolled back on its own, one as good is promoted, by hand or after
//! `promote_after_calls`. An event the canary failed is
//! retried, not dead-lettered, so the current version delivers it after a rollback. Versions
//! are told apart by the two tagged echo builds (`build` in every body the vendor receives).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use dolphin_bridge_tests::adapters::bridge_binary;
use dolphin_bridge_tests::bridge::ADMIN_TOKEN;
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::reload_support::{echo_build_bytes, log_lines_since, sha256_hex, with_custom_section};
use dolphin_bridge_tests::replica_support::{TempSchema, assert_store_is_postgres};
use dolphin_bridge_tests::wait::{WAIT, wait_for_async};
use dolphin_bridge_tests::{Bridge, Event, HttpResponse, MockThreeDolphins, MockVendor};
use serde_json::{Value, json};

use crate::common::{API_TOKEN, assert_accepted, echo_build_replica_config};
use crate::deployments::{ACME_DEPLOY_TOKEN, BETA_DEPLOY_TOKEN, DeployEnv, unique_payload};
use crate::status_page::csrf_of;

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// `[deployments.canary]` with these figures, checked every 200 ms; retries a second apart (as
/// the default schedule's first waits, seconds apart, outlast a check); acme's webhooks read
/// their ticket at `/ticketNumber` (where the echo adapter's webhook names it).
fn canary_policy(table: &mut toml::Table, min_calls: i64, promote_after_calls: i64) {
    let retries = toml::Value::Array(vec![toml::Value::Integer(1000); 8]);
    table["delivery"]
        .as_table_mut()
        .expect("[delivery]")
        .insert("retry_schedule_ms".into(), retries);
    let mut canary = toml::Table::new();
    canary.insert("min_calls".into(), min_calls.into());
    canary.insert("max_failure_margin".into(), toml::Value::Float(10.0));
    canary.insert("promote_after_calls".into(), promote_after_calls.into());
    canary.insert("check_interval_ms".into(), 200.into());
    table["deployments"]
        .as_table_mut()
        .expect("[deployments]")
        .insert("canary".into(), toml::Value::Table(canary));
    let acme = table["tenants"].as_array_mut().expect("tenants")[0]
        .as_table_mut()
        .expect("acme");
    let webhook = acme
        .entry("webhook")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("[tenants.webhook]");
    webhook.insert(
        "ticket_pointers".into(),
        toml::Value::Array(vec!["/ticketNumber".into()]),
    );
}

/// An echo `v2` build no earlier run compiled.
fn fresh_v2() -> Vec<u8> {
    with_custom_section(&echo_build_bytes("v2"), "run", &unique_payload())
}

/// `n` ticket numbers of this run.
fn tickets(n: usize) -> Vec<String> {
    let run = String::from_utf8(unique_payload()).unwrap();
    (0..n).map(|i| format!("CANARY-{run}-{i}")).collect()
}

impl DeployEnv {
    /// Deploys `component` to acme as a canary serving `percent` of its tickets, with acme's
    /// deploy token; returns the answer's `version`.
    async fn deploy_canary(&self, percent: u8, component: Vec<u8>) -> Value {
        let action = format!("adapter?canary={percent}");
        let deployed = self
            .call("PUT", "acme", &action, Some(ACME_DEPLOY_TOKEN), component)
            .await;
        assert_eq!(deployed.status, 200, "{}", deployed.describe());
        deployed.json()["version"].clone()
    }

    /// `GET /admin/tenants/acme/canary` with the admin token.
    async fn canary(&self) -> Value {
        let response = self.call("GET", "acme", "canary", Some(ADMIN_TOKEN), Vec::new()).await;
        assert_eq!(response.status, 200, "{}", response.describe());
        response.json()
    }

    /// Sends one event (a text no other event had) on each of `tickets` and returns their
    /// delivery ids, in order.
    async fn send_round(&self, tickets: &[String], text: &str) -> Vec<String> {
        let round = String::from_utf8(unique_payload()).unwrap();
        let mut ids = Vec::with_capacity(tickets.len());
        for ticket in tickets {
            let text = format!("{text} {round}");
            let event = Event::fresh().owner(EXAMPLE_OWNER).ticket(ticket).message(&text);
            ids.push(assert_accepted(&self.bridge.send_event(event).await));
        }
        ids
    }

    async fn wait_delivered(&self, ids: &[String]) {
        for id in ids {
            self.bridge.wait_for_delivery(id, "delivered").await;
        }
    }

    /// The builds that handled each of `tickets`' requests to the vendor, in order (refused
    /// requests included).
    fn builds(&self, tickets: &[String]) -> BTreeMap<String, Vec<String>> {
        let wanted: BTreeSet<&str> = tickets.iter().map(String::as_str).collect();
        let mut builds: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for body in self.vendor.bodies() {
            let ticket = body["ticketNumber"].as_str().unwrap_or_default();
            if wanted.contains(ticket) {
                let build = body["build"].as_str().unwrap_or_default().to_string();
                builds.entry(ticket.to_string()).or_default().push(build);
            }
        }
        builds
    }

    /// Waits until acme's last canary ended as `end`; returns `GET .../canary`.
    async fn wait_canary_ended(&self, end: &str) -> Value {
        wait_for_async(&format!("the canary to end as {end}"), WAIT, || async {
            let canary = self.canary().await;
            (canary["canary"].is_null() && canary["lastCanary"]["end"] == end).then_some(canary)
        })
        .await
    }

    /// Posts a webhook naming `ticket` to acme.
    async fn webhook(&self, ticket: &str) -> HttpResponse {
        let body = json!({ "ticketNumber": ticket, "message": "from the agent" }).to_string();
        self.bridge
            .client()
            .send(
                "POST",
                &self.bridge.webhook_url("acme", "/hook"),
                &[("content-type", "application/json")],
                body,
            )
            .await
    }
}

/// Splits `tickets` by the build that handled their first request.
fn split_by_first_build(builds: &BTreeMap<String, Vec<String>>) -> (Vec<String>, Vec<String>) {
    let on = |build: &str| {
        builds
            .iter()
            .filter(|(_, b)| b.first().map(String::as_str) == Some(build))
            .map(|(t, _)| t.clone())
            .collect::<Vec<_>>()
    };
    (on("v1"), on("v2"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_failing_more_than_the_current_version_is_rolled_back_and_its_tickets_go_on_with_the_current_version()
{
    let env = DeployEnv::start_with(|table, _| canary_policy(table, 10, 0)).await;
    // The vendor refuses the new version's payload: every call of the canary fails.
    env.vendor.refuse_build(Some(("v2", 400)));
    let v2 = fresh_v2();
    let version = &env.deploy_canary(30, v2.clone()).await;
    assert_eq!(
        (version["canary"].as_u64(), version["active"].as_bool()),
        (Some(30), Some(false))
    );
    let versions = env.versions("acme", ACME_DEPLOY_TOKEN).await;
    let listed = versions.iter().find(|v| v["contentHash"] == sha256_hex(&v2).as_str());
    assert_eq!(listed.map(|v| v["canary"].clone()), Some(json!(30)), "{versions:#?}");

    let tickets = tickets(100);
    let first = env.send_round(&tickets, "first").await;
    let ended = env.wait_canary_ended("rolled-back").await;
    let reason = ended["lastCanary"]["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("the canary failed")
            && reason.contains("for the current version")
            && reason.contains("points over"),
        "the rollback is recorded with its figures: {reason}"
    );
    // Every first event is delivered: those the canary failed were retried, by the current
    // version once it was rolled back.
    env.wait_delivered(&first).await;
    let builds = env.builds(&tickets);
    let (current, canary) = split_by_first_build(&builds);
    assert!(canary.len() >= 10, "about 30 of 100 tickets on the canary: {builds:#?}");
    assert_eq!(current.len() + canary.len(), tickets.len(), "{builds:#?}");
    for ticket in &current {
        assert!(
            builds[ticket].iter().all(|b| b == "v1"),
            "{ticket}: {:?}",
            builds[ticket]
        );
    }
    for ticket in &canary {
        // On the canary, then on the current version for good: never back.
        let seen = &builds[ticket];
        let back = seen.iter().position(|b| b == "v1").expect("delivered by v1 in the end");
        assert!(
            seen[..back].iter().all(|b| b == "v2") && seen[back..].iter().all(|b| b == "v1"),
            "{ticket}: {seen:?}"
        );
    }
    // The tickets the canary served go on with the current version.
    let second = env.send_round(&canary, "second").await;
    env.wait_delivered(&second).await;
    for (ticket, seen) in env.builds(&canary) {
        assert_eq!(seen.last().map(String::as_str), Some("v1"), "{ticket}: {seen:?}");
    }
    // The history on the status page has the rollback with its figures.
    let html = status_page(&env).await.1;
    let row = html
        .split("<tr class=\"event\"")
        .find(|row| row.contains("data-kind=\"canary-rolled-back\""))
        .unwrap_or_else(|| panic!("no canary-rolled-back row: {html}"));
    assert!(row.contains("the canary failed"), "{row}");
}

#[tokio::test(flavor = "multi_thread")]
async fn during_a_canary_a_ticket_keeps_its_version_webhooks_follow_it_and_a_promoted_canary_serves_every_ticket() {
    let env = DeployEnv::start_with(|table, _| canary_policy(table, 10, 0)).await;
    let v2 = fresh_v2();
    env.deploy_canary(50, v2.clone()).await;
    let tickets = tickets(40);
    for round in ["one", "two", "three"] {
        let ids = env.send_round(&tickets, round).await;
        env.wait_delivered(&ids).await;
    }
    let builds = env.builds(&tickets);
    for (ticket, seen) in &builds {
        assert_eq!(seen.len(), 3, "{ticket}: {seen:?}");
        assert!(
            seen.iter().all(|b| b == &seen[0]),
            "{ticket} changed version during the canary: {seen:?}"
        );
    }
    let (current, canary) = split_by_first_build(&builds);
    assert!(!current.is_empty() && !canary.is_empty(), "{builds:#?}");
    let status = env.canary().await["canary"].clone();
    assert_eq!(status["percent"], 50);
    assert_eq!(status["contentHash"], sha256_hex(&v2).as_str());
    assert_eq!(status["current"]["calls"], current.len() * 3, "{status:#}");
    assert_eq!(status["canary"]["calls"], canary.len() * 3, "{status:#}");
    assert_eq!(status["canary"]["failures"], 0, "{status:#}");
    assert!(
        status["canary"]["meanLatencyMs"].as_f64().unwrap_or(0.0) > 0.0,
        "{status:#}"
    );
    // The operators' view shows both versions side by side.
    let adapters = env
        .bridge
        .client()
        .send(
            "GET",
            &format!("{}/admin/adapters", env.bridge.url()),
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            Vec::new(),
        )
        .await
        .json();
    let acme = adapters["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["tenant"] == "acme")
        .cloned();
    assert_eq!(
        acme.map(|a| a["canary"]["canary"]["calls"].clone()),
        Some(json!(canary.len() * 3))
    );

    // A webhook naming a canary ticket runs on the canary, one naming another ticket on the
    // current version, one naming none on the current version.
    let before = env.canary().await["canary"].clone();
    for ticket in [&canary[0], &current[0]] {
        let answered = env.webhook(ticket).await;
        assert_eq!(answered.status, 200, "{}", answered.describe());
    }
    let without_ticket = env
        .bridge
        .client()
        .send(
            "POST",
            &env.bridge.webhook_url("acme", "/hook"),
            &[("content-type", "application/json")],
            r#"{"message": "no ticket"}"#,
        )
        .await;
    assert_eq!(without_ticket.status, 400, "{}", without_ticket.describe());
    let after = env.canary().await["canary"].clone();
    let calls = |status: &Value, side: &str| status[side]["calls"].as_u64().unwrap();
    assert_eq!(calls(&after, "canary") - calls(&before, "canary"), 1, "{after:#}");
    assert_eq!(calls(&after, "current") - calls(&before, "current"), 2, "{after:#}");

    // Promoted by hand: the new version serves every ticket.
    let promoted = env
        .call("POST", "acme", "canary/promote", Some(ACME_DEPLOY_TOKEN), Vec::new())
        .await;
    assert_eq!(promoted.status, 200, "{}", promoted.describe());
    assert_eq!(promoted.json()["canary"]["end"], "promoted");
    let ids = env.send_round(&tickets, "after").await;
    env.wait_delivered(&ids).await;
    for (ticket, seen) in env.builds(&tickets) {
        assert_eq!(seen.last().map(String::as_str), Some("v2"), "{ticket}: {seen:?}");
    }
    let versions = env.versions("acme", ACME_DEPLOY_TOKEN).await;
    assert_eq!(versions[0]["contentHash"], sha256_hex(&v2).as_str());
    assert_eq!(versions[0]["active"], true, "{versions:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_as_good_as_the_current_version_is_promoted_after_promote_after_calls() {
    let env = DeployEnv::start_with(|table, _| canary_policy(table, 10, 20)).await;
    let v2 = fresh_v2();
    env.deploy_canary(50, v2.clone()).await;
    let tickets = tickets(30);
    let sent = std::sync::Mutex::new(Vec::new());
    let ended = wait_for_async("the canary to be promoted", WAIT, || async {
        let ids = env.send_round(&tickets, "traffic").await;
        sent.lock().unwrap().extend(ids);
        let canary = env.canary().await;
        (canary["lastCanary"]["end"] == "promoted").then_some(canary)
    })
    .await;
    let sent = sent.into_inner().unwrap();
    let reason = ended["lastCanary"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("within the margin"), "{reason}");
    env.wait_delivered(&sent).await;
    assert_eq!(env.probe_build().await, "v2");
    let html = status_page(&env).await.1;
    assert!(html.contains("data-kind=\"canary-promoted\""), "{html}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_is_started_shown_and_aborted_from_the_cli_and_the_status_page_and_bad_requests_name_the_problem() {
    let env = DeployEnv::start_with(|table, _| canary_policy(table, 1000, 0)).await;
    let v2 = fresh_v2();
    // Refused before the upload is read (a client sending the body answers `Expect:
    // 100-continue` first, as the CLI does).
    for (query, shown) in [("canary=0", "`0`"), ("canary=half", "`half`"), ("canary=100", "`100`")] {
        let refused = env
            .call(
                "PUT",
                "acme",
                &format!("adapter?{query}"),
                Some(ACME_DEPLOY_TOKEN),
                Vec::new(),
            )
            .await;
        assert_eq!(refused.status, 400, "{}", refused.describe());
        assert_eq!(refused.error_code().as_deref(), Some("invalid_canary"));
        assert!(
            refused.error_message().unwrap_or_default().contains(shown),
            "{}",
            refused.describe()
        );
    }
    let none = env
        .call("POST", "acme", "canary/promote", Some(ACME_DEPLOY_TOKEN), Vec::new())
        .await;
    assert_eq!(
        (none.status, none.error_code().as_deref()),
        (409, Some("no_canary")),
        "{}",
        none.describe()
    );

    let cli = |args: &[&str]| {
        let out = Command::new(bridge_binary())
            .args(args)
            .env("DOLPHIN_BRIDGE_URL", env.bridge.url())
            .env("DOLPHIN_BRIDGE_DEPLOY_TOKEN", ACME_DEPLOY_TOKEN)
            .env_remove("DOLPHIN_BRIDGE_CONFIG")
            .current_dir(env.dir.path())
            .output()
            .expect("run dolphin-bridge");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let path = env.dir.path().join("v2.wasm");
    std::fs::write(&path, &v2).unwrap();
    let hash = &sha256_hex(&v2)[..12];
    let out = cli(&["deploy", "-t", "acme", "--canary", "25", path.to_str().unwrap()]);
    assert!(
        out.contains("deployed as a canary for 25% of the tickets") && out.contains(hash),
        "{out}"
    );
    let out = cli(&["versions", "-t", "acme"]);
    assert!(
        out.lines().any(|l| l.starts_with("canary 25%:") && l.contains(hash)),
        "{out}"
    );
    let out = cli(&["canary", "status", "-t", "acme"]);
    assert!(out.contains(&format!("canary {hash} on 25% of the tickets")), "{out}");
    assert!(
        out.contains("current") && out.contains("waiting for enough canary calls"),
        "{out}"
    );

    // Another tenant's deploy token cannot end acme's canary.
    let foreign = env
        .call("POST", "acme", "canary/abort", Some(BETA_DEPLOY_TOKEN), Vec::new())
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.describe());

    // The status page shows both versions side by side and aborts it.
    let (session, html) = status_page(&env).await;
    assert!(html.contains("<table class=\"canary\" data-tenant=\"acme\""), "{html}");
    assert!(
        html.contains("<tr class=\"current\">") && html.contains("<tr class=\"canary\">"),
        "{html}"
    );
    let form = format!("csrf={}&tenant=acme", csrf_of(&html));
    let aborted = env
        .bridge
        .client()
        .send(
            "POST",
            &format!("{}/admin/ui/canary/abort", env.bridge.url()),
            &[FORM, ("cookie", session.as_str())],
            form,
        )
        .await;
    assert_eq!(aborted.status, 303, "{}", aborted.describe());
    let ended = env.canary().await;
    assert!(ended["canary"].is_null(), "{ended:#}");
    assert_eq!(ended["lastCanary"]["end"], "aborted");
    for _ in 0..5 {
        assert_eq!(
            env.probe_build().await,
            "v1",
            "after the abort every ticket is on the current version"
        );
    }
    let out = cli(&["canary", "status", "-t", "acme"]);
    assert!(out.contains("no canary running") && out.contains("aborted"), "{out}");
}

/// Logs in to the status page with the admin token; returns the session cookie and the page.
async fn status_page(env: &DeployEnv) -> (String, String) {
    let (client, base) = (env.bridge.client(), env.bridge.url().to_string());
    let body = format!("token={ADMIN_TOKEN}");
    let ok = client.send("POST", &format!("{base}/admin/login"), &[FORM], body).await;
    assert_eq!(ok.status, 303, "{}", ok.describe());
    let cookie = ok.header("set-cookie").expect("a session cookie");
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = client
        .send("GET", &format!("{base}/admin"), &[("cookie", cookie.as_str())], "")
        .await;
    assert_eq!(page.status, 200, "{}", page.describe());
    (cookie, page.text())
}

/// `method /admin/tenants/acme/{action}` on `bridge` with the admin token.
async fn admin_call(bridge: &Bridge, method: &str, action: &str, body: Vec<u8>) -> HttpResponse {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let url = format!("{}/admin/tenants/acme/{action}", bridge.url());
    bridge
        .client()
        .send(method, &url, &[("authorization", &auth)], body)
        .await
}

/// Two replicas on one PostgreSQL database: a canary deployed on one is followed by the other
/// (its tickets split the same way there; a replica started later runs it from its start),
/// both report their calls, and one decision rolls it back for both: the canary is ended once (one replica logs the decision, the other follows
/// it), with the same outcome on both, and every event is delivered by the current version in
/// the end, whichever replica took it.
#[tokio::test(flavor = "multi_thread")]
async fn on_postgresql_every_replica_runs_the_canary_and_one_decision_rolls_it_back_for_all() {
    let schema = TempSchema::create().await;
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    vendor.refuse_build(Some(("v2", 400)));
    let mut config =
        echo_build_replica_config(schema.url(), &three_dolphins, &vendor, "v1").retry_schedule_ms(&[1000; 8]);
    config.extra_toml =
        "[deployments.canary]\nmin_calls = 10\nmax_failure_margin = 10.0\ncheck_interval_ms = 200\n".to_string();
    let replicas = [Bridge::start(config.clone()).await, Bridge::start(config.clone()).await];
    for replica in &replicas {
        assert_store_is_postgres(replica).await;
    }
    let v2 = fresh_v2();
    let deployed = admin_call(&replicas[0], "PUT", "adapter?canary=40", v2.clone()).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    // The other replica follows: it runs the canary too.
    wait_for_async("the second replica to run the canary", WAIT, || async {
        let canary = admin_call(&replicas[1], "GET", "canary", Vec::new()).await.json();
        (canary["canary"]["contentHash"] == sha256_hex(&v2).as_str()).then_some(())
    })
    .await;

    // A replica started now runs the canary from its start.
    let late = Bridge::start(config).await;
    let canary = admin_call(&late, "GET", "canary", Vec::new()).await.json();
    assert_eq!(canary["canary"]["contentHash"], sha256_hex(&v2).as_str(), "{canary:#}");
    assert!(
        log_lines_since(&late, 0, &["does not load"]).is_empty(),
        "the late replica had to fetch the canary later:\n{}",
        late.stderr()
    );
    drop(late);

    let tickets = tickets(80);
    let mut ids = Vec::new();
    for (i, ticket) in tickets.iter().enumerate() {
        let event = Event::fresh()
            .owner(EXAMPLE_OWNER)
            .ticket(ticket)
            .message("via either replica");
        ids.push(assert_accepted(&replicas[i % 2].send_event(event).await));
    }
    let mut outcomes = Vec::new();
    for replica in &replicas {
        outcomes.push(
            wait_for_async("both replicas to drop the canary", WAIT, || async {
                let canary = admin_call(replica, "GET", "canary", Vec::new()).await.json();
                (canary["canary"].is_null() && canary["lastCanary"]["end"] == "rolled-back")
                    .then(|| canary["lastCanary"].clone())
            })
            .await,
        );
    }
    assert_eq!(outcomes[0], outcomes[1], "one outcome for both");
    let decisions: Vec<String> = replicas
        .iter()
        .flat_map(|replica| log_lines_since(replica, 0, &["canary ended"]))
        .collect();
    assert_eq!(decisions.len(), 1, "one decision, taken once: {decisions:#?}");
    for id in &ids {
        replicas[0].wait_for_delivery(id, "delivered").await;
    }
    let mut on_canary = 0;
    for body in vendor.bodies().iter().filter(|b| b["build"] == "v2") {
        let ticket = body["ticketNumber"].as_str().unwrap_or_default();
        on_canary += 1;
        let last = vendor
            .bodies()
            .into_iter()
            .rfind(|b| b["ticketNumber"] == ticket)
            .map(|b| b["build"].clone());
        assert_eq!(last, Some(json!("v1")), "{ticket} ends on the current version");
    }
    assert!(on_canary >= 10, "the canary made at least min_calls calls: {on_canary}");
}
