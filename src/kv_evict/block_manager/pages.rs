//! Token ids mirrored for a pool of pages, per kv head, with the chained hash of each full page.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;

use sha2::{Digest, Sha256};

/// The prefix hash of a full block: 8 bytes of SipHash or the 32 of SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHash([u8; 32]);

/// How full blocks are hashed for the prefix cache. Whatever the hash, a lookup compares the
/// stored block's parent hash and token ids with the prompt's before it shares the block, so a
/// collision of a block's own hash costs a miss, never wrong K/V. What a comparison cannot see is
/// a collision one level up, between two different prefixes that never both got registered: the
/// block after the unregistered one carries the same parent hash. With [`PrefixHash::Fast`] that
/// takes a 64-bit collision, which a client can craft (SipHash's keys are fixed here, and the
/// hash names the cache entry of a block any other client may share); [`PrefixHash::Sha256`]
/// makes it infeasible, which is why vLLM moved to SHA-256 after CVE-2025-25183.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrefixHash {
    /// std's SipHash-1-3 with fixed keys, 64 bits: cheap; enough when every client is trusted.
    #[default]
    Fast,
    /// SHA-256 over the parent hash and the token ids (little-endian): collision resistant.
    Sha256,
    /// The fast hash cut to its low `bits` bits, so that tests can make collisions happen.
    #[cfg(test)]
    Truncated(u32),
}

impl PrefixHash {
    /// The hash of a full block: chained through the previous block's hash so it names the
    /// prefix.
    pub(super) fn chain(self, parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
        let mut out = [0u8; 32];
        match self {
            PrefixHash::Fast => out[..8].copy_from_slice(&sip(parent, tokens).to_le_bytes()),
            PrefixHash::Sha256 => {
                let mut sha = Sha256::new();
                // A tag byte: the first block's input cannot equal a later block's.
                match parent {
                    None => sha.update([0u8]),
                    Some(BlockHash(p)) => {
                        sha.update([1u8]);
                        sha.update(p);
                    }
                }
                for t in tokens {
                    sha.update(t.to_le_bytes());
                }
                out = sha.finalize().into();
            }
            #[cfg(test)]
            PrefixHash::Truncated(bits) => {
                let h = sip(parent, tokens) & ((1u64 << bits) - 1);
                out[..8].copy_from_slice(&h.to_le_bytes());
            }
        }
        BlockHash(out)
    }
}

fn sip(parent: Option<BlockHash>, tokens: &[u32]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parent.hash(&mut hasher);
    tokens.hash(&mut hasher);
    hasher.finish()
}

/// What a page's hash chains from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chain {
    /// The hash of the previous block of the sequence (`None` for the first block): the page is
    /// hashed when it fills.
    After(Option<BlockHash>),
    /// The page belongs to a compacted sequence: never hashed (see the module header).
    Compacted,
}

impl Chain {
    /// The chain of the block after one with this chain and hash.
    pub(super) fn next(self, hash: Option<BlockHash>) -> Chain {
        match self {
            Chain::After(_) => Chain::After(hash),
            Chain::Compacted => Chain::Compacted,
        }
    }

