//! Proofs from the audit log's stored Merkle tree, and the patient's own access log.
//!
//! The checkpointer stores every leaf and every perfect subtree as the tree grows
//! (`audit_tree_leaves`, `audit_tree_nodes`). A proof is planned as leaf ranges
//! ([`inclusion_ranges`], [`consistency_ranges`]), each range's hash is folded from its
//! stored perfect subtrees, and the answer costs O(log² n) indexed reads whatever the size
//! of the log.
//!
//! Nothing here needs to be trusted: a client checks an inclusion proof against a signed
//! checkpoint with the log's public key, recomputing the leaf from the entry's fields, and
//! a witness checks a consistency proof against the checkpoints it kept. A server that
//! altered an entry or its stored tree can only serve proofs that fail.

use std::collections::HashMap;
use std::ops::Range;

use haven_audit::StoredAuditEvent;
use haven_audit::merkle::{
    Hash, NodeId, consistency_ranges, fold_subtrees, inclusion_ranges, perfect_subtrees,
    verify_consistency, verify_inclusion,
};
use haven_domain::{PatientId, ValidationError};
use haven_store::{AuditQuery, AuditSortField, Store, StoredCheckpoint, TreeLeaf, limits};

use crate::{App, AppError, AppResult, RequestContext};

/// Entries per page of a patient's access log when the caller does not say, and at most.
pub const ACCESS_LOG_PAGE_ROWS_DEFAULT: u32 = 50;
pub const ACCESS_LOG_PAGE_ROWS_MAX: u32 = 100;

/// That one entry is the leaf at `index` of the tree the checkpoint signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry's position in the tree, from 0 (RFC 9162's leaf index).
    pub index: u64,
    /// The leaf hash recorded when the entry entered the tree.
    pub leaf_hash: Hash,
    /// The audit path, from the leaf up.
    pub path: Vec<Hash>,
}

/// An entry with its inclusion proof in `checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenEntry {
    pub entry: StoredAuditEvent,
    /// `None` while the entry is newer than the checkpoint (the next one covers it within
    /// about a second).
    pub proof: Option<InclusionProof>,
}

/// Entries with their proofs, all against one signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenEntries {
    /// The checkpoint the proofs lead to; `None` before the first one is signed.
    pub checkpoint: Option<StoredCheckpoint>,
    pub entries: Vec<ProvenEntry>,
}

/// That the tree of `first` leaves is a prefix of the tree of `second` leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: StoredCheckpoint,
    pub path: Vec<Hash>,
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::Invalid(ValidationError {
        field: field.into(),
        message: message.into(),
    })
}

/// The hashes of the given leaf ranges, in order, from the stored perfect subtrees.
async fn range_hashes(store: &dyn Store, ranges: &[Range<u64>]) -> AppResult<Vec<Hash>> {
    let pieces: Vec<Vec<NodeId>> = ranges.iter().cloned().map(perfect_subtrees).collect();
    let mut wanted: Vec<NodeId> = pieces.iter().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut found: HashMap<NodeId, Hash> = HashMap::with_capacity(wanted.len());
    for chunk in wanted.chunks(limits::TREE_NODES_READ_MAX) {
        for (id, hash) in chunk.iter().zip(store.tree_nodes(chunk).await?) {
            if let Some(hash) = hash {
                found.insert(*id, hash);
            }
        }
    }
    pieces
        .iter()
        .map(|ids| {
            let hashes = ids
                .iter()
                .map(|id| found.get(id).copied())
                .collect::<Option<Vec<Hash>>>()
                .ok_or_else(|| {
                    AppError::Unexpected(
                        "the stored audit tree lacks a node under a signed checkpoint".into(),
                    )
                })?;
            fold_subtrees(&hashes)
                .ok_or_else(|| AppError::Unexpected("an empty proof range".into()))
        })
        .collect()
}

fn signed_root(checkpoint: &StoredCheckpoint) -> AppResult<Hash> {
    checkpoint
        .root
        .as_slice()
        .try_into()
        .map_err(|_| AppError::Unexpected("a stored checkpoint root is not 32 bytes".into()))
}

