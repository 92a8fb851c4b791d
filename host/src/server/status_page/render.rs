//! The status page's HTML: escaping, the login page, the page itself and its inline SVG charts.
//! Pure functions of what [`PageData`] holds, so they are tested without a server.

use std::fmt::Write;

use crate::activity::{Failure, MINUTES};
use crate::registry::CanaryStatus;
use crate::runtime::BreakerView;
use crate::store::{Delivery, TenantBacklog};

/// Escapes `text` for HTML text and (double- or single-quoted) attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One of a tenant's stored adapter versions.
pub struct VersionRow {
    pub content_hash: String,
    pub size_bytes: u64,
    pub deployed_at: String,
    pub source: String,
    pub active: bool,
    /// While it is the canary: the percent of the tickets it serves.
    pub canary: Option<u8>,
}

/// One entry of the registry's recent history.
pub struct HistoryRow {
    pub at: String,
    pub tenant: String,
    pub kind: String,
    pub detail: String,
}

/// One tenant as the page shows it.
pub struct TenantRow {
    pub name: String,
    pub owner: String,
    pub content_hash: String,
    /// The world the adapter was built for, e.g. `dolphin:bridge@0.1.0`.
    pub world: String,
    pub loaded_at: String,
    /// The adapter file it was loaded from.
    pub source: String,
    pub last_success: Option<i64>,
    pub last_failure: Option<Failure>,
    pub calls: u64,
    pub errors: u64,
    pub cpu_micros: u64,
    /// (`incoming` | `webhooks`, state)
    pub breakers: [(&'static str, BreakerView); 2],
    pub backlog: Option<TenantBacklog>,
    pub per_minute: [u32; MINUTES],
    /// Stored versions, or why they cannot be listed.
    pub versions: Result<Vec<VersionRow>, String>,
    /// The running canary, both versions' figures side by side.
    pub canary: Option<CanaryStatus>,
}

/// The dead-letter search as given.
#[derive(Default)]
pub struct Search {
    pub tenant: String,
    pub text: String,
}

/// Everything the page shows.
pub struct PageData {
    pub csrf: String,
    pub flash: Option<String>,
    pub now_ms: i64,
    pub tenants: Vec<TenantRow>,
    pub dead_letters: Vec<Delivery>,
    /// Dead letters matching before the page's cut-off.
    pub dead_letters_matching: usize,
    pub search: Search,
    pub history: Vec<HistoryRow>,
}

fn head(title: &str) -> String {
    // An empty icon: without one, browsers ask for `/favicon.ico` and log its 404.
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/admin/static/style.css\">\
         <link rel=\"icon\" href=\"data:,\"></head><body>\n",
        escape(title)
    )
}

/// The login form, with `problem` above it (a failed login).
pub fn login_page(problem: Option<&str>) -> String {
    let mut html = head("dolphin-bridge: log in");
    html.push_str("<main class=\"login\"><h1>dolphin-bridge</h1>");
    if let Some(problem) = problem {
        let _ = write!(html, "<p id=\"login-error\" class=\"problem\">{}</p>", escape(problem));
    }
    html.push_str(
        "<form id=\"login\" method=\"post\" action=\"/admin/login\">\
         <label for=\"token\">Admin token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Log in</button></form></main></body></html>\n",
    );
    html
}

/// A page naming a problem (`code`: `message`), with a link back.
pub fn problem_page(code: &str, message: &str) -> String {
    let mut html = head("dolphin-bridge: refused");
    let _ = writeln!(
        html,
        "<main><h1>Refused</h1><p id=\"problem\" class=\"problem\" data-code=\"{}\"><code>{}</code>: {}</p>\
         <p><a href=\"/admin\">Back to the status page</a></p></main></body></html>",
        escape(code),
        escape(code),
        escape(message)
    );
    html
}

/// `2026-12-01 22:55:39Z (3m ago)`.
fn time_ago(at_ms: i64, now_ms: i64) -> String {
    let when = chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| at_ms.to_string());
    format!("{when} ({} ago)", age((now_ms - at_ms).max(0)))
}

