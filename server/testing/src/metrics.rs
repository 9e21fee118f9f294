//! Experiments: metrics of [`PROJECT`], and the request for an experiment's results.

use vexil_proto::v1 as pb;

use crate::{ENV, PROJECT};

/// A metric of [`PROJECT`] that reads the event `event` as `kind`.
pub fn metric(key: &str, event: &str, kind: pb::MetricKind) -> pb::Metric {
    pb::Metric {
        project_key: PROJECT.into(),
        key: key.into(),
        event_name: event.into(),
        kind: kind as i32,
        ..Default::default()
    }
}

/// The request for the results of experiment `key` of [`ENV`] as of `until` (milliseconds
/// since the epoch; `None`: now).
pub fn results_request(key: &str, until: Option<i64>) -> pb::GetExperimentResultsRequest {
    pb::GetExperimentResultsRequest {
        project_key: PROJECT.into(),
        environment_key: ENV.into(),
        key: key.into(),
        until: until.map(vexil_server::convert::timestamp),
    }
}
