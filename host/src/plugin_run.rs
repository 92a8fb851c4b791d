//! `dolphin-bridge plugin run ADAPTER --fixtures DIR [--vendor URL] [--listen ADDR]`: the bridge
//! run locally on one adapter, for its author.
//!
//! The tenant comes from the fixture folder as `plugin test` reads it (`tenant.toml`: owner,
//! `config`, `secrets`, `${VENDOR_URL}`). Beside the real bridge, served in this process on a
//! SQLite store in a temporary folder, run two servers on 127.0.0.1: a fake 3Dolphins that prints
//! every Outgoing and Command event it receives and answers `{"status":"success"}` (a contact
//! look-up is answered 404, a history look-up with no messages), and, unless `--vendor` names a
//! real vendor, a fake vendor that prints every request and answers from `vendor.json`. The
//! bridge's configuration is generated with tokens of this run's own; its hot reload picks up a
//! rebuilt adapter file. What is printed first is where everything listens and a `curl` line
//! for the Incoming endpoint (the first Incoming fixture, or a minimal event) and one for the
//! tenant's webhook endpoint (the first webhook fixture). Cancelling stops everything and removes
//! the temporary folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::plugin_test::fake_http::{self, Handler, Recorded, indent, pretty, start_fake_vendor};
use crate::plugin_test::fixtures::{Fixture, Fixtures, WebhookFixture};
use crate::plugin_test::{WorkDir, default_cache_dir, load_fixtures, tenant_table};
use crate::redaction::SecretSet;
use crate::terminal_text::escape_keeping_lines;

/// The tenant's name: its webhooks arrive on `/vendors/local/…`.
const TENANT: &str = "local";
/// Where the bridge posts Outgoing and Command events (its default path).
const EVENT_PATH: &str = "/dolphin/integration/incomingMessage";
/// The 3Dolphins API under the base URL (the bridge's default), and its two look-ups.
const CONTACT_PATH: &str = "/dolphin/apiv1/graph/contacts/contactById";
const HISTORY_PATH: &str = "/dolphin/apiv1/graph/report/conversations";
/// The header the webhook token goes in (`auth = "token"`'s default).
const WEBHOOK_TOKEN_HEADER: &str = "X-Webhook-Token";

/// What `plugin run` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The adapter component; watched, and reloaded when it changes.
    pub adapter: PathBuf,
    /// The fixture folder.
    pub fixtures: PathBuf,
    /// A real vendor's base URL, instead of the fake vendor.
    pub vendor: Option<String>,
    /// Where the bridge listens; port 0 for a free one.
    pub listen: SocketAddr,
}

/// The tokens of one run, random: the Incoming endpoint's, the tenant's webhook token, and the
/// one the bridge presents to the fake 3Dolphins' look-ups.
struct Tokens {
    incoming: String,
    webhook: String,
    api: String,
}

impl Tokens {
    fn generate() -> Tokens {
        let token = || hex::encode(rand::random::<[u8; 16]>());
        Tokens {
            incoming: token(),
            webhook: token(),
            api: token(),
        }
    }
}

