//! Token-level compaction: the gather plan that keeps some tokens of a sequence.

use super::*;

impl BlockManager {
    /// Keeps the tokens of a sequence on the device at positions `kept` (strictly increasing, below
    /// its token count; empty keeps none) and evicts the others: `kept.len()` tokens in
    /// `ceil(kept.len() / block_size)` fresh blocks, whose K/V the caller gathers from the old
    /// blocks with the returned plan. The sequence is compacted from then on: neither these blocks
    /// nor any it fills later are hashed (see the module header).
    ///
    /// The fresh blocks are allocated while the old ones are still held, since the gather reads
    /// the old blocks while it writes the new ones: this needs `ceil(kept.len() / block_size)` free
    /// or evictable blocks besides the sequence's own, although its table ends up no longer than
    /// before. Only then are the old blocks released, the way [`BlockManager::free_sequence`]
    /// would: blocks that a fork or another prompt shares stay theirs, and full ones, hashed, are
    /// cached for later prompts. The caller runs the gather before the K/V writes of any later
    /// operation, which may reuse them.
    pub fn compact(&mut self, id: SeqId, kept: &[usize]) -> Result<CompactPlan, BlockError> {
        let (table, num_tokens) = self.device_table(id)?;
        let mut next = 0;
        for (index, &position) in kept.iter().enumerate() {
            if position < next || position >= num_tokens {
                return Err(BlockError::InvalidKept {
                    id,
                    index,
                    position,
                    num_tokens,
                });
            }
            next = position + 1;
        }
        let bs = self.block_size();
        self.ensure_blocks(kept.len().div_ceil(bs), 0)?;
        let old_table = table.to_vec();
        let old_tokens = self.device.gather(&old_table);
        let tokens: Vec<u32> = kept.iter().map(|&p| old_tokens[p]).collect();
        let new_table: Vec<u32> = tokens
            .chunks(bs)
            .map(|chunk| {
                let block = self.take_block();
                self.device.fill(block, chunk, Chain::Compacted);
                block
            })
            .collect();
        self.release_all(&old_table);
        let seq = self.seqs.get_mut(&id).expect("checked above");
        seq.num_tokens = kept.len();
        seq.place = Place::Device(new_table.clone());
        seq.compacted = true;
        Ok(CompactPlan {
            old_table,
            new_table,
            kept: kept.to_vec(),
        })
    }

    /// Whether the sequence was compacted since it was added or last resumed (never while it is
    /// dropped): if so, its blocks are not hashed and no prompt can share them.
    pub fn is_compacted(&self, id: SeqId) -> Result<bool, BlockError> {
        self.seq(id).map(|seq| seq.compacted)
    }
}
