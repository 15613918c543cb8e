//! Printing an error with its causes, each once.
//!
//! superd's error messages name their cause (so that a log line of `{e}` is complete), and
//! many also expose it as `source()`; printing the whole chain (anyhow's `{:#}`) would then
//! repeat each cause. [`chain`] appends a cause only when the message so far does not
//! already hold it.

/// `err` and its causes, `: `-separated, each cause printed once.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Inner {
        #[error("reading {0}: {1}")]
        Read(&'static str, #[source] std::io::Error),
    }

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("starting web: {0}")]
        Start(#[from] Inner),
        #[error("starting db")]
        Quiet(#[source] std::io::Error),
    }

    #[test]
    fn each_cause_once() {
        let io = || std::io::Error::from_raw_os_error(libc::EACCES);
        let e = Outer::Start(Inner::Read("/x", io()));
        assert_eq!(
            chain(&e),
            "starting web: reading /x: Permission denied (os error 13)"
        );
        let q = Outer::Quiet(io());
        assert_eq!(chain(&q), "starting db: Permission denied (os error 13)");
        let any = anyhow::Error::new(Outer::Start(Inner::Read("/y", io()))).context("daemon");
        assert_eq!(
            chain(any.as_ref()),
            "daemon: starting web: reading /y: Permission denied (os error 13)"
        );
    }
}