/// Runs the bridge on `options.adapter` with its fakes, printing to stdout, until `shutdown`;
/// the temporary folder is removed when this returns, however it returns.
pub async fn run(options: &Options, shutdown: CancellationToken) -> anyhow::Result<()> {
    let fixtures = load_fixtures(&options.fixtures)?;
    let adapter = std::fs::canonicalize(&options.adapter)
        .with_context(|| format!("cannot read adapter {}", options.adapter.display()))?;
    let work = WorkDir::create("plugin-run")?;
    let tokens = Tokens::generate();
    // Set once the configuration is loaded, before the bridge can send anything.
    let secrets: Arc<OnceLock<SecretSet>> = Arc::default();

    let three_dolphins = fake_http::serve_loopback("fake 3Dolphins", three_dolphins_handler(secrets.clone())).await?;
    let (vendor_url, fake_vendor) = match &options.vendor {
        Some(url) => (url.trim_end_matches('/').to_string(), None),
        None => {
            let printer = secrets.clone();
            let vendor = start_fake_vendor(fixtures.vendor.clone(), move |request: &Recorded| {
                print_block(&printer, &request.describe("vendor <- "));
            })
            .await?;
            (vendor.url.clone(), Some(vendor))
        }
    };
    let origin = origin_of(&vendor_url)?;

    let config_path = work.0.join("dolphin-bridge.toml");
    let text = config_text(
        &work.0,
        options.listen,
        &tokens,
        &three_dolphins.url,
        &fixtures,
        &adapter,
        &vendor_url,
        &origin,
    );
    std::fs::write(&config_path, text).with_context(|| format!("writing {}", config_path.display()))?;
    let config = Config::load(&config_path).context("the generated configuration")?;
    let mut secret_values = config
        .tenants
        .iter()
        .flat_map(|t| t.secret_values())
        .collect::<Vec<_>>();
    secret_values.push(tokens.api.clone());
    let _ = secrets.set(SecretSet::new(secret_values));

    let incoming_path = config.server.incoming_path.clone();
    let bridge = crate::Bridge::start(config).await?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", options.listen))?;
    let address = listener.local_addr()?;
    let vendor_line = match &fake_vendor {
        Some(vendor) => format!(
            "fake vendor on {} (prints every request, answers from vendor.json)",
            vendor.url
        ),
        None => format!("vendor: {vendor_url}"),
    };
    say(&format!(
        "dolphin-bridge plugin run: adapter {} as tenant `{TENANT}` (owner `{}`)\n\
         listening on http://{address}\n\
         fake 3Dolphins on {} (prints every event it receives)\n\
         {vendor_line}\n\
         watching {}: rebuild it and the bridge reloads it (logged on stderr)\n\
         temporary folder {} (removed on Ctrl-C)\n\n{}",
        adapter.display(),
        fixtures.owner,
        three_dolphins.url,
        adapter.display(),
        work.0.display(),
        curl_lines(&format!("http://{address}"), &incoming_path, &tokens, &fixtures),
    ));

    bridge.serve(listener, shutdown).await?;
    drop((three_dolphins, fake_vendor));
    say(&format!("stopped; removed {}", work.0.display()));
    Ok(())
}

/// The bridge's configuration for this run, as TOML: the generated tokens, the store and the
/// configuration file in `work`, the shared compile cache, the fake 3Dolphins, quick retries,
/// and the fixture's tenant with the token webhook scheme.
#[allow(clippy::too_many_arguments)]
fn config_text(
    work: &Path,
    listen: SocketAddr,
    tokens: &Tokens,
    three_dolphins_url: &str,
    fixtures: &Fixtures,
    adapter: &Path,
    vendor_url: &str,
    origin: &str,
) -> String {
    let mut tenant = tenant_table(&fixtures.tenant, TENANT, &fixtures.owner, adapter, vendor_url, origin);
    let mut webhook = toml::Table::new();
    webhook.insert("auth".into(), "token".into());
    webhook.insert("secret".into(), tokens.webhook.clone().into());
    tenant.insert("webhook".into(), webhook.into());
    let document = json!({
        "server": { "listen": listen.to_string(), "incoming_token": tokens.incoming },
        "store": { "path": work.join("bridge.db").display().to_string() },
        "adapters": { "cache_dir": default_cache_dir().display().to_string() },
        "three_dolphins": { "base_url": three_dolphins_url, "api_token": tokens.api },
        "delivery": { "retry_schedule_ms": [1000, 5000, 30000] },
    });
    let mut table: toml::Table = serde_json::from_value(document).expect("a TOML table");
    table.insert("tenants".into(), toml::Value::Array(vec![tenant.into()]));
    toml::to_string(&table).expect("TOML serializes")
}

