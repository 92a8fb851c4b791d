//! `cargo xtask demo`: dolphin-bridge between a mock 3Dolphins and a mock Chatwoot.
//!
//! Starts both mocks on free ports, runs `dolphin-bridge serve` with `examples/demo.toml`
//! (its `${DEMO_...}` values come from here), then plays one round trip: the spec's example
//! Incoming event, an agent's reply in Chatwoot and the conversation being resolved. Everything
//! the mocks receive is printed. Then it waits for your own events until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use dolphin_bridge_tests::events::example_event;
use dolphin_bridge_tests::mock_chatwoot::{MockChatwoot, signature_headers};
use dolphin_bridge_tests::mock_http::Recorded;
use dolphin_bridge_tests::three_dolphins::MockThreeDolphins;
use dolphin_bridge_tests::{Bridge, HttpResponse, adapters, wait_for};
use serde_json::Value;

const THREE_DOLPHINS_TOKEN: &str = "demo-3dolphins-token";
/// `[server] incoming_token` of examples/demo.toml.
const INCOMING_TOKEN: &str = "demo-incoming-token";
/// `[tenants.webhook] secret` of examples/demo.toml.
const WEBHOOK_SECRET: &str = "demo-webhook-secret";
const CHATWOOT_TOKEN: &str = "demo-chatwoot-token";
const TENANT: &str = "demo";
const WAIT: Duration = Duration::from_secs(20);

const USAGE: &str = "\
usage: demo [--bridge PATH] [--config PATH] [--listen ADDR] [--once]

  --bridge PATH   the dolphin-bridge binary (default: target/debug/dolphin-bridge)
  --config PATH   the demo configuration (default: examples/demo.toml)
  --listen ADDR   where the bridge listens (default: 127.0.0.1:8080; port 0 picks one)
  --once          stop after the scripted round trip instead of waiting for Ctrl-C";

struct Options {
    bridge: Option<PathBuf>,
    config: PathBuf,
    listen: String,
    once: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        bridge: None,
        config: adapters::workspace_root().join("examples").join("demo.toml"),
        listen: "127.0.0.1:8080".into(),
        once: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--bridge" => options.bridge = Some(value("--bridge")?.into()),
            "--config" => options.config = value("--config")?.into(),
            "--listen" => options.listen = value("--listen")?,
            "--once" => options.once = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("demo: {message}");
            }
            eprintln!("{USAGE}");
            return if message.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("demo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn section(title: &str) {
    println!("\n=== {title}");
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn show_response(who: &str, response: &HttpResponse) {
    let body = serde_json::from_slice::<Value>(&response.body)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| response.text());
    println!("{who} answered {}: {body}", response.status);
}

/// Prints the requests the mock Chatwoot receives, as they come.
fn print_chatwoot_requests(chatwoot: &MockChatwoot, seen: &mut usize) {
    let requests = chatwoot.requests();
    for request in &requests[*seen..] {
        print_request("Chatwoot", request);
    }
    *seen = requests.len();
}

fn print_request(who: &str, request: &Recorded) {
    let query = if request.query.is_empty() {
        String::new()
    } else {
        format!("?{}", request.query)
    };
    println!("[{who}] {} {}{query}", request.method, request.path);
    if !request.body.is_empty() {
        let body = serde_json::from_slice::<Value>(&request.body)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| request.text());
        let mut shown: String = body.chars().take(400).collect();
        if body.chars().count() > 400 {
            shown.push_str("...");
        }
        println!("[{who}]   {shown}");
    }
}

