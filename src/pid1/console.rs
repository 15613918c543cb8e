//! The console log format of PID-1 mode: one plain line per event, `superd: <message> <fields>`
//! for INFO and `superd: <LEVEL> <message> <fields>` otherwise — no timestamps (the kernel
//! console has its own) and no colours — so a workload's state change reads exactly
//! `superd: web exited code=1 reason=exited` between the kernel's lines.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// [`FormatEvent`] for the console of PID-1 mode (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleFormat;

impl<S, N> FormatEvent<S, N> for ConsoleFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "superd: ")?;
        let level = *event.metadata().level();
        if level != Level::INFO {
            write!(writer, "{level} ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn state_changes_read_superd_name_state_and_warnings_carry_their_level() {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(ConsoleFormat)
                .with_ansi(false)
                .with_writer(move || out.clone()),
        );
        tracing::subscriber::with_default(sub, || {
            tracing::info!("hog exited code=137 reason=oom-killed");
            tracing::warn!(path = "/x", "early setup: mounting /x failed");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "superd: hog exited code=137 reason=oom-killed\n\
             superd: WARN early setup: mounting /x failed path=\"/x\"\n"
        );
    }
}
