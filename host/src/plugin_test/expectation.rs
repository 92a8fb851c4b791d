//! What a fixture must produce: `NAME.expect.json` beside `NAME.json`, compared with what the
//! adapter did ([`Observed`]), and written from it by `plugin test --update` (a golden file).
//!
//! Every key is optional, and only the keys present are compared:
//! - `result`: `ok`, or the kind of the adapter's failure (`permanent`, `retry_later`, ...);
//! - `status`: a webhook's answer status;
//! - `events`: the events a webhook posts to 3Dolphins, in order: as many as listed, each having
//!   the listed fields with these values (fields not listed are not compared; `createdDate`, the
//!   bridge's clock, is never written by `--update`);
//! - `vendor_requests`: the requests the adapter sent (vendor and 3Dolphins look-ups), in order:
//!   as many as listed, each `{"method", "path"}` (path with its query).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Fields of an event the bridge fills from its clock: never compared, never written.
const VOLATILE_EVENT_FIELDS: &[&str] = &["createdDate"];

/// One request the adapter sent, as compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLine {
    pub method: String,
    pub path: String,
}

/// `NAME.expect.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_requests: Option<Vec<RequestLine>>,
}

/// What one fixture's run produced.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `ok`, or the failure's kind.
    pub result: String,
    /// A webhook's answer status.
    pub status: Option<u16>,
    /// A webhook's events, as posted to 3Dolphins.
    pub events: Vec<Value>,
    pub requests: Vec<RequestLine>,
}

impl Observed {
    /// The golden expectation of this run: everything compared, the volatile fields left out.
    pub fn as_expectation(&self) -> Expectation {
        let events = self
            .events
            .iter()
            .map(|event| {
                let mut event = event.clone();
                if let Value::Object(fields) = &mut event {
                    for volatile in VOLATILE_EVENT_FIELDS {
                        fields.remove(*volatile);
                    }
                }
                event
            })
            .collect();
        Expectation {
            result: Some(self.result.clone()),
            status: self.status,
            events: Some(events),
            vendor_requests: Some(self.requests.clone()),
        }
    }
}

impl Expectation {
    /// Each way `observed` differs from this, in words naming where (`events[0].message:
    /// expected "a", got "b"`); empty when it matches.
    pub fn differences(&self, observed: &Observed) -> Vec<String> {
        let mut differences = Vec::new();
        if let Some(result) = &self.result
            && *result != observed.result
        {
            differences.push(format!("result: expected {result:?}, got {:?}", observed.result));
        }
        if let Some(status) = self.status
            && Some(status) != observed.status
        {
            let got = observed.status.map_or("no answer".to_string(), |s| s.to_string());
            differences.push(format!("status: expected {status}, got {got}"));
        }
        if let Some(events) = &self.events {
            if events.len() != observed.events.len() {
                differences.push(format!(
                    "events: expected {}, got {}",
                    events.len(),
                    observed.events.len()
                ));
            }
            for (i, (expected, got)) in events.iter().zip(&observed.events).enumerate() {
                subset_differences(&format!("events[{i}]"), expected, got, &mut differences);
            }
        }
        if let Some(requests) = &self.vendor_requests {
            if requests.len() != observed.requests.len() {
                differences.push(format!(
                    "vendor_requests: expected {}, got {}",
                    requests.len(),
                    observed.requests.len()
                ));
            }
            for (i, (expected, got)) in requests.iter().zip(&observed.requests).enumerate() {
                if expected != got {
                    differences.push(format!(
                        "vendor_requests[{i}]: expected {} {}, got {} {}",
                        expected.method, expected.path, got.method, got.path
                    ));
                }
            }
        }
        differences
    }
}

/// The ways `got` lacks what `expected` has: every field of an expected object must be in `got`
/// with a value that has it too; anything else must be equal.
fn subset_differences(place: &str, expected: &Value, got: &Value, differences: &mut Vec<String>) {
    match (expected, got) {
        (Value::Object(expected), Value::Object(got)) => {
            for (name, value) in expected {
                let place = format!("{place}.{name}");
                match got.get(name) {
                    Some(found) => subset_differences(&place, value, found, differences),
                    None => differences.push(format!("{place}: expected {value}, got nothing")),
                }
            }
        }
        _ if expected != got => differences.push(format!("{place}: expected {expected}, got {got}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn observed() -> Observed {
        Observed {
            result: "ok".into(),
            status: Some(200),
            events: vec![json!({
                "ticketNumber": "T-1",
                "message": "Halo",
                "createdDate": "2026-12-07 10:00:00",
                "additionalInfo": {"agent": "Rina"}
            })],
            requests: vec![RequestLine {
                method: "GET".into(),
                path: "/api/v1/livechat/config".into(),
            }],
        }
    }

    #[test]
    fn listed_fields_must_match_and_unlisted_ones_are_not_compared() {
        let expect: Expectation = serde_json::from_value(json!({
            "status": 200,
            "events": [{"ticketNumber": "T-1", "additionalInfo": {"agent": "Rina"}}]
        }))
        .unwrap();
        assert!(expect.differences(&observed()).is_empty());
    }

    #[test]
    fn each_difference_is_named_where_it_is() {
        let expect: Expectation = serde_json::from_value(json!({
            "result": "ok",
            "status": 202,
            "events": [{"message": "Hello", "additionalInfo": {"agent": "Budi"}, "channel": "whatsapp"}],
            "vendor_requests": [{"method": "POST", "path": "/api/v1/livechat/message"}]
        }))
        .unwrap();
        assert_eq!(
            expect.differences(&observed()),
            [
                "status: expected 202, got 200",
                "events[0].additionalInfo.agent: expected \"Budi\", got \"Rina\"",
                "events[0].channel: expected \"whatsapp\", got nothing",
                "events[0].message: expected \"Hello\", got \"Halo\"",
                "vendor_requests[0]: expected POST /api/v1/livechat/message, got GET /api/v1/livechat/config",
            ]
        );
    }

    #[test]
    fn an_event_too_many_or_a_failure_is_a_difference() {
        let none: Expectation = serde_json::from_value(json!({"events": []})).unwrap();
        assert_eq!(none.differences(&observed()), ["events: expected 0, got 1"]);
        let failed = Observed {
            result: "permanent".into(),
            ..observed()
        };
        let ok: Expectation = serde_json::from_value(json!({"result": "ok"})).unwrap();
        assert_eq!(ok.differences(&failed), ["result: expected \"ok\", got \"permanent\""]);
    }

    #[test]
    fn the_golden_expectation_matches_its_run_and_leaves_the_clock_out() {
        let golden = observed().as_expectation();
        assert!(golden.events.as_ref().unwrap()[0].get("createdDate").is_none());
        assert!(golden.differences(&observed()).is_empty());
        let later = Observed {
            events: vec![json!({
                "ticketNumber": "T-1",
                "message": "Halo",
                "createdDate": "2026-12-08 09:00:00",
                "additionalInfo": {"agent": "Rina"}
            })],
            ..observed()
        };
        assert!(golden.differences(&later).is_empty(), "another run's clock");
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let error = serde_json::from_value::<Expectation>(json!({"event": []})).unwrap_err();
        assert!(error.to_string().contains("unknown field `event`"), "{error}");
    }
}
