//! `dolphin-bridge plugin test ADAPTER --fixtures DIR`: runs an adapter against recorded
//! Incoming events and vendor webhooks, with a fake vendor that records what the adapter sends
//! and answers from the fixtures, and prints what the adapter would send to the vendor and to
//! 3Dolphins. No bridge, 3Dolphins or vendor is needed; the adapter runs in the same runtime, with
//! the same host functions and limits, as in the bridge.
//!
//! # The fixture folder
//!
//! - `tenant.toml` (optional): `owner` (the tenant's 3Dolphins owner; by default the owner of the
//!   first Incoming fixture, and every Incoming fixture must have it, as the bridge routes by it), and the
//!   `config` and `secrets` tables the adapter reads through its `config` import, as in a
//!   `[[tenants]]` entry. Every `${VENDOR_URL}` in a value becomes the fake vendor's base URL
//!   (`url = "${VENDOR_URL}/hook"`). Secrets are redacted from what is printed.
//! - `vendor.json` (optional): a list of `{"method", "path", "status", "headers"?, "body"}` the fake
//!   vendor answers with, matched by method and path (the query is ignored), first match first. A
//!   string `body` is sent as it is, any other JSON as JSON. A request nothing matches is answered
//!   404 `{"error":"no fixture response"}`.
//! - `incoming/*.json`: Incoming events, as 3Dolphins posts them to the bridge.
//! - `webhooks/*.json`: `{"method"?, "path"?, "query"?, "headers"?, "body"}` (defaults `POST`, `/`,
//!   no query); `path` is what follows `/vendors/{tenant}` in the bridge's URL; a string `body` is
//!   sent as it is, any other JSON as JSON (with `content-type: application/json` unless given).
//!
//! The fixtures of both folders run one after the other in file-name order (prefixes such as
//! `01-` interleave them), with one store for the whole run (a SQLite file in a temporary folder),
//! as a tenant's: what one fixture stores in KV, the next ones read. As in the bridge, an Incoming
//! event makes its ticket known: a webhook's event without a channel gets the ticket's, and the
//! adapter may look up the ticket's history and contact.
//!
//! The fake vendor is an HTTP server on 127.0.0.1; the adapter may call only its origin. The
//! 3Dolphins look-ups (`three-dolphins.contact` / `history`) go to the same server, on the
//! bridge's default paths under `/dolphin/apiv1`, so `vendor.json` can answer them too.
//!
//! # Passing
//!
//! An Incoming fixture passes when the adapter returns `ok`; a webhook fixture when the adapter
//! returns an outcome whose events the bridge would accept and whose answer's status is below 400.
//! A fixture named `*.fails.json` is expected to fail, and passes when it does. A fixture with an
//! expectation file beside it (`NAME.expect.json`, see `expectation`) must also produce what it
//! lists; `--update` writes those files from what each fixture produced. The command exits
//! 0 when every fixture passed, 1 otherwise, and 2 (with one line saying why) when the fixture
//! folder or the adapter cannot be loaded.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::config::{AdaptersConfig, InstanceReuseConfig, TenantConfig, ThreeDolphinsConfig};
use crate::contract::{IncomingEvent, ThreeDolphinsEvent};
use crate::redaction::SecretSet;
use crate::runtime::bindings::dolphin::bridge::types as wt;
use crate::runtime::{
    Breakers, CallContext, CallError, HostServices, InstanceReuse, LoadedAdapter, Runtime, TenantHost, content_hash,
};
use crate::store::{Direction, NewDelivery, Store, TicketInfo};
use crate::terminal_text::{escape, escape_keeping_lines};
use expectation::{Expectation, Observed, RequestLine};
use fake_http::{Recorded, indent, pretty, start_fake_vendor};
use fixtures::{Fixture, Fixtures};
pub(crate) use fixtures::{TenantFixture, load_fixtures};

mod expectation;
pub(crate) mod fake_http;
pub(crate) mod fixtures;

