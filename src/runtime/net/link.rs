//! Links through rtnetlink: the bridge, one veth pair per workload (its peer created directly
//! inside the workload's network namespace as `eth0`), and the address and default route
//! inside that namespace.
//!
//! A netlink socket belongs to the network namespace of the thread that created it, and
//! `setns(CLONE_NEWNET)` changes only the calling thread. So the in-namespace part runs on a
//! dedicated short-lived thread that joins the namespace through the shim's pidfd (never on
//! a tokio worker), with its own current-thread runtime and netlink connection.

use super::NetError;
use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// The errno inside a netlink error, if it is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Wraps a netlink error with what was being done, as an OS error where it is one.
pub(crate) fn nl(doing: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let doing = doing.into();
    move |e| match errno(&e) {
        Some(code) => NetError::Io {
            doing,
            source: std::io::Error::from_raw_os_error(code),
        },
        None => NetError::Netlink {
            doing,
            message: e.to_string(),
        },
    }
}

/// A link's index and alias.
#[derive(Debug, Clone)]
pub(crate) struct LinkInfo {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
}

fn info(msg: &LinkMessage) -> LinkInfo {
    let mut out = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        alias: None,
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => out.name = n.clone(),
            LinkAttribute::IfAlias(s) => out.alias = Some(s.clone()),
            _ => {}
        }
    }
    out
}

/// Looks a link up by name; `None` when it does not exist.
pub(crate) async fn by_name(handle: &Handle, name: &str) -> Result<Option<LinkInfo>, NetError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(info(&msg))),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

/// Every link in the namespace.
pub(crate) async fn all(handle: &Handle) -> Result<Vec<LinkInfo>, NetError> {
    let mut links = handle.link().get().execute();
    let mut out = Vec::new();
    while let Some(msg) = links.try_next().await.map_err(nl("listing links"))? {
        out.push(info(&msg));
    }
    Ok(out)
}

/// Deletes a link; `Ok(false)` when it was already gone.
pub(crate) async fn delete(handle: &Handle, index: u32, name: &str) -> Result<bool, NetError> {
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(nl(format!("deleting link {name}"))(e)),
    }
}

/// Deletes the link called `name` if it exists.
pub(crate) async fn delete_by_name(handle: &Handle, name: &str) -> Result<bool, NetError> {
    match by_name(handle, name).await? {
        Some(l) => delete(handle, l.index, name).await,
        None => Ok(false),
    }
}

/// Creates the bridge (up, with `alias` and the gateway address) and returns its index.
pub(crate) async fn create_bridge(
    handle: &Handle,
    name: &str,
    alias: &str,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<u32, NetError> {
    let msg = LinkBridge::new(name).up().build();
    handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(nl(format!("creating bridge {name}")))?;
    let index = by_name(handle, name)
        .await?
        .ok_or_else(|| NetError::Io {
            doing: format!("looking up bridge {name} after creating it"),
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        })?
        .index;
    let configured = async {
        set_alias(handle, index, name, alias).await?;
        add_address(handle, index, gateway, prefix, name).await
    };
    if let Err(e) = configured.await {
        // Half made is not ours to leave behind (nor an operator's bridge to adopt later).
        let _ = delete(handle, index, name).await;
        return Err(e);
    }
    Ok(index)
}

/// Sets a link's alias (the kernel ignores `IFLA_IFALIAS` when it creates a link).
pub(crate) async fn set_alias(
    handle: &Handle,
    index: u32,
    name: &str,
    alias: &str,
) -> Result<(), NetError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).alias(alias).build())
        .execute()
        .await
        .map_err(nl(format!("setting the alias of {name}")))
}

/// Adds `addr/prefix` to a link; an address that is already there is fine.
pub(crate) async fn add_address(
    handle: &Handle,
    index: u32,
    addr: Ipv4Addr,
    prefix: u8,
    link: &str,
) -> Result<(), NetError> {
    match handle
        .address()
        .add(index, IpAddr::V4(addr), prefix)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(nl(format!("adding {addr}/{prefix} to {link}"))(e)),
    }
}

/// What one workload's interface looks like.
#[derive(Debug, Clone)]
pub(crate) struct VethPlan {
    /// Host-side name (`sd…`).
    pub host_name: String,
    /// The bridge's index.
    pub bridge_index: u32,
    /// The workload's address.
    pub address: Ipv4Addr,
    /// Subnet prefix length.
    pub prefix: u8,
    /// Default gateway (the bridge's address).
    pub gateway: Ipv4Addr,
}

