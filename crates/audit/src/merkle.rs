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
//! Proof generation here works over the leaf hashes in memory; it is the reference the
//! verifiers are tested against.

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
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
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
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.subtrees.last() {
            if height != node.0 {
                break;
            }
            self.subtrees.pop();
            node = (height + 1, node_hash(&left, &node.1));
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

/// The audit path of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    fn path(index: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
        if leaves.len() <= 1 {
            return;
        }
        let k = split(leaves.len());
        if index < k {
            path(index, &leaves[..k], out);
            out.push(root(&leaves[k..]));
        } else {
            path(index - k, &leaves[k..], out);
            out.push(root(&leaves[..k]));
        }
    }
    if index >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    path(index, leaves, &mut out);
    Some(out)
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
    fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
        let n = leaves.len();
        if m == n {
            if !complete {
                out.push(root(leaves));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            subproof(m, &leaves[..k], complete, out);
            out.push(root(&leaves[k..]));
        } else {
            subproof(m - k, &leaves[k..], false, out);
            out.push(root(&leaves[..k]));
        }
    }
    if first == 0 || first > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    subproof(first, leaves, true, &mut out);
    Some(out)
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