/// The tenant name adapters see in their call context.
const TENANT: &str = "plugin-test";
/// The owner when `tenant.toml` names none.
const DEFAULT_OWNER: &str = "plugin-test-owner";
/// The 3Dolphins API token the look-ups present to the fake (redacted like a secret).
const API_TOKEN: &str = "plugin-test-3dolphins-api-token";
/// What `${VENDOR_URL}` stands for in `tenant.toml`.
const VENDOR_URL_VARIABLE: &str = "${VENDOR_URL}";

/// What `plugin test` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The adapter component.
    pub adapter: PathBuf,
    /// The fixture folder.
    pub fixtures: PathBuf,
    /// Where compiled adapters are cached; a folder of the user's under the system temp folder
    /// when unset.
    pub cache_dir: Option<PathBuf>,
    /// Write each fixture's expectation file from what it produced, instead of comparing.
    pub update: bool,
}

/// Why a run could not start: a bad fixture folder or adapter.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);

fn setup_error(message: impl Into<String>) -> anyhow::Error {
    SetupError(message.into()).into()
}

/// Runs the fixtures in `options.fixtures` against `options.adapter`, printing to `out`.
/// `Ok(true)` when every fixture passed; a [`SetupError`] when the folder or the adapter cannot
/// be loaded.
pub async fn run(options: &Options, out: &mut impl Write) -> anyhow::Result<bool> {
    let fixtures = load_fixtures(&options.fixtures)?;
    let adapter_bytes = std::fs::read(&options.adapter)
        .map_err(|e| setup_error(format!("cannot read adapter {}: {e}", options.adapter.display())))?;
    let defaults = AdaptersConfig::default();
    let cache_dir = match &options.cache_dir {
        Some(dir) => dir.clone(),
        None => default_cache_dir(),
    };
    // A few instance slots: one call runs at a time.
    let runtime = Runtime::new(cache_dir, defaults.max_wasm_stack_kib << 10, 1, 4)?;
    let adapter = runtime
        .load_bytes(&options.adapter, &adapter_bytes, content_hash(&adapter_bytes))
        .map_err(|e| setup_error(e.to_string()))?;
    run_fixtures(&runtime, Arc::new(adapter), fixtures, options.update, out).await
}

/// As [`run`], for an adapter `runtime` has compiled already (a deploy's): runs the fixtures
/// in the folder `fixtures` against it, printing to `out`.
pub async fn run_compiled(
    runtime: &Runtime,
    adapter: Arc<LoadedAdapter>,
    fixtures: &Path,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let fixtures = load_fixtures(fixtures)?;
    run_fixtures(runtime, adapter, fixtures, false, out).await
}

