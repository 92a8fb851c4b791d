//! `[three_dolphins]`: the 3Dolphins server the bridge posts events to and looks contacts and
//! history up in.

use serde::Deserialize;

use super::network::{check_http_url, check_path};
use super::{FieldError, invalid};

/// `[three_dolphins]`: the 3Dolphins server the bridge posts to and looks things up in.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreeDolphinsConfig {
    pub base_url: String,
    #[serde(default = "defaults::event_path")]
    pub outgoing_path: String,
    #[serde(default = "defaults::event_path")]
    pub command_path: String,
    /// Defaults to `{base_url}/dolphin/apiv1`.
    pub api_base_url: Option<String>,
    /// Bearer token for the Contact and History APIs (a secret).
    pub api_token: Option<String>,
    #[serde(default = "defaults::contact_path")]
    pub contact_path: String,
    #[serde(default = "defaults::history_path")]
    pub history_path: String,
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
}

impl ThreeDolphinsConfig {
    /// The API base for Contact / History look-ups.
    pub fn api_base(&self) -> String {
        match &self.api_base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("{}/dolphin/apiv1", self.base_url.trim_end_matches('/')),
        }
    }

    pub(super) fn check(&self) -> Result<(), FieldError> {
        check_http_url(&self.base_url).map_err(|m| invalid("three_dolphins.base_url", m))?;
        check_http_url(&self.api_base()).map_err(|m| invalid("three_dolphins.api_base_url", m))?;
        for (field, path) in [
            ("three_dolphins.outgoing_path", &self.outgoing_path),
            ("three_dolphins.command_path", &self.command_path),
            ("three_dolphins.contact_path", &self.contact_path),
            ("three_dolphins.history_path", &self.history_path),
        ] {
            check_path(path).map_err(|m| invalid(field, m))?;
        }
        Ok(())
    }
}

mod defaults {
    pub fn event_path() -> String {
        "/dolphin/integration/incomingMessage".into()
    }
    pub fn contact_path() -> String {
        "/graph/contacts/contactById".into()
    }
    pub fn history_path() -> String {
        "/graph/report/conversations".into()
    }
    pub fn timeout_ms() -> u64 {
        10_000
    }
}
