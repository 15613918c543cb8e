//! Who may use the control socket and for what, and how many connections each may hold.
//!
//! - root and superd's own euid may do everything;
//! - members of `--socket-group` (primary *or* supplementary, from `SO_PEERGROUPS`) may only
//!   read (`status`); restarting and power requests need root;
//! - everybody else is refused before a byte is read.
//!
//! Connections are admitted from two pools, so that no local user can lock root out: group
//! members share one (and each uid may hold only a few), root has its own, and when root's is
//! full its oldest connection still waiting for its request makes room.

// getsockopt(SO_PEERCRED, SO_PEERGROUPS): nix wraps neither the groups nor its ERANGE
// protocol.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every verb.
    Admin,
    /// Read-only verbs.
    ReadOnly,
    /// Nothing.
    Denied,
}

/// A peer's identity as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid at connect time.
    pub uid: u32,
    /// Effective gid at connect time.
    pub gid: u32,
    /// Supplementary groups at connect time.
    pub groups: Vec<u32>,
    /// PID, for the log.
    pub pid: i32,
}

/// What `peer` may do: root and `own_euid` everything, members of `group` read.
pub fn authorize(peer: &Peer, own_euid: u32, group: Option<u32>) -> Access {
    if peer.uid == 0 || peer.uid == own_euid {
        return Access::Admin;
    }
    match group {
        Some(g) if peer.gid == g || peer.groups.contains(&g) => Access::ReadOnly,
        _ => Access::Denied,
    }
}

/// The peer of a Unix stream socket: `SO_PEERCRED` and `SO_PEERGROUPS`.
pub fn peer_of(sock: &impl AsRawFd) -> std::io::Result<Peer> {
    let fd = sock.as_raw_fd();
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(2) into a ucred of the size we pass.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Peer {
        uid: cred.uid,
        gid: cred.gid,
        groups: peer_groups(fd)?,
        pid: cred.pid,
    })
}

