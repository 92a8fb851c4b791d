//! Where adapter code runs: a thread pool of its own, at a lower OS priority than the threads
//! that serve HTTP, and shared between tenants by how little CPU each used lately.
//!
//! A call's future may be polled only while it holds one of the pool's run slots (one per
//! thread), and it gives the slot back whenever it stops: to wait for a host call, or at the
//! epoch yield every tick. A freed slot goes to the waiting call whose tenant used the least CPU
//! lately. A call of a tenant that used less than a running one does not even wait for the
//! tick: it takes a slot granted but not yet used, or makes the running guests yield now (an
//! epoch increment). So a tenant whose calls take a millisecond is served at once while other
//! tenants' adapters spin, and spinning tenants share what is left.
//!
//! Calls never wait in the runtime's own run queue, where they would be served in turn: a
//! guest's yield or a host call's answer queues the call at the gate (`RunGate`), and its task
//! is woken only once it holds a slot.
//!
//! A call that finds a slot free, of a tenant whose last call was short and who used little
//! lately, runs on the caller's thread (see [`CallHandle`]), its slices still taken from the
//! gate: a call of a few microseconds then pays no thread wake-up either way. Once it yields at
//! an epoch tick or passes [`SHORT_CALL`] of CPU, the rest goes on on the adapter threads, as
//! every call of a tenant that spins does.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::task::AbortOnDropHandle;

/// How fast past CPU use is forgotten when choosing who runs next.
const USAGE_HALF_LIFE: Duration = Duration::from_secs(1);

/// How long an adapter thread stays awake after a call ends while at most one call is in
/// flight, yielding, before it parks: a call that comes within it, or the answer to the one
/// call's host call, goes on without the thread being woken (a wake-up costs more than most
/// calls). With more calls in flight the threads are kept busy by them.
const LINGER: Duration = Duration::from_micros(200);

/// A call that used at most this much CPU counts as short: its tenant's next call may start on
/// the caller's thread.
const SHORT_CALL: Duration = Duration::from_micros(500);

/// A tenant whose decayed recent CPU use is above this (about 70% of a core, steady) starts
/// its calls on the adapter threads only, even when they are short.
const INLINE_USAGE_LIMIT: Duration = Duration::from_secs(1);

thread_local! {
    /// Whether this thread is one of the adapter threads.
    static ON_ADAPTER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How much the threads running adapters are niced: when the machine is busy, the threads that
/// accept requests and commit them win over guests.
#[cfg(target_os = "linux")]
const GUEST_NICE: libc::c_int = 10;

/// Runs adapter calls on dedicated threads, scheduling them fairly between tenants.
pub struct GuestScheduler {
    /// Owned so that it can be shut down without blocking when the scheduler is dropped.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    gate: Arc<RunGate>,
    tenants: Mutex<HashMap<String, Arc<TenantUsage>>>,
    linger: Arc<Linger>,
}

/// Keeps one adapter thread awake for [`LINGER`] after a call ended, while calls are few.
#[derive(Default)]
struct Linger {
    /// Calls spawned and not yet dropped.
    in_flight: AtomicU64,
    /// Whether a thread is lingering now.
    active: AtomicBool,
    /// When the last call ended, in nanoseconds since `epoch`.
    last_end: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl Linger {
    fn now(&self) -> u64 {
        let epoch = *self.epoch.get_or_init(Instant::now);
        epoch.elapsed().as_nanos() as u64
    }

    fn call_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Notes that a call ended on an adapter thread; when at most one is left in flight, keeps
    /// that thread awake (yielding, so that anything else on it goes first) until more calls
    /// come or [`LINGER`] passes, unless a thread already is.
    fn call_ended(self: &Arc<Self>) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) > 2 {
            return;
        }
        self.last_end.store(self.now(), Ordering::Relaxed);
        // A call that ended on its caller's thread leaves no adapter thread awake to keep so.
        if !ON_ADAPTER_THREAD.get() || self.active.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::task::yield_now().await;
                let idle = this.now().saturating_sub(this.last_end.load(Ordering::Relaxed));
                if this.in_flight.load(Ordering::Acquire) > 1 || idle >= LINGER.as_nanos() as u64 {
                    break;
                }
            }
            this.active.store(false, Ordering::Release);
        });
    }
}

