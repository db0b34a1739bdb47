//! A work request's trace through the queue.
//!
//! A request is submitted inside a span (the submit call's, made at the gRPC edge). Its
//! W3C `traceparent` is stored with the request ([`current_traceparent`]), so the trace
//! goes on where no span is open: when a claim takes the request, a `queued` span is
//! recorded after the fact from its creation to the claim ([`record_queued`]), and the
//! `dispatch` span ([`continue_trace`]) is a child of the stored context; its own
//! `traceparent` goes to the worker with the assignment, and the worker's spans carry the
//! trace on to the container's exit.
//!
//! Everything here goes through the OpenTelemetry API (and the SDK's W3C propagator). When the process exports no
//! traces (no tracer provider installed, see `berth_common::telemetry`), no context is
//! valid: nothing is stored and the recorded spans go nowhere.

use std::collections::HashMap;
use std::time::SystemTime;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C propagator, on its own: the stored form is always `traceparent`, whatever the
/// process's global propagator is.
fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

/// The `traceparent` of the current `tracing` span, when it belongs to an exported trace.
pub fn current_traceparent() -> Option<String> {
    traceparent_of_span(&tracing::Span::current())
}

/// The `traceparent` of `context`'s span, when it is a valid one.
pub fn traceparent_of(context: &Context) -> Option<String> {
    if !context.span().span_context().is_valid() {
        return None;
    }
    inject(context)
}

/// The context a stored `traceparent` names (an empty one when it does not parse).
pub fn context_of(traceparent: &str) -> Context {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    propagator().extract(&carrier)
}

/// The `traceparent` of `context`, written by the propagator.
fn inject(context: &Context) -> Option<String> {
    let mut carrier = HashMap::new();
    propagator().inject_context(context, &mut carrier);
    carrier.remove("traceparent")
}

/// The `traceparent` of a `tracing` span, when it belongs to an exported trace.
pub fn traceparent_of_span(span: &tracing::Span) -> Option<String> {
    traceparent_of(&span.context())
}

/// Makes `span` a child of the stored `traceparent`, when there is one.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let _ = span.set_parent(context_of(traceparent));
    }
}

/// Records the `queued` span of a request's trace: from `created` (when it was stored) to
/// `claimed`, with the attempt it was claimed for.
pub fn record_queued(traceparent: &str, created: SystemTime, claimed: SystemTime, attempt: i32) {
    let parent = context_of(traceparent);
    if !parent.span().span_context().is_valid() {
        return;
    }
    let tracer = opentelemetry::global::tracer("berth");
    let mut span = tracer
        .span_builder("queued")
        .with_start_time(created)
        .with_attributes([KeyValue::new("berth.attempt", i64::from(attempt))])
        .start_with_context(&tracer, &parent);
    span.end_with_timestamp(claimed.max(created));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_traceparent_is_read_back_the_same_and_junk_names_none() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = context_of(good);
        assert!(context.span().span_context().is_remote());
        assert_eq!(traceparent_of(&context).as_deref(), Some(good));
        for junk in [
            "",
            "junk",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ] {
            assert!(
                traceparent_of(&context_of(junk)).is_none(),
                "{junk:?} was taken"
            );
        }
    }

    #[test]
    fn outside_an_exported_trace_there_is_nothing_to_store() {
        let span = tracing::info_span!("submit");
        let _inside = span.enter();
        assert_eq!(current_traceparent(), None);
    }
}
