//! Set-ups and assertions shared by the end-to-end tests.

use dolphin_bridge_tests::events::{EXAMPLE_OWNER, Event};
use dolphin_bridge_tests::{Bridge, BridgeConfig, HttpResponse, MockThreeDolphins, MockVendor, Tenant, adapters};
use serde_json::Value;

/// The 3Dolphins API token every test configures.
pub const API_TOKEN: &str = "e2e-3dolphins-token";
/// The echo tenant's name (webhooks at `/vendors/acme/...`) and tag.
pub const ECHO_TENANT: &str = "acme";
pub const ECHO_TAG: &str = "acme-tag";

/// The configuration of a replica on `store_url` serving tenant `acme` (the example owner) from
/// the echo build `build`, delivering to `vendor`.
pub fn echo_build_replica_config(
    store_url: &str,
    three_dolphins: &MockThreeDolphins,
    vendor: &MockVendor,
    build: &str,
) -> BridgeConfig {
    let acme = Tenant::new(
        "acme",
        EXAMPLE_OWNER,
        dolphin_bridge_tests::reload_support::echo_build(build),
    )
    .allow(&vendor.base_url())
    .config("url", &vendor.url());
    BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .store_url(store_url)
        .tenant(acme)
}

/// An echo tenant for the spec's example owner, delivering to `vendor`.
pub fn echo_tenant(name: &str, owner: &str, vendor: &MockVendor) -> Tenant {
    Tenant::new(name, owner, adapters::echo())
        .allow(&vendor.base_url())
        .config("url", &vendor.url())
        .config("tag", &format!("{name}-tag"))
}

/// The bridge with one echo tenant (`acme`, the example owner) between mock servers.
pub struct EchoEnv {
    // Dropped first: the bridge stops before the mocks free their ports.
    pub bridge: Bridge,
    pub three_dolphins: MockThreeDolphins,
    pub vendor: MockVendor,
}

impl EchoEnv {
    pub async fn start() -> EchoEnv {
        Self::start_with(|config, tenant| config.tenant(tenant)).await
    }

    /// Starts with `customize(config, acme_tenant)` deciding the final config.
    pub async fn start_with(customize: impl FnOnce(BridgeConfig, Tenant) -> BridgeConfig) -> EchoEnv {
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let vendor = MockVendor::start().await;
        let tenant = echo_tenant(ECHO_TENANT, EXAMPLE_OWNER, &vendor).config("tag", ECHO_TAG);
        let config = BridgeConfig::new(&three_dolphins.base_url()).api_token(API_TOKEN);
        let bridge = Bridge::start(customize(config, tenant)).await;
        EchoEnv {
            bridge,
            three_dolphins,
            vendor,
        }
    }

    /// Proves that nothing refused so far reached the vendor: a valid event sent now must be the
    /// first and only thing the vendor ever receives.
    pub async fn assert_nothing_forwarded(&self) {
        let sentinel = Event::fresh().message("sentinel");
        let response = self.bridge.send_event(sentinel.clone()).await;
        assert_accepted(&response);
        let bodies = self.vendor.wait_for_bodies(1).await;
        assert_eq!(
            bodies.len(),
            1,
            "the vendor received more than the sentinel event: {bodies:#?}"
        );
        assert_eq!(
            bodies[0]["ticketNumber"],
            sentinel.ticket_number().as_str(),
            "the vendor received something before the sentinel event: {bodies:#?}"
        );
        assert!(
            self.three_dolphins.event_posts().is_empty(),
            "something was posted to 3Dolphins"
        );
        // And the outbox never held anything else.
        let stats = self.bridge.wait_until_settled().await;
        assert_eq!(
            (&stats["delivered"], &stats["dead"]),
            (&Value::from(1), &Value::from(0)),
            "the outbox held more than the sentinel: {stats}"
        );
    }
}

/// The owner of the hostile tenant `villain` (see [`Attacked`]).
pub const VILLAIN_OWNER: &str = "0bad0bad0bad0bad0bad0bad0bad0bad";

/// The hostile Rust adapter (`plugins/hostile`) as tenant `villain` of [`VILLAIN_OWNER`], to be
/// customized (limits, config, allowed origins) and passed to [`Attacked::start`].
pub fn hostile_villain() -> Tenant {
    Tenant::new("villain", VILLAIN_OWNER, adapters::hostile())
}

/// The bridge with a hostile tenant (`villain`, owner [`VILLAIN_OWNER`]) beside a healthy echo
/// tenant (`acme`, the example owner, looking nothing up) between mock servers: what the
/// villain does must leave `acme` served.
pub struct Attacked {
    // Dropped first: the bridge stops before the mocks free their ports.
    pub bridge: Bridge,
    pub three_dolphins: MockThreeDolphins,
    pub vendor: MockVendor,
}

impl Attacked {
    /// Starts the bridge with `villain` (usually [`hostile_villain`], customized; its owner must
    /// be [`VILLAIN_OWNER`]) and the healthy echo tenant `acme`.
    pub async fn start(villain: Tenant) -> Attacked {
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let vendor = MockVendor::start().await;
        let bridge = Bridge::start(
            BridgeConfig::new(&three_dolphins.base_url())
                .api_token(API_TOKEN)
                .tenant(villain)
                .tenant(echo_tenant(ECHO_TENANT, EXAMPLE_OWNER, &vendor)),
        )
        .await;
        Attacked {
            bridge,
            three_dolphins,
            vendor,
        }
    }