impl GuestScheduler {
    /// A pool of `threads` threads (at least one) and as many run slots; `preempt` makes every
    /// running guest yield at its next check.
    pub fn new(threads: usize, preempt: impl Fn() + Send + Sync + 'static) -> anyhow::Result<GuestScheduler> {
        let threads = threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("adapter")
            // Calls reach these threads from other threads (spawned, or woken by a host call's
            // answer): look at the shared queue after every poll, not after dozens of them.
            .global_queue_interval(1)
            .event_interval(1)
            .on_thread_start(|| {
                ON_ADAPTER_THREAD.set(true);
                lower_thread_priority();
            })
            .enable_all()
            .build()
            .context("starting the adapter threads")?;
        Ok(GuestScheduler {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            gate: Arc::new(RunGate::new(threads, Box::new(preempt))),
            tenants: Mutex::default(),
            linger: Arc::default(),
        })
    }

    /// Starts `call` for `tenant`: its first slice on the caller's thread when a slot is free
    /// and the tenant's calls are short (see the module's text), the rest on the adapter
    /// threads. Time spent polling it is added to `clock` and to the tenant's recent usage.
    /// Dropping the handle cancels the call.
    pub fn spawn<F>(&self, tenant: &str, clock: Arc<CpuClock>, call: F) -> CallHandle<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let usage = self.usage_of(tenant);
        // Asks for a slot before the task exists: the spawned task's first poll may come after
        // running guests' next yield, which should already see this call waiting.
        let granted = self.gate.admit(id, &usage, Waker::noop(), false);
        let here = granted && usage.may_start_on_callers_thread(Instant::now());
        let ready_since = Mutex::new(Some(Instant::now()));
        self.linger.call_started();
        let scheduled = Scheduled {
            inner: Box::pin(call),
            linger: self.linger.clone(),
            clock,
            finished: false,
            yielded: false,
            waker: Arc::new(CallWaker {
                id,
                usage,
                gate: self.gate.clone(),
                task: Mutex::default(),
                polling: AtomicBool::new(false),
                woken_while_polling: AtomicBool::new(false),
                ready_since,
            }),
        };
        let stage = match here {
            true => Stage::Here(Box::pin(scheduled), self.handle.clone()),
            false => Stage::There(AbortOnDropHandle::new(self.handle.spawn(scheduled))),
        };
        CallHandle { stage }
    }

    /// The usage record of `tenant`; forgets tenants that are idle and not running.
    fn usage_of(&self, tenant: &str) -> Arc<TenantUsage> {
        let mut tenants = self.tenants.lock().expect("tenant usage lock");
        if let Some(usage) = tenants.get(tenant) {
            return usage.clone();
        }
        let now = Instant::now();
        tenants.retain(|_, usage| Arc::strong_count(usage) > 1 || usage.decayed(now) > 1_000.0);
        tenants.entry(tenant.to_string()).or_default().clone()
    }
}

impl Drop for GuestScheduler {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime; calls still running
        // are abandoned, as their callers are gone too.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Accumulates the time a call spent being polled: the guest running, not waiting for a host
/// call's answer or for a thread. Also keeps the time it was ready to run but waited for a thread.
#[derive(Default)]
pub struct CpuClock {
    spent_nanos: AtomicU64,
    polling_since: Mutex<Option<Instant>>,
    waited_nanos: AtomicU64,
}

impl CpuClock {
    /// Time spent being polled so far, the current poll included.
    pub fn used(&self) -> Duration {
        let current = self
            .polling_since
            .lock()
            .expect("cpu clock lock")
            .map(|since| since.elapsed())
            .unwrap_or_default();
        Duration::from_nanos(self.spent_nanos.load(Ordering::Relaxed)) + current
    }

    /// Time the call was ready to run but waited for an adapter thread.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }
}

/// A tenant's CPU use, decayed with [`USAGE_HALF_LIFE`], and whether its last call was short.
#[derive(Default)]
struct TenantUsage {
    /// (nanoseconds, as of when).
    state: Mutex<Option<(f64, Instant)>>,
    /// Its last call ended using more than [`SHORT_CALL`] of CPU, or was cancelled.
    last_call_long: AtomicBool,
}

impl TenantUsage {
    /// The decayed nanoseconds as of `now`.
    fn decayed(&self, now: Instant) -> f64 {
        decayed(*self.state.lock().expect("usage lock"), now)
    }

    /// Whether its next call may start on the caller's thread: its last call was short and it
    /// used little lately.
    fn may_start_on_callers_thread(&self, now: Instant) -> bool {
        !self.last_call_long.load(Ordering::Relaxed) && self.decayed(now) < INLINE_USAGE_LIMIT.as_nanos() as f64
    }

