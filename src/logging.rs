//! Log lines on stderr, in the form journald understands: under systemd (JOURNAL_STREAM set, or
//! `--log-format journald`) each line starts with the syslog priority `<N>` and carries no
//! timestamp (journald adds one); on a terminal, a UTC timestamp and level instead. Every line
//! names the process role, so the four processes' logs can be told apart.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Journald,
    Plain,
}

impl LogFormat {
    pub fn detect() -> Self {
        if std::env::var_os("JOURNAL_STREAM").is_some() {
            LogFormat::Journald
        } else {
            LogFormat::Plain
        }
    }
    pub fn as_arg(self) -> &'static str {
        match self {
            LogFormat::Journald => "journald",
            LogFormat::Plain => "plain",
        }
    }
}

struct Line {
    role: &'static str,
    format: LogFormat,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        match self.format {
            LogFormat::Journald => {
                let prio = match level {
                    Level::ERROR => 3,
                    Level::WARN => 4,
                    Level::INFO => 6,
                    _ => 7,
                };
                write!(w, "<{prio}>{}: ", self.role)?;
            }
            LogFormat::Plain => {
                let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
                write!(
                    w,
                    "{now} {level:>5} {}[{}]: ",
                    self.role,
                    std::process::id()
                )?;
            }
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

pub fn level_for(verbose: u8) -> Level {
    match verbose {
        0 => Level::INFO,
        1 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

pub fn init(role: &'static str, level: Level, format: LogFormat) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(Line { role, format })
        .try_init();
}