/// The inclusion proof of a stored leaf in the tree of `checkpoint`.
///
/// The proof is checked here too, before it is served: if it fails, the stored tree no
/// longer matches what was signed, which is logged loudly; the proof is still served, so
/// the client's own check reports it.
async fn prove_leaf(
    store: &dyn Store,
    leaf: &TreeLeaf,
    checkpoint: &StoredCheckpoint,
) -> AppResult<InclusionProof> {
    let ranges = inclusion_ranges(leaf.index, checkpoint.size)
        .ok_or_else(|| AppError::Unexpected("a leaf beyond its checkpoint".into()))?;
    let path = range_hashes(store, &ranges).await?;
    if !verify_inclusion(
        &leaf.hash,
        leaf.index,
        checkpoint.size,
        &path,
        &signed_root(checkpoint)?,
    ) {
        tracing::error!(
            index = leaf.index,
            size = checkpoint.size,
            "an inclusion proof from the stored audit tree does not match the signed \
             checkpoint: the log or its tree was altered; run `haven audit verify`"
        );
    }
    Ok(InclusionProof {
        index: leaf.index,
        leaf_hash: leaf.hash,
        path,
    })
}

/// Proofs for `entries` against `checkpoint`: entries it does not cover yet get none.
pub(crate) async fn prove_entries(
    store: &dyn Store,
    entries: Vec<StoredAuditEvent>,
    checkpoint: Option<StoredCheckpoint>,
) -> AppResult<ProvenEntries> {
    let mut proven = Vec::with_capacity(entries.len());
    for entry in entries {
        let proof = match &checkpoint {
            Some(checkpoint) => match store.tree_leaf_by_seq(entry.seq).await? {
                Some(leaf) if leaf.index < checkpoint.size => {
                    Some(prove_leaf(store, &leaf, checkpoint).await?)
                }
                _ => None,
            },
            None => None,
        };
        proven.push(ProvenEntry { entry, proof });
    }
    Ok(ProvenEntries {
        checkpoint,
        entries: proven,
    })
}

impl App {
    /// The checkpoint at `size`, or the latest when `size` is `None`.
    async fn checkpoint_for(&self, size: Option<u64>) -> AppResult<StoredCheckpoint> {
        let checkpoint = match size {
            Some(size) => self.store.checkpoint_at(size).await?,
            None => self.store.latest_checkpoint().await?,
        };
        checkpoint.ok_or(AppError::NotFound)
    }

    /// A patient's access log (ONC 170.315(d)(2) accounting; HIPAA right of access): the
    /// entries about their record, newest first, each with its inclusion proof in the
    /// latest signed checkpoint. The patient reads their own; reviewers read anyone's.
    /// The read is itself recorded before anything is answered. Pages continue with
    /// `before_seq`, the last `seq` of the previous page, so they stay put while the log
    /// grows.
    pub async fn patient_access_log(
        &self,
        context: &RequestContext,
        patient: PatientId,
        limit: u32,
        before_seq: Option<i64>,
    ) -> AppResult<ProvenEntries> {
        if limit == 0 || limit > ACCESS_LOG_PAGE_ROWS_MAX {
            return Err(invalid(
                "limit",
                format!("between 1 and {ACCESS_LOG_PAGE_ROWS_MAX}"),
            ));
        }
        if before_seq.is_some_and(|seq| seq < 1) {
            return Err(invalid("before", "an entry's seq, 1 or more"));
        }
        self.gate.authorize_access_log(context, patient).await?;
        // The checkpoint first: every proof below leads to this one root.
        let checkpoint = self.store.latest_checkpoint().await?;
        let entries = self
            .store
            .query_audit(&AuditQuery {
                patient: Some(patient),
                before_seq,
                sort: AuditSortField::Seq,
                descending: true,
                limit,
                ..AuditQuery::default()
            })
            .await?;
        prove_entries(&*self.store, entries, checkpoint).await
    }

    /// The inclusion proof of entry `seq` in the checkpoint at `size` (the latest if
    /// `None`), for reviewers checking an entry from a report. Audited as a log query.
    pub async fn audit_inclusion_proof(
        &self,
        context: &RequestContext,
        seq: i64,
        size: Option<u64>,
    ) -> AppResult<(StoredCheckpoint, InclusionProof)> {
        self.gate.authorize_audit_query(context).await?;
        let checkpoint = self.checkpoint_for(size).await?;
        let not_yet = || {
            invalid(
                "seq",
                format!(
                    "entry {seq} is newer than the checkpoint at size {}; ask again after the next checkpoint",
                    checkpoint.size
                ),
            )
        };
        let Some(leaf) = self.store.tree_leaf_by_seq(seq).await? else {
            // Not in the stored tree: an entry the checkpointer has yet to reach, or none.
            let exists = seq >= 1
                && self
                    .store
                    .audit_events(seq - 1, 1)
                    .await?
                    .first()
                    .is_some_and(|e| e.seq == seq);
            return Err(if exists {
                not_yet()
            } else {
                AppError::NotFound
            });
        };
        if leaf.index >= checkpoint.size {
            return Err(not_yet());
        }
        let proof = prove_leaf(&*self.store, &leaf, &checkpoint).await?;
        Ok((checkpoint, proof))
    }

