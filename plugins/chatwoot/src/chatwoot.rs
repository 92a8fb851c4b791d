//! Chatwoot Application API calls (`/api/v1/accounts/{account_id}/...`) and the delivery flow.

use crate::mapping::{self, ContactLink, ConversationLink, TicketLink, id_number};
use dolphin_bridge_sdk::{
    AdapterError, CallContext, IncomingEvent, Value, config, http, json, kv, log, percent_encode, permanent,
    status_error,
};

/// The adapter's Chatwoot settings, from the tenant config.
pub struct Settings {
    /// `{base_url}/api/v1/accounts/{account_id}`.
    base: String,
    inbox_id: u64,
    token: String,
    tag: Option<String>,
}

impl Settings {
    /// Reads and checks the config; a missing or malformed key is permanent (named, never shown).
    pub fn load() -> Result<Self, AdapterError> {
        let base_url = config::require("base_url")?;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(permanent("adapter config key `base_url` must be an http(s) URL"));
        }
        let account_id = config::require("account_id")?;
        if !account_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(permanent("adapter config key `account_id` must be a number"));
        }
        let inbox_id = config::require("inbox_id")?
            .parse()
            .map_err(|_| permanent("adapter config key `inbox_id` must be a number"))?;
        Ok(Self {
            base: format!("{}/api/v1/accounts/{account_id}", base_url.trim_end_matches('/')),
            inbox_id,
            token: config::require("api_access_token")?,
            tag: config::get("tag"),
        })
    }
}

/// Outcome of a call that may find its contact gone (deleted in Chatwoot after we cached it).
enum Found<T> {
    Ok(T),
    ContactGone,
}

/// A Chatwoot client over the host's HTTP import.
pub struct Api {
    settings: Settings,
}

