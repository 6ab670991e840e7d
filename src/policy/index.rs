//! The route index: a segment trie over the sorted rules, so that matching a request costs
//! a walk down its segments, whatever the number of rules.
//!
//! [`Router`](super::Router) keeps its rules sorted most specific first and answers with the
//! first one (lowest index) that accepts the method and matches the path. The trie gives the
//! same answer without trying the rules one by one: walking the request's segments, it
//! visits only the rules whose pattern matches (a literal child found by the segment, the
//! `:name` child, the `*` rules of each node reached, the rules ending where the path ends),
//! and keeps the lowest index among those whose method accepts the request. Every rule it
//! skips could not match, so the lowest index it finds is the linear scan's first match.
//!
//! One trie per reading of the literals: raw or percent-decoded, compared exactly or
//! ignoring ASCII case (the HTTP gate's readings, see [`super::Reading`]). A node's literal
//! children are compared in turn while they are few, else found by a hash of their
//! (case-folded) bytes, then compared in full.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::rules::Segment;

/// Index of a rule in the router's sorted rules.
pub(super) type RuleIx = u32;

/// A hasher for keys that are already hashes (the literal children's `u64`).
#[derive(Default)]
pub(super) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; anything else still hashes deterministically.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// FNV-1a over the bytes of `s`, ASCII-lowercased when `fold`.
fn literal_hash(s: &str, fold: bool) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        let b = if fold { b.to_ascii_lowercase() } else { b };
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Literal children a node compares in turn; past that, it finds them by hash.
const SMALL: usize = 8;

/// Hash map keyed by a hash already computed.
type ByHash = BuildHasherDefault<PassThrough>;

#[derive(Clone, Debug, Default)]
struct Node {
    /// Literal children while there are at most [`SMALL`], compared in turn.
    small: Vec<(Box<str>, u32)>,
    /// Literal children past [`SMALL`] (then `small` is empty), by [`literal_hash`], each
    /// with its literal for the full comparison.
    literals: HashMap<u64, Vec<(Box<str>, u32)>, ByHash>,
    /// The `:name` child.
    param: Option<u32>,
    /// Rules whose pattern ends with `*` here (one or more further segments), ascending.
    rest: Vec<RuleIx>,
    /// Rules whose pattern ends here, ascending.
    end: Vec<RuleIx>,
}

/// Which text of a literal the trie holds, and how it compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mode {
    /// The percent-decoded literal (rules whose literal has no decoded form are left out:
    /// they never match under that reading).
    pub decoded: bool,
    /// Compare ignoring ASCII case.
    pub fold: bool,
}

/// One segment trie.
#[derive(Clone, Debug)]
pub(super) struct Trie {
    nodes: Vec<Node>,
    fold: bool,
}

impl Trie {
    /// Builds the trie of `patterns` (in rule order) for `mode`.
    pub(super) fn build<'a>(patterns: impl Iterator<Item = &'a [Segment]>, mode: Mode) -> Trie {
        let mut trie = Trie {
            nodes: vec![Node::default()],
            fold: mode.fold,
        };
        'rules: for (ix, pattern) in patterns.enumerate() {
            let ix = RuleIx::try_from(ix).expect("fewer than 2^32 route rules");
            let mut node = 0usize;
            for seg in pattern {
                match seg {
                    Segment::Rest => {
                        trie.nodes[node].rest.push(ix);
                        continue 'rules;
                    }
                    Segment::Param => {
                        node = match trie.nodes[node].param {
                            Some(child) => child as usize,
                            None => {
                                let child = trie.push();
                                trie.nodes[node].param = Some(child as u32);
                                child
                            }
                        };
                    }
                    Segment::Literal(raw, decoded) => {
                        let text: &str = if mode.decoded {
                            match decoded {
                                Some(d) => d,
                                None => continue 'rules,
                            }
                        } else {
                            raw
                        };
                        node = trie.literal_child_or_insert(node, text);
                    }
                }
            }
            trie.nodes[node].end.push(ix);
        }
        trie
    }

    fn push(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    fn literal_child_or_insert(&mut self, node: usize, text: &str) -> usize {
        if let Some(child) = self.literal_child(node, text) {
            return child;
        }
        let child = self.push() as u32;
        let fold = self.fold;
        let n = &mut self.nodes[node];
        if n.literals.is_empty() && n.small.len() < SMALL {
            n.small.push((text.into(), child));
        } else {
            for (lit, c) in std::mem::take(&mut n.small) {
                let h = literal_hash(&lit, fold);
                n.literals.entry(h).or_default().push((lit, c));
            }
            n.literals
                .entry(literal_hash(text, fold))
                .or_default()
                .push((text.into(), child));
        }
        child as usize
    }

    fn same(&self, lit: &str, text: &str) -> bool {
        if self.fold {
            lit.eq_ignore_ascii_case(text)
        } else {
            lit == text
        }
    }

    fn literal_child(&self, node: usize, text: &str) -> Option<usize> {
        let n = &self.nodes[node];
        let candidates = if n.literals.is_empty() {
            &n.small
        } else {
            n.literals.get(&literal_hash(text, self.fold))?
        };
        candidates
            .iter()
            .find(|(lit, _)| self.same(lit, text))
            .map(|&(_, child)| child as usize)
    }

    /// The lowest rule index that `wanted` accepts among the rules whose pattern matches the
    /// request segments `path`; `read` gives of each segment the text its literal is
    /// compared with and whether a `:name` may take it.
    pub(super) fn lowest<T>(
        &self,
        path: &[T],
        read: &impl Fn(&T) -> (&str, bool),
        wanted: &impl Fn(RuleIx) -> bool,
    ) -> Option<RuleIx> {
        let mut best = RuleIx::MAX;
        self.walk(0, path, read, &mut best, wanted);
        (best != RuleIx::MAX).then_some(best)
    }

    fn walk<T>(
        &self,
        node: usize,
        path: &[T],
        read: &impl Fn(&T) -> (&str, bool),
        best: &mut RuleIx,
        wanted: &impl Fn(RuleIx) -> bool,
    ) {
        let n = &self.nodes[node];
        let Some((first, path)) = path.split_first() else {
            lowest_in(&n.end, best, wanted);
            return;
        };
        lowest_in(&n.rest, best, wanted);
        let (text, param_ok) = read(first);
        if let Some(child) = self.literal_child(node, text) {
            self.walk(child, path, read, best, wanted);
        }
        if param_ok {
            if let Some(child) = n.param {
                self.walk(child as usize, path, read, best, wanted);
            }
        }
    }
}

/// Lowers `best` to the first rule of the ascending `rules` that `wanted` accepts.
fn lowest_in(rules: &[RuleIx], best: &mut RuleIx, wanted: &impl Fn(RuleIx) -> bool) {
    for &ix in rules {
        if ix >= *best {
            return;
        }
        if wanted(ix) {
            *best = ix;
            return;
        }
    }
}
