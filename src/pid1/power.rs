//! How PID 1 powers the machine off: which signal asks for what, and the final sequence
//! (sync, unmount or remount read-only, `reboot(2)`).

// kill(-1) and waitpid on the way to reboot(2); sigprocmask.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use crate::api::PowerAction;

/// What reaches the daemon's stop loop from signals and `superctl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerMsg {
    /// The request that decided how this run ends: stop every workload, then this.
    Request(PowerAction),
    /// A power signal after the decision: skip what is left of the orderly stop.
    Again(PowerAction),
}

/// The one decision of how this run ends, shared by the signal thread and the control API:
/// the first claim wins, so a request is never acknowledged and then dropped.
#[derive(Debug, Clone, Default)]
pub struct PowerLatch(Arc<AtomicU8>);

impl PowerLatch {
    /// Takes `action` if nothing was decided yet; otherwise returns what was.
    pub fn claim(&self, action: PowerAction) -> Result<(), PowerAction> {
        let code = match action {
            PowerAction::Halt => 1,
            PowerAction::Poweroff => 2,
            PowerAction::Reboot => 3,
        };
        match self
            .0
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => Ok(()),
            Err(first) => Err(Self::decode(first).unwrap_or(action)),
        }
    }

    /// What was decided, if anything.
    pub fn taken(&self) -> Option<PowerAction> {
        Self::decode(self.0.load(Ordering::SeqCst))
    }

    fn decode(code: u8) -> Option<PowerAction> {
        match code {
            1 => Some(PowerAction::Halt),
            2 => Some(PowerAction::Poweroff),
            3 => Some(PowerAction::Reboot),
            _ => None,
        }
    }
}

/// The action a signal to PID 1 asks for, covering both families of tools:
/// SIGTERM and SIGPWR (container managers, hypervisor agents) → poweroff; SIGINT
/// (ctrl-alt-del once `RB_DISABLE_CAD` is set) → reboot; busybox's SIGUSR1 → halt and
/// SIGUSR2 → poweroff; systemd's SIGRTMIN+3/+4/+5 → halt/poweroff/reboot.
pub fn action_for(signal: i32) -> Option<PowerAction> {
    let rt = libc::SIGRTMIN();
    match signal {
        libc::SIGTERM | libc::SIGPWR | libc::SIGUSR2 => Some(PowerAction::Poweroff),
        libc::SIGINT => Some(PowerAction::Reboot),
        libc::SIGUSR1 => Some(PowerAction::Halt),
        s if s == rt + 3 => Some(PowerAction::Halt),
        s if s == rt + 4 => Some(PowerAction::Poweroff),
        s if s == rt + 5 => Some(PowerAction::Reboot),
        _ => None,
    }
}

/// Every signal [`action_for`] maps.
pub fn power_signals() -> Vec<i32> {
    let rt = libc::SIGRTMIN();
    vec![
        libc::SIGTERM,
        libc::SIGPWR,
        libc::SIGINT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        rt + 3,
        rt + 4,
        rt + 5,
    ]
}

/// Blocks (or unblocks) every power signal for the calling thread. PID 1 blocks them until
/// their handlers exist, so none is lost: pending signals wait, even across the re-exec after
/// leaving the initramfs (the mask and pending signals survive `execve`). Threads inherit the
/// mask of the thread that creates them: unblock before creating any.
pub fn set_power_signals_blocked(blocked: bool) -> std::io::Result<()> {
    // SAFETY: a zeroed sigset_t is initialised by sigemptyset before use; sigaddset takes
    // valid signal numbers; pthread_sigmask only reads `set`.
    let r = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in power_signals() {
            libc::sigaddset(&mut set, sig);
        }
        let how = if blocked {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut())
    };
    match r {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// The last steps as PID 1, after the workloads are stopped: SIGTERM then SIGKILL to every
/// process left, sync, detach every mount but `/` (deepest first), remount `/` read-only,
/// sync, `reboot(2)`. In a child PID namespace only the signals, sync and `reboot(2)` (which
/// then ends the namespace). Returns only if `reboot(2)` fails.
pub fn finish(action: PowerAction) -> std::io::Error {
    // SAFETY: kill(-1, …) signals every process but ourselves; we are PID 1.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    wait_for_no_processes(Duration::from_millis(500));
    // SAFETY: as above.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    wait_for_no_processes(Duration::from_millis(500));
    nix::unistd::sync();
    if !in_initial_pid_namespace() {
        // PID 1 of a container (tests, nested use): the mounts belong to a machine that is
        // not ours to remount read-only; reboot(2) here only ends our PID namespace.
        eprintln!("superd: PID 1 of a child PID namespace: leaving the mounts as they are");
        return reboot(action);
    }
    let mut points: Vec<String> = super::mounts::mount_table()
        .into_iter()
        .map(|(point, _)| point)
        .filter(|p| p != "/")
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Err(e) = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("superd: unmounting {p}: {e}");
        }
    }
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    ) {
        eprintln!("superd: remounting / read-only: {e}");
    }
    nix::unistd::sync();
    reboot(action)
}

