//! Neighbours that share the machine with a bridge under measure (`isolation-bench`):
//! [`SpinningThreads`], threads of the bench keeping cores busy, and [`BackgroundBuild`], a real
//! `cargo build` in a session of its own, as a developer's or CI's build beside a bridge is.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::adapters::workspace_root;

/// Threads that spin from [`SpinningThreads::start`] until dropped. They are threads of the
/// bench rather than a process of their own because the kernel schedules threads either way
/// (and a child would share the bench's session, hence its autogroup).
pub struct SpinningThreads {
    stop: Arc<AtomicBool>,
    /// Each thread's own CPU time so far, in nanoseconds, as it last published it.
    cpu_nanos: Vec<Arc<AtomicU64>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The CPU time a neighbour had got by a moment.
#[derive(Clone, Copy)]
pub struct CpuReading {
    cpu: Duration,
    at: Instant,
}

impl CpuReading {
    /// How many CPUs were kept busy from `self` to `later`.
    pub fn cpus_until(&self, later: CpuReading) -> f64 {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        later.cpu.saturating_sub(self.cpu).as_secs_f64() / wall.max(f64::EPSILON)
    }
}

impl SpinningThreads {
    /// Starts `threads` spinning threads at normal priority (none for 0).
    pub fn start(threads: usize) -> SpinningThreads {
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_nanos: Vec<Arc<AtomicU64>> = (0..threads).map(|_| Arc::default()).collect();
        let threads = cpu_nanos
            .iter()
            .enumerate()
            .map(|(index, cpu)| {
                let (stop, cpu) = (stop.clone(), cpu.clone());
                std::thread::Builder::new()
                    .name(format!("background-load-{index}"))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            // Publishes its CPU time every millisecond of spinning.
                            let until = Instant::now() + Duration::from_millis(1);
                            while Instant::now() < until {
                                std::hint::spin_loop();
                            }
                            cpu.store(thread_cpu_time().as_nanos() as u64, Ordering::Relaxed);
                        }
                    })
                    .expect("starting a background-load thread")
            })
            .collect();
        SpinningThreads {
            stop,
            cpu_nanos,
            threads,
        }
    }

    /// The CPU time the threads got so far.
    pub fn read(&self) -> CpuReading {
        let nanos = self.cpu_nanos.iter().map(|n| n.load(Ordering::Relaxed)).sum();
        CpuReading {
            cpu: Duration::from_nanos(nanos),
            at: Instant::now(),
        }
    }
}

impl Drop for SpinningThreads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The calling thread's CPU time (zero where the OS does not say).
fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid timespec the call writes into.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0 {
            return Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
        }
    }
    Duration::ZERO
}

/// `cargo build --release -p dolphin-bridge --offline` of this workspace into a target folder
/// of its own (fresh, so it compiles every dependency: minutes of work on every core, with the
/// disk writes a build makes), in a session of its own as a build started from another
/// terminal is (so the kernel's autogroups treat it as one). Killed with its compilers when
/// dropped.
pub struct BackgroundBuild {
    child: Option<Child>,
    /// Deleted once `drop` has killed the build.
    _target: tempfile::TempDir,
    started: Instant,
}

impl BackgroundBuild {
    /// Starts the build.
    pub fn start() -> std::io::Result<BackgroundBuild> {
        let target = tempfile::Builder::new().prefix("background-build-").tempdir()?;
        let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
        let mut command = Command::new(cargo);
        command
            .args([
                "build",
                "--release",
                "--offline",
                "--package",
                "dolphin-bridge",
                "--target-dir",
            ])
            .arg(target.path())
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: setsid is async-signal-safe and touches only the child.
            unsafe {
                command.pre_exec(|| {
                    if libc::setsid() == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Ok(BackgroundBuild {
            child: Some(command.spawn()?),
            _target: target,
            started: Instant::now(),
        })
    }

    /// What the build was, how long it has run, and whether it still runs (a build from
    /// scratch takes minutes: it outlasts a measure of a minute or two).
    pub fn describe(&mut self) -> String {
        let running = match self.child.as_mut().map(|child| child.try_wait()) {
            Some(Ok(None)) => "still running",
            Some(Ok(Some(_))) => "ended before the measure did",
            _ => "state unknown",
        };
        format!(
            "cargo build --release of the bridge in a fresh target folder: {:.0} s, {running}",
            self.started.elapsed().as_secs_f64()
        )
    }
}

impl Drop for BackgroundBuild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            #[cfg(unix)]
            // SAFETY: a plain kill(2) of the build's own process group (it leads its session).
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
