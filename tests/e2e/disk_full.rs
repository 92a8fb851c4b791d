//! A full disk under the bridge: its database on a small tmpfs whose free space a ballast file
//! takes, with deliveries at the vendor at that moment. While the disk is full the Incoming
//! endpoint answers 503 (`store_unavailable`, or `store_busy` with `Retry-After`) and
//! acknowledges nothing it could not store; a delivery whose outcome could not be recorded is
//! not re-run faster than the retry schedule allows (each delivery id reaches the vendor at most
//! once per attempt the schedule has); once the ballast is deleted, everything acknowledged is
//! delivered with its delivery id, and nothing refused is.
//!
//! Mounting the tmpfs needs root (or CAP_SYS_ADMIN), which CI has; without it the test fails
//! saying so. The tmpfs is unmounted at the end, also when the test fails.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dolphin_bridge_tests::crash_support::{
    BridgeFiles, assert_store_durable, readiness, set_store_path, str_field, unique_owner, wait_settled,
};
use dolphin_bridge_tests::events::fresh_ticket;
use dolphin_bridge_tests::{BridgeConfig, Event, MockThreeDolphins, MockVendor, WAIT};
use serde_json::Value;

use crate::common::{API_TOKEN, assert_accepted, echo_tenant};

const TMPFS_SIZE: &str = "8m";
/// Three retries: at most four attempts of a delivery.
const RETRY_SCHEDULE_MS: [u64; 3] = [200, 400, 800];
/// Delivered before the disk fills.
const WARM_UP_EVENTS: usize = 3;
/// At the vendor (answered after `VENDOR_DELAY`) when the disk fills: their outcome cannot be
/// recorded.
const IN_FLIGHT_EVENTS: usize = 4;
const VENDOR_DELAY: Duration = Duration::from_millis(1_000);
/// Refusals to see while the disk is full (at most `MAX_SENDS_WHILE_FULL` sends).
const REFUSALS_WANTED: usize = 10;
const MAX_SENDS_WHILE_FULL: usize = 2_000;
/// How long the disk stays full after the refusals: several times the schedule's total wait,
/// so a bridge re-running unrecorded deliveries without waiting would show.
const STAY_FULL: Duration = Duration::from_millis(5_000);
/// Linux's ENOSPC.
const ENOSPC: i32 = 28;