/// Runs `fixtures` against `adapter` with a fake vendor, stopped when this returns; with
/// `update`, writes each fixture's expectation file from what it produced.
async fn run_fixtures(
    runtime: &Runtime,
    adapter: Arc<LoadedAdapter>,
    fixtures: Fixtures,
    update: bool,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let recorder = recorded.clone();
    // Stopped when the run ends, however it ends.
    let vendor = start_fake_vendor(fixtures.vendor.clone(), move |request: &Recorded| {
        recorder.lock().expect("recorded lock").push(request.clone());
    })
    .await?;
    let vendor_url = vendor.url.clone();

    let work_dir = WorkDir::create("plugin-test-run")?;
    let store: Arc<dyn crate::store::Store> = Arc::new(crate::store::SqliteStore::open(
        &work_dir.0.join("store.db"),
        crate::store::CommitMode::Group,
    )?);
    // Parsed from TOML so that every path and timeout is the bridge's default.
    let three_dolphins: ThreeDolphinsConfig =
        toml::from_str(&format!("base_url = \"{vendor_url}\"\napi_token = \"{API_TOKEN}\""))
            .context("the 3Dolphins settings")?;
    let lookup_prefix = url::Url::parse(&three_dolphins.api_base())?.path().to_string();
    let services = Arc::new(HostServices {
        store: store.clone(),
        egress: crate::egress::EgressClients::new()?,
        three_dolphins: crate::three_dolphins::ThreeDolphinsClient::new(three_dolphins.clone())?,
    });
    let defaults = AdaptersConfig::default();

    let tenant = tenant_config(&fixtures.tenant, &fixtures.owner, &adapter.path, &vendor_url)?;
    let breakers = Breakers::new(
        defaults.breaker_failures,
        Duration::from_millis(defaults.breaker_cooldown_ms),
    );
    let mut host = TenantHost::from_config(&tenant, breakers, Default::default(), services)?;
    // The look-up token is printed with the requests too: redacted like the tenant's secrets.
    let mut secrets = tenant.secret_values();
    secrets.push(API_TOKEN.to_string());
    host.secrets = SecretSet::new(secrets);
    let host = Arc::new(host);
    let instances = InstanceReuse::new(&InstanceReuseConfig::default());

    writeln!(
        out,
        "adapter {} (sha256 {}), fake vendor at {vendor_url}",
        adapter.path.display(),
        &adapter.content_hash[..12]
    )?;
    let (mut passed, total) = (0, fixtures.fixtures.len());
    for named in fixtures.fixtures {
        writeln!(out, "\n== {}", escape(&named.name))?;
        recorded.lock().expect("recorded lock").clear();
        let ctx = CallContext {
            tenant: TENANT.into(),
            delivery_id: uuid::Uuid::now_v7().to_string(),
            attempt: 1,
            lease: None,
        };
        let mut report = String::new();
        let mut observed = Observed::default();
        let succeeded = match named.fixture {
            Fixture::Incoming(event) => {
                remember_ticket(&store, &event).await?;
                let result = runtime
                    .call_incoming(&adapter, host.clone(), &instances, ctx, &event)
                    .await;
                match result {
                    Ok(()) => {
                        report.push_str("   result: ok\n");
                        observed.result = "ok".into();
                        true
                    }
                    Err(e) => failed(&e, &mut report, &mut observed),
                }
            }
            Fixture::Webhook(webhook) => {
                let mut headers: Vec<(String, String)> = webhook
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect();
                let body = match &webhook.body {
                    Value::String(text) => text.clone().into_bytes(),
                    other => {
                        if !headers.iter().any(|(k, _)| k == "content-type") {
                            headers.push(("content-type".into(), "application/json".into()));
                        }
                        serde_json::to_vec(other).expect("JSON serializes")
                    }
                };
                let request = wt::WebhookRequest {
                    method: webhook.method.to_ascii_uppercase(),
                    path: webhook.path.clone(),
                    query: webhook.query.clone(),
                    headers,
                    body,
                };
                match runtime
                    .call_webhook(&adapter, host.clone(), &instances, ctx, request)
                    .await
                {
                    Ok(outcome) => webhook_report(&host, &three_dolphins, outcome, &mut report, &mut observed).await?,
                    Err(e) => failed(&e, &mut report, &mut observed),
                }
            }
        };
        let requests = recorded.lock().expect("recorded lock").clone();
        let mut sent = String::new();
        for request in &requests {
            let to = if request.path_and_query.starts_with(&lookup_prefix) {
                "3Dolphins look-up"
            } else {
                "vendor"
            };
            sent.push_str(&request.describe(&format!("   -> {to} ")));
            observed.requests.push(RequestLine {
                method: request.method.clone(),
                path: request.path_and_query.clone(),
            });
        }
        let mut expected = String::new();
        let differences = match (&named.expect, update) {
            (_, true) => {
                write_expectation(&named.expect_path, &observed.as_expectation())?;
                expected.push_str(&format!("   expect: written to {}\n", file_name(&named.expect_path)));
                Vec::new()
            }
            (Some(expect), false) => expect.differences(&observed),
            (None, false) => Vec::new(),
        };
        for difference in &differences {
            expected.push_str(&format!("   expect: {difference}\n"));
        }
        let pass = succeeded != named.expect_failure && differences.is_empty();
        let verdict = match (pass, named.expect_failure, differences.is_empty()) {
            (true, false, _) => "PASS",
            (true, true, _) => "PASS (failed as expected)",
            (false, _, false) => "FAIL (not as expected)",
            (false, false, true) => "FAIL",
            (false, true, true) => "FAIL (expected to fail, but succeeded)",
        };
        // Everything printed goes through the tenant's redaction, as the bridge's logs do, and
        // what the adapter wrote (bodies, headers) has its control characters escaped.
        let printed = host.secrets.redact(&format!("{report}{sent}{expected}"));
        write!(out, "{}", escape_keeping_lines(&printed))?;
        writeln!(out, "   {verdict}")?;
        passed += usize::from(pass);
    }
    writeln!(out, "\n{passed} of {total} fixture(s) passed")?;
    Ok(passed == total)
}

