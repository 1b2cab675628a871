//! OTLP's partial success: an endpoint that takes a request may still refuse some of its
//! spans or data points, and says how many (and why) in the answer's `partial_success`.
//! Those are counted as drops; a partial success that refuses nothing carries a warning.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

/// What an accepted answer refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// Spans or data points (never negative: a negative count reads as 0).
    pub(crate) count: u64,
    /// The endpoint's explanation (or warning, when `count` is 0).
    pub(crate) message: String,
}

/// The partial success of an `ExportTraceServiceResponse`; None when the answer has none
/// or is not one (an empty answer is a full success).
pub(crate) fn of_traces(answer: &[u8]) -> Option<Refused> {
    let partial = ExportTraceServiceResponse::decode(answer)
        .ok()?
        .partial_success?;
    refused(partial.rejected_spans, partial.error_message)
}

/// The partial success of an `ExportMetricsServiceResponse`.
pub(crate) fn of_metrics(answer: &[u8]) -> Option<Refused> {
    let partial = ExportMetricsServiceResponse::decode(answer)
        .ok()?
        .partial_success?;
    refused(partial.rejected_data_points, partial.error_message)
}

fn refused(count: i64, message: String) -> Option<Refused> {
    let count = u64::try_from(count).unwrap_or(0);
    (count > 0 || !message.is_empty()).then_some(Refused { count, message })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    use super::*;

    fn traces(rejected_spans: i64, error_message: &str) -> Vec<u8> {
        ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans,
                error_message: error_message.into(),
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn refused_spans_and_the_reason_are_read() {
        assert_eq!(
            of_traces(&traces(3, "too old")),
            Some(Refused {
                count: 3,
                message: "too old".into()
            })
        );
    }

    #[test]
    fn a_warning_refuses_nothing() {
        assert_eq!(
            of_traces(&traces(0, "slow down")),
            Some(Refused {
                count: 0,
                message: "slow down".into()
            })
        );
    }

    #[test]
    fn a_full_success_and_garbage_refuse_nothing() {
        assert_eq!(of_traces(b""), None);
        assert_eq!(of_traces(&traces(0, "")), None);
        assert_eq!(of_traces(b"\xff\xff\xff"), None);
        assert_eq!(of_traces(b"<html>ok</html>"), None);
        assert_eq!(of_traces(&traces(-5, "")), None, "a negative count");
    }

    #[test]
    fn refused_data_points_are_read() {
        let answer = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 7,
                error_message: "unknown unit".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            of_metrics(&answer),
            Some(Refused {
                count: 7,
                message: "unknown unit".into()
            })
        );
    }
}