/// `scheme://host[:port]` of `url`: the adapter's one allowed origin.
fn origin_of(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("--vendor {url:?} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        anyhow::bail!("--vendor {url:?} is not an http(s) URL with a host");
    }
    Ok(parsed.origin().ascii_serialization())
}

/// The fake 3Dolphins: prints each event (redacted with `secrets`) and answers as 3Dolphins
/// does.
fn three_dolphins_handler(secrets: Arc<OnceLock<SecretSet>>) -> Handler {
    Arc::new(move |request: Recorded| {
        let (printed, status, body) = three_dolphins_answer(&request);
        print_block(&secrets, &printed);
        fake_http::json_response(status, body)
    })
}

/// What the fake 3Dolphins prints for `request`, and its answer's status and body.
fn three_dolphins_answer(request: &Recorded) -> (String, u16, &'static str) {
    match (request.method.as_str(), request.path()) {
        ("POST", EVENT_PATH) => {
            let event: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let kind = match event.get("event").and_then(Value::as_str) {
                Some(command) => format!("Command {command}"),
                None => "Outgoing".to_string(),
            };
            let ticket = event.get("ticketNumber").and_then(Value::as_str).unwrap_or("?");
            let printed = format!(
                "3Dolphins <- {kind} on ticket {ticket}\n{}",
                indent(&pretty(&request.body), "      ")
            );
            (printed, 200, r#"{"status":"success"}"#)
        }
        ("GET", CONTACT_PATH) => (
            request.describe("3Dolphins <- contact look-up (answered 404) "),
            404,
            r#"{"status":"failed","message":"the fake 3Dolphins of plugin run knows no contacts"}"#,
        ),
        ("POST", HISTORY_PATH) => (
            request.describe("3Dolphins <- history look-up (answered with no messages) "),
            200,
            r#"{"status":"success","data":[]}"#,
        ),
        _ => (
            request.describe("3Dolphins <- (no such endpoint, answered 404) "),
            404,
            r#"{"status":"failed","message":"no such endpoint"}"#,
        ),
    }
}

/// Prints `text` with the tenant's secrets redacted and control characters escaped, followed
/// by an empty line.
fn print_block(secrets: &OnceLock<SecretSet>, text: &str) {
    let shown = match secrets.get() {
        Some(secrets) => secrets.redact(text),
        None => "(a request before the bridge started: not shown)\n".to_string(),
    };
    say(&escape_keeping_lines(&shown));
}

/// Writes `text` and an empty line to stdout at once (a closed stdout is ignored).
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.trim_end());
    let _ = writeln!(out);
    let _ = out.flush();
}

/// The ready-to-paste `curl` lines: an Incoming event (the first Incoming fixture, else a
/// minimal valid one for the tenant's owner), and the first webhook fixture (else an empty JSON
/// body) on the tenant's webhook endpoint, each with its token.
fn curl_lines(base: &str, incoming_path: &str, tokens: &Tokens, fixtures: &Fixtures) -> String {
    let first_incoming = fixtures.fixtures.iter().find_map(|f| match &f.fixture {
        Fixture::Incoming(event) => Some((f.name.clone(), serde_json::to_string(event).expect("JSON serializes"))),
        Fixture::Webhook(_) => None,
    });
    let (incoming_name, incoming_body) =
        first_incoming.unwrap_or_else(|| ("a minimal event".into(), minimal_incoming(&fixtures.owner)));
    let incoming = curl(
        "POST",
        &format!("{base}{incoming_path}"),
        &[
            ("Authorization".into(), format!("Bearer {}", tokens.incoming)),
            ("Content-Type".into(), "application/json".into()),
        ],
        &incoming_body,
    );
    let first_webhook = fixtures.fixtures.iter().find_map(|f| match &f.fixture {
        Fixture::Webhook(webhook) => Some((f.name.clone(), webhook)),
        Fixture::Incoming(_) => None,
    });
    let webhook = match first_webhook {
        Some((name, fixture)) => format!("# a vendor webhook ({name}):\n{}", webhook_curl(base, tokens, fixture)),
        None => format!(
            "# a vendor webhook (no webhook fixture: an empty JSON object):\n{}",
            curl(
                "POST",
                &format!("{base}/vendors/{TENANT}/"),
                &[
                    (WEBHOOK_TOKEN_HEADER.into(), tokens.webhook.clone()),
                    ("Content-Type".into(), "application/json".into()),
                ],
                "{}",
            )
        ),
    };
    format!(
        "The tokens below were generated for this run only: your own local tokens, not secrets of \
         any deployment.\n\
         Send the Incoming event first: it makes its ticket known to the webhook's events.\n\n\
         # an Incoming event, as 3Dolphins posts it ({incoming_name}):\n{incoming}\n\n{webhook}\n"
    )
}