/// A tmpfs mounted on a temp dir; unmounted when dropped (also during a panic).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("dolphin-bridge-disk-full-")
            .tempdir()
            .expect("a temp dir");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match output {
            Ok(output) if output.status.success() => Tmpfs { dir },
            Ok(output) => panic!(
                "the disk-full test mounts a {size} tmpfs for the bridge's database and needs root (or CAP_SYS_ADMIN), \
                 as CI has: `mount -t tmpfs -o size={size} tmpfs {}` failed ({}): {}",
                dir.path().display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(err) => panic!("the disk-full test needs `mount` (and root, or CAP_SYS_ADMIN): {err}"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes available to an unprivileged writer (`stat -f`), when that can be read.
    fn free_bytes(&self) -> Option<u64> {
        let output = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(self.path())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
        Some(parts.next()?? * parts.next()??)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds a file there (a bridge not yet reaped): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

/// Writes `path` until the file system has no room left; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let buffer = vec![0x5a_u8; 1 << 20];
    let (mut chunk, mut written) = (buffer.len(), 0_u64);
    loop {
        match file.write(&buffer[..chunk]) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(ENOSPC) => {
                if chunk == 1 {
                    break;
                }
                chunk /= 2;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("writing the ballast {}: {e}", path.display()),
        }
    }
    written
}

/// One event sent, with what the bridge answered.
struct Sent {
    ticket: String,
    message: String,
    /// The delivery id of an acknowledged event; `None`: refused.
    delivery_id: Option<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_gets_503_and_acknowledges_nothing_it_cannot_store_reruns_no_delivery_faster_than_the_schedule_and_delivers_everything_acknowledged_once_space_returns()
 {
    // Declared first, dropped last: the bridge is killed before the tmpfs is unmounted.
    let tmpfs = Tmpfs::mount(TMPFS_SIZE);
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    let owner = unique_owner("diskfull");
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .retry_schedule_ms(&RETRY_SCHEDULE_MS)
        .tenant(echo_tenant("full", &owner, &vendor));
    let store_path: PathBuf = tmpfs.path().join("bridge.db");
    let files = BridgeFiles::write_edited(&config, |text| set_store_path(&text, &store_path));
    let mut bridge = files.start().await;
    assert!(store_path.exists(), "the bridge's database is not on the tmpfs");
    let store = assert_store_durable(&bridge).await;
    println!(
        "disk full: database on a {TMPFS_SIZE} tmpfs at {}, {:?} bytes free; /readyz store {store}",
        tmpfs.path().display(),
        tmpfs.free_bytes()
    );

    let mut sent: Vec<Sent> = Vec::new();
    let send = |ticket: String, message: String| {
        let event = Event::example().owner(&owner).ticket(&ticket).message(&message);
        (ticket, message, event)
    };

    // Delivered while there is room.
    for n in 0..WARM_UP_EVENTS {
        let (ticket, message, event) = send(fresh_ticket(), format!("warm-up {n}"));
        let id = assert_accepted(&bridge.send_event(event).await);
        bridge.wait_for_delivery(&id, "delivered").await;
        sent.push(Sent {
            ticket,
            message,
            delivery_id: Some(id),
        });
    }

    // At the vendor, which answers only after the disk has filled.
    vendor.set_delay(VENDOR_DELAY);
    for n in 0..IN_FLIGHT_EVENTS {
        let (ticket, message, event) = send(fresh_ticket(), format!("in flight {n}"));
        let id = assert_accepted(&bridge.send_event(event).await);
        sent.push(Sent {
            ticket,
            message,
            delivery_id: Some(id),
        });
    }
    vendor.wait_for_bodies(WARM_UP_EVENTS + IN_FLIGHT_EVENTS).await;

    // The disk fills.
    let ballast = tmpfs.path().join("ballast");
    let ballast_bytes = fill(&ballast);
    let free_when_full = tmpfs.free_bytes();
    vendor.set_delay(Duration::ZERO);

    // Events sent while it is full: 503 with the store's error code, or acknowledged when the
    // store still found room (those must be delivered like any other).
    let tickets: Vec<String> = (0..4).map(|_| fresh_ticket()).collect();
    let (mut sends, mut refusals) = (0, 0);
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    while refusals < REFUSALS_WANTED && sends < MAX_SENDS_WHILE_FULL {
        let (ticket, message, event) = send(tickets[sends % tickets.len()].clone(), format!("while full {sends}"));
        let response = bridge.send_event(event).await;
        sends += 1;
        let delivery_id = match response.status {
            202 => Some(assert_accepted(&response)),
            503 => {
                let code = response
                    .error_code()
                    .unwrap_or_else(|| panic!("a 503 without the bridge's JSON error: {}", response.describe()));
                assert!(
                    code == "store_unavailable" || code == "store_busy",
                    "503 with code {code:?} on a full disk: {}",
                    response.describe()
                );
                assert!(
                    code != "store_busy" || response.header("retry-after").is_some(),
                    "store_busy without Retry-After: {}",
                    response.describe()
                );
                assert!(
                    response.error_message().is_some_and(|m| !m.is_empty()),
                    "503 without error.message: {}",
                    response.describe()
                );
                *codes.entry(code).or_default() += 1;
                refusals += 1;
                None
            }
            _ => panic!("on a full disk, an event was answered {}", response.describe()),
        };
        sent.push(Sent {
            ticket,
            message,
            delivery_id,
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let acknowledged_while_full = sent[WARM_UP_EVENTS + IN_FLIGHT_EVENTS..]
        .iter()
        .filter(|s| s.delivery_id.is_some())
        .count();
    let ready_while_full = readiness(&bridge).await;
    println!(
        "disk full: ballast {ballast_bytes} bytes, {free_when_full:?} bytes free; {sends} event(s) sent: \
         {acknowledged_while_full} acknowledged, {refusals} refused {codes:?}; /readyz answered {}",
        ready_while_full.describe()
    );
    assert!(
        refusals > 0,
        "the bridge acknowledged all {sends} events sent while its disk was full: is its database on the tmpfs?"
    );
    assert_eq!(
        (ready_while_full.status, ready_while_full.error_code().as_deref()),
        (503, Some("store_not_ready")),
        "/readyz while the disk is full: {}",
        ready_while_full.describe()
    );

    // The disk stays full a while: deliveries whose outcome could not be recorded wait.
    tokio::time::sleep(STAY_FULL).await;
    assert!(
        bridge.is_running(),
        "the bridge exited on a full disk:\n{}",
        bridge.stderr()
    );
    let bodies_while_full = vendor.bodies();
    let mut attempts_of: HashMap<String, Vec<u64>> = HashMap::new();
    for body in &bodies_while_full {
        attempts_of
            .entry(str_field(body, "deliveryId").to_string())
            .or_default()
            .push(body["attempt"].as_u64().unwrap_or(0));
    }
    let allowed = RETRY_SCHEDULE_MS.len() + 1;
    let most = attempts_of.values().map(Vec::len).max().unwrap_or(0);
    // How many requests each delivery in flight when the disk filled got (its attempts, unless
    // the list is long).
    let in_flight_attempts: Vec<String> = sent[WARM_UP_EVENTS..WARM_UP_EVENTS + IN_FLIGHT_EVENTS]
        .iter()
        .filter_map(|s| attempts_of.get(s.delivery_id.as_deref().unwrap_or_default()))
        .map(|attempts| match attempts.len() {
            0..=8 => format!("{attempts:?}"),
            n => format!("{n} requests"),
        })
        .collect();
    println!(
        "disk full: until space returned the vendor got {} request(s) for {} delivery id(s), at most {most} for one \
         (the schedule allows {allowed}); attempts of the deliveries in flight when the disk filled: {in_flight_attempts:?}",
        bodies_while_full.len(),
        attempts_of.len()
    );
    let too_many: Vec<String> = attempts_of
        .iter()
        .filter(|(_, attempts)| attempts.len() > allowed)
        .map(|(id, attempts)| {
            let highest = attempts.iter().max().copied().unwrap_or(0);
            format!("{id}: {} requests, highest attempt {highest}", attempts.len())
        })
        .collect();
    assert!(
        too_many.is_empty(),
        "while the disk was full, deliveries reached the vendor more often than the retry schedule allows \
         ({allowed} attempts): {too_many:#?}"
    );

    // Space returns.
    std::fs::remove_file(&ballast).expect("delete the ballast");
    println!("disk full: ballast deleted, {:?} bytes free", tmpfs.free_bytes());
    let after_deadline = Instant::now() + WAIT;
    let mut refused_after = 0;
    loop {
        let (ticket, message, event) = send(fresh_ticket(), format!("after space returned {refused_after}"));
        let response = bridge.send_event(event).await;
        if response.status == 202 {
            sent.push(Sent {
                ticket,
                message,
                delivery_id: Some(assert_accepted(&response)),
            });
            break;
        }
        assert!(
            response.status == 503 && Instant::now() < after_deadline,
            "with space back, an event was answered {} ({refused_after} refused before)",
            response.describe()
        );
        sent.push(Sent {
            ticket,
            message,
            delivery_id: None,
        });
        refused_after += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = wait_settled(&bridge, Duration::from_secs(60)).await;

    // Everything acknowledged delivered, with its delivery id; nothing refused delivered.
    let bodies = vendor.bodies();
    let mut arrivals: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for body in &bodies {
        arrivals
            .entry((str_field(body, "ticketNumber"), str_field(body, "message")))
            .or_default()
            .push(str_field(body, "deliveryId"));
    }
    let (mut lost, mut wrong_id, mut refused_delivered, mut not_delivered_state) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut duplicates = 0;
    for s in &sent {
        let got = arrivals
            .get(&(s.ticket.as_str(), s.message.as_str()))
            .cloned()
            .unwrap_or_default();
        match &s.delivery_id {
            Some(id) => {
                if got.is_empty() {
                    lost.push(format!("{} ({id})", s.message));
                }
                duplicates += got.len().saturating_sub(1);
                if got.iter().any(|g| g != id) {
                    wrong_id.push(format!("{}: acknowledged as {id}, arrived as {got:?}", s.message));
                }
                let delivery: Value = bridge.delivery(id).await;
                if delivery["state"] != "delivered" {
                    not_delivered_state.push(format!("{}: {delivery}", s.message));
                }
            }
            None if !got.is_empty() => refused_delivered.push(format!("{}: arrived as {got:?}", s.message)),
            None => {}
        }
    }
    let acknowledged = sent.iter().filter(|s| s.delivery_id.is_some()).count();
    println!(
        "disk full: after space returned ({refused_after} refusal(s) first): acknowledged {acknowledged} \
         ({WARM_UP_EVENTS} warm-up, {IN_FLIGHT_EVENTS} in flight, {acknowledged_while_full} while full, 1 after), \
         delivered {} distinct, duplicates {duplicates}, lost {}, refused but delivered {}; outbox {stats}",
        acknowledged - lost.len(),
        lost.len(),
        refused_delivered.len()
    );
    assert!(lost.is_empty(), "acknowledged events never delivered: {lost:#?}");
    assert!(wrong_id.is_empty(), "arrivals with another delivery id: {wrong_id:#?}");
    assert!(
        refused_delivered.is_empty(),
        "events refused with 503 were delivered (a refused request must change nothing): {refused_delivered:#?}"
    );
    assert!(
        not_delivered_state.is_empty(),
        "acknowledged events the bridge does not hold as delivered: {not_delivered_state:#?}"
    );
    let ready_again = readiness(&bridge).await;
    assert_eq!(
        ready_again.status,
        200,
        "/readyz once space returned: {}",
        ready_again.describe()
    );
}
