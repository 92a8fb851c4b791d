//! Chatwoot Application API calls (`/api/v1/accounts/{account_id}/...`) and the delivery flow.

use crate::mapping::{self, ContactLink, ConversationLink, TicketLink, id_number};
use crate::media::{self, MediaFile, Multipart};
use dolphin_bridge_sdk::{
    AdapterError, CallContext, HttpRequest, IncomingEvent, MessageType, Value, config, header, http, json, kv, log,
    permanent, retry_later,
};

/// Contacts a page of `POST /contacts/filter` holds (`ContactsController::RESULTS_PER_PAGE`).
const CONTACTS_PER_PAGE: usize = 15;
/// How many filter pages are read at most: identifiers equal but for case are few.
const MAX_CONTACT_PAGES: u32 = 20;
/// `GET /contacts/{id}/conversations` answers the contact's newest 20, with no paging.
const CONTACT_CONVERSATIONS_WINDOW: usize = 20;
/// How many `POST /conversations/filter` pages are read at most.
const MAX_CONVERSATION_PAGES: u32 = 20;
/// `GET /conversations/{id}/messages?after=` answers at most 100 (`MessageFinder`).
const MESSAGES_AFTER_PAGE: usize = 100;
/// How many `?after=` pages a retried delivery reads at most while looking for its message.
const MAX_MESSAGE_PAGES: u32 = 50;
/// Redirects followed while downloading a customer's media (each hop is checked by the host).
const MAX_MEDIA_REDIRECTS: u32 = 3;
/// Attempts on which a media host's 408/429/5xx, timeout or connection failure makes the
/// delivery retry later; from the next attempt on, the link is sent instead, so a media host
/// that stays down holds the ticket's messages back for two retry waits (at most 35 s with the
/// default schedule), not for the whole schedule.
const MEDIA_RETRY_ATTEMPTS: u32 = 2;
/// Most bytes one host call may pass the host (the host's fixed per-call data limit, 4 MiB;
/// README, limits). An upload is one `http.send`: past it the whole call would fail, so a
/// larger file is sent as a link (downloads, which the host passes to the adapter, are limited
/// by `limits.http_response_bytes` only).
const HOST_CALL_DATA_BYTES: usize = 4 << 20;
/// What the host counts for each header of a request besides its name and value (the size of
/// its pair of strings on the host, 48 bytes), with room to spare.
const HOST_CALL_BYTES_PER_HEADER: usize = 64;

