//! OpenTelemetry traces: off by default, on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names an OTLP/gRPC collector.
//!
//! When on, Berth's own `tracing` spans (targets `berth*`; not those of the libraries
//! under it, which would also trace the exporter's own calls) are exported in batches,
//! with the W3C trace context as the process-wide propagator. The standard `OTEL_*`
//! variables apply (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_SDK_DISABLED`, ...). When off, nothing is installed:
//! spans cost what `tracing` spans cost, and nothing leaves the process.
//!
//! This module only sets the exporting up. Which spans a request's trace has, and how
//! its context travels through the queue, is the business of the code that makes them.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The variables that turn exporting on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Whether the environment asks for traces: an endpoint set and not empty, and the SDK
/// not disabled.
pub fn wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled
        && ENDPOINT_VARS
            .iter()
            .any(|name| var(name).is_some_and(|v| !v.trim().is_empty()))
}

/// The exporting half, kept by the binary until it exits; [`Telemetry::shutdown`] sends
/// what is still buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter. Blocks (at most the
    /// exporter's timeout); call it from outside the async runtime, while it still runs.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: could not send the last trace spans: {e}");
        }
    }
}

/// Builds the exporter and the layer that feeds it, when the environment asks for traces.
/// Must run inside a tokio runtime (the exporter's gRPC channel lives on it). An endpoint
/// that cannot be used is reported on stderr and traces stay off: a process is never
/// refused for its telemetry.
pub fn layer<S>(service: &str) -> (Telemetry, Option<Box<dyn Layer<S> + Send + Sync>>)
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !wanted(|name| std::env::var(name).ok()) {
        return (Telemetry::default(), None);
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("warning: traces stay off: cannot set up the OTLP exporter: {e}");
            return (Telemetry::default(), None);
        }
    };
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer("berth");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target().starts_with("berth")
        }));
    (
        Telemetry {
            provider: Some(provider),
        },
        Some(Box::new(layer)),
    )
}

/// Makes `span` a child of the W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), when
/// there is one and it parses; otherwise the span stays where it is.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if traceparent.is_empty() {
        return;
    }
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(context);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn traces_are_on_only_with_an_endpoint_and_not_disabled() {
        assert!(!wanted(env(&[])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4317"
        )])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4317"
        )])));
        assert!(!wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])));
        assert!(wanted(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_SDK_DISABLED", "false"),
        ])));
    }
}