    fn charge(&self, spent: Duration) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("usage lock");
        *state = Some((decayed(*state, now) + spent.as_nanos() as f64, now));
    }
}

fn decayed(state: Option<(f64, Instant)>, now: Instant) -> f64 {
    let Some((nanos, at)) = state else { return 0.0 };
    let half_lives = now.saturating_duration_since(at).as_secs_f64() / USAGE_HALF_LIFE.as_secs_f64();
    nanos * 0.5f64.powf(half_lives)
}

/// The run slots, who holds them and who waits for one.
struct RunGate {
    slots: usize,
    state: Mutex<GateState>,
    /// Makes every running guest yield at its next check (an epoch increment).
    preempt: Box<dyn Fn() + Send + Sync>,
}

#[derive(Default)]
struct GateState {
    /// Calls holding a slot: running, or granted one and about to run.
    holders: Vec<Holder>,
    /// Calls ready to run, waiting for a slot.
    waiting: Vec<Waiter>,
}

struct Holder {
    id: u64,
    usage: Arc<TenantUsage>,
    /// False while granted but not polled yet. A guest resuming sets its epoch deadline a tick
    /// ahead, out of reach of a preemption made before, so such a grant is taken back instead.
    running: bool,
}

struct Waiter {
    id: u64,
    usage: Arc<TenantUsage>,
    waker: Waker,
}

impl RunGate {
    fn new(slots: usize, preempt: Box<dyn Fn() + Send + Sync>) -> RunGate {
        RunGate {
            slots,
            state: Mutex::default(),
            preempt,
        }
    }

    /// Call `id`, ready to run, asks for a slot; `polling` when it is being polled now. Returns
    /// whether it holds one; if not, `waker` is woken when it is granted one. A call whose
    /// tenant used less CPU than a holder's takes a slot granted but not yet used, or makes
    /// the running guests yield.
    fn admit(&self, id: u64, usage: &Arc<TenantUsage>, waker: &Waker, polling: bool) -> bool {
        let mut state = self.state.lock().expect("run gate lock");
        if let Some(holder) = state.holders.iter_mut().find(|h| h.id == id) {
            holder.running |= polling;
            return true;
        }
        if let Some(waiter) = state.waiting.iter_mut().find(|w| w.id == id) {
            waiter.waker.clone_from(waker);
            return false;
        }
        let holder = Holder {
            id,
            usage: usage.clone(),
            running: polling,
        };
        if state.holders.len() < self.slots && state.waiting.is_empty() {
            state.holders.push(holder);
            return true;
        }
        let now = Instant::now();
        let mine = usage.decayed(now);
        let revocable = state
            .holders
            .iter()
            .position(|h| !h.running && h.usage.decayed(now) > mine);
        if let Some(i) = revocable {
            // Its task was woken already; polled, it finds itself waiting again.
            let revoked = std::mem::replace(&mut state.holders[i], holder);
            state.waiting.push(Waiter {
                id: revoked.id,
                usage: revoked.usage,
                waker: Waker::noop().clone(),
            });
            return true;
        }
        state.waiting.push(Waiter {
            id,
            usage: usage.clone(),
            waker: waker.clone(),
        });
        if state.holders.iter().any(|h| h.usage.decayed(now) > mine) {
            (self.preempt)();
        }
        false
    }

    /// Queues call `id`, which holds a slot it is about to release.
    fn requeue(&self, id: u64, usage: &Arc<TenantUsage>, waker: &Waker) {
        self.state.lock().expect("run gate lock").waiting.push(Waiter {
            id,
            usage: usage.clone(),
            waker: waker.clone(),
        });
    }

