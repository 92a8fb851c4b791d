//! The mock's switchboard (spec tags "Switchboards", "Switchboard Integrations" and "Switchboard
//! Actions"): which switchboard integration has control of each conversation, the actions that
//! move control, and where a user's message goes.
//!
//! The account's switchboard holds, like a Zendesk account's (spec examples
//! `listSwitchboardIntegrations`: `zd-agentWorkspace`, type `zd:agentWorkspace`): an AI agent
//! ([`BOT`], the default integration unless a test picks another), the agent workspace
//! ([`AGENT_WORKSPACE`], `deliverStandbyEvents: false` as in the spec examples) and the bridge's own
//! custom integration ([`BRIDGE`], the one the mock's webhook belongs to, `deliverStandbyEvents`
//! at its create default, true).
//!
//! | rule | spec |
//! | --- | --- |
//! | a new conversation is given to the default integration | `defaultSwitchboardIntegrationId`: "will be given control when a new conversation begins" |
//! | one active integration per conversation, the others on standby | `PassControl`: "marks the selected switchboard integration as active and transitions all the other switchboard integrations to standby status" |
//! | `passControl` target by id, then name, then `integrationType`; an ambiguous one is an error (`next` is not modelled) | `passControlBody.switchboardIntegration` |
//! | `passControl` answers 200 `{}`; 404 `conversation_not_found` | `PassControl` responses, example `emptyResponse` |
//! | `passControl` to the active integration changes nothing (200) | `PassControl` points to the switchboard guide on idempotency (an assumption for app keys, see the README) |
//! | `releaseControl` nullifies the conversation's switchboard state; the next activity goes to the default integration | `ReleaseControl` ("nullifying its switchboard state"), `DeleteSwitchboardIntegration` ("re-selected following the default integration assignment rules ... next time the conversation has activity") |
//! | `activeSwitchboardIntegration` `{id, name, integrationId, integrationType}`, omitted when none | `conversationTruncated`, `switchboardIntegrationWebhook` |
//! | a standby integration gets webhooks only with `deliverStandbyEvents` | `deliverStandbyEvents`: "if webhooks should be sent when the switchboard integration is not in control of a conversation (standby status)" |
//! | without a switchboard every integration gets every event | `DeleteSwitchboard`: linked integrations "will start receiving all conversation events" |
//!
//! An agent ticket is "made" when a user's message reaches the agent workspace: the first one
//! while no ticket of the conversation is open opens one (Zendesk's behaviour, which the spec does
//! not describe: an assumption).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{MockSunshine, State, error, new_id};
use crate::mock_http::Reply;

/// The name of the AI agent's switchboard integration (the mock's default integration).
pub const BOT: &str = "zd-answerBot";
/// The name of the agent workspace's switchboard integration (spec examples).
pub const AGENT_WORKSPACE: &str = "zd-agentWorkspace";
/// The agent workspace's `integrationType`, the adapter's default `pass_control_to`.
pub const AGENT_WORKSPACE_TYPE: &str = "zd:agentWorkspace";
/// The name of the bridge's own (custom) integration in the switchboard.
pub const BRIDGE: &str = "dolphin-bridge";

/// A switchboard integration (spec `switchboardIntegration`).
#[derive(Debug, Clone)]
pub struct SwitchboardIntegration {
    pub id: String,
    pub name: String,
    pub integration_id: String,
    pub integration_type: String,
    pub deliver_standby_events: bool,
}

impl SwitchboardIntegration {
    fn new(name: &str, integration_type: &str, deliver_standby_events: bool) -> SwitchboardIntegration {
        SwitchboardIntegration {
            id: new_id(0x5b),
            name: name.into(),
            integration_id: new_id(0x1a),
            integration_type: integration_type.into(),
            deliver_standby_events,
        }
    }

    /// Spec `switchboardIntegrationWebhook`, as in `activeSwitchboardIntegration`.
    fn webhook_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "integrationId": self.integration_id,
            "integrationType": self.integration_type,
        })
    }
}