/// Waits until we have no child left, or `budget` has passed: a machine with nothing left to
/// stop powers off at once. Every user process descends from PID 1 (orphans are reparented to
/// it), so no child means no process left; kernel threads are not ours to wait for. The
/// reaper thread reaps if it runs (one `waitpid` owner); otherwise this does.
fn wait_for_no_processes(budget: Duration) {
    let deadline = std::time::Instant::now() + budget;
    loop {
        let none_left = if crate::runtime::reaper::Reaper::is_running() {
            // Unknown (no CONFIG_PROC_CHILDREN, no /proc) counts as "some left": the whole
            // grace period then passes before SIGKILL.
            own_children().is_some_and(|c| c.is_empty())
        } else {
            reap_without_reaper()
        };
        if none_left || std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reaps every child that has ended, for when no reaper thread runs (it never started);
/// returns true when no child is left at all.
pub(crate) fn reap_without_reaper() -> bool {
    loop {
        // SAFETY: reaping any child without blocking.
        let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if r > 0 {
            continue;
        }
        return r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
    }
}

/// The children of every thread of this process (zombies included); `None` when the kernel
/// does not say (no `/proc`, or no `children` files).
fn own_children() -> Option<Vec<i32>> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let text = std::fs::read_to_string(task.ok()?.path().join("children")).ok()?;
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    Some(out)
}

fn reboot(action: PowerAction) -> std::io::Error {
    let how = match action {
        PowerAction::Halt => nix::sys::reboot::RebootMode::RB_HALT_SYSTEM,
        PowerAction::Poweroff => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        PowerAction::Reboot => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
    };
    match nix::sys::reboot::reboot(how) {
        Ok(never) => match never {},
        Err(e) => e.into(),
    }
}

/// True in the machine's initial PID namespace, whose namespace file has the fixed inode
/// `PROC_PID_INIT_INO` (0xEFFFFFFC). (`NS_GET_PARENT` cannot tell: it fails with EPERM for
/// one's own namespace in a child namespace too.) False when unknown: the cautious answer,
/// since only the initial namespace may remount the machine's root read-only.
pub fn in_initial_pid_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == PROC_PID_INIT_INO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_claim_wins() {
        let latch = PowerLatch::default();
        assert_eq!(latch.taken(), None);
        assert_eq!(latch.claim(PowerAction::Poweroff), Ok(()));
        let other = latch.clone();
        assert_eq!(other.claim(PowerAction::Reboot), Err(PowerAction::Poweroff));
        assert_eq!(
            latch.claim(PowerAction::Poweroff),
            Err(PowerAction::Poweroff)
        );
        assert_eq!(other.taken(), Some(PowerAction::Poweroff));
    }

    #[test]
    fn both_families_of_poweroff_tools() {
        let rt = libc::SIGRTMIN();
        assert_eq!(action_for(libc::SIGTERM), Some(PowerAction::Poweroff));
        assert_eq!(action_for(libc::SIGPWR), Some(PowerAction::Poweroff));
        assert_eq!(action_for(libc::SIGINT), Some(PowerAction::Reboot));
        assert_eq!(action_for(libc::SIGUSR1), Some(PowerAction::Halt));
        assert_eq!(action_for(libc::SIGUSR2), Some(PowerAction::Poweroff));
        assert_eq!(action_for(rt + 3), Some(PowerAction::Halt));
        assert_eq!(action_for(rt + 4), Some(PowerAction::Poweroff));
        assert_eq!(action_for(rt + 5), Some(PowerAction::Reboot));
        assert_eq!(action_for(libc::SIGHUP), None);
        assert!(power_signals().iter().all(|s| action_for(*s).is_some()));
    }
}
