//! The paged KV cache layout shared by the kernels and the CPU reference.
//!
//! K and V live in separate page pools, each `[num_pages][num_kv_heads][page_size][head_dim]`
//! ("HND" inside a page): the CTA that handles one (sequence, kv head) reads `page_size x
//! head_dim` contiguous elements per page, so every page is one long coalesced read, whatever
//! the page size. A sequence's block table row lists its pages in token order; pages are handed
//! out in a random permutation, as a long-running server's allocator would leave them. A
//! contiguous cache is the same layout with one page per sequence as long as the longest context.

use rand::seq::SliceRandom;
use rand::SeedableRng;

#[derive(Debug, Clone, PartialEq)]
pub struct PagedLayout {
    pub page_size: usize,
    pub num_pages: usize,
    pub max_pages_per_seq: usize,
    /// `[batch][max_pages_per_seq]`, row-major; unused entries are 0.
    pub block_tables: Vec<i32>,
    pub context_lens: Vec<i32>,
}

impl PagedLayout {
    /// Pages of `page_size` tokens in a random order (from `seed`).
    pub fn paged(context_lens: &[usize], page_size: usize, seed: u64) -> PagedLayout {
        PagedLayout::paged_with_prefix(context_lens, page_size, 0, seed)
    }

    /// [`PagedLayout::paged`] where the first `shared_tokens` (whole pages, at most every
    /// context) of every sequence are one set of physical pages that every block table lists, as
    /// a prefix cache leaves them; the pages after them are each sequence's own.
    pub fn paged_with_prefix(
        context_lens: &[usize],
        page_size: usize,
        shared_tokens: usize,
        seed: u64,
    ) -> PagedLayout {
        debug_assert!(shared_tokens % page_size == 0);
        debug_assert!(context_lens.iter().all(|&c| c >= shared_tokens));
        let shared = shared_tokens / page_size;
        let pages: Vec<usize> = context_lens
            .iter()
            .map(|&c| c.div_ceil(page_size))
            .collect();
        let (num_pages, max_pages_per_seq) =
            Self::paged_counts(context_lens, page_size, shared_tokens);
        let mut order: Vec<i32> = (0..num_pages as i32).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let (common, mut own) = (order[..shared].to_vec(), order[shared..].iter().copied());
        let mut block_tables = vec![0i32; context_lens.len() * max_pages_per_seq];
        for (b, &n) in pages.iter().enumerate() {
            let row = &mut block_tables[b * max_pages_per_seq..b * max_pages_per_seq + n];
            row[..shared].copy_from_slice(&common);
            for slot in &mut row[shared..] {
                *slot = own.next().unwrap_or(0);
            }
        }
        PagedLayout {
            page_size,
            num_pages,
            max_pages_per_seq,
            block_tables,
            context_lens: context_lens.iter().map(|&c| c as i32).collect(),
        }
    }

    /// `(num_pages, max_pages_per_seq)` of [`Self::paged_with_prefix`], from the lengths alone:
    /// sizes and predictions need them without shuffling and tabulating every page. The
    /// `shared_tokens` prefix pages are counted once.
    pub fn paged_counts(
        context_lens: &[usize],
        page_size: usize,
        shared_tokens: usize,
    ) -> (usize, usize) {
        let shared = shared_tokens / page_size;
        let pages = context_lens.iter().map(|&c| c.div_ceil(page_size));
        let max_pages_per_seq = pages.clone().max().unwrap_or(1).max(1);
        let own: usize = pages.map(|n| n.saturating_sub(shared)).sum();
        (shared + own, max_pages_per_seq)
    }

    /// One page per sequence, `max(context)` tokens long: a plain `[batch][kv_heads][ctx][dim]`.
    pub fn contiguous(context_lens: &[usize]) -> PagedLayout {
        let page_size = context_lens.iter().copied().max().unwrap_or(1).max(1);
        PagedLayout {
            page_size,
            num_pages: context_lens.len(),
            max_pages_per_seq: 1,
            block_tables: (0..context_lens.len() as i32).collect(),
            context_lens: context_lens.iter().map(|&c| c as i32).collect(),
        }
    }

    pub fn batch(&self) -> usize {
        self.context_lens.len()
    }

    /// Elements of one pool.
    pub fn pool_elements(&self, kv_heads: usize, head_dim: usize) -> usize {
        self.num_pages * kv_heads * self.page_size * head_dim
    }

    /// Index in a pool of element `d` of token `token` of sequence `b`, kv head `h`.
    pub fn index(
        &self,
        b: usize,
        token: usize,
        h: usize,
        kv_heads: usize,
        head_dim: usize,
        d: usize,
    ) -> usize {
        let page = self.block_tables[b * self.max_pages_per_seq + token / self.page_size] as usize;
        ((page * kv_heads + h) * self.page_size + token % self.page_size) * head_dim + d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_has_its_own_slot() {
        let lens = [1, 17, 16, 15, 40];
        let (kv_heads, dim) = (2, 4);
        for layout in [
            PagedLayout::paged(&lens, 16, 7),
            PagedLayout::paged(&lens, 1, 7),
            PagedLayout::contiguous(&lens),
        ] {
            let mut seen = vec![false; layout.pool_elements(kv_heads, dim)];
            for (b, &len) in lens.iter().enumerate() {
                for t in 0..len {
                    for h in 0..kv_heads {
                        for d in 0..dim {
                            let i = layout.index(b, t, h, kv_heads, dim, d);
                            assert!(!seen[i], "slot {i} used twice");
                            seen[i] = true;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_shared_prefix_is_one_set_of_pages() {
        // Contexts 40 and 37 with page 16: 32 shared tokens (two pages), then partial own pages.
        let (kv_heads, dim) = (2, 4);
        let layout = PagedLayout::paged_with_prefix(&[40, 37, 33], 16, 32, 3);
        assert_eq!(
            layout.num_pages,
            2 + 3,
            "two shared pages and one own page each"
        );
        for b in 1..3 {
            for t in 0..40.min(layout.context_lens[b] as usize) {
                let (mine, first) = (
                    layout.index(b, t, 1, kv_heads, dim, 3),
                    layout.index(0, t, 1, kv_heads, dim, 3),
                );
                assert_eq!(mine == first, t < 32, "seq {b} token {t}");
            }
        }
        let mut own: Vec<i32> = (0..3).map(|b| layout.block_tables[b * 3 + 2]).collect();
        own.sort_unstable();
        own.dedup();
        assert_eq!(
            own.len(),
            3,
            "the partial last pages are each sequence's own"
        );
    }

    #[test]
    fn pages_are_shuffled_and_counted() {
        let layout = PagedLayout::paged(&[100; 8], 16, 1);
        assert_eq!(layout.num_pages, 8 * 7);
        assert_eq!(layout.max_pages_per_seq, 7);
        let first_row = &layout.block_tables[..7];
        assert!(
            first_row.windows(2).any(|w| w[1] != w[0] + 1),
            "not in allocation order: {first_row:?}"
        );
        let mut all = layout.block_tables.clone();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 56, "each page used once");
    }
}
