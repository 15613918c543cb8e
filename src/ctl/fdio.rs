//! The control socket's byte stream under hyper: a tokio `UnixStream` whose reads take file
//! descriptors sent with `SCM_RIGHTS` (an image archive, later a terminal) and whose first
//! write can carry one, and which counts what it has read so a request head can be bounded
//! before hyper buffers it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UnixStream;

/// Where received descriptors are left for the request handler (the first [`MAX_FDS`]; any
/// other is closed at once).
pub type FdSlot = Arc<Mutex<Vec<OwnedFd>>>;

/// The most descriptors kept from one connection.
pub const MAX_FDS: usize = 4;

/// Takes the first descriptor out of `slot` (closing the others).
pub fn take(slot: &FdSlot) -> Option<OwnedFd> {
    let mut fds = take_all(slot);
    (!fds.is_empty()).then(|| fds.remove(0))
}

/// Takes every descriptor out of `slot`.
pub fn take_all(slot: &FdSlot) -> Vec<OwnedFd> {
    std::mem::take(&mut *slot.lock().unwrap_or_else(|p| p.into_inner()))
}

/// A Unix stream that passes descriptors alongside its bytes.
#[derive(Debug)]
pub struct FdStream {
    inner: UnixStream,
    received: FdSlot,
    to_send: Vec<OwnedFd>,
    /// Bytes read so far.
    read: Arc<AtomicUsize>,
    /// The most that may be read (`usize::MAX`: no limit); shared so that a handler may lift
    /// it once a request is in.
    limit: Arc<AtomicUsize>,
}

impl FdStream {
    /// Wraps `inner`: received descriptors go to `received`; at most `limit` bytes are read
    /// (more is an error of kind `InvalidData`, so that the caller can answer 413).
    pub fn new(inner: UnixStream, received: FdSlot, limit: usize) -> Self {
        FdStream {
            inner,
            received,
            to_send: Vec::new(),
            read: Arc::new(AtomicUsize::new(0)),
            limit: Arc::new(AtomicUsize::new(limit)),
        }
    }

    /// Sends `fds` with the first bytes written.
    pub fn with_fds(mut self, fds: Vec<OwnedFd>) -> Self {
        self.to_send = fds;
        self
    }

    /// A counter of the bytes read, shared with the caller.
    pub fn read_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.read)
    }

    /// The read limit, shared with the caller (who may lift it once a request is in).
    pub fn limit(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.limit)
    }
}

impl AsyncRead for FdStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let already = this.read.load(Ordering::Relaxed);
        let limit = this.limit.load(Ordering::Relaxed);
        if already > limit {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too large",
            )));
        }
        // Never read more than one byte past the limit: that is enough to know.
        let room = (limit - already).saturating_add(1);
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let len = unfilled.len().min(room);
            let target = &mut unfilled[..len];
            let res = this.inner.try_io(Interest::READABLE, || {
                let mut iov = [io::IoSliceMut::new(target)];
                let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
                let msg = recvmsg::<()>(
                    this.inner.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)?;
                let mut got = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            // SAFETY: the kernel just installed these fds in our table for us.
                            got.extend(fds.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                        }
                    }
                }
                Ok((msg.bytes, got))
            });
            match res {
                Ok((n, got)) => {
                    let mut slot = this.received.lock().unwrap_or_else(|p| p.into_inner());
                    for fd in got {
                        if slot.len() < MAX_FDS {
                            slot.push(fd);
                        } // else: dropped, i.e. closed
                    }
                    drop(slot);
                    this.read.fetch_add(n, Ordering::Relaxed);
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.to_send.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        loop {
            ready!(this.inner.poll_write_ready(cx))?;
            let res = this.inner.try_io(Interest::WRITABLE, || {
                let fds: Vec<std::os::fd::RawFd> =
                    this.to_send.iter().map(|f| f.as_raw_fd()).collect();
                let cmsg = [ControlMessage::ScmRights(&fds)];
                let iov = [io::IoSlice::new(data)];
                sendmsg::<()>(
                    this.inner.as_raw_fd(),
                    &iov,
                    &cmsg,
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(io::Error::from)
            });
            match res {
                Ok(n) => {
                    this.to_send.clear();
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
