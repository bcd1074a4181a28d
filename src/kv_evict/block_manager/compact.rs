//! Token-level compaction: the gather plan that keeps, per kv head, some tokens of a sequence.

use super::*;

/// The gather that [`BlockManager::compact`] leaves to the GPU (the `kv_compact` kernel): for each
/// kv head `h`, token `j` of the compacted sequence, at slot `j % block_size` of
/// `new_table[j / block_size]`, gets that head's K/V of old token `kept[h][j]`, at slot
/// `kept[h][j] % block_size` of `old_table[kept[h][j] / block_size]`. Every head keeps the same
/// number of tokens (the kernel's one count per sequence), not the same tokens.
///
/// The two tables share no block, so the gather can run in any order. Both stay pinned until
/// [`BlockManager::complete`] gets `ticket`: the old blocks are read after this returns, so no
/// allocation may hand them out before, even those no sequence holds any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactPlan {
    pub ticket: Ticket,
    /// The block table before compaction.
    pub old_table: Vec<u32>,
    /// The block table after compaction: `ceil(num_kept / block_size)` fresh blocks.
    pub new_table: Vec<u32>,
    /// Per kv head, the old positions of the kept tokens, strictly increasing.
    pub kept: Vec<Vec<usize>>,
    /// The RoPE position of the next token appended: the sequence's position before
    /// compaction, not the kept count (see [`BlockManager::next_position`]).
    pub next_position: usize,
}

impl CompactPlan {
    /// Tokens each kv head keeps.
    pub fn num_kept(&self) -> usize {
        self.kept.first().map_or(0, Vec::len)
    }
}

impl BlockManager {
    /// Keeps, for each kv head `h`, the tokens of a sequence on the device at positions
    /// `kept[h]` (strictly increasing, below its token count, as many for every head; empty
    /// keeps none) and evicts the others: `k` tokens per head in `ceil(k / block_size)` fresh
    /// blocks, whose K/V the caller gathers from the old blocks with the returned plan. The
    /// sequence is compacted from then on: neither these blocks nor any it fills later are hashed
    /// (see the module header). Its next token keeps the position it had.
    ///
    /// The fresh blocks are allocated while the old ones are still held, since the gather reads
    /// the old blocks while it writes the new ones: this needs `ceil(k / block_size)` free or
    /// evictable blocks besides the sequence's own, although its table ends up no longer than
    /// before. The sequence then lets go of the old blocks the way
    /// [`BlockManager::free_sequence`] would (blocks that a fork or another prompt shares stay
    /// theirs, full ones, hashed, are cached for later prompts), but only once the plan's ticket
    /// completes: until then the gather's pins keep them out of every allocation.
    pub fn compact(&mut self, id: SeqId, kept: &[Vec<usize>]) -> Result<CompactPlan, BlockError> {
        let (table, num_tokens) = self.device_table(id)?;
        self.check_kept(id, kept, num_tokens)?;
        let num_kept = kept.first().map_or(0, Vec::len);
        let bs = self.block_size();
        self.ensure_blocks(num_kept.div_ceil(bs), 0)?;
        let old_table = table.to_vec();
        let old_tokens = self.device.gather_heads(&old_table);
        let new_table: Vec<u32> = (0..num_kept.div_ceil(bs))
            .map(|i| {
                let slots = i * bs..num_kept.min((i + 1) * bs);
                let heads: Vec<Vec<u32>> = (kept.iter().zip(&old_tokens))
                    .map(|(positions, tokens)| {
                        positions[slots.clone()]
                            .iter()
                            .map(|&p| tokens[p])
                            .collect()
                    })
                    .collect();
                let block = self.take_block();
                self.device.fill_heads(block, &heads);
                block
            })
            .collect();
        let ticket = self.start_move(Pending {
            seq: id,
            blocks: old_table.iter().chain(&new_table).copied().collect(),
            slots: Vec::new(),
            register: Vec::new(),
        });
        self.release_all(&old_table);
        let seq = self.seqs.get_mut(&id).expect("checked above");
        seq.num_tokens = num_kept;
        seq.place = Place::Device(new_table.clone());
        seq.compacted = true;
        Ok(CompactPlan {
            ticket,
            old_table,
            new_table,
            kept: kept.to_vec(),
            next_position: seq.next_position,
        })
    }

    /// One kept list per kv head, of one length, each strictly increasing and below `num_tokens`.
    fn check_kept(
        &self,
        id: SeqId,
        kept: &[Vec<usize>],
        num_tokens: usize,
    ) -> Result<(), BlockError> {
        if kept.len() != self.kv_heads() {
            let (got, kv_heads) = (kept.len(), self.kv_heads());
            return Err(BlockError::KeptHeads { id, got, kv_heads });
        }
        let first = kept[0].len();
        for (head, positions) in kept.iter().enumerate() {
            if positions.len() != first {
                let len = positions.len();
                return Err(BlockError::KeptLengths {
                    id,
                    head,
                    len,
                    first,
                });
            }
            let mut next = 0;
            for (index, &position) in positions.iter().enumerate() {
                if position < next || position >= num_tokens {
                    return Err(BlockError::InvalidKept {
                        id,
                        head,
                        index,
                        position,
                        num_tokens,
                    });
                }
                next = position + 1;
            }
        }
        Ok(())
    }

    /// Whether the sequence was compacted since it was added or last resumed (never while it is
    /// dropped): if so, its blocks are not hashed and no prompt can share them.
    pub fn is_compacted(&self, id: SeqId) -> Result<bool, BlockError> {
        self.seq(id).map(|seq| seq.compacted)
    }
}