/// Builds the veth pair for the workload whose shim `pidfd` names and configures `eth0` inside
/// its namespace, and returns that namespace (for [`super::drain`] after the workload ends).
/// Blocks; call from `spawn_blocking`. `host` is the daemon's host-side netlink handle (its
/// socket lives in the daemon's namespace).
pub(crate) fn attach_blocking(
    host: Handle,
    pidfd: OwnedFd,
    plan: VethPlan,
) -> Result<OwnedFd, NetError> {
    let thread = std::thread::Builder::new()
        .name("superd-netns".into())
        .spawn(move || attach_in_thread(host, pidfd, plan))
        .map_err(|source| NetError::Io {
            doing: "starting the network setup thread".into(),
            source,
        })?;
    thread.join().unwrap_or_else(|_| {
        Err(NetError::Netlink {
            doing: "configuring the workload's network".into(),
            message: "the setup thread panicked".into(),
        })
    })
}

fn io_err(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let doing = doing.into();
    move |source| NetError::Io { doing, source }
}

fn attach_in_thread(host: Handle, pidfd: OwnedFd, plan: VethPlan) -> Result<OwnedFd, NetError> {
    // This thread only: join the workload's network namespace.
    nix::sched::setns(pidfd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        NetError::Io {
            doing: "joining the workload's network namespace".into(),
            source: e.into(),
        }
    })?;
    let netns: OwnedFd = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(io_err("opening the workload's network namespace"))?
        .into();
    let netns_fd = netns.as_raw_fd();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(io_err("building the network setup runtime"))?;
    let host_name = plan.host_name.clone();
    rt.block_on(async move {
        let (conn, inner, _) =
            rtnetlink::new_connection().map_err(io_err("opening netlink in the namespace"))?;
        tokio::spawn(conn);

        // Host end on the bridge, peer born inside the namespace as eth0: no move, so no
        // wait for the RCU barrier a namespace change costs.
        // (Not created up: the kernel opens the peer before the pair is linked, ENOTCONN.)
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name("eth0".to_string())
            .build();
        peer.attributes.push(LinkAttribute::NetNsFd(netns_fd));
        // A MAC derived from the address: after a restart the neighbour entries of the host
        // and the peers, which still hold the old instance's MAC, are right at once.
        peer.attributes.push(LinkAttribute::Address(
            crate::network::mac_for(plan.address).to_vec(),
        ));
        let veth = LinkVeth::new(&plan.host_name, "eth0")
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .controller(plan.bridge_index)
            .up()
            .build();
        match host.link().add(veth.clone()).execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                // Left by a detach that failed: its workload is gone, replace it.
                tracing::warn!(link = %plan.host_name, "replacing a leftover veth");
                delete_by_name(&host, &plan.host_name).await?;
                host.link()
                    .add(veth)
                    .execute()
                    .await
                    .map_err(nl(format!("creating veth {}", plan.host_name)))?;
            }
            other => other.map_err(nl(format!("creating veth {}", plan.host_name)))?,
        }
        // No alias on the veth (the kernel ignores one at creation and a second request costs
        // a round trip under the RTNL lock): a crashed superd's veths die with their
        // namespaces, and a leftover with this deterministic name is replaced above.

        let eth0 = by_name(&inner, "eth0").await?.ok_or_else(|| NetError::Io {
            doing: "finding eth0 in the workload's namespace".into(),
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        })?;
        add_address(&inner, eth0.index, plan.address, plan.prefix, "eth0").await?;
        // Announce the address when eth0 comes up (gratuitous ARP), for any neighbour that
        // cached another MAC for it. /proc/sys/net follows this thread's namespace.
        if let Err(e) = std::fs::write("/proc/sys/net/ipv4/conf/eth0/arp_notify", "1") {
            tracing::warn!(link = %plan.host_name, "setting arp_notify on eth0: {e}");
        }
        inner
            .link()
            .set(LinkUnspec::new_with_index(eth0.index).up().build())
            .execute()
            .await
            .map_err(nl("setting eth0 up"))?;
        let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(plan.gateway)
            .output_interface(eth0.index)
            .build();
        inner
            .route()
            .add(route)
            .execute()
            .await
            .map_err(nl(format!("adding the default route via {}", plan.gateway)))?;
        Ok::<(), NetError>(())
    })?;
    // Let unprivileged processes ping (ICMP datagram sockets), as podman does; /proc/sys/net
    // follows the namespace of this thread.
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647") {
        tracing::warn!(link = %host_name, "setting net.ipv4.ping_group_range: {e}");
    }
    Ok(netns)
}