/// Reports a failed call, and notes its kind as the fixture's result.
fn failed(error: &CallError, report: &mut String, observed: &mut Observed) -> bool {
    report.push_str(&format!(
        "   result: {}: {}{}\n",
        error.kind(),
        escape(&error.to_string()),
        retry_hint(error)
    ));
    observed.result = error.kind().to_string();
    false
}

/// Writes `expectation` as pretty JSON to `path` (replacing what is there).
fn write_expectation(path: &Path, expectation: &Expectation) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(expectation).expect("JSON serializes");
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The file name of `path`, for a line of the report.
fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `; retry after N ms` when the adapter said when the vendor takes requests again.
fn retry_hint(error: &CallError) -> String {
    match error {
        CallError::RetryLater { after: Some(after), .. } => format!("; retry after {} ms", after.as_millis()),
        _ => String::new(),
    }
}

/// Stores an Incoming event's delivery as the bridge does when it accepts one, which makes its
/// ticket known to the tenant's owner (the delivery itself stays pending: nothing sends it).
async fn remember_ticket(store: &Arc<dyn Store>, event: &IncomingEvent) -> anyhow::Result<()> {
    let delivery = NewDelivery {
        delivery_id: uuid::Uuid::now_v7().to_string(),
        tenant: TENANT.into(),
        direction: Direction::ToVendor,
        ticket: event.ticket_number.clone(),
        payload: serde_json::to_string(event)?,
        idempotency_key: None,
        event_key: None,
        owner: event.owner.clone(),
        ticket_info: Some(TicketInfo {
            channel: event.channel.clone(),
            customer_name: event.customer_name.clone(),
            contact_id: event.contact_id.clone(),
        }),
        trace_context: None,
    };
    store.enqueue(vec![delivery], Duration::ZERO).await?;
    Ok(())
}

