//! The Merkle tree over audit entries, hashed as in RFC 9162 (Certificate Transparency v2):
//! a leaf is `SHA-256(0x00 ‖ entry)`, an interior node `SHA-256(0x01 ‖ left ‖ right)`, and a
//! tree of `n` leaves splits at the largest power of two below `n`.
//!
//! - [`CompactTree`] appends leaves in O(log n) memory and yields the root at any size; it
//!   is what verification and appends use, so neither ever holds the whole tree.
//! - [`inclusion_proof`] / [`verify_inclusion`] prove one entry is in the tree of a given
//!   size; [`consistency_proof`] / [`verify_consistency`] prove a smaller tree is a prefix of
//!   a larger one, i.e. that no history was rewritten between two checkpoints.
//!
//! Proofs are planned as leaf ranges ([`inclusion_ranges`], [`consistency_ranges`]); a
//! range's hash comes either from the leaves in memory (the reference the verifiers are
//! tested against) or from stored perfect subtrees ([`NodeId`], recorded as the tree
//! grows by [`CompactTree::push_recording`]), so a server answers a proof with O(log² n)
//! stored hashes instead of re-reading the log.

use std::ops::Range;

use sha2::{Digest, Sha256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// The hash of an empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(entry);
    hasher.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    split64(n as u64) as usize
}

/// MTH over leaf hashes, by the RFC's recursive definition.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// A tree kept as the roots of its perfect subtrees (at most 64), largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactTree {
    size: u64,
    /// `(height, hash)` of each perfect subtree, left to right; heights strictly decrease.
    subtrees: Vec<(u32, Hash)>,
}

impl CompactTree {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        self.push_recording(leaf, |_, _| {});
    }

    /// Pushes a leaf and reports every perfect subtree it completes (the leaf itself, then
    /// each larger subtree it closes), so they can be stored for serving proofs.
    pub fn push_recording(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, &Hash)) {
        let index = self.size;
        let mut node = (0u32, leaf);
        completed(NodeId { level: 0, index }, &leaf);
        while let Some(&(height, left)) = self.subtrees.last() {
            if height != node.0 {
                break;
            }
            self.subtrees.pop();
            node = (height + 1, node_hash(&left, &node.1));
            completed(
                NodeId {
                    level: node.0,
                    index: index >> node.0,
                },
                &node.1,
            );
        }
        self.subtrees.push(node);
        self.size += 1;
    }

    /// The root of the tree of every leaf pushed so far.
    pub fn root(&self) -> Hash {
        let mut subtrees = self.subtrees.iter().rev();
        let Some(&(_, mut root)) = subtrees.next() else {
            return empty_root();
        };
        for (_, left) in subtrees {
            root = node_hash(left, &root);
        }
        root
    }
}

/// The leaf ranges `[start, end)` whose subtree hashes form the audit path of leaf `index`
/// in a tree of `size` leaves (RFC 9162 §2.1.3.1), in proof order. Every range is a
/// subtree of the RFC tree, so its hash can come from stored perfect subtrees
/// ([`perfect_subtrees`], [`fold_subtrees`]) as well as from the leaves themselves.
pub fn inclusion_ranges(index: u64, size: u64) -> Option<Vec<Range<u64>>> {
    fn path(index: u64, range: Range<u64>, out: &mut Vec<Range<u64>>) {
        let n = range.end - range.start;
        if n <= 1 {
            return;
        }
        let k = split64(n);
        let middle = range.start + k;
        if index < middle {
            path(index, range.start..middle, out);
            out.push(middle..range.end);
        } else {
            path(index, middle..range.end, out);
            out.push(range.start..middle);
        }
    }
    if index >= size {
        return None;
    }
    let mut out = Vec::new();
    path(index, 0..size, &mut out);
    Some(out)
}