impl Api {
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    /// Sends a call and returns the answer whatever its status; `what` names it in errors.
    fn send(
        &self,
        what: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<http::JsonResponse, AdapterError> {
        let url = format!("{}{path}", self.settings.base);
        let auth = [("api_access_token", self.settings.token.as_str())];
        http::send_json(method, &url, &auth, body).map_err(|e| match e {
            AdapterError::RetryLater(m) => AdapterError::RetryLater(format!("chatwoot {what}: {m}")),
            AdapterError::Permanent(m) => AdapterError::Permanent(format!("chatwoot {what}: {m}")),
        })
    }

    /// The error for a non-2xx answer to a call.
    fn failed(&self, what: &str, method: &str, path: &str, r: &http::JsonResponse) -> AdapterError {
        status_error(&format!("chatwoot {what} ({method} {path})"), r.status, &r.excerpt)
    }

    /// Sends a call that must succeed and returns its JSON.
    fn call(&self, what: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, AdapterError> {
        let r = self.send(what, method, path, body)?;
        if r.is_success() {
            Ok(r.body)
        } else {
            Err(self.failed(what, method, path, &r))
        }
    }

    /// The source id of a contact JSON's contact_inbox in our inbox.
    fn source_id_in_inbox(&self, contact: &Value) -> Option<String> {
        contact
            .get("contact_inboxes")?
            .as_array()?
            .iter()
            .find(|ci| id_number(ci.pointer("/inbox/id")) == Some(self.settings.inbox_id))
            .and_then(|ci| ci.get("source_id")?.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    /// `GET /contacts/search?q=`: the contact whose identifier is exactly `identifier`.
    fn search_contact(&self, identifier: &str) -> Result<Option<(u64, Option<String>)>, AdapterError> {
        let path = format!(
            "/contacts/search?q={}&include_contact_inboxes=true",
            percent_encode(identifier)
        );
        let found = self.call("search contact", "GET", &path, None)?;
        let contacts = found
            .get("payload")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(contacts
            .iter()
            .find(|c| c.get("identifier").and_then(Value::as_str) == Some(identifier))
            .and_then(|c| Some((id_number(c.get("id"))?, self.source_id_in_inbox(c)))))
    }

    /// `POST /contacts`; a 422 (identifier taken by a lost earlier try, or the phone number
    /// taken by another contact) searches again and then retries without the phone number.
    fn create_contact(&self, event: &IncomingEvent) -> Result<(u64, Option<String>), AdapterError> {
        let mut body = json!({
            "inbox_id": self.settings.inbox_id,
            "name": mapping::contact_name(event),
            "identifier": event.contact_id,
            "additional_attributes": {
                "channel": event.channel,
                "channel_account_id": event.account_id,
            },
        });
        let phone = mapping::phone_number(&event.account_id, &event.channel);
        if let Some(phone) = &phone {
            body["phone_number"] = phone.as_str().into();
        }
        let path = "/contacts";
        let mut r = self.send("create contact", "POST", path, Some(&body))?;
        if r.status == 422 {
            if let Some(found) = self.search_contact(&event.contact_id)? {
                return Ok(found);
            }
            if phone.is_some() {
                log::warn("chatwoot: contact create refused (422); retrying without phone number");
                if let Value::Object(map) = &mut body {
                    map.remove("phone_number");
                }
                r = self.send("create contact", "POST", path, Some(&body))?;
            }
        }
        if !r.is_success() {
            return Err(self.failed("create contact", "POST", path, &r));
        }
        let contact = r.body.pointer("/payload/contact").or_else(|| r.body.get("payload"));
        let id = contact
            .and_then(|c| id_number(c.get("id")))
            .ok_or_else(|| permanent("chatwoot create contact: answer without payload.contact.id"))?;
        let source_id = r
            .body
            .pointer("/payload/contact_inbox/source_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .or_else(|| contact.and_then(|c| self.source_id_in_inbox(c)));
        log::log(
            log::Level::Info,
            "chatwoot: contact created",
            &[("contact_id", &id.to_string()), ("identifier", &event.contact_id)],
        );
        Ok((id, source_id))
    }

    /// `POST /contacts/{id}/contact_inboxes`: the contact's source id in our inbox.
    fn create_contact_inbox(&self, contact_id: u64) -> Result<Found<String>, AdapterError> {
        let path = format!("/contacts/{contact_id}/contact_inboxes");
        let body = json!({ "inbox_id": self.settings.inbox_id });
        let r = self.send("create contact inbox", "POST", &path, Some(&body))?;
        if r.status == 404 {
            return Ok(Found::ContactGone);
        }
        if !r.is_success() {
            return Err(self.failed("create contact inbox", "POST", &path, &r));
        }
        r.body
            .get("source_id")
            .and_then(Value::as_str)
            .map(|s| Found::Ok(s.to_owned()))
            .ok_or_else(|| permanent("chatwoot create contact inbox: answer without source_id"))
    }

    /// The Chatwoot contact of the event's 3Dolphins contact: KV, search, or create.
    fn ensure_contact(&self, event: &IncomingEvent) -> Result<ContactLink, AdapterError> {
        let key = mapping::contact_key(&event.contact_id);
        if let Some(link) = kv::get_json(&key)?.and_then(|v| ContactLink::from_json(&v)) {
            return Ok(link);
        }
        for _ in 0..2 {
            let (id, source_id) = match self.search_contact(&event.contact_id)? {
                Some(found) => found,
                None => self.create_contact(event)?,
            };
            let source_id = match source_id {
                Some(s) => s,
                None => match self.create_contact_inbox(id)? {
                    Found::Ok(s) => s,
                    Found::ContactGone => continue,
                },
            };
            let link = ContactLink { id, source_id };
            kv::set_json(&key, &link.to_json())?;
            return Ok(link);
        }
        Err(AdapterError::RetryLater(
            "chatwoot: the contact disappeared while it was being set up".into(),
        ))
    }

    /// `GET /contacts/{id}/conversations`: the contact's conversation in our inbox for the ticket.
    fn find_conversation(&self, contact_id: u64, ticket: &str) -> Result<Found<Option<u64>>, AdapterError> {
        let path = format!("/contacts/{contact_id}/conversations");
        let r = self.send("list contact conversations", "GET", &path, None)?;
        if r.status == 404 {
            return Ok(Found::ContactGone);
        }
        if !r.is_success() {
            return Err(self.failed("list contact conversations", "GET", &path, &r));
        }
        let conversations = r
            .body
            .get("payload")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let is_ticket = |c: &Value| {
            [
                "/custom_attributes/ticket_number",
                "/additional_attributes/ticket_number",
            ]
            .iter()
            .any(|p| c.pointer(p).and_then(Value::as_str) == Some(ticket))
        };
        Ok(Found::Ok(
            conversations
                .iter()
                .filter(|c| id_number(c.get("inbox_id")).is_none_or(|i| i == self.settings.inbox_id))
                .find(|c| is_ticket(c))
                .and_then(|c| id_number(c.get("id"))),
        ))
    }

    /// `POST /conversations` for the ticket.
    fn create_conversation(&self, contact: &ContactLink, event: &IncomingEvent) -> Result<Found<u64>, AdapterError> {
        let attributes = json!({ "ticket_number": event.ticket_number, "channel": event.channel });
        let body = json!({
            "source_id": contact.source_id,
            "inbox_id": self.settings.inbox_id,
            "contact_id": contact.id,
            "status": "open",
            "custom_attributes": attributes,
            "additional_attributes": attributes,
        });
        let r = self.send("create conversation", "POST", "/conversations", Some(&body))?;
        if r.status == 404 {
            return Ok(Found::ContactGone);
        }
        if !r.is_success() {
            return Err(self.failed("create conversation", "POST", "/conversations", &r));
        }
        let id =
            id_number(r.body.get("id")).ok_or_else(|| permanent("chatwoot create conversation: answer without id"))?;
        log::log(
            log::Level::Info,
            "chatwoot: conversation created",
            &[("conversation_id", &id.to_string()), ("ticket", &event.ticket_number)],
        );
        Ok(Found::Ok(id))
    }

    /// The conversation of the event's ticket: KV, the contact's conversations, or create.
    fn ensure_conversation(&self, event: &IncomingEvent) -> Result<TicketLink, AdapterError> {
        let key = mapping::ticket_key(&event.ticket_number);
        if let Some(link) = kv::get_json(&key)?.and_then(|v| TicketLink::from_json(&v)) {
            return Ok(link);
        }
        for _ in 0..2 {
            let contact = self.ensure_contact(event)?;
            let found = match self.find_conversation(contact.id, &event.ticket_number)? {
                Found::Ok(Some(id)) => Found::Ok(id),
                Found::Ok(None) => self.create_conversation(&contact, event)?,
                Found::ContactGone => Found::ContactGone,
            };
            let Found::Ok(conversation_id) = found else {
                log::warn("chatwoot: cached contact is gone; looking it up again");
                kv::delete(&mapping::contact_key(&event.contact_id))?;
                continue;
            };
            let reverse = ConversationLink {
                ticket_number: event.ticket_number.clone(),
                channel: event.channel.clone(),
            };
            kv::set_json(
                &mapping::conversation_key(&conversation_id.to_string()),
                &reverse.to_json(),
            )?;
            let link = TicketLink {
                conversation_id,
                contact_id: contact.id,
                channel: event.channel.clone(),
                last_delivery: None,
            };
            kv::set_json(&key, &link.to_json())?;
            return Ok(link);
        }
        Err(AdapterError::RetryLater(
            "chatwoot: the contact disappeared while the conversation was being set up".into(),
        ))
    }

    /// Whether the conversation already has the message with `source_id` (a retried delivery
    /// whose earlier try reached Chatwoot).
    fn has_message(&self, conversation_id: u64, source_id: &str) -> Result<bool, AdapterError> {
        let path = format!("/conversations/{conversation_id}/messages");
        let r = self.send("list messages", "GET", &path, None)?;
        if r.status == 404 {
            return Ok(false);
        }
        if !r.is_success() {
            return Err(self.failed("list messages", "GET", &path, &r));
        }
        Ok(r.body.get("payload").and_then(Value::as_array).is_some_and(|m| {
            m.iter()
                .any(|m| m.get("source_id").and_then(Value::as_str) == Some(source_id))
        }))
    }

    /// `POST /conversations/{id}/messages`; `false` when the conversation is gone (404).
    fn create_message(&self, conversation_id: u64, body: &Value) -> Result<bool, AdapterError> {
        let path = format!("/conversations/{conversation_id}/messages");
        let r = self.send("create message", "POST", &path, Some(body))?;
        if r.status == 404 {
            return Ok(false);
        }
        if !r.is_success() {
            return Err(self.failed("create message", "POST", &path, &r));
        }
        Ok(true)
    }
}

/// Delivers one Incoming event: contact, conversation, then the message (at most once per
/// delivery id, see the crate docs).
pub fn deliver(api: &Api, ctx: &CallContext, event: &IncomingEvent) -> Result<(), AdapterError> {
    let ticket_key = mapping::ticket_key(&event.ticket_number);
    let body = mapping::message_body(event, &ctx.delivery_id, api.settings.tag.as_deref());
    for _ in 0..2 {
        let mut link = api.ensure_conversation(event)?;
        let done = link.last_delivery.as_deref() == Some(ctx.delivery_id.as_str())
            || (ctx.attempt > 1 && api.has_message(link.conversation_id, &ctx.delivery_id)?);
        if done {
            log::info("chatwoot: message of this delivery is already in Chatwoot");
        } else if !api.create_message(link.conversation_id, &body)? {
            log::warn("chatwoot: conversation is gone; creating a new one for the ticket");
            kv::delete(&ticket_key)?;
            kv::delete(&mapping::conversation_key(&link.conversation_id.to_string()))?;
            continue;
        }
        link.last_delivery = Some(ctx.delivery_id.clone());
        kv::set_json(&ticket_key, &link.to_json())?;
        return Ok(());
    }
    Err(AdapterError::RetryLater(
        "chatwoot: the conversation disappeared again right after it was created".into(),
    ))
}
