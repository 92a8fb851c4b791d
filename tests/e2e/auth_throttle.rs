//! The failure limit of credentials (`[server] auth_failure_*`): a source that keeps sending a
//! wrong deploy token is answered 429 with `Retry-After`, before its token is compared (the
//! right one too), while its other credentials and other tenants' tokens work; once the window
//! has passed the right token is answered as usual.

use std::time::Duration;

use dolphin_bridge_tests::Event;
use dolphin_bridge_tests::bridge::ADMIN_TOKEN;
use dolphin_bridge_tests::client::HttpResponse;
use dolphin_bridge_tests::events::EXAMPLE_OWNER;

use crate::common::assert_accepted;
use crate::deployments::{ACME_DEPLOY_TOKEN, BETA_DEPLOY_TOKEN, BETA_OWNER, DeployEnv};

/// `[server] auth_failure_window_ms` of this test: short, so the lockout ends within it.
const WINDOW_MS: i64 = 3_000;

/// Sends `attempt`, a wrong credential `guess`, 20 times: the first 10 (the default limit) are
/// answered 401 and the rest 429 `too_many_failures`, naming the limit and not the guess, with a
/// `Retry-After` within the window. Returns the last one's `Retry-After` (seconds) and message.
async fn assert_throttled_after_the_limit<F, Fut>(guess: &str, mut attempt: F) -> (u64, String)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = HttpResponse>,
{
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..20 {
        let answer = attempt().await;
        statuses.push(answer.status);
        last = Some(answer);
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        statuses[10..].iter().all(|s| *s == 429),
        "the 11th failure and later are throttled: {statuses:?}"
    );
    let last = last.expect("an answer");
    let retry_after: u64 = last
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {}", last.describe()));
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    let body = last.json();
    assert_eq!(body["error"]["code"], "too_many_failures", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("auth_failure_limit"), "the limit is named: {message}");
    assert!(!message.contains(guess), "the guess is not echoed: {message}");
    (retry_after, message)
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_deploy_tokens_from_one_source_are_throttled_until_the_window_ends() {
    let env = DeployEnv::start_with(|table, _| {
        let server = table["server"].as_table_mut().expect("a server table");
        server.insert("auth_failure_window_ms".into(), toml::Value::Integer(WINDOW_MS));
    })
    .await;
    let guess = "acme-partner-deploy-token-9999";
    let (retry_after, _) =
        assert_throttled_after_the_limit(guess, || env.call("GET", "acme", "versions", Some(guess), Vec::new())).await;

    // The right token is refused too while the lockout lasts: nothing is compared.
    let right = env
        .call("GET", "acme", "versions", Some(ACME_DEPLOY_TOKEN), Vec::new())
        .await;
    assert_eq!(right.status, 429, "{}", right.describe());
    // Other credentials of the same source are counted apart.
    let beta = env
        .call("GET", "beta", "versions", Some(BETA_DEPLOY_TOKEN), Vec::new())
        .await;
    assert_eq!(beta.status, 200, "{}", beta.describe());
    assert_eq!(env.bridge.admin_get("outbox").await.status, 200);
    assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let other = env.call("GET", "acme", "versions", Some(ADMIN_TOKEN), Vec::new()).await;
    assert_eq!(
        other.status,
        429,
        "the admin token on acme's deployments counts as acme's: {}",
        other.describe()
    );

    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(200)).await;
    let after = env
        .call("GET", "acme", "versions", Some(ACME_DEPLOY_TOKEN), Vec::new())
        .await;
    assert_eq!(
        after.status,
        200,
        "answered normally after the window: {}",
        after.describe()
    );
}

/// acme's and beta's `[tenants.webhook]` tokens in [`wrong_webhook_tokens_are_throttled_per_tenant`].
const ACME_WEBHOOK_TOKEN: &str = "acme-vendor-webhook-token-1234";
const BETA_WEBHOOK_TOKEN: &str = "beta-vendor-webhook-token-5678";

/// The ticket each tenant's webhooks reply on, opened by an Incoming event.
const TICKET: &str = "T-THROTTLE";

/// A webhook to `tenant` with `token` in the default token header: a reply on [`TICKET`].
async fn webhook(env: &DeployEnv, tenant: &str, token: &str) -> HttpResponse {
    let body = serde_json::json!({ "ticketNumber": TICKET, "message": "hello" }).to_string();
    env.bridge
        .client()
        .send(
            "POST",
            &env.bridge.webhook_url(tenant, "/hook"),
            &[("content-type", "application/json"), ("x-webhook-token", token)],
            body,
        )
        .await
}

/// Wrong webhook tokens count per source and tenant: after the limit, the source's webhooks to
/// that tenant are answered 429 (the right token too) until the window ends, while its webhooks
/// to another tenant are verified as usual.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_webhook_tokens_are_throttled_per_tenant() {
    let env = DeployEnv::start_with(|table, _| {
        let server = table["server"].as_table_mut().expect("a server table");
        server.insert("auth_failure_window_ms".into(), toml::Value::Integer(WINDOW_MS));
        let tenants = table["tenants"].as_array_mut().expect("tenants");
        for (tenant, token) in tenants.iter_mut().zip([ACME_WEBHOOK_TOKEN, BETA_WEBHOOK_TOKEN]) {
            let mut webhook = toml::Table::new();
            webhook.insert("auth".into(), "token".into());
            webhook.insert("secret".into(), token.into());
            let tenant = tenant.as_table_mut().expect("a tenant table");
            tenant.insert("webhook".into(), toml::Value::Table(webhook));
        }
    })
    .await;
    for owner in [EXAMPLE_OWNER, BETA_OWNER] {
        let id = assert_accepted(&env.bridge.send_event(Event::fresh().owner(owner).ticket(TICKET)).await);
        env.bridge.wait_for_delivery(&id, "delivered").await;
    }
    let first = webhook(&env, "acme", ACME_WEBHOOK_TOKEN).await;
    assert_eq!(first.status, 200, "the right token passes: {}", first.describe());

    let guess = "acme-vendor-webhook-token-9999";
    let (retry_after, message) = assert_throttled_after_the_limit(guess, || webhook(&env, "acme", guess)).await;
    assert!(message.contains("`acme`"), "the tenant is named: {message}");

    // The right token is refused while the lockout lasts.
    let right = webhook(&env, "acme", ACME_WEBHOOK_TOKEN).await;
    assert_eq!(right.status, 429, "{}", right.describe());
    // Another tenant's webhooks from the same source are verified as usual: the right token
    // passes, a wrong one is a 401 of its own count.
    let beta = webhook(&env, "beta", BETA_WEBHOOK_TOKEN).await;
    assert_eq!(beta.status, 200, "{}", beta.describe());
    let beta_wrong = webhook(&env, "beta", guess).await;
    assert_eq!(beta_wrong.status, 401, "{}", beta_wrong.describe());

    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(200)).await;
    let after = webhook(&env, "acme", ACME_WEBHOOK_TOKEN).await;
    assert_eq!(
        after.status,
        200,
        "answered normally after the window: {}",
        after.describe()
    );
}