/// The `curl` line for a webhook fixture: its method, path, query, headers and body (a string
/// body byte for byte, other JSON as JSON), with the tenant's webhook token.
fn webhook_curl(base: &str, tokens: &Tokens, fixture: &WebhookFixture) -> String {
    let path = fixture.path.trim_start_matches('/');
    let mut url = format!("{base}/vendors/{TENANT}/{path}");
    if !fixture.query.is_empty() {
        url.push('?');
        url.push_str(fixture.query.trim_start_matches('?'));
    }
    let mut headers: Vec<(String, String)> = fixture.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let body = match &fixture.body {
        Value::String(text) => text.clone(),
        other => {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                headers.push(("Content-Type".into(), "application/json".into()));
            }
            serde_json::to_string(other).expect("JSON serializes")
        }
    };
    headers.push((WEBHOOK_TOKEN_HEADER.into(), tokens.webhook.clone()));
    curl(&fixture.method.to_ascii_uppercase(), &url, &headers, &body)
}

/// A minimal valid Incoming event for `owner`: a text message on a new ticket.
fn minimal_incoming(owner: &str) -> String {
    json!({
        "ticketNumber": hex::encode(rand::random::<[u8; 16]>()),
        "channel": "whatsapp",
        "accountId": "628000000000",
        "contactId": "plugin-run-contact",
        "messageType": "text",
        "message": "Hello from plugin run",
        "mediaLink": "",
        "customerName": "Plugin Run",
        "createdDate": crate::contract::now_created_date(),
        "owner": owner,
    })
    .to_string()
}

/// One `curl` command line, every argument quoted for a POSIX shell.
fn curl(method: &str, url: &str, headers: &[(String, String)], body: &str) -> String {
    let mut line = format!("curl -sS -X {method} {}", shell_quote(url));
    for (name, value) in headers {
        line.push_str(&format!(" -H {}", shell_quote(&format!("{name}: {value}"))));
    }
    if !body.is_empty() {
        line.push_str(&format!(" --data-raw {}", shell_quote(body)));
    }
    line
}