/// A change of control: `switchboard:passControl` or `switchboard:releaseControl`, with the
/// integration given control (none for a release) and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlChange {
    pub conversation_id: String,
    pub kind: String,
    pub to: Option<String>,
    pub reason: Option<String>,
}

/// A Zendesk ticket the agent workspace made for a conversation, with the user's messages it got.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub conversation_id: String,
    pub open: bool,
    pub messages: Vec<String>,
}

/// The switchboard's state (see the module docs).
#[derive(Debug)]
pub(super) struct Switchboard {
    integrations: Vec<SwitchboardIntegration>,
    /// Spec `switchboard.defaultSwitchboardIntegrationId`.
    default_id: String,
    /// The active integration's id per conversation; `None` once control was released.
    active: HashMap<String, Option<String>>,
}

impl Switchboard {
    /// A Zendesk account's switchboard with the bridge's integration in it; the AI agent is the
    /// default.
    pub(super) fn zendesk() -> Switchboard {
        let integrations = vec![
            SwitchboardIntegration::new(BOT, "zd:answerBot", false),
            SwitchboardIntegration::new(AGENT_WORKSPACE, AGENT_WORKSPACE_TYPE, false),
            SwitchboardIntegration::new(BRIDGE, "custom", true),
        ];
        let default_id = integrations[0].id.clone();
        Switchboard {
            integrations,
            default_id,
            active: HashMap::new(),
        }
    }

    fn by_name(&self, name: &str) -> Option<&SwitchboardIntegration> {
        self.integrations.iter().find(|i| i.name == name)
    }

    fn by_id(&self, id: &str) -> Option<&SwitchboardIntegration> {
        self.integrations.iter().find(|i| i.id == id)
    }

    /// The active integration of a conversation, if any.
    fn active_of(&self, conversation_id: &str) -> Option<&SwitchboardIntegration> {
        let id = self.active.get(conversation_id)?.as_deref()?;
        self.by_id(id)
    }

    /// Spec `passControlBody.switchboardIntegration`: by `id`, `name`, or `integrationType`, in
    /// that order; `integrationType` matching several is an error (`Err(true)`), none `Err(false)`.
    fn resolve(&self, target: &str) -> Result<&SwitchboardIntegration, bool> {
        if let Some(found) = self.by_id(target).or_else(|| self.by_name(target)) {
            return Ok(found);
        }
        let typed: Vec<&SwitchboardIntegration> = self
            .integrations
            .iter()
            .filter(|i| i.integration_type == target)
            .collect();
        match typed.as_slice() {
            [one] => Ok(one),
            [] => Err(false),
            _ => Err(true),
        }
    }
}

impl State {
    /// A new conversation is given to the default switchboard integration.
    pub(super) fn switchboard_begin(&mut self, conversation_id: &str) {
        if let Some(switchboard) = &mut self.switchboard {
            let default = switchboard.default_id.clone();
            switchboard.active.insert(conversation_id.into(), Some(default));
        }
    }

    /// A deleted conversation's switchboard state goes with it.
    pub(super) fn switchboard_forget(&mut self, conversation_id: &str) {
        if let Some(switchboard) = &mut self.switchboard {
            switchboard.active.remove(conversation_id);
        }
    }

    /// The conversation's `activeSwitchboardIntegration` (spec `conversationTruncated`), or
    /// `None` when no integration is active (the field is then omitted).
    pub(super) fn active_switchboard_json(&self, conversation_id: &str) -> Option<Value> {
        let switchboard = self.switchboard.as_ref()?;
        Some(switchboard.active_of(conversation_id)?.webhook_json())
    }