/// `SO_PEERGROUPS`, growing the buffer once when the kernel says it is too small (ERANGE,
/// with the size needed), up to the kernel's NGROUPS_MAX.
fn peer_groups(fd: i32) -> std::io::Result<Vec<u32>> {
    const NGROUPS_MAX: usize = 65_536;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: getsockopt(2) into a buffer of `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || n > NGROUPS_MAX {
            return Err(e);
        }
        groups.resize(n, 0);
    }
    Err(std::io::Error::other("the peer's groups kept growing"))
}

/// Most connections one non-root uid may hold at once.
pub const PER_UID: usize = 8;

/// A connection's place in its pool; dropping it frees the place.
#[derive(Debug)]
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    gate: Arc<GateInner>,
    uid: Option<u32>,
    id: u64,
    /// Woken when the connection must give its place up (it is still reading its request).
    pub evicted: Arc<Notify>,
}

impl Admission {
    /// The request has been read: the connection can no longer be evicted.
    pub fn request_read(&self) {
        self.gate
            .reading
            .lock()
            .map(|mut r| r.retain(|(id, _)| *id != self.id))
            .ok();
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.request_read();
        if let Some(uid) = self.uid {
            if let Ok(mut per) = self.gate.per_uid.lock() {
                if let Some(i) = per.iter().position(|u| *u == uid) {
                    per.swap_remove(i);
                }
            }
        }
    }
}

#[derive(Debug)]
struct GateInner {
    admin: Arc<Semaphore>,
    others: Arc<Semaphore>,
    /// One entry per connection a non-admin uid holds.
    per_uid: Mutex<Vec<u32>>,
    /// Admin connections still reading their request, oldest first.
    reading: Mutex<VecDeque<(u64, Arc<Notify>)>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// The two connection pools.
#[derive(Debug, Clone)]
pub struct Gate(Arc<GateInner>);

impl Gate {
    /// Pools of `per_pool` connections each.
    pub fn new(per_pool: usize) -> Gate {
        Gate(Arc::new(GateInner {
            admin: Arc::new(Semaphore::new(per_pool)),
            others: Arc::new(Semaphore::new(per_pool)),
            per_uid: Mutex::new(Vec::new()),
            reading: Mutex::new(VecDeque::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// A place for a connection with `access` from `uid`, or `None` (answer 503). An admin
    /// whose pool is full evicts the oldest admin connection that is still reading and
    /// waits (briefly) for its place.
    pub async fn admit(&self, access: Access, uid: u32) -> Option<Admission> {
        let g = &self.0;
        let id = g.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let evicted = Arc::new(Notify::new());
        let (permit, uid) = match access {
            Access::Denied | Access::ReadOnly => {
                {
                    let mut per = g.per_uid.lock().ok()?;
                    if per.iter().filter(|u| **u == uid).count() >= PER_UID {
                        return None;
                    }
                    per.push(uid);
                }
                match Arc::clone(&g.others).try_acquire_owned() {
                    Ok(p) => (p, Some(uid)),
                    Err(_) => {
                        if let Ok(mut per) = g.per_uid.lock() {
                            if let Some(i) = per.iter().position(|u| *u == uid) {
                                per.swap_remove(i);
                            }
                        }
                        return None;
                    }
                }
            }
            Access::Admin => {
                let permit = match Arc::clone(&g.admin).try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        let oldest = g.reading.lock().ok()?.pop_front();
                        let (_, victim) = oldest?;
                        victim.notify_one();
                        let wait = Arc::clone(&g.admin).acquire_owned();
                        tokio::time::timeout(std::time::Duration::from_secs(1), wait)
                            .await
                            .ok()?
                            .ok()?
                    }
                };
                if let Ok(mut r) = g.reading.lock() {
                    r.push_back((id, Arc::clone(&evicted)));
                }
                (permit, None)
            }
        };
        Some(Admission {
            _permit: permit,
            gate: Arc::clone(g),
            uid,
            id,
            evicted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            groups: groups.to_vec(),
            pid: 1,
        }
    }

    #[test]
    fn root_self_and_group_members() {
        assert_eq!(authorize(&peer(0, 0, &[]), 1000, None), Access::Admin);
        assert_eq!(authorize(&peer(1000, 1000, &[]), 1000, None), Access::Admin);
        assert_eq!(authorize(&peer(1001, 1001, &[]), 0, None), Access::Denied);
        assert_eq!(
            authorize(&peer(1001, 50, &[]), 0, Some(50)),
            Access::ReadOnly
        );
        assert_eq!(
            authorize(&peer(1001, 1001, &[7, 50]), 0, Some(50)),
            Access::ReadOnly
        );
        assert_eq!(
            authorize(&peer(1001, 51, &[52]), 0, Some(50)),
            Access::Denied
        );
    }

    #[tokio::test]
    async fn users_cannot_lock_root_out_and_root_evicts_its_oldest_idle() {
        let gate = Gate::new(4);
        let mut held = Vec::new();
        for _ in 0..PER_UID {
            if let Some(a) = gate.admit(Access::ReadOnly, 1000).await {
                held.push(a);
            }
        }
        assert_eq!(held.len(), 4, "the shared pool is full");
        assert!(gate.admit(Access::ReadOnly, 1001).await.is_none());
        // Root's pool is separate.
        let mut roots = Vec::new();
        for _ in 0..4 {
            roots.push(gate.admit(Access::Admin, 0).await.expect("root gets in"));
        }
        // Full: the oldest still reading is told to go; when it does, the newcomer is in.
        let oldest = roots.remove(0);
        let evicted = Arc::clone(&oldest.evicted);
        let release = tokio::spawn(async move {
            evicted.notified().await;
            drop(oldest);
        });
        assert!(gate.admit(Access::Admin, 0).await.is_some());
        release.await.unwrap();
        // Per-uid cap in the shared pool.
        drop(held);
        let mut one_user = Vec::new();
        let gate = Gate::new(32);
        for _ in 0..PER_UID + 2 {
            one_user.extend(gate.admit(Access::ReadOnly, 1000).await);
        }
        assert_eq!(one_user.len(), PER_UID);
        assert!(gate.admit(Access::ReadOnly, 1001).await.is_some());
    }
}