    /// Gives call `id`'s slot back: to the waiting call whose tenant used the least CPU lately
    /// (the longest waiting among equals), or to the free pool.
    fn release(&self, id: u64) {
        let mut state = self.state.lock().expect("run gate lock");
        state.holders.retain(|h| h.id != id);
        if state.holders.len() >= self.slots {
            return;
        }
        let now = Instant::now();
        let next = state
            .waiting
            .iter()
            .enumerate()
            .map(|(i, w)| (i, w.usage.decayed(now)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .map(|(i, _)| i);
        if let Some(i) = next {
            let waiter = state.waiting.remove(i);
            state.holders.push(Holder {
                id: waiter.id,
                usage: waiter.usage,
                running: false,
            });
            drop(state);
            waiter.waker.wake();
        }
    }

    /// Forgets call `id` (finished or cancelled), giving back the slot it held, if any.
    fn forget(&self, id: u64) {
        let mut state = self.state.lock().expect("run gate lock");
        state.waiting.retain(|w| w.id != id);
        let held = state.holders.iter().any(|h| h.id == id);
        drop(state);
        if held {
            self.release(id);
        }
    }
}

/// The waker a call's future is polled with. A wake during the poll (the guest yielding at an
/// epoch tick) queues the call in the gate when the poll ends, and a wake from outside (a host
/// call answered) asks the gate for a slot there and then; the task itself is only woken once
/// it holds a slot. The runtime's queues thus hold only calls that may run.
struct CallWaker {
    id: u64,
    usage: Arc<TenantUsage>,
    gate: Arc<RunGate>,
    /// The task's own waker, from the latest poll.
    task: Mutex<Option<Waker>>,
    polling: AtomicBool,
    woken_while_polling: AtomicBool,
    /// When the call last became ready to run (spawned, yielded, or a host call answered).
    ready_since: Mutex<Option<Instant>>,
}

impl std::task::Wake for CallWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::SeqCst) {
            self.woken_while_polling.store(true, Ordering::SeqCst);
            return;
        }
        self.ready_since
            .lock()
            .expect("call waker lock")
            .get_or_insert_with(Instant::now);
        // Held while asking, so that the call cannot finish in between and leave a slot taken.
        let task = self.task.lock().expect("call waker lock");
        let granted = match task.as_ref() {
            Some(waker) if self.gate.admit(self.id, &self.usage, waker, false) => Some(waker.clone()),
            _ => None,
        };
        drop(task);
        if let Some(waker) = granted {
            waker.wake();
        }
    }
}

/// A call's future, polled only while holding a run slot.
struct Scheduled<F: Future> {
    inner: Pin<Box<F>>,
    linger: Arc<Linger>,
    clock: Arc<CpuClock>,
    waker: Arc<CallWaker>,
    /// Polled to its end (not cancelled).
    finished: bool,
    /// Yielded at an epoch tick: it had used its slice.
    yielded: bool,
}

impl<F: Future> Scheduled<F> {
    /// Whether the call has yielded at an epoch tick or used more than [`SHORT_CALL`] of CPU:
    /// no call to run on a caller's thread.
    fn is_long(&self) -> bool {
        self.yielded || self.clock.spent_nanos.load(Ordering::Relaxed) > SHORT_CALL.as_nanos() as u64
    }
}

impl<F: Future> Future for Scheduled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let call = this.waker.clone();
        call.task
            .lock()
            .expect("call waker lock")
            .clone_from(&Some(cx.waker().clone()));
        if !call.gate.admit(call.id, &call.usage, cx.waker(), true) {
            return Poll::Pending;
        }
        // Released when the poll ends, even by a panic, so that no slot is ever lost.
        let _slot = SlotGuard(&call.gate, call.id);
        if let Some(since) = call.ready_since.lock().expect("call waker lock").take() {
            this.clock
                .waited_nanos
                .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        call.polling.store(true, Ordering::SeqCst);
        let started = Instant::now();
        *this.clock.polling_since.lock().expect("cpu clock lock") = Some(started);
        let result = this
            .inner
            .as_mut()
            .poll(&mut Context::from_waker(&Waker::from(call.clone())));
        *this.clock.polling_since.lock().expect("cpu clock lock") = None;
        call.polling.store(false, Ordering::SeqCst);
        let spent = started.elapsed();
        this.clock
            .spent_nanos
            .fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
        call.usage.charge(spent);
        if result.is_ready() {
            let long = this.clock.spent_nanos.load(Ordering::Relaxed) > SHORT_CALL.as_nanos() as u64;
            call.usage.last_call_long.store(long, Ordering::Relaxed);
            this.finished = true;
        }
        if result.is_pending() && call.woken_while_polling.swap(false, Ordering::SeqCst) {
            this.yielded = true;
            // Ready to go on: wait for a slot, where the tenant's recent use decides.
            *call.ready_since.lock().expect("call waker lock") = Some(Instant::now());
            call.gate.requeue(call.id, &call.usage, cx.waker());
        }
        result
    }
}

impl<F: Future> Drop for Scheduled<F> {
    fn drop(&mut self) {
        if !self.finished {
            // Cancelled (its time was up, or its caller went away): not a short call.
            self.waker.usage.last_call_long.store(true, Ordering::Relaxed);
        }
        self.linger.call_ended();
        // A host call may still wake the call's waker: with no task left, it asks for nothing.
        let mut task = self.waker.task.lock().expect("call waker lock");
        *task = None;
        self.waker.gate.forget(self.waker.id);
    }
}

