//! The failure limit of credentials (`[server] auth_failure_*`): a source that keeps sending a
//! wrong deploy token is answered 429 with `Retry-After`, before its token is compared (the
//! right one too), while its other credentials and other tenants' tokens work; once the window
//! has passed the right token is answered as usual.

use std::time::Duration;

use dolphin_bridge_tests::Event;
use dolphin_bridge_tests::bridge::ADMIN_TOKEN;

use crate::common::assert_accepted;
use crate::deployments::{ACME_DEPLOY_TOKEN, BETA_DEPLOY_TOKEN, DeployEnv};

/// `[server] auth_failure_window_ms` of this test: short, so the lockout ends within it.
const WINDOW_MS: i64 = 3_000;

#[tokio::test(flavor = "multi_thread")]
async fn wrong_deploy_tokens_from_one_source_are_throttled_until_the_window_ends() {
    let env = DeployEnv::start_with(|table, _| {
        let server = table["server"].as_table_mut().expect("a server table");
        server.insert("auth_failure_window_ms".into(), toml::Value::Integer(WINDOW_MS));
    })
    .await;
    let guess = "acme-partner-deploy-token-9999";
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..30 {
        let answer = env.call("GET", "acme", "versions", Some(guess), Vec::new()).await;
        statuses.push(answer.status);
        last = Some(answer);
    }
    let limited = statuses
        .iter()
        .position(|s| *s == 429)
        .unwrap_or_else(|| panic!("never 429: {statuses:?}"));
    assert_eq!(limited, 10, "the default limit is 10 failures: {statuses:?}");
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    let last = last.expect("an answer");
    let retry_after: u64 = last
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {}", last.describe()));
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    let body = last.json();
    assert_eq!(body["error"]["code"], "too_many_failures", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("auth_failure_limit"), "the limit is named: {message}");
    assert!(!message.contains(guess), "the guess is not echoed: {message}");

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