/// The `payload` list of a Chatwoot answer (contacts, conversations, messages); empty when absent.
fn payload_list(body: &Value) -> Vec<Value> {
    body.get("payload")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The body of a `/filter` request (contacts or conversations) for `attribute` equal to `value`.
fn equal_to_filter(attribute: &str, value: &str) -> Value {
    json!({ "payload": [{
        "attribute_key": attribute,
        "filter_operator": "equal_to",
        "values": [value],
        "query_operator": null,
    }]})
}

/// The data an `http.send` of `request` passes the host, as the host counts it: its strings'
/// and lists' bytes.
fn host_call_bytes(request: &HttpRequest) -> usize {
    request.method.len()
        + request.url.len()
        + request
            .headers
            .iter()
            .map(|(name, value)| HOST_CALL_BYTES_PER_HEADER + name.len() + value.len())
            .sum::<usize>()
        + request.body.len()
}

/// The adapter's Chatwoot settings, from the tenant config.
pub struct Settings {
    /// `{base_url}/api/v1/accounts/{account_id}`.
    base: String,
    account_id: String,
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
            account_id,
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
    /// A client for the tenant's Chatwoot account.
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
        // The hyphenated spelling: Rack reads it as the same key, and nginx (whose default
        // `underscores_in_headers off` fronts most installations) drops the underscored one.
        let auth = [("api-access-token", self.settings.token.as_str())];
        http::send_json(method, &url, &auth, body).map_err(|e| e.map_reason(|m| format!("chatwoot {what}: {m}")))
    }

    /// The error for a non-2xx answer to a call: 408/429/5xx retry later, after the wait
    /// Chatwoot asked for (`Retry-After`, which Rack::Attack sends with its 429s; else an
    /// `X-RateLimit-Reset` timestamp) when it did; other statuses are permanent.
    fn failed(&self, what: &str, method: &str, path: &str, r: &http::JsonResponse) -> AdapterError {
        r.error(&format!("chatwoot {what} ({method} {path})"))
    }

    /// The `multipart/form-data` POST of a form's `body` to `path`.
    fn form_request(&self, path: &str, content_type: &str, body: Vec<u8>) -> HttpRequest {
        let url = format!("{}{path}", self.settings.base);
        let headers = [
            ("accept", "application/json"),
            ("content-type", content_type),
            ("api-access-token", self.settings.token.as_str()),
        ];
        http::request("POST", &url, &headers, body)
    }

    /// Whether the upload of `form` to any conversation passes the host in one call.
    fn upload_fits(&self, form: &Multipart) -> bool {
        let longest_path = format!("/conversations/{}/messages", u64::MAX);
        let without_body = self.form_request(&longest_path, &form.content_type, Vec::new());
        host_call_bytes(&without_body) + form.body.len() <= HOST_CALL_DATA_BYTES
    }

    /// Sends a `multipart/form-data` POST and returns the answer whatever its status. The form's
    /// body is lent to the request and given back (no copy of the file), so that a conversation
    /// made again after a 404 gets it too.
    fn send_form(&self, what: &str, path: &str, form: &mut Multipart) -> Result<http::JsonResponse, AdapterError> {
        let mut request = self.form_request(path, &form.content_type, std::mem::take(&mut form.body));
        let sent = http::try_send(&request);
        form.body = std::mem::take(&mut request.body);
        let response = sent.map_err(|e| {
            http::transport_error(&http::call_name("POST", &request.url), e)
                .map_reason(|m| format!("chatwoot {what}: {m}"))
        })?;
        Ok(http::JsonResponse::from_response(response))
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

    /// `POST /contacts/filter` on `identifier equal_to`: the contact whose identifier is exactly
    /// `identifier`. (A search reads one page of 15 substring matches in no order, so a customer
    /// whose identifier is part of others' would not be found.) Chatwoot compares lower-cased,
    /// so the pages are read until the exact one shows.
    fn search_contact(&self, identifier: &str) -> Result<Option<(u64, Option<String>)>, AdapterError> {
        let body = equal_to_filter("identifier", identifier);
        for page in 1..=MAX_CONTACT_PAGES {
            let path = format!("/contacts/filter?page={page}&include_contact_inboxes=true");
            let contacts = payload_list(&self.call("filter contacts", "POST", &path, Some(&body))?);
            let exact = contacts
                .iter()
                .find(|c| c.get("identifier").and_then(Value::as_str) == Some(identifier));
            if let Some(contact) = exact {
                return Ok(id_number(contact.get("id")).map(|id| (id, self.source_id_in_inbox(contact))));
            }
            if contacts.len() < CONTACTS_PER_PAGE {
                break;
            }
        }
        Ok(None)
    }

    /// The error for a 404 of a call that names our inbox, when the inbox is what is missing
    /// (`GET /inboxes/{id}` is 404 too); `None` when the inbox exists, so the 404 was the contact.
    fn inbox_missing(&self) -> Result<Option<AdapterError>, AdapterError> {
        let path = format!("/inboxes/{}", self.settings.inbox_id);
        let r = self.send("show inbox", "GET", &path, None)?;
        Ok((r.status == 404).then(|| {
            permanent(format!(
                "chatwoot: inbox {} is not in account {}: the config key `inbox_id` names a wrong or \
                 deleted inbox (the id is in the inbox's URL in Chatwoot's settings)",
                self.settings.inbox_id, self.settings.account_id
            ))
        }))
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
        if r.status == 404
            && let Some(error) = self.inbox_missing()?
        {
            return Err(error);
        }
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
            return match self.inbox_missing()? {
                Some(error) => Err(error),
                None => Ok(Found::ContactGone),
            };
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
        Err(retry_later(
            "chatwoot: the contact disappeared while it was being set up",
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
        let conversations = payload_list(&r.body);
        if let Some(id) = self.ticket_conversation(&conversations, None, ticket) {
            return Ok(Found::Ok(Some(id)));
        }
        if conversations.len() < CONTACT_CONVERSATIONS_WINDOW {
            return Ok(Found::Ok(None));
        }
        // The window is full: an older conversation of the ticket would not be in it.
        self.filter_conversation(contact_id, ticket).map(Found::Ok)
    }

    /// The id of the conversation in `conversations` that is the ticket's, in our inbox (and of
    /// `contact_id` when given).
    fn ticket_conversation(&self, conversations: &[Value], contact_id: Option<u64>, ticket: &str) -> Option<u64> {
        let is_ticket = |c: &Value| {
            [
                "/custom_attributes/ticket_number",
                "/additional_attributes/ticket_number",
            ]
            .iter()
            .any(|p| c.pointer(p).and_then(Value::as_str) == Some(ticket))
        };
        conversations
            .iter()
            .filter(|c| id_number(c.get("inbox_id")).is_none_or(|i| i == self.settings.inbox_id))
            .filter(|c| contact_id.is_none_or(|id| id_number(c.pointer("/meta/sender/id")).is_none_or(|s| s == id)))
            .find(|c| is_ticket(c))
            .and_then(|c| id_number(c.get("id")))
    }

    /// `POST /conversations/filter` on the conversation custom attribute `ticket_number`, read
    /// page by page. Chatwoot filters only on attributes the account defines: without that
    /// definition (422) the ticket's conversation cannot be found past the contact's newest 20,
    /// which is logged, and a new conversation is made.
    fn filter_conversation(&self, contact_id: u64, ticket: &str) -> Result<Option<u64>, AdapterError> {
        let body = equal_to_filter("ticket_number", ticket);
        for page in 1..=MAX_CONVERSATION_PAGES {
            let path = format!("/conversations/filter?page={page}");
            let r = self.send("filter conversations", "POST", &path, Some(&body))?;
            if r.status == 422 {
                log::warn(
                    "chatwoot: the contact has 20 or more conversations and the account defines no \
                     conversation attribute `ticket_number`, so an older conversation of the ticket \
                     cannot be looked up; define it (Settings > Custom Attributes, Conversation, text)",
                );
                return Ok(None);
            }
            if !r.is_success() {
                return Err(self.failed("filter conversations", "POST", &path, &r));
            }
            let conversations = payload_list(&r.body);
            if conversations.is_empty() {
                break;
            }
            if let Some(id) = self.ticket_conversation(&conversations, Some(contact_id), ticket) {
                return Ok(Some(id));
            }
        }
        Ok(None)
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
            return match self.inbox_missing()? {
                Some(error) => Err(error),
                None => Ok(Found::ContactGone),
            };
        }
        if !r.is_success() {
            return Err(self.failed("create conversation", "POST", "/conversations", &r));
        }
        let id =
            id_number(r.body.get("id")).ok_or_else(|| permanent("chatwoot create conversation: answer without id"))?;
        // A locked inbox answers the contact's existing conversation instead of a new one;
        // mapping the ticket to it would merge two tickets.
        let answered_ticket = r
            .body
            .pointer("/custom_attributes/ticket_number")
            .and_then(Value::as_str);
        if answered_ticket != Some(event.ticket_number.as_str()) {
            return Err(permanent(format!(
                "chatwoot create conversation: Chatwoot answered the contact's existing conversation {id} \
                 (of {}) instead of a new one for ticket {}: the inbox has `lock_to_single_conversation` \
                 enabled; turn it off in the inbox's settings so that every 3Dolphins ticket gets its own \
                 conversation",
                answered_ticket.map_or_else(|| "no 3Dolphins ticket".to_owned(), |t| format!("ticket {t}")),
                event.ticket_number
            )));
        }
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
                last_message_id: None,
            };
            kv::set_json(&key, &link.to_json())?;
            return Ok(link);
        }
        Err(retry_later(
            "chatwoot: the contact disappeared while the conversation was being set up",
        ))
    }

    /// The id of the conversation's message with `source_id` (a retried delivery whose earlier
    /// try reached Chatwoot), looked for among the messages after `after` (the last one this
    /// adapter posted; every message of the conversation when none), 100 at a time: agents may
    /// have written more than the 20 the plain listing shows since.
    fn find_message(
        &self,
        conversation_id: u64,
        source_id: &str,
        after: Option<u64>,
    ) -> Result<Option<u64>, AdapterError> {
        let mut after = after.unwrap_or(0);
        for _ in 0..MAX_MESSAGE_PAGES {
            let path = format!("/conversations/{conversation_id}/messages?after={after}");
            let r = self.send("list messages", "GET", &path, None)?;
            if r.status == 404 {
                return Ok(None);
            }
            if !r.is_success() {
                return Err(self.failed("list messages", "GET", &path, &r));
            }
            let messages = payload_list(&r.body);
            if let Some(found) = messages
                .iter()
                .find(|m| m.get("source_id").and_then(Value::as_str) == Some(source_id))
            {
                return Ok(Some(id_number(found.get("id")).unwrap_or(0)));
            }
            match messages.iter().filter_map(|m| id_number(m.get("id"))).max() {
                Some(last) if messages.len() >= MESSAGES_AFTER_PAGE && last > after => after = last,
                _ => break,
            }
        }
        Ok(None)
    }

    /// `POST /conversations/{id}/messages`: the new message's id, `None` when the conversation
    /// is gone (404). An upload Chatwoot refuses (413 from a proxy's body limit, 422 from
    /// Chatwoot; neither stores a message) is posted again with the media as a link.
    fn create_message(&self, conversation_id: u64, post: &mut MessagePost) -> Result<Option<u64>, AdapterError> {
        let path = format!("/conversations/{conversation_id}/messages");
        let r = match post {
            MessagePost::Json(body) => self.send("create message", "POST", &path, Some(body))?,
            MessagePost::Upload { form, link_body } => {
                let r = self.send_form("create message", &path, form)?;
                if matches!(r.status, 413 | 422) {
                    log::log(
                        log::Level::Warn,
                        "chatwoot: media sent as a link",
                        &[("reason", &format!("Chatwoot refused the upload with HTTP {}", r.status))],
                    );
                    self.send("create message", "POST", &path, Some(link_body))?
                } else {
                    r
                }
            }
        };
        if r.status == 404 {
            return Ok(None);
        }
        if !r.is_success() {
            return Err(self.failed("create message", "POST", &path, &r));
        }
        Ok(Some(id_number(r.body.get("id")).unwrap_or(0)))
    }
}

