//! The `check` and `properties` commands.

use dolphin_bridge_tests::bridge::run_subcommand;
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::{BridgeConfig, Tenant, adapters};

fn config() -> BridgeConfig {
    BridgeConfig::new("http://127.0.0.1:9")
        .api_token("token")
        .tenant(
            Tenant::new("acme", EXAMPLE_OWNER, adapters::echo())
                .allow("http://127.0.0.1:9")
                .config("url", "http://127.0.0.1:9/echo"),
        )
        .tenant(Tenant::new("globex", "b7e1c0ffee0000000000000000000001", adapters::chatwoot()).channels(&["whatsapp"]))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_a_valid_config_and_lists_each_tenant() {
    let output = run_subcommand("check", &config());
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("tenant acme: owner {EXAMPLE_OWNER}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("tenant globex: owner b7e1c0ffee0000000000000000000001"),
        "{stdout}"
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
}

#[test]
fn environment_variables_are_substituted_and_an_unset_one_names_its_field() {
    let mut with_var = config().api_token("${DOLPHIN_E2E_API_TOKEN}");
    let unset = run_subcommand("check", &with_var);
    let stderr = text(&unset.stderr);
    assert!(!unset.status.success(), "an unset variable was accepted");
    assert!(
        stderr.contains("three_dolphins.api_token"),
        "the field is named: {stderr}"
    );
    assert!(
        stderr.contains("DOLPHIN_E2E_API_TOKEN"),
        "the variable is named: {stderr}"
    );

    with_var = with_var.env("DOLPHIN_E2E_API_TOKEN", "from-the-environment");
    let set = run_subcommand("check", &with_var);
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(
        !text(&set.stdout).contains("from-the-environment") && !text(&set.stderr).contains("from-the-environment"),
        "check printed a secret"
    );
}

#[test]
fn check_refuses_a_missing_adapter_naming_the_tenant() {
    let broken = config().tenant(Tenant::new("ghost", "0000", "no/such/adapter.wasm"));
    let output = run_subcommand("check", &broken);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "a missing adapter was accepted");
    assert!(
        stderr.contains("ghost") || stderr.contains("tenants[2]"),
        "the tenant is named: {stderr}"
    );
    assert!(stderr.contains("adapter.wasm"), "the file is named: {stderr}");
}

#[test]
fn properties_tells_3dolphins_where_the_bridge_is() {
    let output = run_subcommand("properties", &config().public_url("http://bridge.example:8080/"));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        lines.contains(&"app.ext.integration.api.base.url=http://bridge.example:8080"),
        "{stdout}"
    );
    assert!(
        lines.contains(&"app.ext.integration.api.sendMessage=/3dolphins/incoming"),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("app.ext.integration.api.incomingMessage=")),
        "{stdout}"
    );
}
