//! Views of the queue: `queue`, the pending requests in the order they will be offered,
//! each with its position and why it waits.

use berth_common::proto;
use serde::Serialize;

use super::{Answer, Render, Table, WorkRequestView, time};

/// One pending request in `queue`.
#[derive(Debug, Serialize)]
pub struct QueueEntryView {
    pub position: u32,
    pub pending_reason: String,
    pub work_request: WorkRequestView,
}

impl From<proto::QueueEntry> for QueueEntryView {
    fn from(entry: proto::QueueEntry) -> QueueEntryView {
        QueueEntryView {
            position: entry.position,
            pending_reason: entry.pending_reason,
            work_request: WorkRequestView::from(entry.work_request.unwrap_or_default()),
        }
    }
}

/// `queue`: the pending queue, next to be offered first.
#[derive(Debug, Serialize)]
pub struct QueueView {
    pub entries: Vec<QueueEntryView>,
}

impl From<proto::ListQueueResponse> for QueueView {
    fn from(response: proto::ListQueueResponse) -> QueueView {
        QueueView {
            entries: response
                .entries
                .into_iter()
                .map(QueueEntryView::from)
                .collect(),
        }
    }
}

impl Answer for proto::ListQueueResponse {
    type View = QueueView;
}

impl Render for QueueView {
    fn table(&self) -> String {
        let mut table = Table::new(["POS", "ID", "PRIORITY", "CREATED", "IMAGE", "REASON"]);
        for entry in &self.entries {
            let request = &entry.work_request;
            table.row([
                entry.position.to_string(),
                request.id.clone(),
                request.priority.to_string(),
                time(request.created_at),
                request.image.clone(),
                entry.pending_reason.clone(),
            ]);
        }
        table.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::to_json;

    #[test]
    fn queue_lists_positions_and_reasons_in_both_formats() {
        let entry = |position: u32, id: &str, reason: &str| proto::QueueEntry {
            work_request: Some(proto::WorkRequest {
                id: id.into(),
                status: proto::WorkRequestStatus::Pending as i32,
                priority: 10,
                queue_position: position,
                pending_reason: reason.into(),
                spec: Some(proto::ContainerSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            position,
            pending_reason: reason.into(),
        };
        let view = QueueView::from(proto::ListQueueResponse {
            entries: vec![
                entry(1, "a", "next in line"),
                entry(2, "b", "no connected worker has labels gpu=yes"),
            ],
        });
        let json = to_json(&view);
        assert_eq!(json["entries"][1]["position"], 2);
        assert_eq!(
            json["entries"][1]["pending_reason"],
            "no connected worker has labels gpu=yes"
        );
        assert_eq!(json["entries"][1]["work_request"]["id"], "b");
        assert_eq!(json["entries"][1]["work_request"]["queue_position"], 2);
        let table = view.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("POS  ID  PRIORITY  CREATED"),
            "{table}"
        );
        assert!(
            lines[2].ends_with("busybox  no connected worker has labels gpu=yes"),
            "{table}"
        );
    }
}