/// `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
fn age(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn short_hash(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn csrf_field(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", escape(csrf))
}

fn breaker(label: &str, view: BreakerView) -> String {
    match view {
        BreakerView::Closed => format!("{label}: closed"),
        BreakerView::Open(left) => format!(
            "<span class=\"breaker-open\">{label}: open ({} ms left)</span>",
            left.as_millis()
        ),
        BreakerView::TrialDue => format!("<span class=\"breaker-trial\">{label}: half-open (trial due)</span>"),
        BreakerView::Trial => format!("<span class=\"breaker-trial\">{label}: half-open (trial running)</span>"),
    }
}

/// A bar chart of deliveries per minute over the last hour.
pub fn chart(tenant: &str, per_minute: &[u32; MINUTES]) -> String {
    const WIDTH: u32 = 5;
    const HEIGHT: u32 = 60;
    let max = per_minute.iter().copied().max().unwrap_or(0).max(1);
    let total: u32 = per_minute.iter().sum();
    let mut svg = format!(
        "<svg class=\"chart\" data-tenant=\"{t}\" role=\"img\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title>{t}: {total} deliveries in the last hour, at most {max} a minute</title>\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#f6f8fa\"/>",
        t = escape(tenant),
        w = WIDTH * MINUTES as u32,
        h = HEIGHT,
    );
    for (i, &count) in per_minute.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let height = (count * (HEIGHT - 2)).div_ceil(max);
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{height}\" fill=\"#0969da\"/>",
            i as u32 * WIDTH,
            HEIGHT - height,
            WIDTH - 1
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The status page.
pub fn page(data: &PageData) -> String {
    let mut html = head("dolphin-bridge status");
    let csrf = csrf_field(&data.csrf);
    let _ = writeln!(
        html,
        "<header><h1>dolphin-bridge status</h1>\
         <form id=\"logout\" class=\"inline\" method=\"post\" action=\"/admin/logout\">{csrf}\
         <button type=\"submit\">Log out</button></form></header>"
    );
    if let Some(flash) = &data.flash {
        let _ = writeln!(html, "<p id=\"flash\" role=\"status\">{}</p>", escape(flash));
    }
    tenants_table(&mut html, data);
    charts(&mut html, data);
    dead_letters(&mut html, data, &csrf);
    deployments(&mut html, data, &csrf);
    history(&mut html, data);
    html.push_str("</body></html>\n");
    html
}

fn tenants_table(html: &mut String, data: &PageData) {
    html.push_str(
        "<h2>Tenants</h2><table id=\"tenants\"><thead><tr><th>Tenant</th><th>Owner</th><th>Adapter version</th>\
         <th>Last success</th><th>Last failure</th><th>Calls</th><th>Error rate</th><th>CPU used</th>\
         <th>Breakers</th><th>Outbox</th></tr></thead><tbody>\n",
    );
    for t in &data.tenants {
        let name = escape(&t.name);
        let success = t
            .last_success
            .map(|at| time_ago(at, data.now_ms))
            .unwrap_or_else(|| "none since start".into());
        let failure = match &t.last_failure {
            Some(f) => format!(
                "{}<br><span class=\"error mono\">{}</span>",
                time_ago(f.at, data.now_ms),
                escape(&f.error)
            ),
            None => "none since start".into(),
        };
        let rate = if t.calls == 0 {
            "–".to_string()
        } else {
            format!("{:.1}%", t.errors as f64 * 100.0 / t.calls as f64)
        };
        let outbox = match &t.backlog {
            Some(b) => format!(
                "{} pending, oldest {} old",
                b.pending,
                age((data.now_ms - b.oldest_created_at).max(0))
            ),
            None => "0 pending".into(),
        };
        let _ = writeln!(
            html,
            "<tr class=\"tenant\" data-tenant=\"{name}\"><td class=\"name\">{name}</td><td class=\"owner\">{}</td>\
             <td class=\"version\"><code class=\"hash\" title=\"{}\">{}</code> <span class=\"world\">{}</span><br>loaded {}<br>\
             <span class=\"muted mono source\">{}</span></td>\
             <td class=\"last-success\">{success}</td><td class=\"last-failure\">{failure}</td>\
             <td class=\"calls\">{} ({} failed)</td><td class=\"error-rate\">{rate}</td>\
             <td class=\"cpu\">{:.3} s</td><td class=\"breakers\">{}<br>{}</td><td class=\"outbox\">{outbox}</td></tr>",
            escape(&t.owner),
            escape(&t.content_hash),
            escape(short_hash(&t.content_hash)),
            escape(&t.world),
            escape(&t.loaded_at),
            escape(&t.source),
            t.calls,
            t.errors,
            t.cpu_micros as f64 / 1e6,
            breaker(t.breakers[0].0, t.breakers[0].1),
            breaker(t.breakers[1].0, t.breakers[1].1),
        );
    }
    html.push_str("</tbody></table>\n");
}

fn charts(html: &mut String, data: &PageData) {
    html.push_str("<h2>Deliveries per minute, last hour</h2><div id=\"activity\" class=\"charts\">");
    for t in &data.tenants {
        let total: u32 = t.per_minute.iter().sum();
        let _ = write!(
            html,
            "<figure data-tenant=\"{}\">{}<figcaption>{}: {total} in the last hour</figcaption></figure>",
            escape(&t.name),
            chart(&t.name, &t.per_minute),
            escape(&t.name)
        );
    }
    html.push_str("</div>\n");
}

fn tenant_options(html: &mut String, data: &PageData, selected: &str, none_label: &str) {
    let _ = write!(html, "<option value=\"\">{}</option>", escape(none_label));
    for t in &data.tenants {
        let chosen = if t.name == selected { " selected" } else { "" };
        let _ = write!(html, "<option value=\"{n}\"{chosen}>{n}</option>", n = escape(&t.name));
    }
}

fn dead_letters(html: &mut String, data: &PageData, csrf: &str) {
    html.push_str(
        "<h2>Dead letters</h2><form id=\"dead-letter-search\" method=\"get\" action=\"/admin\">\
         <label>Tenant <select name=\"tenant\">",
    );
    tenant_options(html, data, &data.search.tenant, "any");
    let _ = writeln!(
        html,
        "</select></label> <label>Text in id, ticket or error <input name=\"q\" value=\"{}\"></label> \
         <button type=\"submit\">Search</button></form>",
        escape(&data.search.text)
    );
    let _ = writeln!(
        html,
        "<p class=\"muted\" id=\"dead-letter-count\">{} matching, {} shown</p>",
        data.dead_letters_matching,
        data.dead_letters.len()
    );
    html.push_str(
        "<table id=\"dead-letters\"><thead><tr><th>Delivery</th><th>Tenant</th><th>Ticket</th><th>Direction</th>\
         <th>Attempts</th><th>Accepted</th><th>Error</th><th>Replay</th></tr></thead><tbody>\n",
    );
    for d in &data.dead_letters {
        let id = escape(&d.delivery_id);
        let _ = write!(
            html,
            "<tr class=\"dead-letter\" data-delivery-id=\"{id}\" data-tenant=\"{}\"><td><code>{id}</code></td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"error mono\">{}</td>\
             <td><form class=\"replay\" method=\"post\" action=\"/admin/ui/replay\">{csrf}\
             <input type=\"hidden\" name=\"delivery_id\" value=\"{id}\">\
             <select name=\"to_tenant\" aria-label=\"replay to tenant\">",
            escape(&d.tenant),
            escape(&d.tenant),
            escape(&d.ticket),
            match d.direction {
                crate::store::Direction::ToVendor => "to vendor",
                crate::store::Direction::ToThreeDolphins => "to 3Dolphins",
            },
            d.attempts,
            time_ago(d.created_at, data.now_ms),
            escape(&crate::contract::shorten(d.last_error.as_deref().unwrap_or(""))),
        );
        tenant_options(html, data, "", "same tenant");
        html.push_str("</select> <button type=\"submit\">Replay</button></form></td></tr>\n");
    }
    html.push_str("</tbody></table>\n");
}

fn deployments(html: &mut String, data: &PageData, csrf: &str) {
    html.push_str("<h2>Adapter versions</h2><div id=\"deployments\" class=\"deploy\">\n");
    for t in &data.tenants {
        let name = escape(&t.name);
        // The address names the tenant: its upload slot is taken before the body is read.
        let in_query = escape(&url::form_urlencoded::byte_serialize(t.name.as_bytes()).collect::<String>());
        let _ = write!(
            html,
            "<div class=\"tenant-deploy\" data-tenant=\"{name}\"><h3>{name}</h3>\
             <form class=\"deploy\" data-tenant=\"{name}\" method=\"post\" action=\"/admin/ui/deploy?tenant={in_query}\" \
             enctype=\"multipart/form-data\">{csrf}<input type=\"hidden\" name=\"tenant\" value=\"{name}\">\
             <input type=\"file\" name=\"component\" accept=\".wasm\" required> \
             <label>canary <input type=\"number\" name=\"canary\" min=\"1\" max=\"99\" placeholder=\"%\"></label> \
             <button type=\"submit\">Deploy</button></form>\
             <form class=\"rollback\" data-tenant=\"{name}\" method=\"post\" action=\"/admin/ui/rollback\">{csrf}\
             <input type=\"hidden\" name=\"tenant\" value=\"{name}\"><button type=\"submit\">Roll back</button></form>"
        );
        match &t.versions {
            Ok(versions) if versions.is_empty() => {
                html.push_str("<p class=\"muted versions\">no deployed versions (loaded from its file)</p>")
            }
            Ok(versions) => {
                html.push_str("<ol class=\"versions\">");
                for v in versions {
                    let _ = write!(
                        html,
                        "<li data-hash=\"{}\" class=\"{}\"><code>{}</code> {} bytes, {} from {}{}</li>",
                        escape(&v.content_hash),
                        match (v.active, v.canary) {
                            (true, _) => "version active",
                            (false, Some(_)) => "version canary",
                            (false, None) => "version",
                        },
                        escape(short_hash(&v.content_hash)),
                        v.size_bytes,
                        escape(&v.deployed_at),
                        escape(&v.source),
                        match (v.active, v.canary) {
                            (true, _) => " <strong>(active)</strong>".to_string(),
                            (false, Some(percent)) => format!(" <strong>(canary, {percent}% of the tickets)</strong>"),
                            (false, None) => String::new(),
                        }
                    );
                }
                html.push_str("</ol>");
            }
            Err(e) => {
                let _ = write!(html, "<p class=\"error versions\">{}</p>", escape(e));
            }
        }
        if let Some(canary) = &t.canary {
            canary_table(html, canary, csrf);
        }
        html.push_str("</div>\n");
    }
    html.push_str("</div>\n");
}

/// A running canary: both versions' calls, failures and latency side by side, what the policy
/// says of them, and the promote and abort forms.
fn canary_table(html: &mut String, canary: &CanaryStatus, csrf: &str) {
    let name = escape(&canary.tenant);
    let _ = write!(
        html,
        "<table class=\"canary\" data-tenant=\"{name}\"><thead><tr><th>Version</th><th>Tickets</th><th>Calls</th>\
         <th>Failures</th><th>Failure rate</th><th>Mean latency</th></tr></thead><tbody>"
    );
    let sides = [
        ("current", &canary.current_hash, 100 - canary.percent, &canary.current),
        ("canary", &canary.content_hash, canary.percent, &canary.canary),
    ];
    for (side, hash, percent, arm) in sides {
        let _ = write!(
            html,
            "<tr class=\"{side}\"><td>{side} <code>{}</code></td><td>{percent}%</td><td class=\"calls\">{}</td>\
             <td class=\"failures\">{}</td><td class=\"failure-rate\">{:.1}%</td><td class=\"latency\">{}</td></tr>",
            escape(short_hash(hash)),
            arm.calls,
            arm.failures,
            arm.failure_rate,
            arm.mean_latency_ms
                .map_or_else(|| "-".to_string(), |ms| format!("{ms:.1} ms")),
        );
    }
    let _ = write!(
        html,
        "</tbody></table><p class=\"canary-verdict\">{}</p>\
         <form class=\"canary-promote\" data-tenant=\"{name}\" method=\"post\" action=\"/admin/ui/canary/promote\">{csrf}\
         <input type=\"hidden\" name=\"tenant\" value=\"{name}\"><button type=\"submit\">Promote the canary</button></form>\
         <form class=\"canary-abort\" data-tenant=\"{name}\" method=\"post\" action=\"/admin/ui/canary/abort\">{csrf}\
         <input type=\"hidden\" name=\"tenant\" value=\"{name}\"><button type=\"submit\">Abort the canary</button></form>",
        escape(&canary.verdict)
    );
}

fn history(html: &mut String, data: &PageData) {
    html.push_str(
        "<h2>Recent reloads and deployments</h2><table id=\"history\"><thead><tr><th>When</th><th>Tenant</th>\
         <th>What</th><th>Detail</th></tr></thead><tbody>\n",
    );
    for h in &data.history {
        let _ = writeln!(
            html,
            "<tr class=\"event\" data-kind=\"{k}\" data-tenant=\"{t}\"><td>{}</td><td>{t}</td><td>{k}</td>\
             <td class=\"mono\">{}</td></tr>",
            escape(&h.at),
            escape(&h.detail),
            k = escape(&h.kind),
            t = escape(&h.tenant),
        );
    }
    html.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("plain text"), "plain text");
    }

    fn tenant(name: &str) -> TenantRow {
        TenantRow {
            name: name.into(),
            owner: "owner".into(),
            content_hash: "0123456789abcdef0123".into(),
            world: "dolphin:bridge@0.2.0".into(),
            loaded_at: "2026-12-01T22:00:00Z".into(),
            source: "adapters/echo.wasm".into(),
            last_success: None,
            last_failure: Some(Failure {
                at: 0,
                error: "<img src=x onerror=alert(1)>".into(),
            }),
            calls: 4,
            errors: 1,
            cpu_micros: 1_500_000,
            breakers: [
                ("incoming", BreakerView::Open(Duration::from_millis(900))),
                ("webhooks", BreakerView::Closed),
            ],
            backlog: None,
            per_minute: [0; MINUTES],
            versions: Ok(Vec::new()),
            canary: None,
        }
    }

    #[test]
    fn the_page_escapes_what_tenants_and_adapters_wrote_and_has_no_script() {
        let data = PageData {
            csrf: "token".into(),
            flash: Some("<script>flash</script>".into()),
            now_ms: 60_000,
            tenants: vec![tenant("<script>alert(1)</script>")],
            dead_letters: Vec::new(),
            dead_letters_matching: 0,
            search: Search::default(),
            history: Vec::new(),
        };
        let html = page(&data);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("25.0%") && html.contains("1.500 s"), "{html}");
        assert!(html.contains("incoming: open (900 ms left)"));
        assert!(
            !html.contains("style="),
            "inline style attributes are refused by the CSP"
        );
    }

    #[test]
    fn the_chart_scales_bars_to_the_busiest_minute() {
        let mut per_minute = [0; MINUTES];
        per_minute[MINUTES - 1] = 10;
        per_minute[0] = 5;
        let svg = chart("acme", &per_minute);
        assert_eq!(svg.matches("fill=\"#0969da\"").count(), 2);
        assert!(svg.contains("x=\"295\" y=\"2\" width=\"4\" height=\"58\""), "{svg}");
        assert!(svg.contains("x=\"0\" y=\"31\" width=\"4\" height=\"29\""), "{svg}");
        assert!(svg.contains("15 deliveries in the last hour"));
    }
}
