//! The operators' status page over real HTTP: login with the admin token and a session cookie,
//! the security headers, tenants and dead letters on the page, CSRF-checked replay.

use dolphin_bridge_tests::Event;
use dolphin_bridge_tests::bridge::ADMIN_TOKEN;
use dolphin_bridge_tests::client::HttpResponse;

use crate::common::{ECHO_TENANT, EchoEnv, assert_accepted};

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn assert_page_headers(response: &HttpResponse) {
    assert_eq!(
        response.header("content-security-policy"),
        Some(CSP),
        "{}",
        response.describe()
    );
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert!(
        response.header("content-type").unwrap_or("").starts_with("text/html"),
        "{:?}",
        response.headers
    );
    assert!(!response.text().contains("<script"), "{}", response.text());
}

/// The value of `name="csrf" value="..."` in the page.
pub(crate) fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a CSRF field") + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_logs_in_shows_a_dead_letter_and_replays_it_only_with_the_csrf_token() {
    let env = EchoEnv::start().await;
    let (client, base) = (env.bridge.client(), env.bridge.url().to_string());
    env.vendor.fail_next(1, 400);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    env.bridge.wait_for_delivery(&id, "dead").await;

    // No session: the login form, with the page's headers.
    let login_form = client.get(&format!("{base}/admin")).await;
    assert_eq!(login_form.status, 200);
    assert_page_headers(&login_form);
    assert!(
        login_form.text().contains("<form id=\"login\""),
        "{}",
        login_form.text()
    );
    assert!(!login_form.text().contains(ECHO_TENANT));
    let style = client.get(&format!("{base}/admin/static/style.css")).await;
    assert_eq!(
        (style.status, style.header("content-type")),
        (200, Some("text/css; charset=utf-8"))
    );

    // A wrong token: 401 and no cookie.
    let login = format!("{base}/admin/login");
    let wrong = client.send("POST", &login, &[FORM], "token=not-the-token").await;
    assert_eq!(wrong.status, 401, "{}", wrong.describe());
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.text().contains("id=\"login-error\""));
    assert_page_headers(&wrong);

    // The admin token: a session cookie, HttpOnly and SameSite=Strict, and back to the page.
    let body = format!("token={ADMIN_TOKEN}");
    let ok = client.send("POST", &login, &[FORM], body).await;
    assert_eq!(ok.status, 303, "{}", ok.describe());
    assert_eq!(ok.header("location"), Some("/admin"));
    let set_cookie = ok.header("set-cookie").expect("a session cookie").to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let session = ("cookie", cookie.as_str());

    // The page: the tenant and the dead letter.
    let page = client.send("GET", &format!("{base}/admin"), &[session], "").await;
    assert_eq!(page.status, 200, "{}", page.describe());
    assert_page_headers(&page);
    let html = page.text();
    assert!(
        html.contains(&format!("<tr class=\"tenant\" data-tenant=\"{ECHO_TENANT}\"")),
        "{html}"
    );
    assert!(html.contains(&format!("data-delivery-id=\"{id}\"")), "{html}");
    assert!(html.contains("<svg class=\"chart\""), "{html}");
    let csrf = csrf_of(&html);
    assert_eq!(csrf.len(), 64);

    // A replay without the CSRF token, or with another, is refused and replays nothing.
    let replay = format!("{base}/admin/ui/replay");
    let without = client
        .send("POST", &replay, &[FORM, session], format!("delivery_id={id}"))
        .await;
    assert_eq!(without.status, 403, "{}", without.describe());
    assert!(
        without.text().contains("data-code=\"csrf_missing\""),
        "{}",
        without.text()
    );
    let forged = client
        .send(
            "POST",
            &replay,
            &[FORM, session],
            format!("delivery_id={id}&csrf={}", "0".repeat(64)),
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.describe());
    assert!(forged.text().contains("data-code=\"csrf_mismatch\""));
    // Without a session the form is refused too, even with the token.
    let no_session = client
        .send("POST", &replay, &[FORM], format!("delivery_id={id}&csrf={csrf}"))
        .await;
    assert_eq!(no_session.status, 401, "{}", no_session.describe());
    assert_eq!(env.bridge.delivery(&id).await["state"], "dead");
    assert_eq!(
        env.vendor.bodies().len(),
        1,
        "only the first, failed attempt reached the vendor"
    );

    // With it: replayed, delivered to the (now working) vendor, and the page says so.
    let replayed = client
        .send(
            "POST",
            &replay,
            &[FORM, session],
            format!("delivery_id={id}&to_tenant=&csrf={csrf}"),
        )
        .await;
    assert_eq!(replayed.status, 303, "{}", replayed.describe());
    env.bridge.wait_for_delivery(&id, "delivered").await;
    let after = client
        .send("GET", &format!("{base}/admin"), &[session], "")
        .await
        .text();
    assert!(
        after.contains(&format!("<p id=\"flash\" role=\"status\">replayed {id}</p>")),
        "{after}"
    );
    assert!(!after.contains(&format!("data-delivery-id=\"{id}\"")), "{after}");

    // The JSON API still takes its bearer token, and not the cookie.
    assert_eq!(env.bridge.admin_get("outbox").await.status, 200);
    let with_cookie = client
        .send("GET", &format!("{base}/admin/outbox"), &[session], "")
        .await;
    assert_eq!(with_cookie.status, 401);

    // Logging out ends the session.
    let logout = client
        .send(
            "POST",
            &format!("{base}/admin/logout"),
            &[FORM, session],
            format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(logout.status, 303, "{}", logout.describe());
    assert!(logout.header("set-cookie").unwrap_or("").contains("Max-Age=0"));
    let gone = client
        .send("GET", &format!("{base}/admin"), &[session], "")
        .await
        .text();
    assert!(gone.contains("<form id=\"login\""), "{gone}");
}