/// What is posted as the customer's message.
enum MessagePost {
    /// The JSON body: text, a location, or media as a link.
    Json(Value),
    /// The media uploaded as `attachments[]`; `link_body` is the JSON body with the link, for
    /// when Chatwoot refuses the upload.
    Upload { form: Multipart, link_body: Value },
}

/// The post for the event: its media uploaded when the adapter may download it and the upload
/// fits one host call, otherwise the JSON body with the link, and why logged (the link without
/// its query, which may hold a signature). A transient download failure on the first
/// [`MEDIA_RETRY_ATTEMPTS`] attempts is retry-later.
fn message_post(api: &Api, ctx: &CallContext, event: &IncomingEvent) -> Result<MessagePost, AdapterError> {
    let link_body = mapping::message_body(event, &ctx.delivery_id, api.settings.tag.as_deref());
    let has_media = matches!(
        event.message_type,
        MessageType::Image | MessageType::Video | MessageType::Audio | MessageType::File
    ) && !event.media_link.trim().is_empty();
    if !has_media {
        return Ok(MessagePost::Json(link_body));
    }
    let link = media::loggable_link(&event.media_link);
    let uploaded = download(event, ctx.attempt)?.and_then(|file| {
        let (bytes, content_type) = (file.bytes.len().to_string(), file.content_type.clone());
        let too_large = || {
            format!(
                "the file ({bytes} bytes) is larger than the {} MiB one host call may pass",
                HOST_CALL_DATA_BYTES >> 20
            )
        };
        if file.bytes.len() >= HOST_CALL_DATA_BYTES {
            return Err(too_large());
        }
        let fields = media::form_fields(event, &ctx.delivery_id, api.settings.tag.as_deref());
        let form = media::multipart(&fields, file, &ctx.delivery_id);
        if !api.upload_fits(&form) {
            return Err(too_large());
        }
        log::log(
            log::Level::Info,
            "chatwoot: media uploaded as an attachment",
            &[("media", &link), ("bytes", &bytes), ("content_type", &content_type)],
        );
        Ok(form)
    });
    match uploaded {
        Ok(form) => Ok(MessagePost::Upload { form, link_body }),
        Err(reason) => {
            log::log(
                log::Level::Info,
                "chatwoot: media sent as a link",
                &[("media", &link), ("reason", &reason)],
            );
            Ok(MessagePost::Json(link_body))
        }
    }
}