    /// The first block's chain in a sequence compacted or not.
    pub(super) fn first(compacted: bool) -> Chain {
        if compacted {
            Chain::Compacted
        } else {
            Chain::After(None)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PageMeta {
    pub(super) len: usize,
    /// Set once the page is full, unless its chain is [`Chain::Compacted`].
    pub(super) hash: Option<BlockHash>,
    pub(super) chain: Chain,
}

impl Default for PageMeta {
    fn default() -> Self {
        PageMeta {
            len: 0,
            hash: None,
            chain: Chain::After(None),
        }
    }
}

/// Token ids mirrored for a pool of pages (device blocks or host slots), `[page][kv head][slot]`
/// like the K/V pools' `[page][kv_head][page_size][row]`: the kv heads of a compacted sequence
/// keep different tokens (the policies select per kv head), every other page holds the same
/// tokens in each head, and only such a page is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pages {
    pub(super) block_size: usize,
    pub(super) kv_heads: usize,
    pub(super) hasher: PrefixHash,
    tokens: Vec<u32>,
    pub(super) meta: Vec<PageMeta>,
}

impl Pages {
    pub(super) fn new(
        count: usize,
        block_size: usize,
        kv_heads: usize,
        hasher: PrefixHash,
    ) -> Self {
        assert!(
            u32::try_from(count).is_ok(),
            "{count} pages do not fit u32 ids"
        );
        Pages {
            block_size,
            kv_heads,
            hasher,
            tokens: vec![0; count * kv_heads * block_size],
            meta: vec![PageMeta::default(); count],
        }
    }

    pub(super) fn count(&self) -> usize {
        self.meta.len()
    }

    pub(super) fn meta(&self, page: u32) -> PageMeta {
        self.meta[page as usize]
    }

    /// Where kv head `head`'s slots of the page are in `tokens`.
    fn range(&self, page: u32, head: usize) -> Range<usize> {
        let start = (page as usize * self.kv_heads + head) * self.block_size;
        start..start + self.block_size
    }

    /// Every kv head's slots of the page.
    fn page_range(&self, page: u32) -> Range<usize> {
        let span = self.kv_heads * self.block_size;
        let start = page as usize * span;
        start..start + span
    }

    /// Kv head `head`'s tokens in the page.
    pub(super) fn head_tokens(&self, page: u32, head: usize) -> &[u32] {
        &self.tokens[self.range(page, head)][..self.meta(page).len]
    }

    /// The page's tokens as the hash sees them: kv head 0's, which are every head's in a page
    /// that is hashed.
    pub(super) fn tokens(&self, page: u32) -> &[u32] {
        self.head_tokens(page, 0)
    }

    /// Whether every kv head holds the same tokens.
    pub(super) fn heads_agree(&self, page: u32) -> bool {
        (1..self.kv_heads).all(|h| self.head_tokens(page, h) == self.tokens(page))
    }

    /// Whether the page is the one a prompt reaches by `chain` with these tokens: the whole input
    /// of its hash compared, so that a hash collision is a miss.
    pub(super) fn holds(&self, page: u32, chain: Chain, tokens: &[u32]) -> bool {
        let meta = self.meta(page);
        meta.chain == chain && meta.len == tokens.len() && self.tokens(page) == tokens
    }

    fn hash_of(&self, chain: Chain, tokens: &[u32]) -> Option<BlockHash> {
        match chain {
            Chain::After(parent) => Some(self.hasher.chain(parent, tokens)),
            Chain::Compacted => None,
        }
    }

    /// Sets the page's content, the same in every kv head; hashes it if it is full and its chain
    /// allows.
    pub(super) fn fill(&mut self, page: u32, tokens: &[u32], chain: Chain) {
        for h in 0..self.kv_heads {
            let range = self.range(page, h);
            self.tokens[range][..tokens.len()].copy_from_slice(tokens);
        }
        let full = tokens.len() == self.block_size;
        self.meta[page as usize] = PageMeta {
            len: tokens.len(),
            hash: full.then(|| self.hash_of(chain, tokens)).flatten(),
            chain,
        };
    }

    /// Sets each kv head's content of a compacted page (`heads[h]`, all of one length): never
    /// hashed.
    pub(super) fn fill_heads(&mut self, page: u32, heads: &[Vec<u32>]) {
        for (h, tokens) in heads.iter().enumerate() {
            let range = self.range(page, h);
            self.tokens[range][..tokens.len()].copy_from_slice(tokens);
        }
        self.meta[page as usize] = PageMeta {
            len: heads.first().map_or(0, Vec::len),
            hash: None,
            chain: Chain::Compacted,
        };
    }

    /// Appends a token, to every kv head, to a partial page; hashes the page if that fills it and
    /// its chain allows.
    pub(super) fn push(&mut self, page: u32, token: u32) {
        let PageMeta { len, chain, .. } = self.meta(page);
        for h in 0..self.kv_heads {
            let start = self.range(page, h).start;
            self.tokens[start + len] = token;
        }
        self.meta[page as usize].len = len + 1;
        if len + 1 == self.block_size {
            self.meta[page as usize].hash = self.hash_of(chain, self.tokens(page));
        }
    }

    pub(super) fn copy_within(&mut self, src: u32, dst: u32) {
        let (src_range, dst_start) = (self.page_range(src), self.page_range(dst).start);
        self.tokens.copy_within(src_range, dst_start);
        self.meta[dst as usize] = self.meta[src as usize];
    }

    pub(super) fn copy_from(&mut self, dst: u32, other: &Pages, src: u32) {
        let range = self.page_range(dst);
        self.tokens[range].copy_from_slice(&other.tokens[other.page_range(src)]);
        self.meta[dst as usize] = other.meta[src as usize];
    }

    /// Kv head `head`'s tokens of a sequence stored in `pages`, in order.
    pub(super) fn gather_head(&self, pages: &[u32], head: usize) -> Vec<u32> {
        pages
            .iter()
            .flat_map(|&p| self.head_tokens(p, head))
            .copied()
            .collect()
    }

    /// Every kv head's tokens of a sequence stored in `pages`.
    pub(super) fn gather_heads(&self, pages: &[u32]) -> Vec<Vec<u32>> {
        (0..self.kv_heads)
            .map(|h| self.gather_head(pages, h))
            .collect()
    }

    /// The tokens of a sequence stored in `pages`, if every kv head holds the same.
    pub(super) fn gather(&self, pages: &[u32]) -> Option<Vec<u32>> {
        pages
            .iter()
            .all(|&p| self.heads_agree(p))
            .then(|| self.gather_head(pages, 0))
    }

    /// A sequence's pages must be full but the last and hold `num_tokens`; chained by hash, or
    /// all unhashed if the sequence is compacted; and, unless compacted, the same in every kv
    /// head.
    pub(super) fn check_sequence(
        &self,
        pages: &[u32],
        num_tokens: usize,
        compacted: bool,
    ) -> Result<(), String> {
        let bs = self.block_size;
        if pages.len() != num_tokens.div_ceil(bs) {
            return Err(format!("{} pages for {num_tokens} tokens", pages.len()));
        }
        let mut chain = Chain::first(compacted);
        for (i, &page) in pages.iter().enumerate() {
            if page as usize >= self.count() {
                return Err(format!("page {page} out of range"));
            }
            let meta = self.meta(page);
            let want = bs.min(num_tokens - i * bs);
            let hashed = want == bs && !compacted;
            if meta.len != want || meta.chain != chain || meta.hash.is_some() != hashed {
                return Err(format!(
                    "page {page} (entry {i}): {meta:?}, want {want} tokens, chain {chain:?}, \
                     hashed {hashed}"
                ));
            }
            if !compacted && !self.heads_agree(page) {
                return Err(format!(
                    "page {page} (entry {i}) of an uncompacted sequence differs between kv heads"
                ));
            }
            chain = chain.next(meta.hash);
        }
        Ok(())
    }

    /// A page's hash, if any, must be that of its chain and its full content, the same in every
    /// kv head: an unhashed (compacted) page has none.
    pub(super) fn check_hash(&self, page: u32) -> Result<(), String> {
        let meta = self.meta(page);
        match meta.hash {
            Some(h)
                if meta.len != self.block_size
                    || !self.heads_agree(page)
                    || self.hash_of(meta.chain, self.tokens(page)) != Some(h) =>
            {
                Err(format!(
                    "page {page}: hash {h:?} does not match its content and chain {meta:?}"
                ))
            }
            _ => Ok(()),
        }
    }
}