/// A call started by [`GuestScheduler::spawn`]; awaited, its output, or why the host could not
/// finish it (a panic). Dropping it cancels the call.
pub struct CallHandle<F: Future> {
    stage: Stage<F>,
}

enum Stage<F: Future> {
    /// Polled by the task that awaits the handle, while the call neither yields at an epoch
    /// tick nor passes [`SHORT_CALL`]; then what is left is spawned on the adapter threads (`.1`).
    Here(Pin<Box<Scheduled<F>>>, tokio::runtime::Handle),
    There(AbortOnDropHandle<F::Output>),
    Taken,
}

impl<F> Future for CallHandle<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Stage::Here(call, _) = &mut self.stage {
            let slice = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call.as_mut().poll(cx)));
            match slice {
                Ok(Poll::Ready(output)) => return Poll::Ready(Ok(output)),
                Ok(Poll::Pending) if !call.is_long() => return Poll::Pending,
                Ok(Poll::Pending) => {
                    let Stage::Here(call, adapter_threads) = std::mem::replace(&mut self.stage, Stage::Taken) else {
                        unreachable!("the stage was just matched")
                    };
                    self.stage = Stage::There(AbortOnDropHandle::new(adapter_threads.spawn(call)));
                }
                Err(panic) => {
                    self.stage = Stage::Taken;
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|m| m.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    return Poll::Ready(Err(format!("the call panicked: {message}")));
                }
            }
        }
        match &mut self.stage {
            Stage::There(task) => Pin::new(task).poll(cx).map_err(|e| e.to_string()),
            _ => panic!("a call handle polled after its end"),
        }
    }
}

/// Holds call `.1`'s run slot until dropped.
struct SlotGuard<'a>(&'a RunGate, u64);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// Lowers the calling thread's scheduling priority by [`GUEST_NICE`] (Linux only; elsewhere the
/// adapter threads run at normal priority).
fn lower_thread_priority() {
    lower_thread_priority_by(GUEST_NICE);
}

/// Adds `nice` to the calling thread's nice value (Linux only; on Linux the nice value is per
/// thread). A thread can always lower its own priority; raising it back needs a privilege.
fn lower_thread_priority_by(nice: libc::c_int) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let current = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (current + nice).min(19));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// How much lower than the serving threads compilation runs: below the adapter threads too
/// ([`GUEST_NICE`]), so that compiling a partner's deploy (or a reload) on every core leaves
/// the CPU to the tenants' calls first. On an idle machine it changes nothing.
const COMPILE_NICE: libc::c_int = 19;

/// Makes rayon's global pool, on which wasmtime compiles in parallel, run at [`COMPILE_NICE`].
/// Once per process: later calls (another runtime) find the pool built and change nothing.
pub fn lower_compile_pool_priority() {
    let _already_built = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("compile-{i}"))
        .start_handler(|_| lower_thread_priority_by(COMPILE_NICE))
        .build_global();
}