/// Reports a webhook's outcome: the events as the bridge would post them to 3Dolphins, and the
/// answer; whether the bridge would take it.
async fn webhook_report(
    host: &TenantHost,
    three_dolphins: &ThreeDolphinsConfig,
    outcome: wt::WebhookOutcome,
    report: &mut String,
    observed: &mut Observed,
) -> anyhow::Result<bool> {
    let mut ok = true;
    let mut events = String::new();
    if outcome.events.len() > host.limits.webhook_events {
        ok = false;
        observed.result = "adapter_limit_exceeded".into();
        report.push_str(&format!(
            "   result: adapter_limit_exceeded: {} events, more than the limit webhook_events ({})\n",
            outcome.events.len(),
            host.limits.webhook_events
        ));
    } else {
        for keyed in outcome.events {
            let ticket = match &keyed.event {
                wt::BridgeEvent::Outgoing(e) => &e.ticket_number,
                wt::BridgeEvent::Command(e) => &e.ticket_number,
            };
            let known = host.services.store.ticket(&host.owner, ticket).await?;
            let key = match &keyed.dedupe_key {
                Some(key) => format!(" (dedupe key {key:?})"),
                None => String::new(),
            };
            match crate::runtime::complete_adapter_event(&host.owner, known.as_ref(), keyed.event) {
                Ok(event) => {
                    let path = match &event {
                        ThreeDolphinsEvent::Outgoing(_) => &three_dolphins.outgoing_path,
                        ThreeDolphinsEvent::Command(_) => &three_dolphins.command_path,
                    };
                    let value = event.body();
                    let body = serde_json::to_string_pretty(&value).expect("JSON serializes");
                    observed.events.push(value);
                    events.push_str(&format!(
                        "   -> 3Dolphins POST {path}{key}\n{}",
                        indent(&body, "      ")
                    ));
                }
                Err(message) => {
                    ok = false;
                    observed.result = "adapter_invalid_event".into();
                    report.push_str(&format!("   result: adapter_invalid_event: {}\n", escape(&message)));
                }
            }
        }
    }
    let status = outcome.response.status;
    observed.status = Some(status);
    if ok {
        if status >= 400 {
            ok = false;
            observed.result = "answered_error".into();
            report.push_str(&format!("   result: answered {status}\n"));
        } else {
            observed.result = "ok".into();
            report.push_str("   result: ok\n");
        }
    }
    report.push_str(&events);
    report.push_str(&format!("   <- answer {status}\n"));
    for (name, value) in &outcome.response.headers {
        report.push_str(&format!("      {name}: {value}\n"));
    }
    if !outcome.response.body.is_empty() {
        report.push_str(&indent(&pretty(&outcome.response.body), "      "));
    }
    Ok(ok)
}

/// The tenant as the bridge would configure it: the fixture's owner, config and secrets (with
/// `${VENDOR_URL}` replaced), the fake vendor as its one allowed origin, defaults otherwise.
fn tenant_config(
    fixture: &TenantFixture,
    owner: &str,
    adapter: &Path,
    vendor_url: &str,
) -> anyhow::Result<TenantConfig> {
    let table = tenant_table(fixture, TENANT, owner, adapter, vendor_url, vendor_url);
    // Deserialized rather than built, so that limits and timeouts are the bridge's defaults.
    Ok(toml::Value::Table(table).try_into()?)
}

/// A `[[tenants]]` entry named `name` for the fixture's tenant: its owner, its `config` and
/// `secrets` with every `${VENDOR_URL}` replaced by `vendor_url`, `origin` as its one allowed
/// origin, private networks allowed (fake vendors listen on loopback).
pub(crate) fn tenant_table(
    fixture: &TenantFixture,
    name: &str,
    owner: &str,
    adapter: &Path,
    vendor_url: &str,
    origin: &str,
) -> toml::Table {
    let substitute = |values: &BTreeMap<String, String>| -> toml::Table {
        values
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    toml::Value::String(v.replace(VENDOR_URL_VARIABLE, vendor_url)),
                )
            })
            .collect()
    };
    let mut table = toml::Table::new();
    table.insert("name".into(), name.into());
    table.insert("owner".into(), owner.into());
    table.insert("adapter".into(), adapter.display().to_string().into());
    table.insert("allowed_hosts".into(), toml::Value::Array(vec![origin.into()]));
    table.insert("allow_private_networks".into(), true.into());
    table.insert("config".into(), substitute(&fixture.config).into());
    table.insert("secrets".into(), substitute(&fixture.secrets).into());
    table
}

/// Where compiled adapters are cached unless told otherwise: a folder of the user's in the
/// system temp folder, shared by `plugin test` and `plugin run`.
pub(crate) fn default_cache_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    std::env::temp_dir().join(format!("dolphin-bridge-plugin-test-{}", unsafe { libc::geteuid() }))
}

/// A private folder (mode 0700) in the system temp folder for one run's store and files,
/// removed when dropped.
pub(crate) struct WorkDir(pub PathBuf);

impl WorkDir {
    /// Creates `dolphin-bridge-{purpose}-{unique id}` in the system temp folder.
    pub fn create(purpose: &str) -> anyhow::Result<WorkDir> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("dolphin-bridge-{purpose}-{}", uuid::Uuid::now_v7()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
