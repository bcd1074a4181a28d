//! Preemption: swapping a sequence to host slots and back, or dropping it for recompute.

use super::*;

impl BlockManager {
    /// Moves a sequence's blocks to host slots. Blocks shared with other sequences are copied too
    /// and stay on the device for their other owners. The copy reads the blocks after this
    /// returns, so they stay pinned (neither free nor cached) until [`BlockManager::complete`]
    /// gets the plan's ticket; so do the host slots it writes, and the sequence cannot be swapped
    /// back in before.
    pub fn swap_out(&mut self, id: SeqId) -> Result<SwapPlan, BlockError> {
        let table = self.device_table(id)?.0.to_vec();
        if table.len() > self.host_free.len() {
            let (needed, available) = (table.len(), self.host_free.len());
            return Err(BlockError::OutOfHostSlots { needed, available });
        }
        let pairs: Vec<(u32, u32)> = table
            .iter()
            .map(|&block| {
                let slot = self.take_slot();
                self.host.copy_from(slot, &self.device, block);
                (block, slot)
            })
            .collect();
        let slots: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let ticket = self.start_move(Pending {
            seq: id,
            blocks: table.clone(),
            slots: slots.clone(),
            register: Vec::new(),
        });
        self.release_all(&table);
        self.set_place(id, Place::Host(slots));
        self.stats.swapped_out += 1;
        let direction = SwapDirection::DeviceToHost;
        Ok(SwapPlan {
            ticket,
            direction,
            pairs,
        })
    }

    /// Brings a swapped-out sequence back to the device. Full blocks whose hash is still on the
    /// device, with the same content, are shared without a copy; the plan lists the others (all
    /// of a compacted sequence's, which are unhashed). Until the plan's ticket completes, the
    /// host slots it reads stay pinned and the blocks it writes unregistered.
    pub fn swap_in(&mut self, id: SeqId) -> Result<SwapPlan, BlockError> {
        let seq = self.ready(id)?;
        let Place::Host(slots) = &seq.place else {
            return Err(BlockError::NotSwapped(id, seq.residency()));
        };
        let slots = slots.clone();
        let (hits, collided): (Vec<Option<u32>>, Vec<bool>) =
            slots.iter().map(|&slot| self.cached_copy_of(slot)).unzip();
        let misses = hits.iter().filter(|hit| hit.is_none()).count();
        let lru_hits = hits
            .iter()
            .flatten()
            .filter(|&&b| self.is_cached(b))
            .count();
        self.ensure_blocks(misses, lru_hits)?;
        // Hits first: allocating the misses must not evict a block this sequence is about to share.
        for &block in hits.iter().flatten() {
            self.acquire(block);
        }
        let mut pairs = Vec::with_capacity(misses);
        let table = (slots.iter().zip(hits))
            .map(|(&slot, hit)| {
                hit.unwrap_or_else(|| {
                    let block = self.take_block();
                    self.device.copy_from(block, &self.host, slot);
                    pairs.push((slot, block));
                    block
                })
            })
            .collect();
        let ticket = self.start_move(Pending {
            seq: id,
            blocks: pairs.iter().map(|p| p.1).collect(),
            slots: pairs.iter().map(|p| p.0).collect(),
            register: pairs.iter().map(|p| p.1).collect(),
        });
        self.disown_slots(&slots);
        self.set_place(id, Place::Device(table));
        self.stats.hash_collisions += collided.iter().filter(|&&c| c).count() as u64;
        let direction = SwapDirection::HostToDevice;
        Ok(SwapPlan {
            ticket,
            direction,
            pairs,
        })
    }

    /// Releases a sequence's blocks and keeps its token ids, for [`BlockManager::resume`]. A
    /// compacted sequence is no longer compacted: its kept tokens are a prompt to recompute.
    /// Refused when its kv heads keep different tokens: no prompt recomputes those.
    pub fn drop_for_recompute(&mut self, id: SeqId) -> Result<(), BlockError> {
        let (table, _) = self.device_table(id)?;
        let table = table.to_vec();
        let tokens = self
            .device
            .gather(&table)
            .ok_or(BlockError::HeadsDiffer(id))?;
        self.release_all(&table);
        self.set_place(id, Place::Dropped(tokens));
        self.seqs.get_mut(&id).expect("checked above").compacted = false;
        self.stats.dropped_for_recompute += 1;
        Ok(())
    }

    /// Allocates blocks again for a dropped sequence like [`BlockManager::add_sequence`] does for
    /// its token ids; the result says how many of its tokens must be recomputed, as a prompt
    /// (positions from 0), which is what makes the blocks hashable again after a compaction.
    pub fn resume(&mut self, id: SeqId) -> Result<Allocation, BlockError> {
        let seq = self.ready(id)?;
        let Place::Dropped(tokens) = &seq.place else {
            return Err(BlockError::NotDropped(id, seq.residency()));
        };
        let tokens = tokens.clone();
        let (table, num_cached_tokens) = self.allocate_prompt(&tokens)?;
        let seq = self.seqs.get_mut(&id).expect("checked above");
        seq.place = Place::Device(table);
        seq.next_position = tokens.len();
        Ok(Allocation {
            num_tokens: tokens.len(),
            num_cached_tokens,
        })
    }
}