/// Runs `work` (a compilation) on a thread of its own at [`COMPILE_NICE`], and waits for it:
/// the calling thread (a blocking-pool or request thread) keeps its priority.
pub fn compile_in_background<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("compile".into())
            .spawn_scoped(scope, || {
                lower_thread_priority_by(COMPILE_NICE);
                work()
            })
            .expect("starting a compile thread")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gate of `slots` slots that counts its preemptions.
    fn gate(slots: usize) -> (RunGate, Arc<AtomicU64>) {
        let preemptions = Arc::new(AtomicU64::new(0));
        let counter = preemptions.clone();
        let gate = RunGate::new(
            slots,
            Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        (gate, preemptions)
    }

    fn used(millis: u64) -> Arc<TenantUsage> {
        let usage = Arc::new(TenantUsage::default());
        usage.charge(Duration::from_millis(millis));
        usage
    }

    fn admit(gate: &RunGate, id: u64, usage: &Arc<TenantUsage>) -> bool {
        gate.admit(id, usage, Waker::noop(), true)
    }

    #[test]
    fn a_freed_slot_goes_to_the_tenant_that_used_least() {
        let (gate, _) = gate(1);
        let (busy, light) = (used(500), used(1));
        assert!(admit(&gate, 1, &busy));
        // The slot is taken: a second busy call and then a light one wait, in that order.
        assert!(!admit(&gate, 2, &busy));
        assert!(!admit(&gate, 3, &light));
        gate.release(1);
        assert!(!admit(&gate, 2, &busy), "the busy tenant waits");
        assert!(admit(&gate, 3, &light), "the light tenant runs");
        gate.release(3);
        assert!(admit(&gate, 2, &busy));
        gate.release(2);
        let state = gate.state.lock().unwrap();
        assert_eq!((state.holders.len(), state.waiting.len()), (0, 0));
    }

    #[test]
    fn a_lighter_tenant_preempts_running_guests_and_an_equal_one_does_not() {
        let (gate, preemptions) = gate(1);
        let (busy, light) = (used(500), used(1));
        assert!(admit(&gate, 1, &busy));
        assert!(!admit(&gate, 2, &busy));
        assert_eq!(preemptions.load(Ordering::SeqCst), 0);
        assert!(!admit(&gate, 3, &light));
        assert_eq!(preemptions.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_grant_not_yet_used_goes_to_a_lighter_tenant() {
        let (gate, preemptions) = gate(1);
        let (busy, light) = (used(500), used(1));
        assert!(admit(&gate, 1, &busy));
        assert!(!admit(&gate, 2, &busy));
        gate.release(1);
        // Call 2 was granted the slot and woken, but has not run yet: a light call takes it
        // without preempting anybody, and call 2 finds itself waiting again.
        assert!(admit(&gate, 3, &light));
        assert_eq!(preemptions.load(Ordering::SeqCst), 0);
        assert!(!admit(&gate, 2, &busy));
        gate.release(3);
        assert!(admit(&gate, 2, &busy));
    }

    #[test]
    fn a_forgotten_grant_passes_the_slot_on() {
        let (gate, _) = gate(1);
        let usage = used(1);
        assert!(admit(&gate, 1, &usage));
        assert!(!admit(&gate, 2, &usage));
        assert!(!admit(&gate, 3, &usage));
        gate.release(1);
        // Call 2 was granted the slot but is cancelled before it runs: call 3 gets it.
        gate.forget(2);
        assert!(admit(&gate, 3, &usage));
    }

    /// What a call does next to the gate, in [`the_gate_keeps_its_invariants`].
    #[derive(Debug, Clone)]
    enum Step {
        /// Asks for a slot (ready to run; `polling` when asked from its own poll).
        Admit { call: u64, polling: bool },
        /// A holder's poll ended: waiting for a host call, or (`requeue`) yielded.
        PollEnded { call: u64, requeue: bool },
        /// Finished or cancelled.
        Forget { call: u64 },
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (0..8u64, any::<bool>()).prop_map(|(call, polling)| Step::Admit { call, polling }),
            (0..8u64, any::<bool>()).prop_map(|(call, requeue)| Step::PollEnded { call, requeue }),
            (0..8u64).prop_map(|call| Step::Forget { call }),
        ]
    }

    proptest::proptest! {
        /// Whatever calls do, in any order: no more holders than slots, no call both holding
        /// and waiting (or twice in either), nobody waiting while a slot is free, admission
        /// answers the truth, and forgetting every call leaves the gate empty.
        #[test]
        fn the_gate_keeps_its_invariants(
            slots in 1..4usize,
            usages in proptest::collection::vec(0..50u64, 8),
            steps in proptest::collection::vec(step(), 1..200),
        ) {
            let (gate, _) = gate(slots);
            let usages: Vec<_> = usages.into_iter().map(used).collect();
            for step in steps {
                let holds = |call: u64| gate.state.lock().unwrap().holders.iter().any(|h| h.id == call);
                match step {
                    Step::Admit { call, polling } => {
                        let granted = gate.admit(call, &usages[call as usize], Waker::noop(), polling);
                        proptest::prop_assert_eq!(granted, holds(call));
                    }
                    Step::PollEnded { call, requeue } => {
                        // Only a call that holds a slot is polled.
                        if holds(call) {
                            if requeue {
                                gate.requeue(call, &usages[call as usize], Waker::noop());
                            }
                            gate.release(call);
                        }
                    }
                    Step::Forget { call } => gate.forget(call),
                }
                let state = gate.state.lock().unwrap();
                let mut ids: Vec<u64> = state.holders.iter().map(|h| h.id).collect();
                ids.extend(state.waiting.iter().map(|w| w.id));
                let count = ids.len();
                ids.sort_unstable();
                ids.dedup();
                proptest::prop_assert_eq!(ids.len(), count, "a call is in the gate twice");
                proptest::prop_assert!(state.holders.len() <= slots);
                proptest::prop_assert!(
                    state.holders.len() == slots || state.waiting.is_empty(),
                    "a call waits while a slot is free"
                );
            }
            for call in 0..8 {
                gate.forget(call);
            }
            let state = gate.state.lock().unwrap();
            proptest::prop_assert!(state.holders.is_empty() && state.waiting.is_empty());
        }
    }

    #[tokio::test]
    async fn runs_calls_and_charges_their_poll_time() {
        let scheduler = GuestScheduler::new(2, || {}).unwrap();
        let clock = Arc::new(CpuClock::default());
        let spin = async {
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(20) {}
            7
        };
        assert_eq!(scheduler.spawn("a", clock.clone(), spin).await.unwrap(), 7);
        assert!(clock.used() >= Duration::from_millis(20), "{:?}", clock.used());
        assert!(scheduler.usage_of("a").decayed(Instant::now()) > 0.0);
        assert_eq!(scheduler.usage_of("b").decayed(Instant::now()), 0.0);
    }

    #[tokio::test]
    async fn a_call_that_waits_for_the_thread_has_its_wait_counted() {
        let scheduler = GuestScheduler::new(1, || {}).unwrap();
        let second_spawned = Arc::new(AtomicBool::new(false));
        let signal = second_spawned.clone();
        // Holds the only thread, without yielding, until 20 ms after the second call exists.
        let first = scheduler.spawn("a", Arc::default(), async move {
            while !signal.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(20) {}
        });
        let clock = Arc::new(CpuClock::default());
        let second = scheduler.spawn("b", clock.clone(), async {});
        second_spawned.store(true, Ordering::SeqCst);
        first.await.unwrap();
        second.await.unwrap();
        assert!(clock.waited() >= Duration::from_millis(20), "{:?}", clock.waited());
    }

    #[tokio::test]
    async fn many_yielding_calls_on_one_slot_all_finish() {
        let scheduler = GuestScheduler::new(1, || {}).unwrap();
        let yielding = |polls: usize| async move {
            for _ in 0..polls {
                tokio::task::yield_now().await;
            }
        };
        let handles: Vec<_> = (0..50)
            .map(|i| scheduler.spawn(&format!("t{}", i % 5), Arc::default(), yielding(20)))
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
        let state = scheduler.gate.state.lock().unwrap();
        assert_eq!((state.holders.len(), state.waiting.len()), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_cancelled_at_any_point_leave_no_slot_taken() {
        let scheduler = GuestScheduler::new(2, || {}).unwrap();
        let io = tokio::runtime::Handle::current();
        let mut handles = Vec::new();
        for i in 0..300u64 {
            let io = io.clone();
            let call = async move {
                for step in 0..(i % 7) {
                    let started = Instant::now();
                    while started.elapsed() < Duration::from_micros(200 * (step % 3)) {}
                    if step % 2 == 0 {
                        tokio::task::yield_now().await;
                    } else {
                        // A host call answered by another runtime's thread.
                        io.spawn(tokio::time::sleep(Duration::from_micros(100 * step)))
                            .await
                            .unwrap();
                    }
                }
            };
            handles.push(scheduler.spawn(&format!("t{}", i % 3), Arc::default(), call));
        }
        for (i, handle) in handles.into_iter().enumerate() {
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_micros(50 * (i as u64 % 5))).await;
                drop(handle);
            } else {
                let _ = handle.await;
            }
        }
        let done = scheduler.spawn("last", Arc::default(), async { 1 });
        let result = tokio::time::timeout(Duration::from_secs(30), done).await;
        assert_eq!(result.expect("a slot was lost").unwrap(), 1);
        // Cancelled calls are dropped by the adapter threads, soon.
        let settled = || {
            let state = scheduler.gate.state.lock().unwrap();
            state.holders.is_empty() && state.waiting.is_empty()
        };
        for _ in 0..100 {
            if settled() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let state = scheduler.gate.state.lock().unwrap();
        panic!(
            "calls left in the gate: holders {:?} (running {:?}), waiting {:?}",
            state.holders.iter().map(|h| h.id).collect::<Vec<_>>(),
            state.holders.iter().map(|h| h.running).collect::<Vec<_>>(),
            state.waiting.iter().map(|w| w.id).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_cancelled_call_gives_its_slot_back() {
        let scheduler = GuestScheduler::new(1, || {}).unwrap();
        let never = scheduler.spawn("a", Arc::default(), std::future::pending::<()>());
        tokio::task::yield_now().await;
        drop(never);
        let done = scheduler.spawn("b", Arc::default(), async { 1 });
        // A lost slot would leave this call waiting for ever.
        let result = tokio::time::timeout(Duration::from_secs(30), done).await;
        assert_eq!(result.expect("the slot was not given back").unwrap(), 1);
    }

    #[tokio::test]
    async fn an_adapter_thread_lingers_after_a_lone_call_and_then_parks() {
        let scheduler = GuestScheduler::new(1, || {}).unwrap();
        // It yields once, as at an epoch tick: it ends on an adapter thread.
        let call = scheduler.spawn("a", Arc::default(), async {
            yield_once().await;
            ON_ADAPTER_THREAD.get()
        });
        assert!(call.await.unwrap(), "the call ended on an adapter thread");
        let linger = scheduler.linger.clone();
        assert_eq!(linger.in_flight.load(Ordering::Acquire), 0);
        // It stops by itself: a thread left spinning would burn a core for nothing.
        let deadline = Instant::now() + Duration::from_secs(10);
        while linger.active.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the adapter thread never stopped lingering");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Many calls at once keep the threads busy: none lingers while they run.
        let calls: Vec<_> = (0..8)
            .map(|_| scheduler.spawn("a", Arc::default(), std::future::pending::<()>()))
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!linger.active.load(Ordering::Acquire));
        assert_eq!(linger.in_flight.load(Ordering::Acquire), 8);
        drop(calls);
    }

    /// Pending once, having woken itself: what a guest yielding at an epoch tick looks like.
    async fn yield_once() {
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                return Poll::Ready(());
            }
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await
    }

    /// Runs a call of `tenant` that answers whether it ran on an adapter thread.
    async fn ran_on_adapter_thread(scheduler: &GuestScheduler, tenant: &str) -> bool {
        scheduler
            .spawn(tenant, Arc::default(), async { ON_ADAPTER_THREAD.get() })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_short_call_with_a_slot_free_runs_on_the_callers_thread() {
        let scheduler = GuestScheduler::new(1, || {}).unwrap();
        assert!(!ran_on_adapter_thread(&scheduler, "a").await);
        assert!(!ran_on_adapter_thread(&scheduler, "a").await, "and the next one too");
    }

    #[tokio::test]
    async fn a_call_that_yields_goes_on_on_the_adapter_threads() {
        let scheduler = GuestScheduler::new(1, || {}).unwrap();
        let call = scheduler.spawn("a", Arc::default(), async {
            let first = ON_ADAPTER_THREAD.get();
            yield_once().await;
            (first, ON_ADAPTER_THREAD.get())
        });
        assert_eq!(call.await.unwrap(), (false, true));
    }

    #[tokio::test]
    async fn after_a_long_call_a_tenants_next_call_starts_on_the_adapter_threads() {
        let scheduler = GuestScheduler::new(1, || {}).unwrap();
        let spin = scheduler.spawn("spinner", Arc::default(), async {
            let started = Instant::now();
            while started.elapsed() < SHORT_CALL * 2 {}
        });
        spin.await.unwrap();
        assert!(ran_on_adapter_thread(&scheduler, "spinner").await);
        assert!(
            !ran_on_adapter_thread(&scheduler, "spinner").await,
            "its last call was short again"
        );
        assert!(
            !ran_on_adapter_thread(&scheduler, "other").await,
            "other tenants are not concerned"
        );
    }

    #[tokio::test]
    async fn a_tenant_that_used_much_lately_runs_on_the_adapter_threads_only() {
        let scheduler = GuestScheduler::new(1, || {}).unwrap();
        scheduler.usage_of("busy").charge(INLINE_USAGE_LIMIT * 2);
        assert!(ran_on_adapter_thread(&scheduler, "busy").await);
    }

    #[tokio::test]
    async fn with_every_slot_taken_a_call_waits_on_the_adapter_threads() {
        let scheduler = GuestScheduler::new(1, || {}).unwrap();
        let spinning = scheduler.spawn("b", Arc::default(), async {
            yield_once().await;
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(200) {}
        });
        let spinner = tokio::spawn(async move { spinning.await.unwrap() });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !scheduler.gate.state.lock().unwrap().holders.iter().any(|h| h.running) {
            assert!(Instant::now() < deadline, "the spinning call never ran");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(ran_on_adapter_thread(&scheduler, "c").await);
        spinner.await.unwrap();
    }
}
