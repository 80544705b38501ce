//! Where the sealed chunks of attachments live: in the database (the default, so a
//! deployment is one file or one database to back up), or in a directory of files
//! ([`FileBlobs`]) for deployments whose files outgrow their database. Either way only
//! ciphertext is stored: a chunk is sealed under the patient's key before it arrives here,
//! and bound to its attachment and position, so a chunk moved or swapped does not open.
//!
//! A chunk is durable when `put_chunk` returns. Chunks of an upload that never finished
//! (no attachment row names them) are found with [`BlobStore::attachments`] and removed
//! with [`BlobStore::delete`] by the application's sweep.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::{Store, StoreError, StoreResult};

/// The store of attachment chunks.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Keeps chunk `index` of `attachment`, durably, before returning.
    async fn put_chunk(&self, attachment: Uuid, index: u32, sealed: Vec<u8>) -> StoreResult<()>;

    /// Chunk `index` of `attachment`, if kept.
    async fn chunk(&self, attachment: Uuid, index: u32) -> StoreResult<Option<Vec<u8>>>;

    /// Attachments that have chunks, with ids after `after` and before `before`, in id
    /// order, at most `limit` (ids are UUIDv7: in the order they were made).
    async fn attachments(
        &self,
        after: Option<Uuid>,
        before: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<Uuid>>;

    /// Removes every chunk of `attachment`, which no attachment row names; returns how many.
    async fn delete(&self, attachment: Uuid) -> StoreResult<u64>;
}

/// Chunks in the database (`attachment_chunks`), written through the group commit.
#[derive(Debug, Clone)]
pub struct DatabaseBlobs {
    store: Arc<dyn Store>,
}

impl DatabaseBlobs {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl BlobStore for DatabaseBlobs {
    async fn put_chunk(&self, attachment: Uuid, index: u32, sealed: Vec<u8>) -> StoreResult<()> {
        self.store
            .put_attachment_chunk(attachment, index, sealed)
            .await
    }

    async fn chunk(&self, attachment: Uuid, index: u32) -> StoreResult<Option<Vec<u8>>> {
        self.store.attachment_chunk(attachment, index).await
    }

    async fn attachments(
        &self,
        after: Option<Uuid>,
        before: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<Uuid>> {
        self.store.chunked_attachments(after, before, limit).await
    }

    async fn delete(&self, attachment: Uuid) -> StoreResult<u64> {
        self.store.delete_orphan_chunks(attachment).await
    }
}

/// Chunks as files: `<root>/<last two hex digits of the id>/<id>/<index>`. The last digits
/// of a UUIDv7 are random, so attachments spread over 256 directories. A chunk is written
/// to a temporary name, flushed to disk, renamed into place and its directory flushed, so a
/// chunk either is whole on disk or is not there.
#[derive(Debug, Clone)]
pub struct FileBlobs {
    root: PathBuf,
}

impl FileBlobs {
    /// Keeps chunks under `root`, created if needed (readable by the service user only).
    pub fn open(root: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(root).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn directory(&self, attachment: Uuid) -> PathBuf {
        let id = attachment.simple().to_string();
        self.root.join(&id[id.len() - 2..]).join(id)
    }
}

fn io(error: std::io::Error) -> StoreError {
    StoreError::Io(error.to_string())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Io(format!("a file task failed: {e}")))?
        .map_err(io)
}

/// Flushes a directory's entries (a rename is durable only once its directory is).
fn sync_directory(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[async_trait]
impl BlobStore for FileBlobs {
    async fn put_chunk(&self, attachment: Uuid, index: u32, sealed: Vec<u8>) -> StoreResult<()> {
        let directory = self.directory(attachment);
        blocking(move || {
            use std::io::Write;
            let fresh = !directory.exists();
            std::fs::create_dir_all(&directory)?;
            if fresh && let Some(shard) = directory.parent() {
                sync_directory(shard)?;
            }
            let temporary = directory.join(format!("{index}.partial"));
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&sealed)?;
            file.sync_all()?;
            std::fs::rename(&temporary, directory.join(index.to_string()))?;
            sync_directory(&directory)
        })
        .await
    }

    async fn chunk(&self, attachment: Uuid, index: u32) -> StoreResult<Option<Vec<u8>>> {
        let path = self.directory(attachment).join(index.to_string());
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        })
        .await
    }

    async fn attachments(
        &self,
        after: Option<Uuid>,
        before: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<Uuid>> {
        let root = self.root.clone();
        blocking(move || {
            let mut found = Vec::new();
            for shard in std::fs::read_dir(&root)? {
                let shard = shard?;
                if !shard.file_type()?.is_dir() {
                    continue;
                }
                for entry in std::fs::read_dir(shard.path())? {
                    let entry = entry?;
                    let Some(id) = entry
                        .file_name()
                        .to_str()
                        .and_then(|name| Uuid::try_parse(name).ok())
                    else {
                        continue;
                    };
                    if id < before && after.is_none_or(|after| id > after) {
                        found.push(id);
                    }
                }
            }
            found.sort();
            found.truncate(limit as usize);
            Ok(found)
        })
        .await
    }

    async fn delete(&self, attachment: Uuid) -> StoreResult<u64> {
        let directory = self.directory(attachment);
        blocking(move || {
            let count = match std::fs::read_dir(&directory) {
                Ok(entries) => entries.count() as u64,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(error) => return Err(error),
            };
            std::fs::remove_dir_all(&directory)?;
            if let Some(shard) = directory.parent() {
                sync_directory(shard)?;
            }
            Ok(count)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn file_chunks_round_trip_list_in_order_and_are_deleted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FileBlobs::open(&dir.path().join("attachments")).unwrap();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        for (n, id) in ids.iter().enumerate() {
            for index in 0..=n as u32 {
                blobs
                    .put_chunk(*id, index, vec![n as u8; 10 + index as usize])
                    .await
                    .unwrap();
            }
        }
        assert_eq!(blobs.chunk(ids[2], 2).await.unwrap(), Some(vec![2u8; 12]));
        assert_eq!(blobs.chunk(ids[2], 3).await.unwrap(), None);
        assert_eq!(blobs.chunk(Uuid::now_v7(), 0).await.unwrap(), None);
        // In id order, bounded on both sides and by the limit.
        assert_eq!(blobs.attachments(None, Uuid::max(), 10).await.unwrap(), ids);
        assert_eq!(
            blobs.attachments(Some(ids[0]), ids[2], 10).await.unwrap(),
            vec![ids[1]]
        );
        assert_eq!(
            blobs.attachments(None, Uuid::max(), 2).await.unwrap(),
            ids[..2].to_vec()
        );
        // No half-written chunk is ever left under its final name.
        let leftovers = std::fs::read_dir(blobs.directory(ids[1]))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".partial")
            })
            .count();
        assert_eq!(leftovers, 0);
        assert_eq!(blobs.delete(ids[1]).await.unwrap(), 2);
        assert_eq!(blobs.delete(ids[1]).await.unwrap(), 0);
        assert_eq!(blobs.chunk(ids[1], 0).await.unwrap(), None);
        assert_eq!(
            blobs.attachments(None, Uuid::max(), 10).await.unwrap(),
            vec![ids[0], ids[2]]
        );
    }
}
