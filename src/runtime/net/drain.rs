//! Delivering what a workload wrote before its network goes.
//!
//! When a workload's last process exits, the kernel still owns its closed TCP sockets and
//! keeps sending what they hold: the tail of a response that nginx wrote into a socket buffer
//! during a graceful stop, say. Those sockets keep the workload's network namespace alive, but
//! not its veth: deleting that at once (and giving the address to the next instance, whose
//! kernel answers the client with a reset) cuts the tail off. So superd waits, bounded, until
//! no socket in the namespace has anything left to send, then removes the veth.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long superd waits at most for a workload's closed connections to deliver their data.
pub const DRAIN_MAX: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// TCP states (as `/proc/net/tcp` writes them, hex) in which a closed socket still has to
/// send: FIN_WAIT1 (data or our FIN not yet acknowledged), CLOSING and LAST_ACK.
const SENDING: [&str; 3] = ["04", "0B", "09"];

/// How many sockets in a `/proc/net/tcp` or `/proc/net/tcp6` text still have to send.
pub fn sending(table: &str) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|line| {
            line.split_whitespace()
                .nth(3)
                .is_some_and(|st| SENDING.contains(&st))
        })
        .count()
}

/// What a drain saw: the sockets still sending when it stopped waiting, and how long it
/// waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Sockets that still had data to send when the wait ended (0: all delivered).
    pub left: usize,
    /// Time spent waiting.
    pub waited: Duration,
}

/// Waits, up to `max`, until no TCP socket of the network namespace `netns` still has to
/// send. Blocks (on a thread of its own, which joins the namespace); call from
/// `spawn_blocking`.
pub fn drain_blocking(netns: OwnedFd, max: Duration) -> std::io::Result<Drained> {
    std::thread::Builder::new()
        .name("superd-drain".into())
        .spawn(move || {
            // This thread only; /proc/thread-self/net follows it.
            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            let t0 = Instant::now();
            loop {
                let mut left = 0;
                for table in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
                    // A kernel without IPv6 has no tcp6 table.
                    left += std::fs::read_to_string(table).map_or(0, |t| sending(&t));
                }
                let waited = t0.elapsed();
                if left == 0 || waited >= max {
                    return Ok(Drained { left, waited });
                }
                std::thread::sleep(POLL);
            }
        })?
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the drain thread panicked")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 72004D0A:0050 01004D0A:B1F2 04 003F2000:00000000 01:00000014 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   2: 72004D0A:0050 01004D0A:B1F4 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   3: 72004D0A:0050 01004D0A:B1F6 09 00000001:00000000 01:00000014 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   4: 72004D0A:0050 01004D0A:B1F8 05 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   5: 72004D0A:0050 01004D0A:B1FA 0B 00000000:00000000 01:00000014 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn counts_the_sockets_that_still_send() {
        // FIN_WAIT1, LAST_ACK and CLOSING; not LISTEN, TIME_WAIT or FIN_WAIT2.
        assert_eq!(sending(TABLE), 3);
        assert_eq!(sending(TABLE.lines().next().unwrap_or("")), 0);
        assert_eq!(sending(""), 0);
    }
}