/// POSTs a Chatwoot webhook payload to the demo tenant, signed as Chatwoot signs it.
async fn send_signed_webhook(bridge: &Bridge, payload: &Value) -> HttpResponse {
    let body = serde_json::to_vec(payload).expect("JSON serialises");
    let signature = signature_headers(WEBHOOK_SECRET, &body);
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend(signature.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    bridge
        .client()
        .send("POST", &bridge.webhook_url(TENANT, "/chatwoot"), &headers, body)
        .await
}

async fn run(options: Options) -> Result<(), String> {
    let binary = match &options.bridge {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => return Err(format!("no bridge binary at {}", path.display())),
        None => adapters::bridge_binary(),
    };
    let adapter = adapters::adapter_file("chatwoot");
    if !adapter.is_file() {
        return Err(format!(
            "{} is missing: run `cargo xtask build-plugins`",
            adapter.display()
        ));
    }

    let any_port = "127.0.0.1:0".parse().expect("an address");
    let three_dolphins = MockThreeDolphins::start_on(any_port, THREE_DOLPHINS_TOKEN, true)
        .await
        .map_err(|e| format!("cannot start the mock 3Dolphins: {e}"))?;
    let chatwoot = MockChatwoot::start_on(any_port, CHATWOOT_TOKEN)
        .await
        .map_err(|e| format!("cannot start the mock Chatwoot: {e}"))?;
    let state = tempfile::Builder::new()
        .prefix("dolphin-bridge-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let cache = adapters::target_dir().join("demo-adapter-cache");
    let env: Vec<(String, String)> = [
        ("DEMO_LISTEN", options.listen.clone()),
        ("DEMO_STATE_DIR", state.path().display().to_string()),
        ("DEMO_CACHE_DIR", cache.display().to_string()),
        (
            "DEMO_ADAPTER_DIR",
            adapter.parent().map(|p| p.display().to_string()).unwrap_or_default(),
        ),
        ("DEMO_THREE_DOLPHINS_URL", three_dolphins.base_url()),
        ("DEMO_CHATWOOT_URL", chatwoot.base_url()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    section("Starting");
    println!("mock 3Dolphins: {}", three_dolphins.base_url());
    println!("mock Chatwoot:  {} (account 1, API inbox 1)", chatwoot.base_url());
    println!("config:         {}", options.config.display());
    let mut bridge = Bridge::start_from_file(&binary, &options.config, &env, true)
        .await
        .map_err(|e| {
            format!(
                "the bridge did not start ({e})\nis {} free? try --listen 127.0.0.1:0",
                options.listen
            )
        })?;
    bridge.set_incoming_token(Some(INCOMING_TOKEN));
    println!("bridge:         {}", bridge.url());
    let mut chatwoot_seen = 0;

    section("1. 3Dolphins sends the spec's example Incoming event");
    let event = example_event();
    println!("POST {}\n{}", bridge.incoming_url(), pretty(&event));
    let response = bridge.send_event(event.clone()).await;
    show_response("the bridge", &response);
    if response.status != 202 {
        return Err("the example event was not accepted".into());
    }
    let messages = wait_for("the message in Chatwoot", WAIT, || {
        let messages = chatwoot.all_messages();
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    print_chatwoot_requests(&chatwoot, &mut chatwoot_seen);
    let conversation = messages[0].conversation_id;
    println!(
        "-> Chatwoot now has contact {:?}, conversation {conversation} for ticket {}, message {:?}",
        chatwoot.contacts()[0].name.clone().unwrap_or_default(),
        event["ticketNumber"].as_str().unwrap_or_default(),
        messages[0].content.clone().unwrap_or_default()
    );

    section("2. An agent replies in Chatwoot (Chatwoot calls the bridge's webhook)");
    let reply = chatwoot.message_created_outgoing(conversation, "Halo Farhan, ada yang bisa kami bantu?");
    let webhook_url = bridge.webhook_url(TENANT, "/chatwoot");
    println!("POST {webhook_url}  (Chatwoot `message_created`, an outgoing message, signed with X-Chatwoot-Signature)");
    let response = send_signed_webhook(&bridge, &reply).await;
    show_response("the bridge", &response);
    wait_for("the Outgoing event at 3Dolphins", WAIT, || {
        (!three_dolphins.outgoing().is_empty()).then_some(())
    })
    .await;

    section("3. The agent resolves the conversation");
    let resolved = chatwoot.conversation_resolved(conversation);
    println!("POST {webhook_url}  (Chatwoot `conversation_status_changed`: resolved)");
    let response = send_signed_webhook(&bridge, &resolved).await;
    show_response("the bridge", &response);
    wait_for("the Close command at 3Dolphins", WAIT, || {
        (!three_dolphins.commands().is_empty()).then_some(())
    })
    .await;
    print_chatwoot_requests(&chatwoot, &mut chatwoot_seen);

    section("Round trip done");
    println!(
        "3Dolphins -> bridge -> Chatwoot: {} message(s); Chatwoot -> bridge -> 3Dolphins: {} Outgoing, {} Command",
        chatwoot
            .all_messages()
            .iter()
            .filter(|m| m.message_type == "incoming")
            .count(),
        three_dolphins.outgoing().len(),
        three_dolphins.commands().len()
    );
    if options.once {
        return Ok(());
    }

    section("Your turn");
    let mut own = example_event();
    own["ticketNumber"] = "demo0000000000000000000000000001".into();
    own["message"] = "Halo dari curl".into();
    println!("Send your own Incoming event:\n");
    println!(
        "curl -sS -X POST {} -H 'Content-Type: application/json' -H 'Authorization: Bearer {INCOMING_TOKEN}' -d '{}'\n",
        bridge.incoming_url(),
        own
    );
    println!(
        "Outbox state: curl -sS -H 'Authorization: Bearer demo-admin-token' {}/admin/outbox",
        bridge.url()
    );
    println!("What the mocks receive is printed below. Ctrl-C stops everything.");

    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tick.tick() => print_chatwoot_requests(&chatwoot, &mut chatwoot_seen),
        }
    }
    println!("\nstopping");
    drop(bridge);
    Ok(())
}
