//! Conversions between the WIT world's types and the 3Dolphins contract's: an Incoming event
//! handed to an adapter, and the events an adapter's webhook produces completed into what
//! 3Dolphins expects.

use serde_json::Value;

use super::bindings::dolphin::bridge::types as wt;
use crate::contract::{
    self, CommandEvent, IncomingEvent, OutgoingEvent, ThreeDolphinsEvent, check_media_link, now_created_date, shorten,
};
use crate::store::TicketInfo;

/// Identifies one adapter call.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub tenant: String,
    pub delivery_id: String,
    pub attempt: u32,
    /// The end of the delivery's lease as its holder knows it, for calls that deliver one:
    /// past it, the adapter's HTTP requests are not sent (another replica may be making the
    /// attempt by then).
    pub lease: Option<std::sync::Arc<crate::clock::Deadline>>,
}

impl CallContext {
    pub(super) fn to_wit(&self) -> wt::CallContext {
        wt::CallContext {
            tenant: self.tenant.clone(),
            delivery_id: self.delivery_id.clone(),
            attempt: self.attempt,
        }
    }
}

pub(super) fn to_wit_incoming(event: &IncomingEvent) -> wt::IncomingEvent {
    wt::IncomingEvent {
        ticket_number: event.ticket_number.clone(),
        channel: event.channel.clone(),
        account_id: event.account_id.clone(),
        contact_id: event.contact_id.clone(),
        message_type: to_wit_type(event.message_type),
        message: event.message.clone(),
        media_link: event.media_link.clone(),
        customer_name: event.customer_name.clone(),
        created_date: event.created_date.clone(),
        owner: event.owner.clone(),
        group_id: event.group_id.clone(),
        language: event.language.clone(),
        extra: event.extra.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
    }
}

/// Maps the contract's message type to the WIT one.
pub fn to_wit_type(kind: contract::MessageType) -> wt::MessageType {
    use contract::MessageType as M;
    match kind {
        M::Text => wt::MessageType::Text,
        M::Image => wt::MessageType::Image,
        M::Video => wt::MessageType::Video,
        M::Audio => wt::MessageType::Audio,
        M::File => wt::MessageType::File,
        M::Location => wt::MessageType::Location,
    }
}

/// Maps the WIT message type to the contract's.
pub fn from_wit_type(kind: wt::MessageType) -> contract::MessageType {
    use contract::MessageType as M;
    match kind {
        wt::MessageType::Text => M::Text,
        wt::MessageType::Image => M::Image,
        wt::MessageType::Video => M::Video,
        wt::MessageType::Audio => M::Audio,
        wt::MessageType::File => M::File,
        wt::MessageType::Location => M::Location,
    }
}

/// An adapter's event as 3Dolphins gets it: the tenant's `owner`, and the ticket's channel and
/// customer name (from `known`, what the bridge remembers of the ticket) when the adapter left
/// them out; or why the bridge refuses it (no channel to be had, a bad media link, a reserved
/// `extra` key). Shared by the webhook endpoint and `plugin test`.
pub fn complete_adapter_event(
    owner: &str,
    known: Option<&TicketInfo>,
    event: wt::BridgeEvent,
) -> Result<ThreeDolphinsEvent, String> {
    let ticket_number = match &event {
        wt::BridgeEvent::Outgoing(e) => e.ticket_number.clone(),
        wt::BridgeEvent::Command(e) => e.ticket_number.clone(),
    };
    if ticket_number.trim().is_empty() {
        return Err("the adapter produced an event without a ticket number".into());
    }
    // PostgreSQL's text cannot hold U+0000: refused on both stores, as in Incoming events.
    if ticket_number.contains('\0') {
        return Err("the adapter produced a ticket number with the NUL character (U+0000)".into());
    }
    let channel_of = |given: Option<String>| {
        given
            .filter(|c| !c.is_empty())
            .or_else(|| known.map(|k| k.channel.clone()))
            .ok_or_else(|| format!("ticket `{ticket_number}` is unknown to the bridge and the adapter gave no channel"))
    };
    Ok(match event {
        wt::BridgeEvent::Outgoing(e) => {
            let message_type = from_wit_type(e.message_type);
            if message_type.is_media() {
                check_media_link(&e.media_link).map_err(|m| format!("mediaLink {m}"))?;
            }
            let extra = outgoing_extra(e.extra)?;
            ThreeDolphinsEvent::Outgoing(OutgoingEvent {
                channel: channel_of(e.channel)?,
                customer_name: e
                    .customer_name
                    .or_else(|| known.map(|k| k.customer_name.clone()))
                    .unwrap_or_default(),
                ticket_number: e.ticket_number,
                message_type,
                message: e.message,
                media_link: e.media_link,
                owner: owner.to_string(),
                created_date: now_created_date(),
                extra,
            })
        }
        wt::BridgeEvent::Command(e) => ThreeDolphinsEvent::Command(CommandEvent {
            channel: channel_of(e.channel)?,
            ticket_number: e.ticket_number,
            owner: owner.to_string(),
            event: match e.command {
                wt::TicketCommand::Close => "Close".into(),
            },
        }),
    })
}

