//! Token ids mirrored for a pool of pages, with the chained hash of each full page.

use super::*;

/// The hash of a full block: chained through the previous block's hash so it names the prefix.
pub(super) fn chain_hash(parent: Option<u64>, tokens: &[u32]) -> u64 {
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
    After(Option<u64>),
    /// The page belongs to a compacted sequence: never hashed (see the module header).
    Compacted,
}

impl Chain {
    /// The chain of the block after one with this chain and hash.
    pub(super) fn next(self, hash: Option<u64>) -> Chain {
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
    pub(super) hash: Option<u64>,
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

impl PageMeta {
    /// The hash a page with this chain and these (full) tokens gets.
    pub(super) fn hash_of(chain: Chain, tokens: &[u32]) -> Option<u64> {
        match chain {
            Chain::After(parent) => Some(chain_hash(parent, tokens)),
            Chain::Compacted => None,
        }
    }
}

/// Token ids mirrored for a pool of pages (device blocks or host slots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pages {
    pub(super) block_size: usize,
    pub(super) tokens: Vec<u32>,
    pub(super) meta: Vec<PageMeta>,
}

impl Pages {
    pub(super) fn new(count: usize, block_size: usize) -> Self {
        assert!(
            u32::try_from(count).is_ok(),
            "{count} pages do not fit u32 ids"
        );
        Pages {
            block_size,
            tokens: vec![0; count * block_size],
            meta: vec![PageMeta::default(); count],
        }
    }

    pub(super) fn count(&self) -> usize {
        self.meta.len()
    }

    pub(super) fn meta(&self, page: u32) -> PageMeta {
        self.meta[page as usize]
    }

    /// Where the page's tokens are in `tokens`.
    pub(super) fn range(&self, page: u32) -> Range<usize> {
        let start = page as usize * self.block_size;
        start..start + self.block_size
    }

    pub(super) fn tokens(&self, page: u32) -> &[u32] {
        &self.tokens[self.range(page)][..self.meta(page).len]
    }

    /// Sets the page's content; hashes it if it is full and its chain allows.
    pub(super) fn fill(&mut self, page: u32, tokens: &[u32], chain: Chain) {
        let range = self.range(page);
        self.tokens[range][..tokens.len()].copy_from_slice(tokens);
        let full = tokens.len() == self.block_size;
        self.meta[page as usize] = PageMeta {
            len: tokens.len(),
            hash: full.then(|| PageMeta::hash_of(chain, tokens)).flatten(),
            chain,
        };
    }

    /// Appends a token to a partial page; hashes the page if that fills it and its chain allows.
    pub(super) fn push(&mut self, page: u32, token: u32) {
        let PageMeta { len, chain, .. } = self.meta(page);
        let start = self.range(page).start;
        self.tokens[start + len] = token;
        self.meta[page as usize].len = len + 1;
        if len + 1 == self.block_size {
            self.meta[page as usize].hash = PageMeta::hash_of(chain, self.tokens(page));
        }
    }

    pub(super) fn copy_within(&mut self, src: u32, dst: u32) {
        let (src_range, dst_start) = (self.range(src), self.range(dst).start);
        self.tokens.copy_within(src_range, dst_start);
        self.meta[dst as usize] = self.meta[src as usize];
    }

    pub(super) fn copy_from(&mut self, dst: u32, other: &Pages, src: u32) {
        let range = self.range(dst);
        self.tokens[range].copy_from_slice(&other.tokens[other.range(src)]);
        self.meta[dst as usize] = other.meta[src as usize];
    }

    /// The tokens of a sequence stored in `pages`, in order.
    pub(super) fn gather(&self, pages: &[u32]) -> Vec<u32> {
        pages
            .iter()
            .flat_map(|&p| self.tokens(p))
            .copied()
            .collect()
    }

    /// A sequence's pages must be full but the last and hold `num_tokens`; chained by hash, or
    /// all unhashed if the sequence is compacted.
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
            chain = chain.next(meta.hash);
        }
        Ok(())
    }

    /// A page's hash, if any, must be that of its chain and its full content: an unhashed
    /// (compacted) page has none.
    pub(super) fn check_hash(&self, page: u32) -> Result<(), String> {
        let meta = self.meta(page);
        match meta.hash {
            Some(h)
                if meta.len != self.block_size
                    || PageMeta::hash_of(meta.chain, self.tokens(page)) != Some(h) =>
            {
                Err(format!(
                    "page {page}: hash {h:#x} does not match its content and chain {meta:?}"
                ))
            }
            _ => Ok(()),
        }
    }
}