/// The leaf ranges whose subtree hashes form the proof that the tree of the first `first`
/// leaves is a prefix of the tree of `second` leaves (RFC 9162 §2.1.4.1), in proof order.
pub fn consistency_ranges(first: u64, second: u64) -> Option<Vec<Range<u64>>> {
    fn subproof(m: u64, range: Range<u64>, complete: bool, out: &mut Vec<Range<u64>>) {
        let n = range.end - range.start;
        if m == n {
            if !complete {
                out.push(range);
            }
            return;
        }
        let k = split64(n);
        let middle = range.start + k;
        if m <= k {
            subproof(m, range.start..middle, complete, out);
            out.push(middle..range.end);
        } else {
            subproof(m - k, middle..range.end, false, out);
            out.push(range.start..middle);
        }
    }
    if first == 0 || first > second {
        return None;
    }
    let mut out = Vec::new();
    subproof(first, 0..second, true, &mut out);
    Some(out)
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split64(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// A perfect subtree: the `2^level` leaves starting at leaf `index << level`. Level 0 is a
/// leaf. These are the nodes worth storing: they never change once their last leaf exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u32,
    pub index: u64,
}

/// The perfect subtrees that make up a subtree `range` of the RFC tree, left to right:
/// one per set bit of its width, largest first (the RFC's split at the largest power of
/// two below the width leaves a perfect left part at every step).
pub fn perfect_subtrees(range: Range<u64>) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut start = range.start;
    while start < range.end {
        let width = range.end - start;
        let mut level = u64::BITS - 1 - width.leading_zeros();
        // A range from a proof is aligned to its width; this keeps the walk correct for any
        // other range too, at the price of more pieces.
        if start != 0 {
            level = level.min(start.trailing_zeros());
        }
        out.push(NodeId {
            level,
            index: start >> level,
        });
        start += 1 << level;
    }
    out
}

/// The hash of a subtree from the hashes of its [`perfect_subtrees`], left to right: the
/// RFC's recursion nests to the right, so the fold runs from the right.
pub fn fold_subtrees(hashes: &[Hash]) -> Option<Hash> {
    let (&last, rest) = hashes.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(last, |right, left| node_hash(left, &right)),
    )
}

/// The audit path of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    let ranges = inclusion_ranges(index as u64, leaves.len() as u64)?;
    Some(ranges.into_iter().map(|r| range_root(leaves, r)).collect())
}