    /// Sends `event` as the villain's (its owner set to [`VILLAIN_OWNER`]) and asserts it was
    /// accepted; returns the delivery id.
    pub async fn send_villain_event(&self, event: Event) -> String {
        assert_accepted(&self.bridge.send_event(event.owner(VILLAIN_OWNER)).await)
    }

    /// Sends the villain an Incoming event with `message` (the hostile adapter's mode, unless
    /// its config sets one); returns the delivery id.
    pub async fn villain_event(&self, message: &str) -> String {
        self.send_villain_event(Event::fresh().message(message)).await
    }

    /// Sends `event` as the villain's and waits for its dead letter: the dead delivery's JSON
    /// and its last error (the hostile adapter's report or the limit that stopped it).
    pub async fn villain_event_dead(&self, event: Event) -> (Value, String) {
        let id = self.send_villain_event(event).await;
        let dead = self.bridge.wait_for_delivery(&id, "dead").await;
        let error = dead["last_error"].as_str().unwrap_or_default().to_string();
        (dead, error)
    }

    /// Sends the villain an Incoming event with `message` and waits for its dead letter: the
    /// dead delivery's JSON and its last error.
    pub async fn villain_dead(&self, message: &str) -> (Value, String) {
        self.villain_event_dead(Event::fresh().message(message)).await
    }

    /// The healthy tenant's `event` is accepted, delivered, and its ticket reaches the vendor.
    pub async fn assert_served(&self, event: Event) {
        let id = assert_accepted(&self.bridge.send_event(event.clone()).await);
        self.bridge.wait_for_delivery(&id, "delivered").await;
        let ticket = event.ticket_number();
        assert!(
            self.vendor
                .bodies()
                .iter()
                .any(|b| b["ticketNumber"] == ticket.as_str()),
            "the healthy tenant's vendor did not get ticket {ticket}"
        );
    }

    /// The healthy tenant is served (a fresh event, see [`Attacked::assert_served`]), the bridge
    /// answers its health check with 200, and its process is still running.
    pub async fn assert_healthy_tenant_served(&mut self) {
        self.assert_served(Event::fresh()).await;
        let health = self
            .bridge
            .client()
            .get(&format!("{}/healthz", self.bridge.url()))
            .await;
        assert_eq!(health.status, 200, "{}", health.describe());
        assert!(self.bridge.is_running(), "the bridge exited");
    }
}

/// Asserts a new Incoming event was accepted: 202 with
/// `{"status":"success","deliveryId":"<uuid>","duplicate":false}`; returns the delivery id.
pub fn assert_accepted(response: &HttpResponse) -> String {
    assert_eq!(
        response.status,
        202,
        "expected the event to be accepted, got {}",
        response.describe()
    );
    let body = response.json();
    assert_eq!(body["status"], "success", "{}", response.describe());
    assert_eq!(body["duplicate"], false, "{}", response.describe());
    let id = body["deliveryId"]
        .as_str()
        .unwrap_or_else(|| panic!("no deliveryId: {}", response.describe()));
    assert!(is_uuid(id), "deliveryId {id:?} is not a UUID");
    id.to_string()
}

/// Checks a refusal: `status`, JSON `error.code` == `code`, and every one of `fields` named in
/// `error.fields`. Returns a description of what is wrong, or `None`.
pub fn refusal_problem(response: &HttpResponse, status: u16, code: &str, fields: &[&str]) -> Option<String> {
    let mut problems = Vec::new();
    if response.status != status {
        problems.push(format!("status {} instead of {status}", response.status));
    }
    if serde_json::from_slice::<Value>(&response.body).is_err() {
        problems.push("the body is not JSON".to_string());
    } else {
        match response.error_code() {
            Some(got) if got == code => {}
            got => problems.push(format!("error.code {got:?} instead of {code:?}")),
        }
        if response.error_message().is_none_or(|m| m.trim().is_empty()) {
            problems.push("no error.message".to_string());
        }
        let named = response.error_fields();
        for field in fields {
            if !named.iter().any(|n| n == field) {
                problems.push(format!("field {field:?} not named (named: {named:?})"));
            }
        }
    }
    (!problems.is_empty()).then(|| format!("{}; got {}", problems.join(", "), response.describe()))
}

/// Asserts a refusal (see [`refusal_problem`]).
pub fn assert_refused(response: &HttpResponse, status: u16, code: &str, fields: &[&str]) {
    if let Some(problem) = refusal_problem(response, status, code, fields) {
        panic!("{problem}");
    }
}

/// Collects failed cases so one run reports all of them.
#[derive(Default)]
pub struct Failures(Vec<String>);

impl Failures {
    pub fn check(&mut self, case: &str, problem: Option<String>) {
        if let Some(problem) = problem {
            self.0.push(format!("{case}: {problem}"));
        }
    }

    pub fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} case(s) failed:\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        );
    }
}

/// `8-4-4-4-12` hex digits.
pub fn is_uuid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `(attempt, deliveryId)` of every request the vendor received, in order.
pub fn attempts_seen(vendor: &MockVendor) -> Vec<(u64, String)> {
    vendor
        .bodies()
        .iter()
        .map(|b| {
            (
                b["attempt"].as_u64().unwrap_or(0),
                b["deliveryId"].as_str().unwrap_or("").into(),
            )
        })
        .collect()
}

/// POSTs `body` to the echo tenant's webhook with `headers` and JSON content type.
pub async fn post_webhook(env: &EchoEnv, query: &str, headers: &[(String, String)], body: &[u8]) -> HttpResponse {
    let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    env.bridge
        .client()
        .send(
            "POST",
            &format!("{}{query}", env.bridge.webhook_url(ECHO_TENANT, "/hook")),
            &all,
            body.to_vec(),
        )
        .await
}
