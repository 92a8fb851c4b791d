//! Customer media as a Chatwoot upload: what a download's answer means, the file's name and
//! content type, and the `multipart/form-data` body of `POST /conversations/{id}/messages`
//! (pure: unit-tested natively).

use dolphin_bridge_sdk::{IncomingEvent, MessageType, percent_decode};
use sha2::{Digest, Sha256};

/// A downloaded file, ready to be uploaded as `attachments[]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaFile {
    pub file_name: String,
    /// A bare media type (`image/png`): Chatwoot's `FileTypeHelper` compares it exactly.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// What a media host's answer to the download means.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 2xx: the file.
    File,
    /// 3xx with a `Location`: download that URL instead (the host follows no redirects).
    Redirect(String),
    /// 408, 429 or 5xx: the host may answer later.
    Transient,
    /// Anything else (a 4xx, an empty body, a 3xx without a usable `Location`): the link is sent.
    Refused,
}

/// Reads a media host's `status` (and `location` of a redirect from `url`).
pub fn answer(status: u16, url: &str, location: Option<&str>, body_len: usize) -> Answer {
    match status {
        200..=299 if body_len > 0 => Answer::File,
        300..=399 => location
            .and_then(|l| redirect_target(url, l))
            .map_or(Answer::Refused, Answer::Redirect),
        408 | 429 | 500..=599 => Answer::Transient,
        _ => Answer::Refused,
    }
}

/// The URL a redirect from `url` to `location` points at: an absolute http(s) URL, a
/// scheme-relative `//host/...`, or an absolute path on `url`'s origin; `None` for other forms.
pub fn redirect_target(url: &str, location: &str) -> Option<String> {
    let location = location.trim();
    let (scheme, rest) = url.split_once("://")?;
    let origin_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if location.starts_with("http://") || location.starts_with("https://") {
        Some(location.to_owned())
    } else if let Some(authority) = location.strip_prefix("//") {
        Some(format!("{scheme}://{authority}"))
    } else if location.starts_with('/') {
        Some(format!("{scheme}://{}{location}", &rest[..origin_end]))
    } else {
        None
    }
}

/// `url` without user info, query and fragment: what may be logged of a media link (signed
/// links carry their credentials there).
pub fn loggable_link(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

/// The last segment of the link's path, percent-decoded, when it names something; it becomes
/// the attachment's name.
fn link_file_name(link: &str) -> Option<String> {
    let path = loggable_link(link);
    let path = path.split_once("://").map_or(path.as_str(), |(_, rest)| rest);
    let segment = path.split_once('/')?.1.rsplit('/').next()?;
    // In a path `+` is itself, not a space.
    let decoded = percent_decode(&segment.replace('+', "%2B"));
    let cleaned: String = decoded
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '"' | '\\' | '/') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        return None;
    }
    let mut end = cleaned.len().min(200);
    while !cleaned.is_char_boundary(end) {
        end -= 1;
    }
    Some(cleaned[..end].to_owned())
}

/// Extensions of the media types customers send most.
const EXTENSIONS: &[(&str, &str)] = &[
    ("image/jpeg", "jpg"),
    ("image/png", "png"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("image/bmp", "bmp"),
    ("video/mp4", "mp4"),
    ("video/webm", "webm"),
    ("video/quicktime", "mov"),
    ("video/ogg", "ogv"),
    ("audio/mpeg", "mp3"),
    ("audio/ogg", "ogg"),
    ("audio/aac", "aac"),
    ("audio/mp4", "m4a"),
    ("audio/wav", "wav"),
    ("application/pdf", "pdf"),
];

/// The media type of a file: the download's `Content-Type` without parameters, or, when that
/// says nothing (absent, `application/octet-stream`), the one its name's extension implies.
pub fn media_type(content_type: Option<&str>, file_name: &str) -> String {
    let declared = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| t.contains('/') && !t.chars().any(|c| c.is_control() || c.is_whitespace()));
    match declared {
        Some(t) if t != "application/octet-stream" && t != "binary/octet-stream" => t,
        _ => {
            let extension = file_name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase());
            let by_extension = match extension.as_deref() {
                Some("jpeg") => Some("image/jpeg"),
                Some(ext) => EXTENSIONS.iter().find(|(_, e)| *e == ext).map(|(t, _)| *t),
                None => None,
            };
            by_extension.unwrap_or("application/octet-stream").to_owned()
        }
    }
}

