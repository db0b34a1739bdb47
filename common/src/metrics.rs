//! The process's one Prometheus recorder, shared by the server and the worker.
//!
//! It owns installing the `metrics` facade's global recorder exactly once per process
//! (tests run many servers and workers in one process) and rendering what it holds as
//! Prometheus text, filtered by family so each endpoint shows only its own families.
//! It does not decide what is recorded: the domain and the worker do that.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds, in seconds, for every `*_seconds` histogram: from a few milliseconds
/// (dispatch, RPCs) to an hour (long jobs).
const SECOND_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The recorder's handle, installing the recorder on the first call. `None` when
/// another recorder was installed first (then nothing is exported from the facade).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECOND_BUCKETS);
            let builder = match builder {
                Ok(builder) => builder,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: the histogram buckets were refused");
                    PrometheusBuilder::new()
                }
            };
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: another recorder is installed; /metrics shows only gauges");
                    None
                }
            }
        })
        .as_ref()
}

/// The recorder's families whose names `keep` accepts, as Prometheus text.
pub fn render(keep: impl Fn(&str) -> bool) -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    let text = handle.render();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        let name = name.split(['{', ' ']).next().unwrap_or("");
        // A histogram's series carry suffixes; a family is kept or dropped whole.
        if line.is_empty() || keep(name) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Escapes a label value for the text format.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