/// An adapter's `extra` for an Outgoing event, as JSON values (a value that is not JSON text
/// stays a string). A key the event has already (`owner`, `ticketNumber`, `message`…, or the
/// `kind` it is stored with), compared ignoring case, is refused: it would be a second value for
/// that key in what 3Dolphins gets (an adapter could speak for another owner).
fn outgoing_extra(pairs: Vec<(String, String)>) -> Result<serde_json::Map<String, Value>, String> {
    /// The keys of an Outgoing event as stored (tagged with `kind`) and posted.
    static RESERVED: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let template = ThreeDolphinsEvent::Outgoing(OutgoingEvent {
            ticket_number: String::new(),
            channel: String::new(),
            message_type: from_wit_type(wt::MessageType::Text),
            message: String::new(),
            media_link: String::new(),
            customer_name: String::new(),
            owner: String::new(),
            created_date: String::new(),
            extra: serde_json::Map::new(),
        });
        match serde_json::to_value(template) {
            Ok(Value::Object(map)) => map.into_iter().map(|(key, _)| key).collect(),
            _ => unreachable!("an Outgoing event serializes to an object"),
        }
    });
    let mut extra = serde_json::Map::new();
    for (key, value) in pairs {
        if RESERVED.iter().any(|reserved| reserved.eq_ignore_ascii_case(&key)) {
            return Err(format!(
                "the adapter set `{}` in an Outgoing event's extra fields, which the event has already",
                shorten(&key.escape_debug().to_string())
            ));
        }
        let value = serde_json::from_str(&value).unwrap_or(Value::String(value));
        extra.insert(key, value);
    }
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pairs(keys: &[&str]) -> Vec<(String, String)> {
        keys.iter().map(|k| (k.to_string(), "\"x\"".to_string())).collect()
    }

    #[test]
    fn a_ticket_number_with_a_nul_is_refused() {
        let event = wt::BridgeEvent::Command(wt::CommandEvent {
            ticket_number: "T\u{0}1".into(),
            command: wt::TicketCommand::Close,
            channel: Some("whatsapp".into()),
        });
        let err = complete_adapter_event("owner", None, event).unwrap_err();
        assert!(err.contains("U+0000"), "{err}");
    }

    #[test]
    fn keys_the_event_has_are_refused() {
        for key in [
            "owner",
            "kind",
            "ticketNumber",
            "channel",
            "messageType",
            "message",
            "mediaLink",
            "customerName",
            "createdDate",
            "OWNER",
        ] {
            let err = outgoing_extra(pairs(&["fine", key])).unwrap_err();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn other_keys_are_kept_as_json() {
        let extra = outgoing_extra(vec![
            ("groupId".into(), "\"g1\"".into()),
            ("n".into(), "3".into()),
            ("text".into(), "not json".into()),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(extra),
            json!({"groupId": "g1", "n": 3, "text": "not json"})
        );
    }
}