/// The attachment's name: the link's last path segment, else the message type with the
/// extension of `content_type` (`image.jpg`).
pub fn file_name(link: &str, message_type: MessageType, content_type: Option<&str>) -> String {
    if let Some(name) = link_file_name(link) {
        return name;
    }
    let stem = match message_type {
        MessageType::Image => "image",
        MessageType::Video => "video",
        MessageType::Audio => "audio",
        _ => "file",
    };
    let bare = content_type.and_then(|t| t.split(';').next()).map(str::trim);
    match EXTENSIONS.iter().find(|(t, _)| Some(*t) == bare) {
        Some((_, extension)) => format!("{stem}.{extension}"),
        None => stem.to_owned(),
    }
}

/// The message's text besides the file: the caption, none when it is empty or the link itself.
pub fn caption(event: &IncomingEvent) -> Option<&str> {
    let text = event.message.trim();
    (!text.is_empty() && text != event.media_link).then_some(text)
}

/// The text fields of the upload, as the JSON body has them: `content` (the caption, when
/// any), `message_type`, `private`, `source_id` (the idempotency key), `echo_id` and
/// `content_attributes[bridge_tag]`.
pub fn form_fields(event: &IncomingEvent, delivery_id: &str, tag: Option<&str>) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    if let Some(caption) = caption(event) {
        fields.push(("content".to_owned(), caption.to_owned()));
    }
    fields.push(("message_type".to_owned(), "incoming".to_owned()));
    fields.push(("private".to_owned(), "false".to_owned()));
    fields.push(("source_id".to_owned(), delivery_id.to_owned()));
    fields.push(("echo_id".to_owned(), delivery_id.to_owned()));
    if let Some(tag) = tag {
        fields.push(("content_attributes[bridge_tag]".to_owned(), tag.to_owned()));
    }
    fields
}

/// A `multipart/form-data` request body and its `Content-Type` (with the boundary).
pub struct Multipart {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut start = 0;
    while let Some(offset) = haystack[start..].iter().position(|&b| b == first) {
        let at = start + offset;
        if haystack[at + 1..].starts_with(rest) {
            return true;
        }
        start = at + 1;
    }
    false
}

