//! Bridge networking, the side-effect half (the decisions are in [`crate::network`]).
//!
//! [`Network`] owns one host-side rtnetlink connection. It creates the bridge on first need
//! (gateway = first address of the subnet), gives each bridged workload a veth pair whose peer
//! is born inside the workload's namespace as `eth0`, publishes ports as nftables map elements,
//! keeps the shared `/etc/hosts` and `/etc/resolv.conf` files that every bridged container
//! bind-mounts read-only, and on shutdown removes every kernel object it created. Leases are
//! persisted in `<state-dir>/network/leases-<bridge>.json` and survive shutdown.

pub mod drain;
mod link;
mod nft;

use crate::manifest::PortMapping;
use crate::network::{self, nft as rules, Subnet};
use crate::runtime::reaper::Reaper;
use rtnetlink::Handle;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Daemon-wide network settings (from the command line).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Bridge name (≤ 15 characters).
    pub bridge: String,
    /// Subnet of the bridge; the gateway is its first address.
    pub subnet: Subnet,
    /// Install IPv4 forwarding and the outbound masquerade rule.
    pub nat: bool,
    /// Where leases, `hosts` and `resolv.conf` live (`<state-dir>/network`).
    pub dir: PathBuf,
}

/// What an adopted instance keeps of its network across a restart of superd: its veth, its
/// address and the port elements that publish it.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The workload.
    pub workload: String,
    /// Its address on the bridge.
    pub address: Ipv4Addr,
    /// Its published ports.
    pub ports: Vec<PortMapping>,
}

/// A networking failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A system call or netlink request failed with an errno.
    #[error("{doing}: {source}")]
    Io {
        /// What was being done.
        doing: String,
        /// The error.
        source: std::io::Error,
    },
    /// A netlink request failed without an errno.
    #[error("{doing}: {message}")]
    Netlink {
        /// What was being done.
        doing: String,
        /// The error.
        message: String,
    },
    /// `nft` failed or is missing.
    #[error("{0}")]
    Nft(String),
    /// A step did not finish in time.
    #[error("{0}")]
    Timeout(String),
}

/// Bridge networking for one daemon.
#[derive(Debug)]
pub struct Network {
    cfg: NetConfig,
    handle: Handle,
    nft: Option<nft::Nft>,
    bridge: tokio::sync::OnceCell<u32>,
    created_bridge: AtomicBool,
    table_installed: AtomicBool,
    /// The port elements of adopted instances, put in with the table.
    kept_ports: std::sync::Mutex<Vec<(Ipv4Addr, Vec<PortMapping>)>>,
    hosts: PathBuf,
    resolv: PathBuf,
    leases: PathBuf,
}

fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let doing = doing.into();
    move |source| NetError::Io { doing, source }
}