    /// A user's message: the active integration gets it (after releaseControl, the default one
    /// first takes control); reaching the agent workspace, it joins the conversation's open ticket
    /// or opens one. Without a switchboard every integration, the agent workspace too, gets it.
    pub(super) fn switchboard_route(&mut self, conversation_id: &str, text: &str) {
        let receiver = match &mut self.switchboard {
            None => AGENT_WORKSPACE.to_owned(),
            Some(switchboard) => {
                let default = switchboard.default_id.clone();
                let slot = switchboard.active.entry(conversation_id.into()).or_insert(None);
                let id = slot.get_or_insert(default).clone();
                switchboard.by_id(&id).map(|i| i.name.clone()).unwrap_or_default()
            }
        };
        self.routed
            .push((receiver.clone(), conversation_id.into(), text.into()));
        if receiver != AGENT_WORKSPACE {
            return;
        }
        match self
            .tickets
            .iter_mut()
            .find(|t| t.open && t.conversation_id == conversation_id)
        {
            Some(ticket) => ticket.messages.push(text.into()),
            None => self.tickets.push(Ticket {
                conversation_id: conversation_id.into(),
                open: true,
                messages: vec![text.into()],
            }),
        }
    }

    /// `POST .../conversations/{id}/passControl` (spec `PassControl`, see the module docs). The
    /// answers for a missing switchboard and an unknown or ambiguous target are assumptions (400).
    pub(super) fn pass_control(&mut self, conversation_id: &str, body: &Value) -> Reply {
        if !self.conversations.iter().any(|c| c.id == conversation_id) {
            return error(404, "conversation_not_found", "Conversation not found");
        }
        let Some(switchboard) = &mut self.switchboard else {
            return error(400, "bad_request", "The app has no switchboard");
        };
        let Some(target) = body["switchboardIntegration"].as_str() else {
            return error(400, "bad_request", "switchboardIntegration is required");
        };
        let current = switchboard.active_of(conversation_id).map(|i| i.id.clone());
        let to = match switchboard.resolve(target) {
            Ok(to) => to.clone(),
            Err(true) => return error(400, "bad_request", "Ambiguous switchboardIntegration"),
            Err(false) => return error(400, "bad_request", "Switchboard integration not found"),
        };
        if current.as_deref() == Some(to.id.as_str()) {
            return Reply::json(200, &json!({}));
        }
        switchboard.active.insert(conversation_id.into(), Some(to.id.clone()));
        self.control_changes.push(ControlChange {
            conversation_id: conversation_id.into(),
            kind: "switchboard:passControl".into(),
            to: Some(to.name),
            reason: None,
        });
        Reply::json(200, &json!({}))
    }

    /// Releases control of the conversation (spec `ReleaseControl`: its switchboard state is
    /// nullified), closing its open ticket when `reason` is `ticketClosed`.
    pub(super) fn release_control(&mut self, conversation_id: &str, reason: Option<&str>) -> Reply {
        if !self.conversations.iter().any(|c| c.id == conversation_id) {
            return error(404, "conversation_not_found", "Conversation not found");
        }
        if let Some(switchboard) = &mut self.switchboard {
            switchboard.active.insert(conversation_id.into(), None);
        }
        if reason == Some("ticketClosed") {
            for ticket in self.tickets.iter_mut().filter(|t| t.conversation_id == conversation_id) {
                ticket.open = false;
            }
        }
        self.control_changes.push(ControlChange {
            conversation_id: conversation_id.into(),
            kind: "switchboard:releaseControl".into(),
            to: None,
            reason: reason.map(str::to_owned),
        });
        Reply::json(200, &json!({}))
    }

    /// Whether the bridge's integration gets the conversation's events: always when it is not in
    /// the switchboard (or there is none) or active; on standby only with `deliverStandbyEvents`.
    pub(super) fn bridge_gets_events(&self, conversation_id: &str) -> bool {
        let Some(switchboard) = &self.switchboard else {
            return true;
        };
        let Some(bridge) = switchboard.by_name(BRIDGE) else {
            return true;
        };
        switchboard
            .active_of(conversation_id)
            .is_some_and(|active| active.id == bridge.id)
            || bridge.deliver_standby_events
    }
}