/// Replaces what cannot stand in a quoted header parameter.
fn quoted_parameter(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '"' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The form with `fields` and `file` as `attachments[]`. The boundary comes from `seed` (the
/// delivery id, so a retry sends the same body) and is changed until neither the file nor a
/// field contains it.
pub fn multipart(fields: &[(String, String)], file: MediaFile, seed: &str) -> Multipart {
    let digest = Sha256::digest(seed.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    let mut boundary = format!("dolphin-bridge-{hex}");
    let mut round = 0u32;
    while {
        let delimiter = format!("--{boundary}");
        contains(&file.bytes, delimiter.as_bytes())
            || fields
                .iter()
                .any(|(_, value)| contains(value.as_bytes(), delimiter.as_bytes()))
    } {
        round += 1;
        boundary = format!("dolphin-bridge-{hex}-{round}");
    }
    let mut head = Vec::new();
    for (name, value) in fields {
        head.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    head.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"{}\"\r\n\
             Content-Type: {}\r\n\r\n",
            quoted_parameter(&file.file_name),
            file.content_type
        )
        .as_bytes(),
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let mut body = Vec::with_capacity(head.len() + file.bytes.len() + tail.len());
    body.extend_from_slice(&head);
    body.extend_from_slice(&file.bytes);
    body.extend_from_slice(tail.as_bytes());
    Multipart {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(message: &str, link: &str) -> IncomingEvent {
        crate::mapping::tests::event(MessageType::Image, message, link)
    }

    #[test]
    fn answers() {
        let url = "https://cdn.example.com/a/b.png?sig=1";
        assert_eq!(answer(200, url, None, 10), Answer::File);
        assert_eq!(answer(200, url, None, 0), Answer::Refused);
        assert_eq!(
            answer(302, url, Some("/c/d.png"), 0),
            Answer::Redirect("https://cdn.example.com/c/d.png".into())
        );
        assert_eq!(
            answer(301, url, Some("https://s3.example.com/x"), 0),
            Answer::Redirect("https://s3.example.com/x".into())
        );
        assert_eq!(
            answer(307, url, Some("//s3.example.com/x"), 0),
            Answer::Redirect("https://s3.example.com/x".into())
        );
        assert_eq!(answer(302, url, Some("d.png"), 0), Answer::Refused);
        assert_eq!(answer(302, url, None, 0), Answer::Refused);
        for status in [408, 429, 500, 503] {
            assert_eq!(answer(status, url, None, 0), Answer::Transient);
        }
        for status in [400, 401, 403, 404, 410] {
            assert_eq!(answer(status, url, None, 5), Answer::Refused);
        }
    }

    #[test]
    fn links_are_logged_without_credentials() {
        assert_eq!(
            loggable_link("https://user:pw@cdn.example.com/a/b.png?X-Amz-Signature=s#f"),
            "https://cdn.example.com/a/b.png"
        );
        assert_eq!(loggable_link("http://h:8080"), "http://h:8080");
    }

    #[test]
    fn names_and_types() {
        let name = |link: &str, content_type: Option<&str>| file_name(link, MessageType::Image, content_type);
        assert_eq!(name("https://cdn.example.com/a/receipt.png?sig=x", None), "receipt.png");
        assert_eq!(name("https://cdn.example.com/a/my%20bill+1.pdf", None), "my bill+1.pdf");
        assert_eq!(name("https://cdn.example.com/a/%22x%2F%0A.png", None), "_x__.png");
        assert_eq!(name("https://cdn.example.com/", Some("image/jpeg; q=1")), "image.jpg");
        assert_eq!(name("https://cdn.example.com", None), "image");
        assert_eq!(
            file_name("https://cdn.example.com/..", MessageType::Audio, Some("audio/ogg")),
            "audio.ogg"
        );
        assert_eq!(media_type(Some("Image/PNG; charset=binary"), "x"), "image/png");
        assert_eq!(media_type(Some("application/octet-stream"), "a.JPEG"), "image/jpeg");
        assert_eq!(media_type(None, "clip.mp4"), "video/mp4");
        assert_eq!(media_type(Some("bogus"), "x"), "application/octet-stream");
        assert_eq!(media_type(Some("text/plain\r\nX: y"), "x"), "application/octet-stream");
    }

    #[test]
    fn captions_and_fields() {
        assert_eq!(caption(&image(" look ", "https://m/x.png")), Some("look"));
        assert_eq!(caption(&image("https://m/x.png", "https://m/x.png")), None);
        assert_eq!(caption(&image("", "https://m/x.png")), None);
        let fields = form_fields(&image("look", "https://m/x.png"), "d1", Some("v2"));
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content",
                "message_type",
                "private",
                "source_id",
                "echo_id",
                "content_attributes[bridge_tag]"
            ]
        );
        assert_eq!(fields[3].1, "d1");
        assert!(form_fields(&image("", "https://m/x.png"), "d1", None).len() == 4);
    }

    #[test]
    fn multipart_bodies_keep_the_bytes_and_avoid_their_boundary() {
        let file = |bytes: Vec<u8>| MediaFile {
            file_name: "a\"b.png".into(),
            content_type: "image/png".into(),
            bytes,
        };
        let fields = vec![("content".to_owned(), "hi".to_owned())];
        let form = multipart(&fields, file(vec![0, 159, 146, 150]), "d1");
        let boundary = form.content_type.split_once("boundary=").unwrap().1.to_owned();
        let expected = [
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nhi\r\n").as_bytes(),
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"a_b.png\"\r\n\
                 Content-Type: image/png\r\n\r\n"
            )
            .as_bytes(),
            &[0, 159, 146, 150],
            format!("\r\n--{boundary}--\r\n").as_bytes(),
        ]
        .concat();
        assert_eq!(form.body, expected);

        // A file that holds the boundary the delivery id gives gets another one.
        let clash = format!("x\r\n--{boundary}\r\ny").into_bytes();
        let form = multipart(&fields, file(clash.clone()), "d1");
        let other = form.content_type.split_once("boundary=").unwrap().1;
        assert_ne!(other, boundary);
        assert!(contains(&form.body, &clash));
        assert!(!contains(&clash, format!("--{other}").as_bytes()));
        assert_eq!(
            multipart(&fields, file(vec![1]), "d1").content_type,
            format!("multipart/form-data; boundary={boundary}")
        );
    }
}
