//! Attachments (FHIR `Binary`): files of a patient's chart (imaging, PDFs, recordings,
//! photographs), streamed in and out in sealed chunks.
//!
//! An upload never sits whole in memory: the body is cut into [`CHUNK_BYTES`] chunks, each
//! sealed with its own data key under the patient's key and bound to (`attachment_chunks`,
//! `id/index`), so a chunk cannot be moved to another attachment or another place in this
//! one; the attachment's row, naming how many chunks make it whole, is written only after
//! every chunk is durable. The declared content type is checked against the file's first
//! bytes, so a script cannot pass as a picture. The upload is authorized and audited as a
//! create in the patient's chart before anything is stored, a download as a read before
//! anything is opened.

use haven_crypto::{RecordBinding, Sealed, SubjectKey};
use haven_domain::{Action, ChartPart, PatientId};
use haven_store::fhir::StoredAttachment;
use zeroize::Zeroizing;

use crate::gate::{AuditedResource, Grant};
use crate::{App, AppError, AppResult, RequestContext};

/// The size of one sealed chunk of plaintext.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// The largest attachment accepted.
pub const ATTACHMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// The table named in every chunk's seal binding.
const SEAL_TABLE: &str = "attachment_chunks";
/// Files are in the chart part that both the patient and the care team add to.
const PART: ChartPart = ChartPart::PatientAuthored;

/// The kinds of file Haven keeps, each recognised by its first bytes.
const CONTENT_TYPES: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "application/dicom",
    "text/plain",
    "audio/webm",
    "video/webm",
    "audio/mp4",
    "video/mp4",
];

/// Whether `head` (the first bytes of the file) is what `content_type` says.
fn content_matches(content_type: &str, head: &[u8]) -> bool {
    match content_type {
        "application/pdf" => head.starts_with(b"%PDF-"),
        "image/png" => head.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => head.starts_with(&[0xFF, 0xD8, 0xFF]),
        "application/dicom" => head.get(128..132) == Some(b"DICM"),
        "audio/webm" | "video/webm" => head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]),
        "audio/mp4" | "video/mp4" => head.get(4..8) == Some(b"ftyp"),
        // Text must be UTF-8 without NULs; the head may end inside a character.
        "text/plain" => {
            !head.contains(&0)
                && match std::str::from_utf8(head) {
                    Ok(_) => true,
                    Err(error) => error.error_len().is_none(),
                }
        }
        _ => false,
    }
}

/// An attachment as answered: its metadata.
#[derive(Debug, Clone)]
pub struct AttachmentView {
    pub id: uuid::Uuid,
    pub patient: PatientId,
    pub content_type: String,
    pub size_bytes: u64,
    pub created_at_ms: i64,
}

/// An upload in progress; [`AttachmentWriter::finish`] makes it visible.
pub struct AttachmentWriter {
    app: App,
    id: uuid::Uuid,
    patient: PatientId,
    content_type: String,
    created_by: String,
    key: SubjectKey,
    pending: Zeroizing<Vec<u8>>,
    chunks: u32,
    size_bytes: u64,
}

impl std::fmt::Debug for AttachmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentWriter")
            .field("id", &self.id)
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

fn binding(record_id: &str) -> RecordBinding<'_> {
    RecordBinding {
        table: SEAL_TABLE,
        record_id,
        version: 1,
    }
}

