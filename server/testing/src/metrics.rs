//! Experiment set-up: metrics of [`PROJECT`].

use vexil_proto::v1 as pb;

use crate::PROJECT;

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