/// Rewrites a file in place: it is bind-mounted into containers, and a bind mount pins the
/// inode, so a rename would leave every container with the old copy.
fn rewrite_in_place(path: &Path, content: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    f.write_all_at(content.as_bytes(), 0)?;
    f.set_len(content.len() as u64)
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

fn write_sysctl(path: &str, value: &str) -> Result<(), NetError> {
    std::fs::write(path, value).map_err(io(format!("writing {value} to {path}")))
}

impl Network {
    /// Opens the host-side netlink connection, removes what a crashed predecessor with the
    /// same bridge left behind (its links and nftables table) but what the adopted instances
    /// in `keep` use, and writes the shared files. With instances to keep, the bridge stays
    /// and its table is replaced at once with their port elements in it (one nft
    /// transaction: their published ports never stop answering). Returns the network and
    /// the workloads of `keep` whose veth is gone. Must be called inside a tokio runtime.
    pub async fn new(
        cfg: NetConfig,
        reaper: Reaper,
        keep: &[Kept],
    ) -> Result<(Network, Vec<String>), NetError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.dir)
            .map_err(io(format!("creating {}", cfg.dir.display())))?;
        let (conn, handle, _) = rtnetlink::new_connection().map_err(io("opening netlink"))?;
        tokio::spawn(conn);
        let nft = nft::find().map(|p| nft::Nft::new(p, reaper));
        let net = Network {
            hosts: cfg.dir.join(format!("hosts-{}", cfg.bridge)),
            resolv: cfg.dir.join(format!("resolv-{}.conf", cfg.bridge)),
            leases: cfg.dir.join(format!("leases-{}.json", cfg.bridge)),
            cfg,
            handle,
            nft,
            bridge: tokio::sync::OnceCell::new(),
            created_bridge: AtomicBool::new(false),
            table_installed: AtomicBool::new(false),
            kept_ports: std::sync::Mutex::new(Vec::new()),
        };
        let lost = net.remove_stale(keep).await;
        let kept: Vec<&Kept> = keep
            .iter()
            .filter(|k| !lost.contains(&k.workload))
            .collect();
        if !kept.is_empty() {
            *net.kept_ports.lock().unwrap_or_else(|p| p.into_inner()) =
                kept.iter().map(|k| (k.address, k.ports.clone())).collect();
            net.ensure_bridge().await?;
        }
        net.write_hosts(&net.render_hosts(&[]))
            .map_err(io(format!("writing {}", net.hosts.display())))?;
        net.refresh_resolv()
            .map_err(io(format!("writing {}", net.resolv.display())))?;
        Ok((net, lost))
    }

    /// The bridge subnet.
    pub fn subnet(&self) -> &Subnet {
        &self.cfg.subnet
    }

    /// The shared hosts file (bind-mounted as `/etc/hosts`).
    pub fn hosts_path(&self) -> &Path {
        &self.hosts
    }

    /// The shared resolver file (bind-mounted as `/etc/resolv.conf`).
    pub fn resolv_path(&self) -> &Path {
        &self.resolv
    }

    /// Reads the persisted leases; a missing or unreadable file means none (logged).
    pub fn load_leases(&self) -> BTreeMap<String, Ipv4Addr> {
        match std::fs::read_to_string(&self.leases) {
            Ok(text) => match network::decode_leases(&text, &self.cfg.subnet) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(file = %self.leases.display(), "ignoring the lease file: {e}");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(file = %self.leases.display(), "cannot read the lease file: {e}");
                BTreeMap::new()
            }
        }
    }

    /// Persists the leases atomically (tmp + fsync + rename + fsync of the directory: a
    /// rename alone may not survive a power cut).
    pub fn save_leases(&self, leases: &BTreeMap<String, Ipv4Addr>) -> std::io::Result<()> {
        let name = self
            .leases
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::durable::write_atomic(
            &self.cfg.dir,
            &name,
            network::encode_leases(&self.cfg.subnet, leases).as_bytes(),
            0o600,
        )
    }

    /// The shared hosts file for `entries`, with the gateway and the host's own `/etc/hosts`
    /// entries (read again each time, so an edit there reaches the workloads at the next
    /// rewrite).
    pub fn render_hosts(&self, entries: &[network::HostEntry]) -> String {
        let host = read_bounded(Path::new("/etc/hosts"), network::files::HOST_FILE_MAX + 1);
        network::files::render_hosts(entries, self.cfg.subnet.gateway(), &host)
    }

    /// Replaces the contents of the shared hosts file.
    pub fn write_hosts(&self, content: &str) -> std::io::Result<()> {
        rewrite_in_place(&self.hosts, content)
    }

    /// Regenerates the shared resolv.conf from the host's (without loopback nameservers).
    pub fn refresh_resolv(&self) -> std::io::Result<()> {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let upstream = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
        let content = network::files::render_resolv(&host, upstream.as_deref());
        if std::fs::read_to_string(&self.resolv).ok().as_deref() == Some(content.as_str()) {
            return Ok(());
        }
        rewrite_in_place(&self.resolv, &content)
    }

    fn table(&self) -> String {
        network::table_name(&self.cfg.bridge)
    }

    /// Deletes links whose alias marks them as ours and our nftables table: left behind by a
    /// superd that did not shut down. The veths of `keep` stay, and with them the bridge
    /// (and the table, which [`Network::ensure_bridge`] replaces). Returns the workloads of
    /// `keep` whose veth is missing.
    async fn remove_stale(&self, keep: &[Kept]) -> Vec<String> {
        let bridge_alias = network::link_alias(&self.cfg.bridge, None);
        let veth_prefix = format!("{bridge_alias}:");
        let kept: std::collections::BTreeMap<String, &str> = keep
            .iter()
            .map(|k| {
                (
                    network::veth_name(&self.cfg.bridge, &k.workload),
                    k.workload.as_str(),
                )
            })
            .collect();
        let mut found = std::collections::BTreeSet::new();
        match link::all(&self.handle).await {
            Ok(links) => {
                for l in links {
                    // Veths carry no alias (see `link::attach_blocking`); the name is derived
                    // from the bridge and the workload.
                    if let Some(w) = kept.get(&l.name) {
                        found.insert(w.to_string());
                        continue;
                    }
                    let Some(alias) = &l.alias else { continue };
                    if *alias == bridge_alias && !keep.is_empty() {
                        // Ours, and adopted workloads hang on it: shutdown removes it later.
                        self.created_bridge.store(true, Ordering::SeqCst);
                        continue;
                    }
                    if *alias == bridge_alias || alias.starts_with(&veth_prefix) {
                        tracing::warn!(link = %l.name, "removing a link left behind by a previous superd");
                        if let Err(e) = link::delete(&self.handle, l.index, &l.name).await {
                            tracing::warn!("{e}");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("looking for stale links: {e}"),
        }
        if keep.is_empty() {
            if let Some(nft) = &self.nft {
                if let Err(e) = nft.apply(&rules::delete_table(&self.table())).await {
                    tracing::warn!("removing a stale nftables table: {e}");
                }
            }
        }
        keep.iter()
            .filter(|k| !found.contains(&k.workload))
            .map(|k| k.workload.clone())
            .collect()
    }

    /// Creates (or adopts) the bridge, its sysctls and the nftables table, once.
    async fn ensure_bridge(&self) -> Result<u32, NetError> {
        self.bridge
            .get_or_try_init(|| async {
                let name = &self.cfg.bridge;
                let subnet = &self.cfg.subnet;
                let index = match link::by_name(&self.handle, name).await? {
                    Some(existing) => {
                        // An operator's bridge: use it, never delete it.
                        link::add_address(
                            &self.handle,
                            existing.index,
                            subnet.gateway(),
                            subnet.prefix(),
                            name,
                        )
                        .await?;
                        let up = rtnetlink::LinkUnspec::new_with_index(existing.index)
                            .up()
                            .build();
                        self.handle
                            .link()
                            .set(up)
                            .execute()
                            .await
                            .map_err(link::nl(format!("setting {name} up")))?;
                        existing.index
                    }
                    None => {
                        let alias = network::link_alias(name, None);
                        let i = link::create_bridge(
                            &self.handle,
                            name,
                            &alias,
                            subnet.gateway(),
                            subnet.prefix(),
                        )
                        .await?;
                        self.created_bridge.store(true, Ordering::SeqCst);
                        tracing::info!(bridge = %name, gateway = %subnet.gateway(), "created the bridge");
                        i
                    }
                };
                // Published ports answer on 127.0.0.1 too: DNAT from loopback needs the
                // bridge to route 127/8 sources (masqueraded on the way out).
                write_sysctl(
                    &format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"),
                    "1",
                )?;
                if self.cfg.nat {
                    self.enable_forwarding()?;
                }
                match &self.nft {
                    Some(nft) => {
                        // The table afresh, with the ports of adopted instances in the same
                        // transaction.
                        let mut script =
                            rules::ruleset(&self.table(), name, subnet, self.cfg.nat);
                        for (address, ports) in self
                            .kept_ports
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .drain(..)
                        {
                            script.push_str(&rules::port_elements(
                                rules::ElementOp::Add,
                                &self.table(),
                                &ports,
                                address,
                            ));
                        }
                        nft.apply(&script).await?;
                        self.table_installed.store(true, Ordering::SeqCst);
                    }
                    None if self.cfg.nat => {
                        return Err(NetError::Nft(
                            "outbound NAT needs the nft program (install nftables, see \
                             packaging/deps.sh) or run superd with --no-nat"
                                .into(),
                        ))
                    }
                    None => {}
                }
                Ok(index)
            })
            .await
            .copied()
    }

    /// Connects the workload whose shim `pidfd` names: veth on the bridge, `eth0` with
    /// `address` and a default route inside, then its published ports; returns the
    /// workload's network namespace, for [`Network::detach`]. On error the caller still calls
    /// [`Network::detach`] to remove what was created.
    pub async fn attach(
        &self,
        workload: &str,
        pidfd: &OwnedFd,
        address: Ipv4Addr,
        ports: &[PortMapping],
    ) -> Result<OwnedFd, NetError> {
        let bridge_index = self.ensure_bridge().await?;
        let plan = link::VethPlan {
            host_name: network::veth_name(&self.cfg.bridge, workload),
            bridge_index,
            address,
            prefix: self.cfg.subnet.prefix(),
            gateway: self.cfg.subnet.gateway(),
        };
        let pidfd = pidfd
            .try_clone()
            .map_err(io("duplicating the shim's pidfd"))?;
        let host = self.handle.clone();
        let netns = tokio::task::spawn_blocking(move || link::attach_blocking(host, pidfd, plan))
            .await
            .map_err(|e| NetError::Netlink {
                doing: "network setup task".into(),
                message: e.to_string(),
            })??;
        if !ports.is_empty() {
            let Some(nft) = &self.nft else {
                return Err(NetError::Nft(
                    "publishing ports needs the nft program (install nftables, see packaging/deps.sh)"
                        .into(),
                ));
            };
            let add = rules::port_elements(rules::ElementOp::Add, &self.table(), ports, address);
            if let Err(first) = nft.apply(&add).await {
                // An element left by a detach that failed (its workload is gone: admission
                // gives a port to one workload only). Remove the keys one by one, retry once.
                tracing::warn!(%workload, "publishing ports: {first}; replacing leftovers");
                for p in ports {
                    let del = rules::port_elements(
                        rules::ElementOp::Delete,
                        &self.table(),
                        std::slice::from_ref(p),
                        address,
                    );
                    let _ = nft.apply(&del).await;
                }
                nft.apply(&add).await?;
            }
        }
        Ok(netns)
    }

    /// Removes the workload's veth (both ends) and, if `ports_added`, its port elements.
    /// With the workload's namespace `netns` (from [`Network::attach`]), first waits up to
    /// [`drain::DRAIN_MAX`] for its closed connections to deliver what they hold.
    /// Failures are logged: the next start or a restart of superd cleans up again.
    pub async fn detach(
        &self,
        workload: &str,
        ports: &[PortMapping],
        address: Ipv4Addr,
        ports_added: bool,
        netns: Option<OwnedFd>,
    ) {
        if let Some(ns) = netns {
            match tokio::task::spawn_blocking(move || drain::drain_blocking(ns, drain::DRAIN_MAX))
                .await
            {
                Ok(Ok(d)) if d.left > 0 => tracing::info!(
                    %workload,
                    "{} closed connections still had data to send after {:?}; dropping them",
                    d.left,
                    d.waited
                ),
                Ok(Ok(d)) if !d.waited.is_zero() => {
                    tracing::debug!(%workload, waited_ms = d.waited.as_millis() as u64, "closed connections delivered their data")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(%workload, "waiting for closed connections: {e}"),
                Err(e) => tracing::warn!(%workload, "drain task: {e}"),
            }
        }
        let veth = network::veth_name(&self.cfg.bridge, workload);
        if let Err(e) = link::delete_by_name(&self.handle, &veth).await {
            tracing::warn!(%workload, "{e}");
        }
        if ports_added {
            if let Some(nft) = &self.nft {
                let script =
                    rules::port_elements(rules::ElementOp::Delete, &self.table(), ports, address);
                if let Err(e) = nft.apply(&script).await {
                    tracing::warn!(%workload, "removing published ports: {e}");
                }
            }
        }
    }

    /// Turns IPv4 forwarding on, first recording the value it had (in the state directory,
    /// so that a successor of a superd that crashed still knows it) unless it was on.
    fn enable_forwarding(&self) -> Result<(), NetError> {
        let orig = self.forward_orig_path();
        if !orig.exists() {
            let now =
                std::fs::read_to_string(IP_FORWARD).map_err(io(format!("reading {IP_FORWARD}")))?;
            if now.trim() != "1" {
                std::fs::write(&orig, now.trim()).map_err(io(format!(
                    "recording the old ip_forward in {}",
                    orig.display()
                )))?;
            }
        }
        write_sysctl(IP_FORWARD, "1")
    }

    /// Puts IPv4 forwarding back the way superd (or a predecessor) found it.
    fn restore_forwarding(&self) {
        let orig = self.forward_orig_path();
        let Ok(value) = std::fs::read_to_string(&orig) else {
            return;
        };
        match write_sysctl(IP_FORWARD, value.trim()) {
            Ok(()) => {
                let _ = std::fs::remove_file(&orig);
                tracing::info!(ip_forward = %value.trim(), "restored IPv4 forwarding");
            }
            Err(e) => tracing::warn!("restoring IPv4 forwarding: {e}"),
        }
    }

    fn forward_orig_path(&self) -> PathBuf {
        self.cfg.dir.join("ip_forward.orig")
    }

    /// Removes the nftables table and, if superd created it, the bridge, and restores IPv4
    /// forwarding if superd turned it on. Leases stay.
    pub async fn shutdown(&self) {
        self.restore_forwarding();
        if self.table_installed.load(Ordering::SeqCst) {
            if let Some(nft) = &self.nft {
                if let Err(e) = nft.apply(&rules::delete_table(&self.table())).await {
                    tracing::warn!("removing the nftables table: {e}");
                }
            }
        }
        if self.created_bridge.load(Ordering::SeqCst) {
            match link::delete_by_name(&self.handle, &self.cfg.bridge).await {
                Ok(_) => tracing::info!(bridge = %self.cfg.bridge, "removed the bridge"),
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }
}

/// The first `max` bytes of `path` as text (lossy), or "" when it cannot be read.
fn read_bounded(path: &Path, max: usize) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(max as u64).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}