/// `text` in single quotes, each `'` in it written `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::IncomingEvent;

    /// Whether `event` would be accepted by the bridge as an Incoming event.
    fn is_valid_incoming(event: &str) -> bool {
        match serde_json::from_str::<Value>(event) {
            Ok(Value::Object(map)) => IncomingEvent::from_object(map).is_ok(),
            _ => false,
        }
    }

    /// The quoted arguments of `line` that follow `flag`, unquoted (no `'` inside them).
    fn arguments<'a>(line: &'a str, flag: &str) -> Vec<&'a str> {
        line.split(&format!(" {flag} '"))
            .skip(1)
            .map(|rest| rest.split('\'').next().unwrap_or_default())
            .collect()
    }

    fn tokens() -> Tokens {
        Tokens {
            incoming: "incoming-token-0123456789".into(),
            webhook: "webhook-token-0123456789".into(),
            api: "api-token-0123456789".into(),
        }
    }

    fn fixture_dir(files: &[(&str, &str)]) -> WorkDir {
        let dir = WorkDir::create("plugin-run-unit").expect("a temp folder");
        for (path, text) in files {
            let path = dir.0.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("a fixture folder");
            std::fs::write(path, text).expect("a fixture");
        }
        dir
    }

    const EVENT: &str = r#"{"ticketNumber":"294c9ea88f7e649f8c37ae895ebab247","channel":"whatsapp",
        "accountId":"628128778222","contactId":"d61d77735f3fe08bcf6d6b96fa06ba9d","messageType":"text",
        "message":"first","mediaLink":"","customerName":"Farhan Akbar",
        "createdDate":"2021-04-28T15:39:37.945","owner":"82ab0fd5cfd1e80d1ff97c0cfc9aaaa"}"#;

    #[test]
    fn a_quote_survives_the_shell() {
        let line = curl(
            "POST",
            "http://127.0.0.1:1/x",
            &[("A".into(), "it's".into())],
            "{'a': 1}",
        );
        assert_eq!(
            line,
            r#"curl -sS -X POST 'http://127.0.0.1:1/x' -H 'A: it'\''s' --data-raw '{'\''a'\'': 1}'"#
        );
    }

    #[test]
    fn the_curl_lines_carry_the_first_fixtures_and_the_tokens() {
        let dir = fixture_dir(&[
            ("incoming/01-a.json", EVENT),
            ("incoming/03-b.json", &EVENT.replace("first", "second")),
            (
                "webhooks/02-reply.json",
                r#"{"path": "/hook", "query": "x=1", "headers": {"X-Sig": "abc"}, "body": "raw text"}"#,
            ),
        ]);
        let fixtures = load_fixtures(&dir.0).expect("fixtures");
        let text = curl_lines("http://127.0.0.1:9", "/3dolphins/incoming", &tokens(), &fixtures);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("curl ")).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("curl -sS -X POST 'http://127.0.0.1:9/3dolphins/incoming' "),
            "{text}"
        );
        assert!(arguments(lines[0], "-H").contains(&"Authorization: Bearer incoming-token-0123456789"));
        let body = arguments(lines[0], "--data-raw")[0];
        assert!(is_valid_incoming(body), "{body}");
        assert!(
            body.contains(r#""message":"first""#),
            "the first Incoming fixture: {body}"
        );
        assert!(
            lines[1].starts_with("curl -sS -X POST 'http://127.0.0.1:9/vendors/local/hook?x=1' "),
            "{text}"
        );
        let headers = arguments(lines[1], "-H");
        assert!(headers.contains(&"X-Sig: abc"), "{headers:?}");
        assert!(
            headers.contains(&"X-Webhook-Token: webhook-token-0123456789"),
            "{headers:?}"
        );
        assert_eq!(
            arguments(lines[1], "--data-raw"),
            ["raw text"],
            "a string body as it is"
        );
        assert!(text.contains("generated for this run only"), "{text}");
    }

    #[test]
    fn without_incoming_fixtures_the_sample_is_a_minimal_valid_event_of_the_owner() {
        let dir = fixture_dir(&[
            ("tenant.toml", "owner = \"owner-1\"\n"),
            ("webhooks/01.json", r#"{"body": {"text": "hi"}}"#),
        ]);
        let fixtures = load_fixtures(&dir.0).expect("fixtures");
        let text = curl_lines("http://127.0.0.1:9", "/in", &tokens(), &fixtures);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("curl ")).collect();
        let body = arguments(lines[0], "--data-raw")[0];
        assert!(is_valid_incoming(body), "{body}");
        assert_eq!(serde_json::from_str::<Value>(body).expect("JSON")["owner"], "owner-1");
        assert!(
            arguments(lines[1], "-H").contains(&"Content-Type: application/json"),
            "{}",
            lines[1]
        );
        assert_eq!(arguments(lines[1], "--data-raw"), [r#"{"text":"hi"}"#]);
    }

    #[test]
    fn the_generated_configuration_loads_with_the_tenant_the_fixtures_describe() {
        let dir = fixture_dir(&[
            (
                "tenant.toml",
                "owner = \"owner-1\"\n[config]\nurl = \"${VENDOR_URL}/echo\"\n[secrets]\ntoken = \"s3cret-value\"\n",
            ),
            ("webhooks/01.json", r#"{"body": {}}"#),
        ]);
        let fixtures = load_fixtures(&dir.0).expect("fixtures");
        let tokens = tokens();
        let text = config_text(
            &dir.0,
            "127.0.0.1:0".parse().expect("an address"),
            &tokens,
            "http://127.0.0.1:7",
            &fixtures,
            Path::new("/adapters/a.wasm"),
            "http://127.0.0.1:8/base",
            "http://127.0.0.1:8",
        );
        let path = dir.0.join("bridge.toml");
        std::fs::write(&path, text).expect("written");
        let config = Config::load(&path).expect("the generated configuration loads");
        assert_eq!(config.server.incoming_token.as_deref(), Some(tokens.incoming.as_str()));
        assert_eq!(config.three_dolphins.base_url, "http://127.0.0.1:7");
        let tenant = &config.tenants[0];
        assert_eq!((tenant.name.as_str(), tenant.owner.as_str()), (TENANT, "owner-1"));
        assert_eq!(
            tenant.config.get("url").map(String::as_str),
            Some("http://127.0.0.1:8/base/echo")
        );
        assert!(tenant.secret_values().contains(&"s3cret-value".to_string()));
        let webhook = tenant.webhook.as_ref().expect("a webhook scheme");
        assert_eq!(webhook.secret.as_deref(), Some(tokens.webhook.as_str()));
        assert_eq!(config.store.path, dir.0.join("bridge.db"));
    }

    #[test]
    fn the_fake_3dolphins_takes_events_and_answers_look_ups() {
        let request = |method: &str, path: &str, body: &str| Recorded {
            method: method.into(),
            path_and_query: path.into(),
            headers: Vec::new(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        };
        let (printed, status, body) = three_dolphins_answer(&request(
            "POST",
            EVENT_PATH,
            r#"{"ticketNumber":"t-1","event":"Close"}"#,
        ));
        assert_eq!((status, body), (200, r#"{"status":"success"}"#));
        assert!(
            printed.starts_with("3Dolphins <- Command Close on ticket t-1"),
            "{printed}"
        );
        let (printed, ..) =
            three_dolphins_answer(&request("POST", EVENT_PATH, r#"{"ticketNumber":"t-2","message":"hi"}"#));
        assert!(printed.starts_with("3Dolphins <- Outgoing on ticket t-2"), "{printed}");
        assert!(printed.contains(r#""message": "hi""#), "{printed}");
        let (_, status, _) = three_dolphins_answer(&request("GET", &format!("{CONTACT_PATH}?contactId=c"), ""));
        assert_eq!(status, 404);
        let (_, status, body) = three_dolphins_answer(&request("POST", &format!("{HISTORY_PATH}?startIndex=0"), "{}"));
        assert_eq!((status, body), (200, r#"{"status":"success","data":[]}"#));
        let (_, status, _) = three_dolphins_answer(&request("POST", "/elsewhere", "{}"));
        assert_eq!(status, 404);
    }

    #[test]
    fn a_vendor_url_gives_its_origin_and_a_bad_one_is_refused() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080/api/").expect("an origin"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            origin_of("https://vendor.example/v1").expect("an origin"),
            "https://vendor.example"
        );
        let error = origin_of("ftp://vendor.example").expect_err("refused");
        assert!(error.to_string().contains("--vendor"), "{error}");
        assert!(origin_of("not a url").is_err());
    }
}
