//! What PID-1 mode adds: superd as the init of a VM or appliance image.
//!
//! Detected by `getpid() == 1` (or forced with `--init-mode`). Before any thread exists,
//! [`early_setup`] mounts what is missing (leaving an initramfs for a tmpfs first), loads the
//! modules of `/etc/modules-load.d`, brings `lo` up, sets the hostname and turns
//! ctrl-alt-del into SIGINT. The daemon then runs as usual with the reaper thread reaping
//! every orphan; power signals and `superctl poweroff|reboot|halt` end in an orderly shutdown
//! and [`power::finish`]. PID 1 must never exit (the kernel would panic): a fatal error ends
//! in [`emergency`], which keeps reaping and still honours power signals.

pub mod cmdline;
pub mod console;
pub mod fstab;
pub mod modules;
pub mod mounts;
pub mod power;
pub mod watchdog;

use power::PowerAction;

/// The appliance's pre-seeded images: a squashfs of an image store that
/// `packaging/appliance/build.sh --image` makes, used as a read-only store in PID-1 mode.
pub const SEEDED_IMAGES: &str = "/usr/lib/superd/images.img";

/// True when this process is the init of its PID namespace.
pub fn is_pid1() -> bool {
    nix::unistd::getpid().as_raw() == 1
}

/// Everything PID-1 mode does before threads exist; returns the problems to report once
/// logging is up (none of them stops superd).
pub fn early_setup() -> Vec<String> {
    let early = mounts::early_mounts();
    let mut problems = early.problems;
    if early.left_initramfs {
        // The next run cannot know what this one met: say it now.
        for p in &problems {
            eprintln!("superd: WARN early setup: {p}");
        }
        // This process still maps its binary from the initramfs, which the switch deleted but
        // cannot free while it is mapped: run the copy in the tmpfs instead (still PID 1, no
        // thread exists yet). That run finds everything mounted and goes on from here.
        problems.push(reexec_from_new_root());
    }
    if let Ok(uts) = nix::sys::utsname::uname() {
        let release = uts.release().to_string_lossy().into_owned();
        let dir = std::path::Path::new("/lib/modules").join(release);
        problems.extend(modules::load_all(
            std::path::Path::new("/etc/modules-load.d"),
            &dir,
        ));
    }
    problems.extend(fstab::mount_all(std::path::Path::new("/etc/fstab")));
    if let Err(e) = crate::runtime::shim::loopback_up() {
        problems.push(format!("bringing lo up: {e}"));
    }
    if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            if let Err(e) = nix::unistd::sethostname(name) {
                problems.push(format!("setting hostname {name}: {e}"));
            }
        }
    }
    // Ctrl-alt-del sends SIGINT to PID 1 instead of rebooting at once.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        problems.push(format!("disabling ctrl-alt-del: {e}"));
    }
    problems
}

/// Executes this binary's copy in the new root with the same arguments; returns only on
/// failure, with the problem to report.
fn reexec_from_new_root() -> String {
    // /proc/self/exe names the old, deleted file: "/bin/superd (deleted)".
    match crate::runtime::reexec::own_path() {
        Ok(path) => format!(
            "re-executing from the tmpfs (the initramfs copy stays in memory): {}",
            crate::runtime::reexec::exec_self(&path)
        ),
        Err(e) => format!("re-executing from the tmpfs: reading /proc/self/exe: {e}"),
    }
}

/// The kernel command line overrides (empty when `/proc/cmdline` cannot be read).
pub fn overrides() -> cmdline::Overrides {
    std::fs::read_to_string("/proc/cmdline")
        .map(|t| cmdline::parse(&t))
        .unwrap_or_default()
}

/// The last resort of PID 1 after a fatal error: report it on the console, keep reaping
/// orphans (workloads that still run keep running), and power off, reboot or halt when a
/// power signal arrives. Never returns.
pub fn emergency(error: &str) -> ! {
    eprintln!("superd: FATAL: {error}");
    eprintln!(
        "superd: emergency mode: still reaping; workloads that run keep running; \
         SIGTERM/SIGPWR powers off, ctrl-alt-del reboots"
    );
    let mut wanted = power::power_signals();
    wanted.push(libc::SIGCHLD);
    let mut signals = match signal_hook::iterator::Signals::new(&wanted) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("superd: cannot wait for signals ({e}); only reaping");
            None
        }
    };
    loop {
        let pending: Vec<i32> = match signals.as_mut() {
            Some(s) => s.wait().collect(),
            None => {
                std::thread::sleep(std::time::Duration::from_secs(1));
                vec![libc::SIGCHLD]
            }
        };
        for sig in pending {
            if let Some(action) = power::action_for(sig) {
                eprintln!("superd: {}", action.as_str());
                let e = power::finish(action);
                eprintln!("superd: reboot(2) failed: {e}");
            }
        }
        // The reaper thread, if it started, goes on reaping: one waitpid owner.
        if !crate::runtime::reaper::Reaper::is_running() {
            power::reap_without_reaper();
        }
    }
}

/// Ends PID 1 after an orderly shutdown: `reboot(2)` or, if that fails, [`emergency`].
pub fn end(action: PowerAction) -> ! {
    eprintln!("superd: {}: syncing and unmounting", action.as_str());
    let e = power::finish(action);
    emergency(&format!("reboot(2) for {} failed: {e}", action.as_str()))
}
