//! The invariants of the module header, checked from scratch.

use super::*;

impl BlockManager {
    /// Checks every invariant of the module header from scratch: each block in exactly one state,
    /// refcounts equal to the table entries pointing at the block, hashes matching content and
    /// chained along each sequence, the pages of a compacted sequence all unhashed and those of
    /// any other sequence all chained (so that none is shared between the two kinds), no dropped
    /// sequence compacted, each host slot free or owned by exactly one sequence.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut owners = vec![0u32; self.device.count()];
        let mut host_owners = vec![0u32; self.host.count()];
        for (id, seq) in &self.seqs {
            let (pages, ids, owned) = match &seq.place {
                Place::Device(table) => (&self.device, table, &mut owners),
                Place::Host(slots) => (&self.host, slots, &mut host_owners),
                Place::Dropped(_) if seq.compacted => {
                    return Err(format!("dropped sequence {id} is marked compacted"));
                }
                Place::Dropped(tokens) if tokens.len() == seq.num_tokens => continue,
                Place::Dropped(tokens) => {
                    let kept = tokens.len();
                    return Err(format!(
                        "dropped sequence {id} keeps {kept} of {} tokens",
                        seq.num_tokens
                    ));
                }
            };
            pages
                .check_sequence(ids, seq.num_tokens, seq.compacted)
                .map_err(|e| format!("sequence {id} ({}): {e}", seq.residency()))?;
            for &page in ids {
                owned[page as usize] += 1;
            }
        }
        let mut on_free = vec![0u32; self.device.count()];
        for &block in &self.free {
            *on_free
                .get_mut(block as usize)
                .ok_or(format!("free block {block} out of range"))? += 1;
        }
        let mut in_lru = vec![0u32; self.device.count()];
        for (&tick, &block) in &self.lru {
            let state = self
                .state
                .get(block as usize)
                .ok_or(format!("cached block {block} out of range"))?;
            if *state != (BlockState::Cached { tick }) {
                return Err(format!(
                    "block {block} in the LRU at tick {tick} but {state:?}"
                ));
            }
            in_lru[block as usize] += 1;
        }
        for (i, &state) in self.state.iter().enumerate() {
            let block = i as u32;
            let hash = self.device.meta(block).hash;
            let counts = (on_free[i], in_lru[i], owners[i]);
            let ok = match state {
                BlockState::Free => counts == (1, 0, 0) && hash.is_none(),
                BlockState::Cached { .. } => {
                    counts == (0, 1, 0)
                        && hash.is_some_and(|h| self.by_hash.get(&h) == Some(&block))
                }
                BlockState::Held { refs } => counts == (0, 0, refs) && refs > 0,
            };
            if !ok {
                let (free, lru, tables) = counts;
                return Err(format!(
                    "block {block} is {state:?} with hash {hash:?}, but on the free list {free} \
                     times, in the LRU {lru} times, in {tables} block-table entries"
                ));
            }
            self.device.check_hash(block)?;
        }
        for (&h, &block) in &self.by_hash {
            let registered = self.device.count() > block as usize
                && self.device.meta(block).hash == Some(h)
                && self.state[block as usize] != BlockState::Free;
            if !registered {
                return Err(format!(
                    "hash {h:#x} registered to block {block}, which does not hold it"
                ));
            }
        }
        for &slot in &self.host_free {
            *host_owners
                .get_mut(slot as usize)
                .ok_or(format!("free host slot {slot} out of range"))? += 1;
        }
        for (slot, &count) in host_owners.iter().enumerate() {
            if count != 1 {
                return Err(format!(
                    "host slot {slot} is free or owned {count} times, not once"
                ));
            }
            self.host
                .check_hash(slot as u32)
                .map_err(|e| format!("host {e}"))?;
        }
        Ok(())
    }
}
