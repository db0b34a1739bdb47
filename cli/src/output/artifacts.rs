//! Views of artifacts and collections: one artifact (`artifact get`, `create`, `expire`),
//! `artifact list`, the answers to `download`, `relate` and `delete`; one collection
//! (`collection create`, `get`, `set`), `collection list`, and one item (`add`, `rm`,
//! `lookup`).

use berth_common::proto;
use serde::Serialize;

use super::{Answer, NONE, Render, Span, Table, Time, fields, opt, time, yes_no};

/// A relation kind by name.
fn relation_name(value: i32) -> String {
    let name = proto::ArtifactRelationKind::try_from(value)
        .ok()
        .map(|kind| match kind {
            proto::ArtifactRelationKind::Unspecified => "unspecified",
            proto::ArtifactRelationKind::Extends => "extends",
            proto::ArtifactRelationKind::RelatesTo => "relates-to",
            proto::ArtifactRelationKind::BuiltUsing => "built-using",
        });
    super::enum_name(value, name)
}

/// A byte count as it reads best in a table: exact bytes under 1 KiB, else one decimal.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A file of an artifact.
#[derive(Debug, Serialize)]
pub struct ArtifactFileView {
    pub path: String,
    /// Empty for a symlink.
    pub sha256: String,
    pub size: u64,
    /// Octal, e.g. `0644`.
    pub mode: String,
    /// A symlink's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
    pub uploaded: bool,
}

/// A relation of an artifact.
#[derive(Debug, Serialize)]
pub struct RelationView {
    pub kind: String,
    pub artifact_id: String,
    /// `out` when this artifact points at the other, `in` when the other points here.
    pub direction: String,
}

