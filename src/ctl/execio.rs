//! `superctl exec` on the client's side: the descriptors it hands superd and the copying
//! between them and its own terminal. The command never gets a descriptor of the host's
//! terminal (TIOCSTI and friends): without `-t` it gets pipes, with `-t` a pty opened inside
//! the container, whose master comes back over a console socket (as runc's does). The window
//! size is set on that master directly, now and on every SIGWINCH.

use super::{Client, ClientError};
use crate::runtime::exec::ExecRequest;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

/// Runs `req` in `name` with this process's stdio; returns the exit code to leave with (the
/// command's, or 128 + its signal). `interactive`: copy stdin to the command.
pub fn run(
    client: &Client,
    name: &str,
    req: &ExecRequest,
    interactive: bool,
) -> Result<i32, ClientError> {
    let io_err = |source| ClientError::Io {
        socket: client.socket().to_path_buf(),
        source,
    };
    let end = if req.tty {
        with_tty(client, name, req, interactive).map_err(io_err)??
    } else {
        with_pipes(client, name, req, interactive).map_err(io_err)??
    };
    Ok(match (end.exit_code, end.signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + crate::manifest::Signal::parse(&s).map_or(1, |s| s.number),
        (None, None) => 1,
    })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Copies `from` to `to` until EOF or an error.
fn copy(mut from: impl Read, mut to: impl Write) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

type Ended = Result<crate::api::ExecEvent, ClientError>;

fn with_pipes(
    client: &Client,
    name: &str,
    req: &ExecRequest,
    interactive: bool,
) -> std::io::Result<Ended> {
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    if interactive {
        std::thread::spawn(move || copy(std::io::stdin(), std::fs::File::from(in_w)));
    } else {
        drop(in_w); // the command reads EOF
    }
    let out = std::thread::spawn(move || copy(std::fs::File::from(out_r), std::io::stdout()));
    let err = std::thread::spawn(move || copy(std::fs::File::from(err_r), std::io::stderr()));
    let ended = client.exec(name, req, vec![in_r, out_w, err_w]);
    // What the command wrote last is still in the pipes: wait for their EOF, but not for a
    // background process that keeps them open.
    for t in [out, err] {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(ended)
}

/// The terminal's size (24×80 when stdout is not one).
fn window_size() -> libc::winsize {
    let mut ws = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let mut got: libc::winsize = ws;
    // SAFETY: TIOCGWINSZ writes a winsize into the pointed-to struct.
    if unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut got) } == 0
        && got.ws_row > 0
    {
        ws = got;
    }
    ws
}

fn set_window(master: &OwnedFd) {
    let ws = window_size();
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Puts stdin in raw mode while alive, when it is a terminal.
struct Raw(Option<nix::sys::termios::Termios>);

impl Raw {
    fn enter() -> Raw {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return Raw(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        Raw(Some(saved))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// Receives the pty master the command sends over the console socket.
fn receive_master(console: &OwnedFd) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut buf = [0u8; 16];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        console.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let mut fds = fds.into_iter();
            if let Some(fd) = fds.next() {
                for extra in fds {
                    // SAFETY: received fds are ours; extras are closed at once.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                // SAFETY: the kernel installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other(
        "the command closed the console socket without a terminal",
    ))
}

fn with_tty(
    client: &Client,
    name: &str,
    req: &ExecRequest,
    interactive: bool,
) -> std::io::Result<Ended> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let (master_tx, master_rx) = std::sync::mpsc::channel::<OwnedFd>();
    let relay = std::thread::spawn(move || {
        let Ok(master) = receive_master(&ours) else {
            return;
        };
        set_window(&master);
        if let (Ok(m), Ok(mut signals)) = (
            master.try_clone(),
            signal_hook::iterator::Signals::new([libc::SIGWINCH]),
        ) {
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    set_window(&m);
                }
            });
        }
        if interactive {
            if let Ok(m) = master.try_clone() {
                std::thread::spawn(move || copy(std::io::stdin(), std::fs::File::from(m)));
            }
        }
        let reader = master.try_clone().ok();
        let _ = master_tx.send(master);
        // Until the pty hangs up (EIO once the command and its children are gone).
        if let Some(r) = reader {
            copy(std::fs::File::from(r), std::io::stdout());
        }
    });
    let raw = interactive.then(Raw::enter);
    let ended = client.exec(name, req, vec![theirs]);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !relay.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(master_rx);
    drop(raw);
    Ok(ended)
}