impl AttachmentWriter {
    /// Takes the next bytes of the file.
    pub async fn write(&mut self, bytes: &[u8]) -> AppResult<()> {
        self.size_bytes += bytes.len() as u64;
        if self.size_bytes > ATTACHMENT_BYTES_MAX {
            return Err(AppError::TooLarge {
                limit_bytes: ATTACHMENT_BYTES_MAX,
            });
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = CHUNK_BYTES - self.pending.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.pending.extend_from_slice(now);
            rest = later;
            if self.pending.len() == CHUNK_BYTES {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> AppResult<()> {
        if self.chunks == 0 && !content_matches(&self.content_type, &self.pending) {
            return Err(AppError::InvalidResource {
                path: "Binary.contentType".into(),
                message: format!("the file's content is not {}", self.content_type),
            });
        }
        let record_id = format!("{}/{}", self.id, self.chunks);
        let sealed = Sealed::<Vec<u8>>::seal(&self.key, &binding(&record_id), &self.pending);
        self.app
            .blobs
            .put_chunk(self.id, self.chunks, sealed.into_bytes())
            .await?;
        self.chunks += 1;
        self.pending.clear();
        Ok(())
    }

    /// Stores what is left and records the attachment, whole.
    pub async fn finish(mut self) -> AppResult<AttachmentView> {
        if self.size_bytes == 0 {
            return Err(AppError::InvalidResource {
                path: "Binary".into(),
                message: "an attachment needs content".into(),
            });
        }
        if !self.pending.is_empty() {
            self.flush().await?;
        }
        let created_at_ms = self.app.clock.now_ms();
        self.app
            .store
            .insert_attachment(StoredAttachment {
                id: self.id,
                patient: self.patient,
                content_type: self.content_type.clone(),
                size_bytes: i64::try_from(self.size_bytes)
                    .map_err(|_| AppError::Unexpected("an attachment size".into()))?,
                chunks: i64::from(self.chunks),
                created_by: self.created_by.clone(),
                created_at_ms,
                subject_key: None,
            })
            .await?;
        Ok(AttachmentView {
            id: self.id,
            patient: self.patient,
            content_type: self.content_type,
            size_bytes: self.size_bytes,
            created_at_ms,
        })
    }
}

/// A download in progress: the chunks, opened one at a time.
pub struct AttachmentReader {
    app: App,
    id: uuid::Uuid,
    key: SubjectKey,
    next: u32,
    chunks: u32,
}

impl std::fmt::Debug for AttachmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentReader")
            .field("id", &self.id)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl AttachmentReader {
    /// The next chunk of plaintext, or `None` after the last.
    pub async fn next_chunk(&mut self) -> AppResult<Option<Zeroizing<Vec<u8>>>> {
        if self.next == self.chunks {
            return Ok(None);
        }
        let sealed = self
            .app
            .blobs
            .chunk(self.id, self.next)
            .await?
            .ok_or_else(|| AppError::Unexpected("an attachment chunk is missing".into()))?;
        let record_id = format!("{}/{}", self.id, self.next);
        let plaintext =
            Sealed::<Vec<u8>>::from_bytes(sealed)?.open(&self.key, &binding(&record_id))?;
        self.next += 1;
        Ok(Some(Zeroizing::new(plaintext.expose_secret().to_vec())))
    }
}

impl App {
    fn chart_grant_for(&self, patient: PatientId, id: uuid::Uuid) -> AuditedResource {
        AuditedResource {
            resource: haven_domain::Resource::Chart(patient, PART),
            patient: None,
            resource_type: "Binary",
            resource_id: Some(id.to_string()),
        }
    }

    /// Begins an upload to `patient`'s chart (`Patient/{id}` or the id), authorized and
    /// audited as a create before anything is stored.
    pub async fn begin_attachment(
        &self,
        context: &RequestContext,
        patient: &str,
        content_type: &str,
    ) -> AppResult<AttachmentWriter> {
        let content_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !CONTENT_TYPES.contains(&content_type.as_str()) {
            return Err(AppError::UnsupportedMedia(format!(
                "attachments may be {}",
                CONTENT_TYPES.join(", ")
            )));
        }
        let id = uuid::Uuid::now_v7();
        let patient_id = patient
            .strip_prefix("Patient/")
            .unwrap_or(patient)
            .parse::<PatientId>()
            .ok();
        let stored = match patient_id {
            Some(patient) => self.store.get_patient(patient).await?,
            None => None,
        };
        let Some(stored) = stored else {
            self.gate
                .authorize_missing(
                    context,
                    Action::Create,
                    PART,
                    "Binary",
                    Some(id.to_string()),
                )
                .await?;
            return Err(AppError::InvalidResource {
                path: "X-Security-Context".into(),
                message: "names no patient of this server".into(),
            });
        };
        let grant = self
            .gate
            .authorize_resource(
                context,
                Action::Create,
                self.chart_grant_for(stored.id, id),
                false,
            )
            .await?
            .ok_or_else(|| AppError::Unexpected("an allowed upload without a grant".into()))?;
        let stored_key = stored.subject_key.as_ref().ok_or(AppError::Erased)?;
        let key = self.gate.open_subject_key(&grant, stored_key)?;
        Ok(AttachmentWriter {
            app: self.clone(),
            id,
            patient: stored.id,
            content_type,
            created_by: context.actor.principal.actor_id(),
            key,
            pending: Zeroizing::new(Vec::with_capacity(CHUNK_BYTES)),
            chunks: 0,
            size_bytes: 0,
        })
    }

    /// Opens an attachment for reading, authorized and audited as a read of the chart; a
    /// missing one is decided as a stranger's.
    pub async fn read_attachment(
        &self,
        context: &RequestContext,
        id: &str,
    ) -> AppResult<(AttachmentView, AttachmentReader)> {
        // Not an id Haven issues: it names nothing, and its text is not recorded.
        let id = id.parse::<uuid::Uuid>().map_err(|_| AppError::NotFound)?;
        let Some(stored) = self.store.attachment(id).await? else {
            self.gate
                .authorize_missing(context, Action::Read, PART, "Binary", None)
                .await?;
            return Err(AppError::NotFound);
        };
        let grant: Grant = self
            .gate
            .authorize_resource(
                context,
                Action::Read,
                self.chart_grant_for(stored.patient, stored.id),
                false,
            )
            .await?
            .ok_or_else(|| AppError::Unexpected("an allowed read without a grant".into()))?;
        let stored_key = stored.subject_key.as_ref().ok_or(AppError::Erased)?;
        let key = self.gate.open_subject_key(&grant, stored_key)?;
        let chunks = u32::try_from(stored.chunks)
            .map_err(|_| AppError::Unexpected("an attachment's chunk count".into()))?;
        Ok((
            AttachmentView {
                id: stored.id,
                patient: stored.patient,
                content_type: stored.content_type,
                size_bytes: u64::try_from(stored.size_bytes).unwrap_or(0),
                created_at_ms: stored.created_at_ms,
            },
            AttachmentReader {
                app: self.clone(),
                id: stored.id,
                key,
                next: 0,
                chunks,
            },
        ))
    }
}

/// How old the chunks of an unfinished upload must be before the sweep removes them: far
/// longer than any upload of [`ATTACHMENT_BYTES_MAX`] takes.
pub const ORPHAN_CHUNKS_AGE_MS: i64 = 24 * 60 * 60 * 1000;
/// How often the sweep runs.
pub const ORPHAN_SWEEP_INTERVAL_SECS: u64 = 60 * 60;
/// Attachments looked at per page of a sweep.
const SWEEP_PAGE_ATTACHMENTS: u32 = 100;

/// The smallest UUIDv7 made at `ms`: every id made earlier sorts below it.
fn first_id_at(ms: i64) -> uuid::Uuid {
    let ms = u128::try_from(ms.max(0)).unwrap_or(0) & ((1 << 48) - 1);
    uuid::Uuid::from_u128(ms << 80)
}

impl App {
    /// Removes the chunks of uploads that never finished (the client went away, the
    /// server stopped mid-way) once they are [`ORPHAN_CHUNKS_AGE_MS`] old. `cursor` keeps
    /// the last attachment looked at, so each is looked at once however often this runs.
    /// Chunks are ciphertext nobody can reach without an attachment row: removing them
    /// opens nothing and is not an access to audit. Returns how many chunks were removed.
    pub async fn sweep_orphan_chunks(&self, cursor: &mut Option<uuid::Uuid>) -> AppResult<u64> {
        let before = first_id_at(self.clock.now_ms() - ORPHAN_CHUNKS_AGE_MS);
        let mut removed = 0;
        loop {
            let page = self
                .blobs
                .attachments(*cursor, before, SWEEP_PAGE_ATTACHMENTS)
                .await?;
            for id in &page {
                if self.store.attachment(*id).await?.is_none() {
                    removed += self.blobs.delete(*id).await?;
                }
                *cursor = Some(*id);
            }
            if page.len() < SWEEP_PAGE_ATTACHMENTS as usize {
                return Ok(removed);
            }
        }
    }

    /// Sweeps unfinished uploads every [`ORPHAN_SWEEP_INTERVAL_SECS`] until `stop`.
    pub async fn run_chunk_sweeper(&self, stop: impl std::future::Future<Output = ()>) {
        let mut cursor = None;
        let mut stop = std::pin::pin!(stop);
        loop {
            match self.sweep_orphan_chunks(&mut cursor).await {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(removed, "removed the chunks of unfinished uploads");
                }
                Err(error) => tracing::warn!(%error, "sweeping unfinished uploads failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(ORPHAN_SWEEP_INTERVAL_SECS)) => {}
                () = &mut stop => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_recognised_by_its_first_bytes() {
        assert!(content_matches("application/pdf", b"%PDF-1.7\n..."));
        assert!(!content_matches(
            "application/pdf",
            b"<script>alert(1)</script>"
        ));
        assert!(content_matches("image/png", b"\x89PNG\r\n\x1a\n...."));
        assert!(!content_matches("image/png", b"GIF89a"));
        let mut dicom = vec![0u8; 128];
        dicom.extend_from_slice(b"DICM....");
        assert!(content_matches("application/dicom", &dicom));
        assert!(content_matches("text/plain", "Résumé".as_bytes()));
        // A head cut inside a character is still text; invalid UTF-8 or a NUL is not.
        assert!(content_matches("text/plain", &"é".as_bytes()[..1]));
        assert!(!content_matches("text/plain", b"\xff\xfe"));
        assert!(!content_matches("text/plain", b"a\0b"));
        assert!(!content_matches("application/x-sh", b"#!/bin/sh"));
    }
}
