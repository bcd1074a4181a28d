//! The prefix cache: chained block hashes, prompt lookups and registration.

use super::*;

impl BlockManager {
    /// Allocates a prompt's blocks: the cached prefix by hash, the rest fresh, and counts the
    /// lookup in the stats. Changes nothing if the blocks do not fit.
    pub(super) fn allocate_prompt(
        &mut self,
        tokens: &[u32],
    ) -> Result<(Vec<u32>, usize), BlockError> {
        let bs = self.block_size();
        let (hits, mut parent, collided) = self.cached_prefix(tokens);
        let lru_hits = hits.iter().filter(|&&b| self.is_cached(b)).count();
        self.ensure_blocks(tokens.len().div_ceil(bs) - hits.len(), lru_hits)?;
        // Hits first: allocating the misses must not evict a block this prompt is about to share.
        for &block in &hits {
            self.acquire(block);
        }
        let num_cached_tokens = hits.len() * bs;
        let mut table = hits;
        for chunk in tokens[num_cached_tokens..].chunks(bs) {
            let block = self.take_block();
            self.device.fill(block, chunk, Chain::After(parent));
            self.register(block);
            parent = self.device.meta(block).hash;
            table.push(block);
        }
        self.stats.prompt_tokens += tokens.len() as u64;
        self.stats.cached_tokens += num_cached_tokens as u64;
        self.stats.hash_collisions += u64::from(collided);
        Ok((table, num_cached_tokens))
    }

    /// The registered blocks of the longest cached prefix of full blocks within `tokens[..len -
    /// 1]`, the hash the next block chains from, and whether the lookup stopped at a hash
    /// collision. Each hit is compared with the prompt (parent hash and token ids), so a block
    /// whose hash collides is a miss, in release builds too.
    fn cached_prefix(&self, tokens: &[u32]) -> (Vec<u32>, Option<BlockHash>, bool) {
        let searched = &tokens[..tokens.len().saturating_sub(1)];
        let mut hits = Vec::new();
        let mut parent = None;
        for chunk in searched.chunks_exact(self.block_size()) {
            let hash = self.device.hasher.chain(parent, chunk);
            let Some(&block) = self.by_hash.get(&hash) else {
                break;
            };
            if !self.device.holds(block, Chain::After(parent), chunk) {
                return (hits, parent, true);
            }
            hits.push(block);
            parent = Some(hash);
        }
        (hits, parent, false)
    }

    /// The block registered under a host slot's hash, if it holds what the slot holds; and
    /// whether the hash named a block with other content.
    pub(super) fn cached_copy_of(&self, slot: u32) -> (Option<u32>, bool) {
        let meta = self.host.meta(slot);
        let Some(&block) = meta.hash.and_then(|h| self.by_hash.get(&h)) else {
            return (None, false);
        };
        if self.device.holds(block, meta.chain, self.host.tokens(slot)) {
            (Some(block), false)
        } else {
            (None, true)
        }
    }

    /// Whether a block is in the LRU: taking it back by hash makes it unevictable.
    pub(super) fn is_cached(&self, block: u32) -> bool {
        matches!(self.state[block as usize], BlockState::Cached { .. })
    }

    /// Registers a full block under its hash unless another block already holds that hash.
    pub(super) fn register(&mut self, block: u32) {
        if let Some(hash) = self.device.meta(block).hash {
            self.by_hash.entry(hash).or_insert(block);
        }
    }
}
