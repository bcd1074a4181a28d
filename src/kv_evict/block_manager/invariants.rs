//! The invariants of the module header, checked from scratch.

use super::*;

impl BlockManager {
    /// Checks every invariant of the module header from scratch: each block in exactly one state,
    /// refcounts equal to the table entries pointing at the block and pins to the pending moves
    /// that touch it, a block that a pending move fills not yet registered, hashes matching
    /// content and
    /// chained along each sequence, the pages of a compacted sequence all unhashed and those of
    /// any other sequence all chained (so that none is shared between the two kinds), no dropped
    /// sequence compacted, each host slot free or owned by at most one sequence and pinned by
    /// its pending moves, each waiting sequence's move pending.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut owners = vec![0u32; self.device.count()];
        let mut host_owners = vec![0u32; self.host.count()];
        let (pins, host_pins) = self.count_pins()?;
        for (id, seq) in &self.seqs {
            if let Some(ticket) = seq.pending {
                if self.pending.get(&ticket).is_none_or(|p| p.seq != *id) {
                    return Err(format!("sequence {id} waits for {ticket}, not its move"));
                }
            }
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
            let counts = (on_free[i], in_lru[i], owners[i], pins[i]);
            let ok = match state {
                BlockState::Free => counts == (1, 0, 0, 0) && hash.is_none(),
                BlockState::Cached { .. } => {
                    counts == (0, 1, 0, 0)
                        && hash.is_some_and(|h| self.by_hash.get(&h) == Some(&block))
                }
                BlockState::Held { refs, pins } => counts == (0, 0, refs, pins) && refs + pins > 0,
            };
            if !ok {
                let (free, lru, tables, pins) = counts;
                return Err(format!(
                    "block {block} is {state:?} with hash {hash:?}, but on the free list {free} \
                     times, in the LRU {lru} times, in {tables} block-table entries, pinned by \
                     {pins} pending moves"
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
                    "hash {h:?} registered to block {block}, which does not hold it"
                ));
            }
        }
        for (ticket, pending) in &self.pending {
            let registered = |&&b: &&u32| {
                let hash = self.device.meta(b).hash;
                hash.is_some_and(|h| self.by_hash.get(&h) == Some(&b))
            };
            if let Some(block) = pending.register.iter().find(registered) {
                return Err(format!(
                    "block {block} is registered before its move {ticket} completes"
                ));
            }
        }
        let mut on_host_free = vec![0u32; self.host.count()];
        for &slot in &self.host_free {
            *on_host_free
                .get_mut(slot as usize)
                .ok_or(format!("free host slot {slot} out of range"))? += 1;
        }
        for (slot, &owned) in host_owners.iter().enumerate() {
            let state = self.host_slots[slot];
            let want = HostSlot {
                owned: owned == 1,
                pins: host_pins[slot],
            };
            let free = u32::from(want == HostSlot::default());
            if owned > 1 || state != want || on_host_free[slot] != free {
                return Err(format!(
                    "host slot {slot} is {state:?}, but owned {owned} times, pinned by {} \
                     pending moves, on the free list {} times",
                    host_pins[slot], on_host_free[slot]
                ));
            }
            self.host
                .check_hash(slot as u32)
                .map_err(|e| format!("host {e}"))?;
        }
        Ok(())
    }

    /// Pins per device block and per host slot, from the pending moves.
    fn count_pins(&self) -> Result<(Vec<u32>, Vec<u32>), String> {
        let mut pins = vec![0u32; self.device.count()];
        let mut host_pins = vec![0u32; self.host.count()];
        for (ticket, pending) in &self.pending {
            for (ids, counts) in [
                (&pending.blocks, &mut pins),
                (&pending.slots, &mut host_pins),
            ] {
                for &id in ids {
                    *counts
                        .get_mut(id as usize)
                        .ok_or(format!("move {ticket} pins page {id}, out of range"))? += 1;
                }
            }
        }
        Ok((pins, host_pins))
    }
}
