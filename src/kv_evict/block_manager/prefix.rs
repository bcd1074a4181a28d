//! The prefix cache: chained block hashes, prompt lookups and registration.

use super::*;

impl BlockManager {
    pub(super) fn allocate_prompt(
        &mut self,
        tokens: &[u32],
    ) -> Result<(Vec<u32>, usize), BlockError> {
        let bs = self.block_size();
        let mut hits = Vec::new();
        let mut parent = None;
        for chunk in tokens.chunks_exact(bs) {
            let hash = chain_hash(parent, chunk);
            let Some(&block) = self.by_hash.get(&hash) else {
                break;
            };
            debug_assert_eq!(self.device.tokens(block), chunk, "prefix hash collision");
            hits.push(block);
            parent = Some(hash);
        }
        let lru_hits = hits.iter().filter(|&&b| self.refcount(b) == 0).count();
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
        Ok((table, num_cached_tokens))
    }

    /// Fails unless `needed` blocks can be allocated once `reserved` cached blocks are taken back

    /// Registers a full block under its hash unless another block already holds that hash.
    pub(super) fn register(&mut self, block: u32) {
        if let Some(hash) = self.device.meta(block).hash {
            self.by_hash.entry(hash).or_insert(block);
        }
    }
}