/// Downloads the event's media through the host (which allows only the tenant's allowed
/// hosts and caps the size at `limits.http_response_bytes`), following a few redirects.
/// `Ok(Err(reason))` when the link is to be sent instead; retry-later for a transient failure
/// on the first [`MEDIA_RETRY_ATTEMPTS`] attempts. Chatwoot's token is never sent.
fn download(event: &IncomingEvent, attempt: u32) -> Result<Result<MediaFile, String>, AdapterError> {
    let transient = |reason: String| {
        if attempt <= MEDIA_RETRY_ATTEMPTS {
            Err(retry_later(format!(
                "chatwoot: downloading the media {}: {reason}",
                media::loggable_link(&event.media_link)
            )))
        } else {
            Ok(Err(format!("{reason} (attempt {attempt})")))
        }
    };
    let mut url = event.media_link.trim().to_owned();
    for _ in 0..=MAX_MEDIA_REDIRECTS {
        let request = http::request("GET", &url, &[("accept", "*/*")], Vec::new());
        let response = match http::try_send(&request) {
            Ok(response) => response,
            Err(http::HttpError::Denied(reason)) => {
                return Ok(Err(format!("the host refused the download: {reason}")));
            }
            Err(http::HttpError::LimitExceeded(reason)) => {
                return Ok(Err(format!(
                    "the file is too large or a host limit was reached: {reason}"
                )));
            }
            Err(http::HttpError::Timeout) => return transient("the media host timed out".into()),
            Err(http::HttpError::Connection(reason)) => {
                return transient(format!("connecting to the media host failed: {reason}"));
            }
        };
        let content_type = header(&response.headers, "content-type");
        match media::answer(
            response.status,
            &url,
            header(&response.headers, "location"),
            response.body.len(),
        ) {
            media::Answer::File => {
                let file_name = media::file_name(&event.media_link, event.message_type, content_type);
                return Ok(Ok(MediaFile {
                    content_type: media::media_type(content_type, &file_name),
                    file_name,
                    bytes: response.body,
                }));
            }
            media::Answer::Redirect(next) => url = next,
            media::Answer::Transient => {
                return transient(format!("the media host answered HTTP {}", response.status));
            }
            media::Answer::Refused if (200..300).contains(&response.status) => {
                return Ok(Err("the media host answered an empty file".into()));
            }
            media::Answer::Refused => {
                return Ok(Err(format!("the media host answered HTTP {}", response.status)));
            }
        }
    }
    Ok(Err(format!("more than {MAX_MEDIA_REDIRECTS} redirects")))
}

