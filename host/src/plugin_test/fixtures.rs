//! The fixture folder of `plugin test`: `tenant.toml`, `vendor.json`, `incoming/*.json` and
//! `webhooks/*.json` (with their `*.expect.json` expectations), read and checked whole before
//! anything runs. The format is described in the parent module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::expectation::Expectation;
use super::{DEFAULT_OWNER, setup_error};
use crate::contract::IncomingEvent;

/// `tenant.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantFixture {
    pub owner: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// One answer of the fake vendor (`vendor.json`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VendorResponse {
    pub method: String,
    pub path: String,
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Value,
}

/// One webhook fixture.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookFixture {
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Value,
}

fn default_method() -> String {
    "POST".into()
}

fn default_path() -> String {
    "/".into()
}

/// One fixture file, parsed.
pub(crate) enum Fixture {
    Incoming(Box<IncomingEvent>),
    Webhook(WebhookFixture),
}

/// A fixture and where it came from.
pub(crate) struct NamedFixture {
    /// `incoming/NAME.json` or `webhooks/NAME.json`.
    pub name: String,
    pub expect_failure: bool,
    pub fixture: Fixture,
    /// `NAME.expect.json` beside it: where its expectation is, or goes with `--update`.
    pub expect_path: PathBuf,
    /// What it must produce, when its expectation file exists.
    pub expect: Option<Expectation>,
}

/// The fixture folder, parsed.
pub(crate) struct Fixtures {
    pub tenant: TenantFixture,
    /// The tenant's owner.
    pub owner: String,
    pub vendor: Vec<VendorResponse>,
    pub fixtures: Vec<NamedFixture>,
}

/// Reads and checks the whole fixture folder before anything runs.
pub(crate) fn load_fixtures(dir: &Path) -> anyhow::Result<Fixtures> {
    if !dir.is_dir() {
        return Err(setup_error(format!("fixture folder {} does not exist", dir.display())));
    }
    let tenant_path = dir.join("tenant.toml");
    let tenant = match std::fs::read_to_string(&tenant_path) {
        Ok(text) => toml::from_str(&text).map_err(|e| setup_error(toml_error(&tenant_path, &text, &e)))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TenantFixture::default(),
        Err(e) => return Err(setup_error(format!("cannot read {}: {e}", tenant_path.display()))),
    };
    let vendor_path = dir.join("vendor.json");
    let vendor = if vendor_path.exists() {
        serde_json::from_value(read_json(&vendor_path)?)
            .map_err(|e| setup_error(format!("{}: {e}", vendor_path.display())))?
    } else {
        Vec::new()
    };
    let mut fixtures = Vec::new();
    for folder in ["incoming", "webhooks"] {
        let folder_path = dir.join(folder);
        if !folder_path.is_dir() {
            continue;
        }
        let entries = std::fs::read_dir(&folder_path)
            .map_err(|e| setup_error(format!("cannot read {}: {e}", folder_path.display())))?;
        for entry in entries {
            let path = entry?.path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if !file_name.ends_with(".json") || file_name.ends_with(EXPECT_SUFFIX) {
                continue;
            }
            let value = read_json(&path)?;
            let expect_path = path.with_file_name(format!("{}{EXPECT_SUFFIX}", file_name.trim_end_matches(".json")));
            let expect = if expect_path.exists() {
                Some(
                    serde_json::from_value(read_json(&expect_path)?)
                        .map_err(|e| setup_error(format!("{}: not an expectation: {e}", expect_path.display())))?,
                )
            } else {
                None
            };
            let fixture = if folder == "incoming" {
                let Value::Object(map) = value else {
                    return Err(setup_error(format!(
                        "{}: an Incoming event must be a JSON object",
                        path.display()
                    )));
                };
                let event = IncomingEvent::from_object(map)
                    .map_err(|e| setup_error(format!("{}: not an Incoming event: {e}", path.display())))?;
                Fixture::Incoming(Box::new(event))
            } else {
                Fixture::Webhook(
                    serde_json::from_value(value)
                        .map_err(|e| setup_error(format!("{}: not a webhook fixture: {e}", path.display())))?,
                )
            };
            fixtures.push(NamedFixture {
                expect_failure: file_name.ends_with(".fails.json"),
                name: format!("{folder}/{file_name}"),
                fixture,
                expect_path,
                expect,
            });
        }
    }
    if fixtures.is_empty() {
        return Err(setup_error(format!(
            "{} has no fixtures (incoming/*.json, webhooks/*.json)",
            dir.display()
        )));
    }
    // File-name order across both folders; the folder breaks ties.
    fixtures.sort_by(|a, b| {
        let file = |f: &NamedFixture| f.name.split_once('/').map(|(_, n)| n.to_string()).unwrap_or_default();
        file(a).cmp(&file(b)).then_with(|| a.name.cmp(&b.name))
    });
    let first_incoming = fixtures.iter().find_map(|f| match &f.fixture {
        Fixture::Incoming(event) => Some(event.owner.clone()),
        Fixture::Webhook(_) => None,
    });
    let owner = tenant
        .owner
        .clone()
        .or(first_incoming)
        .unwrap_or_else(|| DEFAULT_OWNER.into());
    for named in &fixtures {
        if let Fixture::Incoming(event) = &named.fixture
            && event.owner != owner
        {
            return Err(setup_error(format!(
                "{}: owner `{}` is not the tenant's (`{owner}`): the bridge would route it to another tenant",
                dir.join(&named.name).display(),
                event.owner
            )));
        }
    }
    Ok(Fixtures {
        tenant,
        owner,
        vendor,
        fixtures,
    })
}

/// `path: line L, column C: MESSAGE` for a TOML file that does not parse. The file's text is not
/// quoted: a fixture's `tenant.toml` may hold secrets, and a deploy's rejection reason carries
/// this message to the partner.
pub(super) fn toml_error(path: &Path, text: &str, error: &toml::de::Error) -> String {
    let place = error
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: ")
        })
        .unwrap_or_default();
    format!("{}: {place}{}", path.display(), error.message())
}

/// What an expectation file's name ends with, after its fixture's name.
pub(super) const EXPECT_SUFFIX: &str = ".expect.json";

/// A JSON file, or an error naming the file and the line and column where it is broken.
fn read_json(path: &Path) -> anyhow::Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| setup_error(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        setup_error(format!(
            "{}:{}:{}: invalid JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}