/// An artifact.
#[derive(Debug, Serialize)]
pub struct ArtifactView {
    pub id: String,
    pub workspace: String,
    pub category: String,
    pub data: serde_json::Value,
    pub complete: bool,
    pub file_count: u32,
    pub total_size: u64,
    pub created_by: Option<String>,
    pub work_request_id: Option<String>,
    pub attempt: Option<u32>,
    pub created_at: Option<Time>,
    /// `None`: never expires.
    pub expire_at: Option<Time>,
    pub store: String,
    pub files: Vec<ArtifactFileView>,
    pub relations: Vec<RelationView>,
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

impl From<proto::Artifact> for ArtifactView {
    fn from(a: proto::Artifact) -> ArtifactView {
        ArtifactView {
            data: serde_json::from_str(&a.data)
                .unwrap_or(serde_json::Value::String(a.data.clone())),
            id: a.id,
            workspace: a.workspace,
            category: a.category,
            complete: a.complete,
            file_count: a.file_count,
            total_size: a.total_size,
            created_by: non_empty(a.created_by),
            attempt: (!a.work_request_id.is_empty()).then_some(a.attempt),
            work_request_id: non_empty(a.work_request_id),
            created_at: Time::from_proto(a.created_at.as_ref()),
            expire_at: Time::from_proto(a.expire_at.as_ref()),
            store: a.store,
            files: a
                .files
                .into_iter()
                .map(|f| ArtifactFileView {
                    path: f.path,
                    sha256: f.sha256,
                    size: f.size,
                    mode: format!("{:04o}", f.mode),
                    symlink: non_empty(f.symlink),
                    uploaded: f.uploaded,
                })
                .collect(),
            relations: a
                .relations
                .into_iter()
                .map(|r| RelationView {
                    kind: relation_name(r.kind),
                    artifact_id: r.artifact_id,
                    direction: if r.incoming { "in" } else { "out" }.to_owned(),
                })
                .collect(),
        }
    }
}

impl Answer for proto::Artifact {
    type View = ArtifactView;
}

impl Answer for proto::CreateArtifactResponse {
    type View = ArtifactView;
}

impl From<proto::CreateArtifactResponse> for ArtifactView {
    fn from(created: proto::CreateArtifactResponse) -> ArtifactView {
        ArtifactView::from(created.artifact.unwrap_or_default())
    }
}

impl Render for ArtifactView {
    fn table(&self) -> String {
        let mut text = fields(&[
            ("id", self.id.clone()),
            ("workspace", self.workspace.clone()),
            ("category", self.category.clone()),
            ("data", self.data.to_string()),
            ("complete", yes_no(self.complete)),
            ("file_count", self.file_count.to_string()),
            ("total_size", bytes(self.total_size)),
            ("created_by", opt(self.created_by.as_ref())),
            ("work_request_id", opt(self.work_request_id.as_ref())),
            ("attempt", opt(self.attempt)),
            ("created_at", time(self.created_at)),
            (
                "expire_at",
                self.expire_at
                    .map_or_else(|| "never".to_owned(), Time::short),
            ),
            ("store", self.store.clone()),
        ]);
        if !self.files.is_empty() {
            let mut table = Table::new(["PATH", "SIZE", "MODE", "SHA256", "UPLOADED"]);
            for f in &self.files {
                let (size, sha) = match &f.symlink {
                    Some(target) => ("-".to_owned(), format!("-> {target}")),
                    None => (bytes(f.size), f.sha256.chars().take(16).collect()),
                };
                table.row([
                    f.path.clone(),
                    size,
                    f.mode.clone(),
                    sha,
                    yes_no(f.uploaded),
                ]);
            }
            text.push_str("files:\n");
            text.push_str(&table.render_indented());
        }
        if !self.relations.is_empty() {
            let mut table = Table::new(["KIND", "DIRECTION", "ARTIFACT"]);
            for r in &self.relations {
                table.row([r.kind.clone(), r.direction.clone(), r.artifact_id.clone()]);
            }
            text.push_str("relations:\n");
            text.push_str(&table.render_indented());
        }
        text
    }
}

/// `artifact list`.
#[derive(Debug, Serialize)]
pub struct ArtifactListView {
    pub artifacts: Vec<ArtifactView>,
    /// Pass it as --page-token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

impl From<proto::ListArtifactsResponse> for ArtifactListView {
    fn from(list: proto::ListArtifactsResponse) -> ArtifactListView {
        ArtifactListView {
            artifacts: list.artifacts.into_iter().map(ArtifactView::from).collect(),
            next_page_token: non_empty(list.next_page_token),
        }
    }
}

impl Answer for proto::ListArtifactsResponse {
    type View = ArtifactListView;
}

impl Render for ArtifactListView {
    fn table(&self) -> String {
        let mut table = Table::new([
            "ID", "CATEGORY", "FILES", "SIZE", "COMPLETE", "CREATED", "EXPIRES", "BY",
        ]);
        for a in &self.artifacts {
            table.row([
                a.id.clone(),
                a.category.clone(),
                a.file_count.to_string(),
                bytes(a.total_size),
                yes_no(a.complete),
                time(a.created_at),
                a.expire_at.map_or_else(|| "never".to_owned(), Time::short),
                a.created_by
                    .clone()
                    .or_else(|| a.work_request_id.clone())
                    .unwrap_or_else(|| NONE.to_owned()),
            ]);
        }
        let mut text = table.render();
        if let Some(token) = &self.next_page_token {
            text.push_str(&format!("next page: --page-token {token}\n"));
        }
        text
    }
}

/// The answer to `artifact download`.
#[derive(Debug, Serialize)]
pub struct DownloadedView {
    pub artifact: String,
    pub directory: String,
    /// The paths written (files and symlinks), each checked against its SHA-256.
    pub files: Vec<String>,
    /// Symlinks not created because they point outside the directory.
    pub skipped: Vec<String>,
}

impl Render for DownloadedView {
    fn table(&self) -> String {
        fields(&[
            ("artifact", self.artifact.clone()),
            ("directory", self.directory.clone()),
            ("files", self.files.len().to_string()),
            ("skipped", self.skipped.join(", ")),
        ])
    }
}

/// The answer to `artifact relate`.
#[derive(Debug, Serialize)]
pub struct RelatedView {
    pub from: String,
    pub kind: String,
    pub to: String,
    pub removed: bool,
    /// False when nothing changed (it existed already, or did not exist to remove).
    pub changed: bool,
}

impl Render for RelatedView {
    fn table(&self) -> String {
        let what = match (self.removed, self.changed) {
            (false, true) => "added",
            (false, false) => "already there",
            (true, true) => "removed",
            (true, false) => "was not there",
        };
        format!("{} {} {}: {what}\n", self.from, self.kind, self.to)
    }
}

/// The answer to `artifact delete`.
#[derive(Debug, Serialize)]
pub struct DeletedArtifactView {
    pub id: String,
    pub deleted: bool,
}

impl Render for DeletedArtifactView {
    fn table(&self) -> String {
        format!("deleted artifact {}\n", self.id)
    }
}

/// A collection's retention policy.
#[derive(Debug, Serialize)]
pub struct RetentionView {
    pub keep_last: Option<u32>,
    pub keep_for: Option<Span>,
    pub history: Option<Span>,
    pub metadata: Option<Span>,
}

/// An item of a collection.
#[derive(Debug, Serialize)]
pub struct CollectionItemView {
    pub collection: String,
    pub name: String,
    pub artifact_id: Option<String>,
    pub category: String,
    pub data: serde_json::Value,
    pub pinned: bool,
    pub added_at: Option<Time>,
    pub added_by: Option<String>,
    pub removed_at: Option<Time>,
    pub removed_why: Option<String>,
}

impl From<proto::CollectionItem> for CollectionItemView {
    fn from(item: proto::CollectionItem) -> CollectionItemView {
        CollectionItemView {
            data: serde_json::from_str(&item.data).unwrap_or(serde_json::Value::Null),
            collection: item.collection,
            name: item.name,
            artifact_id: non_empty(item.artifact_id),
            category: item.category,
            pinned: item.pinned,
            added_at: Time::from_proto(item.added_at.as_ref()),
            added_by: non_empty(item.added_by),
            removed_at: Time::from_proto(item.removed_at.as_ref()),
            removed_why: non_empty(item.removed_why),
        }
    }
}

impl Answer for proto::CollectionItem {
    type View = CollectionItemView;
}

impl Render for CollectionItemView {
    fn table(&self) -> String {
        fields(&[
            ("collection", self.collection.clone()),
            ("name", self.name.clone()),
            ("artifact_id", opt(self.artifact_id.as_ref())),
            ("category", self.category.clone()),
            ("pinned", yes_no(self.pinned)),
            ("added_at", time(self.added_at)),
            ("added_by", opt(self.added_by.as_ref())),
            ("removed_at", time(self.removed_at)),
            ("removed_why", opt(self.removed_why.as_ref())),
        ])
    }
}

/// A collection.
#[derive(Debug, Serialize)]
pub struct CollectionView {
    pub workspace: String,
    pub name: String,
    pub category: String,
    pub retention: RetentionView,
    pub created_at: Option<Time>,
    pub items: Vec<CollectionItemView>,
    pub history: Vec<CollectionItemView>,
}

impl From<proto::Collection> for CollectionView {
    fn from(c: proto::Collection) -> CollectionView {
        let retention = c.retention.unwrap_or_default();
        CollectionView {
            workspace: c.workspace,
            name: c.name,
            category: c.category,
            retention: RetentionView {
                keep_last: retention.keep_last,
                keep_for: Span::from_proto(retention.keep_for.as_ref()),
                history: Span::from_proto(retention.history.as_ref()),
                metadata: Span::from_proto(retention.metadata.as_ref()),
            },
            created_at: Time::from_proto(c.created_at.as_ref()),
            items: c.items.into_iter().map(CollectionItemView::from).collect(),
            history: c
                .history
                .into_iter()
                .map(CollectionItemView::from)
                .collect(),
        }
    }
}

impl Answer for proto::Collection {
    type View = CollectionView;
}

fn items_table(items: &[CollectionItemView], removed: bool) -> String {
    if removed {
        let mut table = Table::new(["NAME", "ARTIFACT", "REMOVED", "WHY"]);
        for item in items {
            table.row([
                item.name.clone(),
                opt(item.artifact_id.as_ref()),
                time(item.removed_at),
                opt(item.removed_why.as_ref()),
            ]);
        }
        table.render_indented()
    } else {
        let mut table = Table::new(["NAME", "ARTIFACT", "PINNED", "ADDED"]);
        for item in items {
            table.row([
                item.name.clone(),
                opt(item.artifact_id.as_ref()),
                yes_no(item.pinned),
                time(item.added_at),
            ]);
        }
        table.render_indented()
    }
}

impl Render for CollectionView {
    fn table(&self) -> String {
        let r = &self.retention;
        let mut text = fields(&[
            ("workspace", self.workspace.clone()),
            ("name", self.name.clone()),
            ("category", self.category.clone()),
            ("keep_last", opt(r.keep_last)),
            ("keep_for", opt(r.keep_for)),
            ("history", opt(r.history)),
            ("metadata", opt(r.metadata)),
            ("created_at", time(self.created_at)),
        ]);
        if !self.items.is_empty() {
            text.push_str("items:\n");
            text.push_str(&items_table(&self.items, false));
        }
        if !self.history.is_empty() {
            text.push_str("history:\n");
            text.push_str(&items_table(&self.history, true));
        }
        text
    }
}

/// `collection list`.
#[derive(Debug, Serialize)]
pub struct CollectionListView {
    pub collections: Vec<CollectionView>,
}

impl From<proto::ListCollectionsResponse> for CollectionListView {
    fn from(list: proto::ListCollectionsResponse) -> CollectionListView {
        CollectionListView {
            collections: list
                .collections
                .into_iter()
                .map(CollectionView::from)
                .collect(),
        }
    }
}

impl Answer for proto::ListCollectionsResponse {
    type View = CollectionListView;
}

impl Render for CollectionListView {
    fn table(&self) -> String {
        let mut table = Table::new(["NAME", "CATEGORY", "KEEP_LAST", "KEEP_FOR", "CREATED"]);
        for c in &self.collections {
            table.row([
                c.name.clone(),
                c.category.clone(),
                opt(c.retention.keep_last),
                opt(c.retention.keep_for),
                time(c.created_at),
            ]);
        }
        table.render()
    }
}