impl MockSunshine {
    /// Makes the switchboard integration of this name the default one (spec `UpdateSwitchboard`,
    /// `defaultSwitchboardIntegrationId`).
    pub fn set_default_switchboard_integration(&self, name: &str) {
        let mut state = self.state();
        let switchboard = state.switchboard.as_mut().expect("a switchboard");
        switchboard.default_id = switchboard.by_name(name).expect("a switchboard integration").id.clone();
    }

    /// Sets `deliverStandbyEvents` of the switchboard integration of this name (spec
    /// `UpdateSwitchboardIntegration`).
    pub fn set_deliver_standby_events(&self, name: &str, deliver: bool) {
        let mut state = self.state();
        let switchboard = state.switchboard.as_mut().expect("a switchboard");
        let integration = switchboard
            .integrations
            .iter_mut()
            .find(|i| i.name == name)
            .expect("a switchboard integration");
        integration.deliver_standby_events = deliver;
    }

    /// Deletes the switchboard (spec `DeleteSwitchboard`): an app without one.
    pub fn delete_switchboard(&self) {
        self.state().switchboard = None;
    }

    /// The name of the switchboard integration in control of the conversation, if any.
    pub fn active_integration(&self, conversation_id: &str) -> Option<String> {
        let state = self.state();
        let switchboard = state.switchboard.as_ref()?;
        Some(switchboard.active_of(conversation_id)?.name.clone())
    }

    /// The user's messages each switchboard integration got: `(integration name, conversation
    /// id, text)`, in order.
    pub fn routed(&self) -> Vec<(String, String, String)> {
        self.state().routed.clone()
    }

    /// The texts of the user's messages that reached the agent workspace in this conversation.
    pub fn agent_workspace_messages(&self, conversation_id: &str) -> Vec<String> {
        self.tickets()
            .into_iter()
            .filter(|t| t.conversation_id == conversation_id)
            .flat_map(|t| t.messages)
            .collect()
    }

    /// The tickets the agent workspace made, oldest first.
    pub fn tickets(&self) -> Vec<Ticket> {
        self.state().tickets.clone()
    }

    /// The passes and releases of control, in order (the mock's own and the adapter's).
    pub fn control_changes(&self) -> Vec<ControlChange> {
        self.state().control_changes.clone()
    }

    /// An agent closes the conversation's ticket in Zendesk: the agent workspace releases control
    /// with reason `ticketClosed` (spec `switchboardReleaseControl.reason`), and the subscribed
    /// webhook is sent `switchboard:releaseControl` (spec example `switchboardReleaseControlEvent`,
    /// which omits `activeSwitchboardIntegration`) with that reason.
    pub async fn close_ticket(&self, conversation_id: &str) {
        let released = self.state().release_control(conversation_id, Some("ticketClosed"));
        assert_eq!(released.status, 200, "close_ticket: no such conversation");
        let webhook = self.state().webhook.clone();
        if let Some((target, secret)) = webhook {
            let event = self.switchboard_event(conversation_id, "switchboard:releaseControl", Some("ticketClosed"));
            let sent = self.send_webhook(&target, &secret, vec![event]).await;
            assert_eq!(sent.status, 200, "releaseControl webhook: {}", sent.describe());
        }
    }

    /// An agent answers in the agent workspace: the business message is stored and its
    /// `conversation:message` event sent to the subscribed webhook when the bridge's integration
    /// gets the conversation's events (see [`State::bridge_gets_events`]). Returns whether it was
    /// sent.
    pub async fn agent_reply(&self, conversation_id: &str, text: &str) -> bool {
        let event = self.business_message(conversation_id, json!({ "type": "text", "text": text }));
        let webhook = {
            let state = self.state();
            state
                .webhook
                .clone()
                .filter(|_| state.bridge_gets_events(conversation_id))
        };
        let Some((target, secret)) = webhook else {
            return false;
        };
        let sent = self.send_webhook(&target, &secret, vec![event]).await;
        assert_eq!(sent.status, 200, "conversation:message webhook: {}", sent.describe());
        true
    }
}