/// `component` with a custom section appended: the same adapter under another content hash.
fn with_custom_section(mut component: Vec<u8>, tag: &str) -> Vec<u8> {
    let name = b"status-page-test";
    let payload = tag.as_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && name.len() < 128, "one-byte LEB128 sizes");
    component.push(0);
    component.push(size as u8);
    component.push(name.len() as u8);
    component.extend_from_slice(name);
    component.extend_from_slice(payload);
    component
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A multipart/form-data body with text `fields` and the file `component`: its content type
/// and its bytes.
pub(crate) fn multipart(fields: &[(&str, &str)], component: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----status-page-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"adapter.wasm\"\r\n\
             Content-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(component);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The hash shown in the tenants table for `tenant`.
fn shown_hash(page: &str, tenant: &str) -> String {
    let row = &page[page
        .find(&format!("data-tenant=\"{tenant}\""))
        .expect("the tenant's row")..];
    let marker = "<code class=\"hash\" title=\"";
    let start = row.find(marker).expect("a hash") + marker.len();
    row[start..start + 64].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_deploys_a_version_refuses_a_broken_one_and_rolls_back() {
    let env = EchoEnv::start().await;
    let (client, base) = (env.bridge.client(), env.bridge.url().to_string());
    let body = format!("token={ADMIN_TOKEN}");
    let ok = client.send("POST", &format!("{base}/admin/login"), &[FORM], body).await;
    let cookie = ok
        .header("set-cookie")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let session = ("cookie", cookie.as_str());
    let page = || async {
        client
            .send("GET", &format!("{base}/admin"), &[session], "")
            .await
            .text()
    };
    let first = page().await;
    let csrf = csrf_of(&first);
    let original = std::fs::read(dolphin_bridge_tests::adapters::echo()).expect("the echo adapter");
    assert_eq!(shown_hash(&first, ECHO_TENANT), sha256_hex(&original));

    let deploy_url = format!("{base}/admin/ui/deploy?tenant={ECHO_TENANT}");
    let deploy = |component: Vec<u8>, csrf: String| {
        let deploy_url = deploy_url.clone();
        async move {
            let (content_type, body) = multipart(&[("csrf", &csrf), ("tenant", ECHO_TENANT)], &component);
            client
                .send("POST", &deploy_url, &[("content-type", &content_type), session], body)
                .await
        }
    };
    // Without the CSRF token nothing is deployed.
    let new = with_custom_section(original.clone(), "v2");
    let forged = deploy(new.clone(), "f".repeat(64)).await;
    assert_eq!(forged.status, 403, "{}", forged.describe());
    assert_eq!(shown_hash(&page().await, ECHO_TENANT), sha256_hex(&original));

    // A new version: deployed, active, and serving.
    let deployed = deploy(new.clone(), csrf.clone()).await;
    assert_eq!(deployed.status, 303, "{}", deployed.describe());
    let html = page().await;
    let new_hash = sha256_hex(&new);
    assert!(html.contains(&format!("deployed {} ", &new_hash[..12])), "{html}");
    assert_eq!(shown_hash(&html, ECHO_TENANT), new_hash);
    assert!(
        html.contains(&format!("<li data-hash=\"{new_hash}\" class=\"version active\">")),
        "{html}"
    );
    assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    env.vendor.wait_for_bodies(1).await;

    // A broken component is refused with its reason; the running version stays.
    let broken = deploy(b"not a component".to_vec(), csrf.clone()).await;
    assert_eq!(broken.status, 303, "{}", broken.describe());
    let html = page().await;
    assert!(html.contains("deploy refused: the component was rejected"), "{html}");
    assert!(html.contains("data-kind=\"deploy-rejected\""), "{html}");
    assert_eq!(shown_hash(&html, ECHO_TENANT), new_hash);

    // Roll back: the previous version runs again.
    let rollback = client
        .send(
            "POST",
            &format!("{base}/admin/ui/rollback"),
            &[FORM, session],
            format!("tenant={ECHO_TENANT}&csrf={csrf}"),
        )
        .await;
    assert_eq!(rollback.status, 303, "{}", rollback.describe());
    let html = page().await;
    assert!(html.contains(": rolled back to "), "{html}");
    assert_eq!(shown_hash(&html, ECHO_TENANT), sha256_hex(&original));
    assert!(html.contains("data-kind=\"rolled-back\""), "{html}");
}