/// Delivers one Incoming event: contact, conversation, then the message (at most once per
/// delivery id, see the crate docs).
pub fn deliver(api: &Api, ctx: &CallContext, event: &IncomingEvent) -> Result<(), AdapterError> {
    let ticket_key = mapping::ticket_key(&event.ticket_number);
    // Made when the message is first posted: a retry that finds its message downloads nothing.
    let mut prepared: Option<MessagePost> = None;
    for _ in 0..2 {
        let mut link = api.ensure_conversation(event)?;
        if link.last_delivery.as_deref() == Some(ctx.delivery_id.as_str()) {
            log::info("chatwoot: message of this delivery is already in Chatwoot");
            return Ok(());
        }
        let posted = if ctx.attempt > 1 {
            api.find_message(link.conversation_id, &ctx.delivery_id, link.last_message_id)?
        } else {
            None
        };
        let message_id = match posted {
            Some(id) => {
                log::info("chatwoot: message of this delivery is already in Chatwoot");
                id
            }
            None => {
                let mut post = match prepared.take() {
                    Some(post) => post,
                    None => message_post(api, ctx, event)?,
                };
                let created = api.create_message(link.conversation_id, &mut post)?;
                prepared = Some(post);
                match created {
                    Some(id) => id,
                    None => {
                        log::warn("chatwoot: conversation is gone; creating a new one for the ticket");
                        kv::delete(&ticket_key)?;
                        kv::delete(&mapping::conversation_key(&link.conversation_id.to_string()))?;
                        continue;
                    }
                }
            }
        };
        link.last_delivery = Some(ctx.delivery_id.clone());
        if message_id > 0 {
            link.last_message_id = Some(message_id);
        }
        kv::set_json(&ticket_key, &link.to_json())?;
        return Ok(());
    }
    Err(retry_later(
        "chatwoot: the conversation disappeared again right after it was created",
    ))
}