fn range_root(leaves: &[Hash], range: Range<u64>) -> Hash {
    root(&leaves[range.start as usize..range.end as usize])
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves with `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// The proof that the tree of the first `first` leaves is a prefix of the tree of all
/// `leaves` (RFC 9162 §2.1.4.1).
pub fn consistency_proof(leaves: &[Hash], first: usize) -> Option<Vec<Hash>> {
    let ranges = consistency_ranges(first as u64, leaves.len() as u64)?;
    Some(ranges.into_iter().map(|r| range_root(leaves, r)).collect())
}

/// Checks that the tree (`first`, `first_root`) is a prefix of (`second`, `second_root`)
/// (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn matches_the_rfc_structure_for_small_trees() {
        let l = leaves(3);
        assert_eq!(root(&l[..1]), l[0]);
        assert_eq!(root(&l[..2]), node_hash(&l[0], &l[1]));
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(root(&[]), empty_root());
        // Leaf and node hashing are domain-separated.
        assert_ne!(leaf_hash(&[0u8; 64]), node_hash(&[0; 32], &[0; 32]));
    }

    #[test]
    fn known_answer_for_the_empty_tree_and_a_leaf() {
        // SHA-256("") and SHA-256(0x00), as in RFC 6962's test data.
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn compact_tree_root_equals_the_recursive_root(n in 0usize..300) {
            let l = leaves(n);
            let mut tree = CompactTree::new();
            for leaf in &l {
                tree.push(*leaf);
            }
            prop_assert_eq!(tree.size(), n as u64);
            prop_assert_eq!(tree.root(), root(&l));
        }

        #[test]
        fn inclusion_proofs_verify(n in 1usize..200, pick in any::<prop::sample::Index>()) {
            let l = leaves(n);
            let index = pick.index(n);
            let proof = inclusion_proof(&l, index).unwrap();
            prop_assert!(verify_inclusion(&l[index], index as u64, n as u64, &proof, &root(&l)));
        }

        #[test]
        fn altered_inclusion_proofs_fail(
            n in 2usize..200,
            pick in any::<prop::sample::Index>(),
            which in any::<prop::sample::Index>(),
            bit in 0usize..256,
        ) {
            let l = leaves(n);
            let index = pick.index(n);
            let tree_root = root(&l);
            let mut proof = inclusion_proof(&l, index).unwrap();
            prop_assume!(!proof.is_empty());
            let at = which.index(proof.len());
            proof[at][bit / 8] ^= 1 << (bit % 8);
            prop_assert!(!verify_inclusion(&l[index], index as u64, n as u64, &proof, &tree_root));
            // The right proof for another leaf, or cut short, fails too. (The size is bound by
            // the signed checkpoint's root, not by the path: a path can fit two sizes.)
            let good = inclusion_proof(&l, index).unwrap();
            prop_assert!(!verify_inclusion(&l[index], index as u64, index as u64, &good, &tree_root));
            let other = (index + 1) % n;
            prop_assert!(!verify_inclusion(&l[other], index as u64, n as u64, &good, &tree_root));
            let mut shorter = good.clone();
            shorter.pop();
            prop_assert!(!verify_inclusion(&l[index], index as u64, n as u64, &shorter, &tree_root));
        }

        #[test]
        fn proofs_from_stored_perfect_subtrees_equal_proofs_from_the_leaves(
            n in 1usize..300,
            pick in any::<prop::sample::Index>(),
        ) {
            let l = leaves(n);
            let mut stored = std::collections::HashMap::new();
            let mut tree = CompactTree::new();
            for leaf in &l {
                tree.push_recording(*leaf, |id, hash| {
                    assert!(stored.insert(id, *hash).is_none(), "{id:?} reported twice");
                });
            }
            let from_nodes = |range: Range<u64>| {
                let hashes: Vec<Hash> =
                    perfect_subtrees(range).iter().map(|id| stored[id]).collect();
                fold_subtrees(&hashes).unwrap()
            };
            let index = pick.index(n);
            let proof: Vec<Hash> = inclusion_ranges(index as u64, n as u64)
                .unwrap()
                .into_iter()
                .map(from_nodes)
                .collect();
            prop_assert_eq!(&proof, &inclusion_proof(&l, index).unwrap());
            let first = index + 1;
            let proof: Vec<Hash> = consistency_ranges(first as u64, n as u64)
                .unwrap()
                .into_iter()
                .map(from_nodes)
                .collect();
            prop_assert_eq!(&proof, &consistency_proof(&l, first).unwrap());
            prop_assert_eq!(from_nodes(0..n as u64), root(&l));
        }

        #[test]
        fn consistency_proofs_verify(second in 1usize..200, pick in any::<prop::sample::Index>()) {
            let l = leaves(second);
            let first = pick.index(second) + 1;
            let proof = consistency_proof(&l, first).unwrap();
            prop_assert!(verify_consistency(
                first as u64, second as u64, &root(&l[..first]), &root(&l), &proof
            ));
        }

        #[test]
        fn altered_consistency_proofs_and_rewritten_history_fail(
            second in 2usize..200,
            pick in any::<prop::sample::Index>(),
            which in any::<prop::sample::Index>(),
            bit in 0usize..256,
        ) {
            let l = leaves(second);
            let first = pick.index(second - 1) + 1; // first < second
            let first_root = root(&l[..first]);
            let second_root = root(&l);
            let proof = consistency_proof(&l, first).unwrap();

            let mut altered = proof.clone();
            let at = which.index(altered.len());
            altered[at][bit / 8] ^= 1 << (bit % 8);
            prop_assert!(!verify_consistency(first as u64, second as u64, &first_root, &second_root, &altered));

            // History rewritten: one early entry changed after the first checkpoint.
            let mut rewritten = l.clone();
            rewritten[pick.index(first)] = leaf_hash(b"forged");
            let forged_proof = consistency_proof(&rewritten, first).unwrap();
            prop_assert!(!verify_consistency(
                first as u64, second as u64, &first_root, &root(&rewritten), &forged_proof
            ));
        }
    }
}
