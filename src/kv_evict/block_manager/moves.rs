//! Two-phase moves: a plan that copies blocks (swap-out, swap-in, compaction) pins every device
//! block and host slot it reads or writes, and [`BlockManager::complete`] unpins them once the
//! caller knows the copy has run. Until then a block the plan reads is neither free nor cached
//! even if no sequence holds it any more, so no allocation hands it out to be overwritten while
//! the copy still reads it; a block it writes is not registered under its hash, so no prompt
//! shares it before its content has landed.

use std::fmt;

use super::*;

/// Names a pending move: returned in its plan, given back to [`BlockManager::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub(super) u64);

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a pending move pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    /// The sequence whose blocks move; it may have been freed since.
    pub(super) seq: SeqId,
    /// Device blocks the copy reads or writes, one pin each.
    pub(super) blocks: Vec<u32>,
    /// Host slots the copy reads or writes, one pin each.
    pub(super) slots: Vec<u32>,
    /// Blocks the copy fills with hashed content, registered in the prefix cache once it has.
    pub(super) register: Vec<u32>,
}

/// A host slot is free (on the free list) when no sequence owns it and no move pins it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct HostSlot {
    pub(super) owned: bool,
    pub(super) pins: u32,
}

impl BlockManager {
    /// Ends a move: the caller has seen its copy complete (a stream or event synchronisation).
    /// Blocks and host slots that only the move still held go back to the pool, and its sequence
    /// may run again.
    pub fn complete(&mut self, ticket: Ticket) -> Result<(), BlockError> {
        let pending = self
            .pending
            .remove(&ticket)
            .ok_or(BlockError::UnknownTicket(ticket))?;
        for &block in &pending.register {
            self.register(block);
        }
        // Last block first, as a sequence's release: the LRU then evicts its tail first.
        for &block in pending.blocks.iter().rev() {
            let BlockState::Held { refs, pins } = self.state[block as usize] else {
                unreachable!("pinned block {block} is not held")
            };
            self.drop_hold(block, refs, pins - 1);
        }
        for &slot in &pending.slots {
            self.host_slots[slot as usize].pins -= 1;
            self.free_slot_if_unused(slot);
        }
        if let Some(seq) = self.seqs.get_mut(&pending.seq) {
            if seq.pending == Some(ticket) {
                seq.pending = None;
            }
        }
        Ok(())
    }

    /// Moves not yet completed, oldest first.
    pub fn pending_moves(&self) -> impl Iterator<Item = Ticket> + '_ {
        self.pending.keys().copied()
    }

    /// Records a move of a sequence's blocks, pinning what it touches, and marks the sequence as
    /// waiting for it.
    pub(super) fn start_move(&mut self, pending: Pending) -> Ticket {
        for &block in &pending.blocks {
            let BlockState::Held { refs, pins } = self.state[block as usize] else {
                unreachable!("a moved block {block} is held by its sequence")
            };
            self.state[block as usize] = BlockState::Held {
                refs,
                pins: pins + 1,
            };
        }
        for &slot in &pending.slots {
            self.host_slots[slot as usize].pins += 1;
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        let seq = pending.seq;
        self.pending.insert(ticket, pending);
        self.seqs.get_mut(&seq).expect("a live sequence").pending = Some(ticket);
        ticket
    }

    /// A free host slot, now owned. Callers check capacity first.
    pub(super) fn take_slot(&mut self) -> u32 {
        let slot = self
            .host_free
            .pop()
            .expect("capacity checked by the caller");
        self.host_slots[slot as usize].owned = true;
        slot
    }

    /// A sequence gives up its host slots; those no move pins are free again.
    pub(super) fn disown_slots(&mut self, slots: &[u32]) {
        for &slot in slots {
            self.host_slots[slot as usize].owned = false;
            self.free_slot_if_unused(slot);
        }
    }

    fn free_slot_if_unused(&mut self, slot: u32) {
        if self.host_slots[slot as usize] == HostSlot::default() {
            self.host_free.push(slot);
        }
    }
}
