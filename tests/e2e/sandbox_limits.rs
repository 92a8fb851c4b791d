//! Holes in the sandbox and its configuration, closed: secrets too short to be real (an empty
//! `[admin] token` used to open the admin API), an unbounded webhook tolerance, and IPv6 ranges
//! that embed or tunnel to a private IPv4 address.

use dolphin_bridge_tests::bridge::{WebhookAuth, run_subcommand};
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, Tenant, adapters};

use crate::common::{API_TOKEN, assert_accepted};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config `check` accepts but for what `customize` changes.
fn config(customize: impl FnOnce(Tenant) -> Tenant) -> BridgeConfig {
    BridgeConfig::new("http://127.0.0.1:9")
        .api_token(API_TOKEN)
        .tenant(customize(Tenant::new("acme", EXAMPLE_OWNER, adapters::echo())))
}

/// `check` refuses `config`, naming `field` and never showing `secret`.
fn assert_refused(config: &BridgeConfig, field: &str, secret: &str) {
    let output = run_subcommand("check", config);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "accepted ({field}): {stdout}\n{stderr}");
    assert!(stderr.contains(field), "the field is not named: {stderr}");
    if !secret.is_empty() {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "the secret was shown: {stdout}\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_admin_token_does_not_open_the_admin_api() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let mut config = BridgeConfig::new(&three_dolphins.base_url()).api_token(API_TOKEN);
    config.admin_token = Some(String::new());
    match Bridge::try_start(config.clone()).await {
        Ok(bridge) => {
            let open = bridge
                .client()
                .get(&format!("{}/admin/dead-letters", bridge.url()))
                .await;
            panic!(
                "a bridge with an empty admin token started; GET /admin/dead-letters without credentials: {}",
                open.status
            );
        }
        Err(err) => assert!(err.contains("admin.token"), "{err}"),
    }
    assert_refused(&config, "admin.token", "");
}

#[test]
fn short_secrets_are_refused_without_being_shown() {
    let mut short_admin = config(|t| t);
    short_admin.admin_token = Some("adm-tok-15bytes".into());
    assert_refused(&short_admin, "admin.token", "adm-tok-15bytes");

    let short_incoming = config(|t| t).incoming_token(Some("in-tok-15-bytes"));
    assert_refused(&short_incoming, "server.incoming_token", "in-tok-15-bytes");

    for auth in ["token", "chatwoot", "standard-webhooks"] {
        let short = config(|t| t.webhook(WebhookAuth::with_secret(auth, "7-bytes")));
        assert_refused(&short, "tenants[0].webhook.secret", "7-bytes");
        let long_enough = config(|t| t.webhook(WebhookAuth::with_secret(auth, "8--bytes")));
        let output = run_subcommand("check", &long_enough);
        assert!(output.status.success(), "{auth}: {}", text(&output.stderr));
    }
    for secret in ["whsec_", "whsec_!!not-base64!!", "whsec_c2hvcnQh"] {
        let bad = config(|t| t.webhook(WebhookAuth::with_secret("standard-webhooks", secret)));
        assert_refused(&bad, "tenants[0].webhook.secret", secret);
    }
}

#[test]
fn a_tolerance_past_one_day_is_refused() {
    let with_tolerance = |tolerance_s: u64| {
        config(|t| {
            t.webhook(WebhookAuth {
                tolerance_s: Some(tolerance_s),
                ..WebhookAuth::with_secret("chatwoot", "chatwoot-webhook-secret")
            })
        })
    };
    // Two days: within the default dedupe window (3 days), so only the cap refuses it.
    assert_refused(
        &with_tolerance(2 * 86_400),
        "tenants[0].webhook.tolerance_s",
        "chatwoot-webhook-secret",
    );
    let output = run_subcommand("check", &with_tolerance(86_400));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// Every range, as an allowed origin whose address embeds or tunnels to loopback (or is
/// site-local): the adapter's request is denied before any connection is tried.
#[tokio::test(flavor = "multi_thread")]
async fn adapters_cannot_reach_ipv6_ranges_that_embed_ipv4() {
    let origins = [
        "http://[::7f00:1]:9",          // IPv4-compatible ::127.0.0.1
        "http://[2002:7f00:1::1]:9",    // 6to4 of 127.0.0.1
        "http://[2001::1]:9",           // Teredo
        "http://[64:ff9b:1::7f00:1]:9", // local-use NAT64 of 127.0.0.1
        "http://[64:ff9b::7f00:1]:9",   // NAT64 of 127.0.0.1
        "http://[fec0::1]:9",           // site-local
    ];
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let mut config = BridgeConfig::new(&three_dolphins.base_url()).api_token(API_TOKEN);
    let owner = |i: usize| format!("0bad{i:028}");
    for (i, origin) in origins.iter().enumerate() {
        config = config.tenant(
            Tenant::new(&format!("villain{i}"), &owner(i), adapters::hostile())
                .allow_private_networks(false)
                .allow(origin)
                .config("mode", "ssrf")
                .config("loopback_url", &format!("{origin}/")),
        );
    }
    let bridge = Bridge::start(config).await;
    for (i, origin) in origins.iter().enumerate() {
        let id = assert_accepted(&bridge.send_event(Event::fresh().owner(&owner(i))).await);
        let dead = bridge.wait_for_delivery(&id, "dead").await;
        let error = dead["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("loopback=denied("), "{origin}: {error}");
    }
}
