//! Log lines: the trace and span id added to every line written inside a
//! trace, and every line scrubbed of personal data before it is written.

use std::{fmt, io::Write};

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter, format::Writer},
    registry::LookupSpan,
};

/// Adds the trace and span id of the span an event happens in to its log
/// line: first in a JSON object, last on a plain line. An operator pastes
/// the trace id into Jaeger and sees the whole notification.
pub(super) struct WithTraceId<F> {
    pub(super) inner: F,
    pub(super) json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The trace of whatever span the event happened inside.
        let cx = Span::current().context();
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let (trace, span) = (sc.trace_id(), sc.span_id());
        if self.json {
            if let Some(rest) = line.strip_prefix('{') {
                return write!(
                    writer,
                    "{{\"trace_id\":\"{trace}\",\"span_id\":\"{span}\",{rest}"
                );
            }
        } else {
            let body = line.trim_end_matches('\n');
            return writeln!(writer, "{body} trace_id={trace} span_id={span}");
        }
        writer.write_str(&line)
    }
}

/// Every log line passes through [`crate::pii::scrub`] on its way out, so
/// an address that slips into a message or an error is masked anyway.
pub(super) struct ScrubbingWriter<W> {
    pub(super) inner: W,
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for ScrubbingWriter<W> {
    type Writer = ScrubbingLine<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingLine {
            inner: self.inner.make_writer(),
            buf: Vec::new(),
        }
    }
}

/// Buffers one formatted event and writes it scrubbed when dropped.
pub struct ScrubbingLine<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Write for ScrubbingLine<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ScrubbingLine<W> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let _ = self.inner.write_all(crate::pii::scrub(&text).as_bytes());
        let _ = self.inner.flush();
    }
}