    /// The proof that the log of `first` entries is a prefix of the checkpoint at `second`
    /// (the latest if `None`): what a witness asks for to check that nothing it has seen
    /// was rewritten. Hashes only, no entries: like checkpoints, an allowed read is not
    /// audited (a witness polls), a denied one is.
    pub async fn audit_consistency_proof(
        &self,
        context: &RequestContext,
        first: u64,
        second: Option<u64>,
    ) -> AppResult<ConsistencyProof> {
        self.gate
            .authorize_unaudited_read(context, haven_domain::Resource::AuditCheckpoints)
            .await?;
        let second = self.checkpoint_for(second).await?;
        let ranges = consistency_ranges(first, second.size).ok_or_else(|| {
            invalid(
                "first",
                format!("between 1 and the second size ({})", second.size),
            )
        })?;
        let path = range_hashes(&*self.store, &ranges).await?;
        // Self-check against the signed roots where the first size was signed too.
        if let Some(first_checkpoint) = self.store.checkpoint_at(first).await?
            && !verify_consistency(
                first,
                second.size,
                &signed_root(&first_checkpoint)?,
                &signed_root(&second)?,
                &path,
            )
        {
            tracing::error!(
                first,
                second = second.size,
                "two signed checkpoints of the audit log are not consistent: history was \
                 rewritten or the stored tree altered; run `haven audit verify`"
            );
        }
        Ok(ConsistencyProof {
            first,
            second,
            path,
        })
    }
}

/// How proofs from the stored tree fared on a sample of entries.
#[derive(Debug, Clone, PartialEq)]
pub struct ProofSample {
    /// The checkpoint the proofs lead to.
    pub size: u64,
    pub proofs: u64,
    /// The longest audit path, in hashes.
    pub path_hashes_max: usize,
    /// Time to build one proof from the store, median and 99th percentile.
    pub generate_p50_micros: f64,
    pub generate_p99_micros: f64,
    /// Time to check one proof, as a client does, on average.
    pub verify_mean_micros: f64,
}

/// Builds and checks inclusion proofs for `samples` entries spread evenly under the latest
/// checkpoint, straight from the stored tree: a spot check of the tree that serves proofs
/// (`haven audit verify` runs it after the full check) and a measurement of what a proof
/// costs to serve and to check. Fails if any proof does not lead to the signed root.
pub async fn sample_inclusion_proofs(
    store: &dyn Store,
    samples: u64,
) -> AppResult<Option<ProofSample>> {
    let Some(checkpoint) = store.latest_checkpoint().await? else {
        return Ok(None);
    };
    let root = signed_root(&checkpoint)?;
    let samples = samples.clamp(1, checkpoint.size.max(1));
    let mut generate_micros = Vec::with_capacity(samples as usize);
    let mut checks = Vec::with_capacity(samples as usize);
    for k in 0..samples {
        let index = k * checkpoint.size / samples;
        let Some(leaf) = store.tree_leaves(index, 1).await?.into_iter().next() else {
            return Err(AppError::Unexpected(format!(
                "the stored audit tree has no leaf {index} under the checkpoint at size {}",
                checkpoint.size
            )));
        };
        let started = std::time::Instant::now();
        let ranges = inclusion_ranges(leaf.index, checkpoint.size)
            .ok_or_else(|| AppError::Unexpected("a leaf beyond its checkpoint".into()))?;
        let path = range_hashes(store, &ranges).await?;
        generate_micros.push(started.elapsed().as_secs_f64() * 1e6);
        checks.push((leaf, path));
    }
    let started = std::time::Instant::now();
    for (leaf, path) in &checks {
        if !verify_inclusion(&leaf.hash, leaf.index, checkpoint.size, path, &root) {
            return Err(AppError::Unexpected(format!(
                "the proof of entry {} (seq {}) from the stored tree does not lead to the root \
                 signed at size {}: the stored tree was altered",
                leaf.index + 1,
                leaf.seq,
                checkpoint.size
            )));
        }
    }
    let verify_mean_micros = started.elapsed().as_secs_f64() * 1e6 / checks.len() as f64;
    generate_micros.sort_by(f64::total_cmp);
    let at = |fraction: f64| {
        let rank = ((generate_micros.len() as f64 * fraction).ceil() as usize).max(1);
        generate_micros[rank.min(generate_micros.len()) - 1]
    };
    Ok(Some(ProofSample {
        size: checkpoint.size,
        proofs: checks.len() as u64,
        path_hashes_max: checks.iter().map(|(_, p)| p.len()).max().unwrap_or(0),
        generate_p50_micros: at(0.50),
        generate_p99_micros: at(0.99),
        verify_mean_micros,
    }))
}
