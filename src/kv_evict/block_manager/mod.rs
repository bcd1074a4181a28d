//! CPU block manager of a paged KV cache, the way vLLM's block manager works: which device block
//! holds which tokens of which sequence, shared prefixes, copy-on-write, prefix caching, LRU
//! eviction, preemption and token-level compaction. It is a pure data structure: operations return
//! plans ([`CopyBlock`], [`SwapPlan`], [`CompactPlan`]) that the GPU side executes as batched
//! copies.
//!
//! # States of a block
//!
//! The device cache is `num_blocks` blocks of `block_size` tokens. Every block is in exactly one
//! state:
//! - **free**: on the free list; its content is of no use to anyone;
//! - **cached**: refcount 0, full and registered under its prefix hash, so that a later prompt
//!   with the same prefix takes it back instead of recomputing it; kept in LRU order;
//! - **held**: refcount = the number of block-table entries, over all sequences on the device,
//!   that point at it, plus pins = the pending moves that read or write it (see *Two-phase
//!   moves*); a held block with refcount 0 is waiting for a copy to finish with it.
//!
//! The manager mirrors each block's token ids per kv head (not its K/V, a few bytes per token),
//! `[block][kv head][slot]` like the K/V pools; every kv head holds the same tokens except in a
//! sequence compacted per head (see *Compaction*). Prefix hashes
//! are computed from them when a block fills, a dropped sequence is resumed from them, and they let
//! [`BlockManager::check_invariants`] and the tests prove that no operation changes the tokens that
//! another sequence sees.
//!
//! # Why prefix hashes are chained
//!
//! A full block's hash is `H(hash of the previous block, the block's token ids)`. The K/V of a
//! token depends on every token before it, so a block can be reused only when the whole prefix up
//! to it matches, not just its own tokens; chaining makes equal hashes mean equal prefixes at the
//! cost of one lookup per block. Hashes are 64-bit SipHash by default, SHA-256 as an option
//! ([`PrefixHash`]); either way a hit is compared with the prompt (the stored parent hash and
//! token ids), so that a collision of a block's own hash is a counted miss ([`Stats`]), in
//! release builds too. A prompt's lookup covers its first `len - 1` tokens: the last token is
//! computed in any case, for the logits of the next one. Partial blocks are never
//! hashed, their content still changes; nor are the blocks of a compacted sequence (see
//! *Compaction*). A prompt lookup stops at the first miss: the caller computes every token after
//! the cached prefix anyway. When a block fills with a hash that another block already has (two
//! sequences generated the same tokens), the registered block stays registered and the newcomer
//! keeps its hash only to chain the next one; it is cached on release only if the hash is then
//! unregistered, and goes to the free list otherwise.
//!
//! # Copy-on-write
//!
//! Full blocks are never written again, so sharing them costs nothing. Only a sequence's partial
//! last block is written: when a sequence appends to a partial block that other sequences also
//! hold (after [`BlockManager::fork`]), it gets a fresh block, the caller copies the old one into
//! it on the GPU ([`CopyBlock`]), and the new token goes there; the other holders keep the
//! original. A partial block held by one sequence only is written in place.
//!
//! # LRU eviction
//!
//! Allocation takes a free block first, since free blocks hold nothing of value, and only then
//! evicts the cached block released longest ago (dropping its hash). A sequence's blocks are
//! released last block first, so its tail is evicted before its head: a block is useless without
//! the blocks before it (lookups stop at the first miss), and the head is the part that future
//! prompts share. The LRU is a `BTreeMap` from release tick to block: insert, remove and pop-oldest
//! are O(log n), and every other structure is a `Vec` or `HashMap`, so an operation costs
//! O(log n) per block it touches (200k operations take about half a second in a debug build).
//!
//! # Two-phase moves
//!
//! A scheduler batches the copies of a step and runs them later, on a copy stream or after other
//! kernels. So [`BlockManager::swap_out`], [`BlockManager::swap_in`] and
//! [`BlockManager::compact`] return plans with a [`Ticket`], and pin every device block and host
//! slot their copy reads or writes: a pinned block is neither free nor cached, whatever its
//! refcount, so no allocation hands it out while the copy still reads it (before, a compaction's
//! old blocks went back to the pool before its gather ran). The sequence waits
//! ([`BlockError::MovePending`]) and the blocks a swap-in fills are registered for prefix hits
//! only once [`BlockManager::complete`] gets the ticket; a freed sequence's pinned blocks go back
//! then. Copy-on-write ([`CopyBlock`]) stays one-phase: the copy runs on the compute stream right
//! before the token's K/V write, and its source stays held by the sequences that share it.
//!
//! # Preemption
//!
//! - **Swap**: [`BlockManager::swap_out`] copies *every* block of the sequence to a host slot,
//!   including blocks shared with other sequences; those stay on the device for their other owners
//!   and only this sequence's references are dropped. Refusing to swap a sharing sequence would
//!   leave a forked beam unswappable while its siblings run; the cost is that a shared prefix may
//!   have several host copies. [`BlockManager::swap_in`] takes back any full block whose hash is
//!   still on the device (held or cached) without copying it, and copies the rest.
//! - **Recompute**: [`BlockManager::drop_for_recompute`] releases the blocks and keeps the token
//!   ids; [`BlockManager::resume`] allocates again like [`BlockManager::add_sequence`], and prefix
//!   hits (often the sequence's own blocks, still cached) shorten the recompute.
//!
//! # Compaction
//!
//! A token-level eviction policy keeps `k` of a sequence's tokens in each kv head: the policies
//! and the `kv_compact` kernel select per kv head, so the heads keep as many tokens, not the same
//! ones. [`BlockManager::compact`] allocates `ceil(k / block_size)` fresh blocks, mirrors each
//! head's kept tokens into them, points the block table at them and lets the old blocks go once
//! the gather completes; the [`CompactPlan`] it returns is that gather. A kept token keeps the
//! rotary position it was computed at, so the next token's position
//! ([`BlockManager::next_position`]) is the length before compaction plus the tokens appended
//! since, not the kept count. The fresh blocks are taken while the old ones are still held, since the gather
//! reads the old blocks while it writes the new ones: compaction needs `ceil(k / block_size)` free
//! or evictable blocks on top of the sequence's own, although it ends up holding fewer. The old
//! blocks are then released like a freed sequence's: those that others share (a fork, another
//! prompt through the prefix cache) stay theirs, and full ones stay cached under their prefix
//! hash, since their K/V is still that of a prompt.
//!
//! A compacted sequence is no longer the prompt made of its token ids: each kept token's K/V was
//! computed with the full context at its original position, and a token appended later attends
//! to the kept tokens only. None of its blocks may ever be taken for a prompt's block, so
//! compaction marks the sequence and its blocks **unhashed**, for good: the fresh blocks, the
//! blocks it fills later by appending (a hash chained from nothing would equal a real prompt's
//! first block), its forks and their copies on write, and its host slots through a swap. An
//! unhashed block is never hashed when it fills, never registered, never cached (released, it
//! goes to the free list), and swap-in, having no hash to look up, copies it back. The mark is on
//! the sequence, since a sequence compacted to 0 tokens has no block to carry it, and on each
//! page, so that copies (copy-on-write, swap) carry it and [`BlockManager::check_invariants`] can
//! prove that no block is shared between a compacted and an uncompacted sequence.
//!
//! The alternative, chaining the compacted blocks' hashes from a per-sequence unique salt, would
//! keep them hashable; we chose the mark because an unhashed block cannot match a prompt at all,
//! where a salted hash only makes a match as unlikely as any 64-bit collision, and because salted
//! blocks would fill the cache with entries no prompt can ever hit. All a salt would win back is
//! reuse within the sequence's own lineage (swap-in finding its blocks still on the device, forked
//! beams that fill a block with the same tokens), which saves a copy, never a recompute.
//!
//! [`BlockManager::drop_for_recompute`] ends the mark: it keeps token ids only, and
//! [`BlockManager::resume`] has the caller compute them as a new prompt (positions from 0, each
//! token attending to the kept tokens before it), so their K/V is again a function of the token
//! ids: the blocks are hashed, and found in the cache, like any prompt's. That is resume's
//! contract; a server that recomputed the kept tokens at their original positions would get K/V
//! that no prefix hash describes, and must not resume a compacted sequence.
//!
//! Every operation validates its arguments and checks capacity before it changes anything, so a
//! failed operation leaves the manager exactly as it was.

mod compact;
mod invariants;
mod moves;
mod pages;
mod prefix;
#[cfg(test)]
mod props;
mod swap;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use thiserror::Error;

pub use compact::CompactPlan;
pub use moves::Ticket;
pub use pages::{BlockHash, PrefixHash};

use moves::{HostSlot, Pending};
use pages::{Chain, PageMeta, Pages};

/// Identifies a sequence (a request, or one beam of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

impl fmt::Display for SeqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a sequence's tokens are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// In device blocks: the sequence can run.
    Device,
    /// In host slots after [`BlockManager::swap_out`].
    Host,
    /// Only its token ids, after [`BlockManager::drop_for_recompute`].
    Dropped,
}

impl fmt::Display for Residency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Residency::Device => "on the device",
            Residency::Host => "swapped out to host memory",
            Residency::Dropped => "dropped for recompute",
        })
    }
}

/// Why an operation was refused; the manager is then exactly as it was before the call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    #[error("out of device blocks: {needed} needed, {available} free or evictable")]
    OutOfBlocks { needed: usize, available: usize },
    #[error("out of host slots: {needed} needed, {available} free")]
    OutOfHostSlots { needed: usize, available: usize },
    #[error("unknown sequence {0}")]
    UnknownSequence(SeqId),
    #[error("sequence {0} already exists")]
    SequenceExists(SeqId),
    #[error("sequence {0} is not on the device: it is {1}")]
    NotOnDevice(SeqId, Residency),
    #[error("sequence {0} is not swapped out: it is {1}")]
    NotSwapped(SeqId, Residency),
    #[error("sequence {0} was not dropped for recompute: it is {1}")]
    NotDropped(SeqId, Residency),
    /// The sequence's blocks are being moved by the plan of `ticket`: nothing may read or write
    /// them until [`BlockManager::complete`] says the copy has run.
    #[error("sequence {0} waits for its move {1} to complete")]
    MovePending(SeqId, Ticket),
    #[error("no move {0} is pending")]
    UnknownTicket(Ticket),
    /// The kv heads of the sequence keep different tokens (a per-head compaction): there is no
    /// single list of token ids to return or to recompute from.
    #[error("the kv heads of sequence {0} keep different tokens")]
    HeadsDiffer(SeqId),
    #[error("compaction of sequence {id}: {got} kept lists for {kv_heads} kv heads")]
    KeptHeads {
        id: SeqId,
        got: usize,
        kv_heads: usize,
    },
    /// The kernel keeps one count per sequence (`min(budget, len)`) for all its kv heads.
    #[error(
        "compaction of sequence {id}: kv head {head} keeps {len} tokens, kv head 0 keeps {first}"
    )]
    KeptLengths {
        id: SeqId,
        head: usize,
        len: usize,
        first: usize,
    },
    /// `kept[head][index]` is not above `kept[head][index - 1]`, or not below the sequence's
    /// token count.
    #[error(
        "kept positions of sequence {id} must be strictly increasing and below its {num_tokens} \
         tokens: kept[{head}][{index}] = {position} is not"
    )]
    InvalidKept {
        id: SeqId,
        head: usize,
        index: usize,
        position: usize,
        num_tokens: usize,
    },
}

/// A device-to-device block copy the caller must run before writing the new token (copy-on-write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyBlock {
    pub src: u32,
    pub dst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapDirection {
    DeviceToHost,
    HostToDevice,
}

/// Block copies between device and pinned host memory, to run as one batch; the blocks and slots
/// they touch stay out of every allocation until [`BlockManager::complete`] gets `ticket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapPlan {
    pub ticket: Ticket,
    pub direction: SwapDirection,
    /// `(src, dst)`: `(device block, host slot)` for [`SwapDirection::DeviceToHost`],
    /// `(host slot, device block)` for [`SwapDirection::HostToDevice`].
    pub pairs: Vec<(u32, u32)>,
}

/// What [`BlockManager::add_sequence`] or [`BlockManager::resume`] found in the prefix cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub num_tokens: usize,
    /// Leading tokens whose K/V is already in reused blocks: a multiple of the block size, and
    /// below `num_tokens` unless that is 0, since the last token is always computed (its logits
    /// are the next token's distribution).
    pub num_cached_tokens: usize,
}

impl Allocation {
    /// The tokens the caller must run through the model to fill the sequence's K/V.
    pub fn num_tokens_to_compute(&self) -> usize {
        self.num_tokens - self.num_cached_tokens
    }
}

/// Where [`BlockManager::append_token`] put the token: the caller writes its K/V at
/// `block * block_size + offset`, after running `copy` if there is one, with the RoPE position
/// `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub block: u32,
    pub offset: usize,
    pub copy: Option<CopyBlock>,
    pub position: usize,
}

/// The manager's shape: pools, block size, kv heads and prefix hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub num_blocks: usize,
    pub block_size: usize,
    pub num_host_blocks: usize,
    /// Kv heads of the cache: a compaction keeps a token list per kv head, as the kernels do.
    pub kv_heads: usize,
    pub hash: PrefixHash,
}

/// What the manager has done so far, for a scheduler's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Prompt tokens looked up in the prefix cache by [`BlockManager::add_sequence`] and
    /// [`BlockManager::resume`].
    pub prompt_tokens: u64,
    /// Of those, the tokens found cached ([`Allocation::num_cached_tokens`]).
    pub cached_tokens: u64,
    /// Cached blocks evicted (their hash dropped) to be allocated again.
    pub evicted_blocks: u64,
    /// Sequences preempted by [`BlockManager::swap_out`].
    pub swapped_out: u64,
    /// Sequences preempted by [`BlockManager::drop_for_recompute`].
    pub dropped_for_recompute: u64,
    /// Lookups (a prompt's or a swap-in's) whose hash named a block with other content: a miss.
    pub hash_collisions: u64,
}

impl Stats {
    /// Fraction of prompt tokens found in the prefix cache (0 before any prompt).
    pub fn hit_rate(&self) -> f64 {
        self.cached_tokens as f64 / self.prompt_tokens.max(1) as f64
    }

    /// Preemptions of either kind.
    pub fn preemptions(&self) -> u64 {
        self.swapped_out + self.dropped_for_recompute
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Free,
    Cached {
        tick: u64,
    },
    /// `refs` block-table entries point at the block and `pins` pending moves read or write it;
    /// at least one of the two is positive.
    Held {
        refs: u32,
        pins: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// Block table: device block ids in token order.
    Device(Vec<u32>),
    /// Host slot ids in token order.
    Host(Vec<u32>),
    /// Token ids to recompute from.
    Dropped(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sequence {
    num_tokens: usize,
    /// The RoPE position of the next token: the tokens ever computed for it, which compaction
    /// does not change.
    next_position: usize,
    place: Place,
    /// Compacted since it was added or last resumed: its blocks are unhashed. Never set while
    /// dropped.
    compacted: bool,
    /// The move its blocks wait for, if any.
    pending: Option<Ticket>,
}

impl Sequence {
    fn residency(&self) -> Residency {
        match self.place {
            Place::Device(_) => Residency::Device,
            Place::Host(_) => Residency::Host,
            Place::Dropped(_) => Residency::Dropped,
        }
    }
}

/// The block manager. Two managers compare equal when every block, host slot, sequence, pending
/// move and counter is in the same state, which is how tests show that a failed operation changed
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockManager {
    device: Pages,
    state: Vec<BlockState>,
    /// Stack: the most recently freed block is reused first.
    free: Vec<u32>,
    /// Cached blocks by release tick, oldest first.
    lru: BTreeMap<u64, u32>,
    next_tick: u64,
    /// Chained prefix hash -> the held or cached block registered under it.
    by_hash: HashMap<BlockHash, u32>,
    host: Pages,
    host_slots: Vec<HostSlot>,
    host_free: Vec<u32>,
    seqs: HashMap<SeqId, Sequence>,
    pending: BTreeMap<Ticket, Pending>,
    next_ticket: u64,
    stats: Stats,
}

impl BlockManager {
    /// A manager of `num_blocks` device blocks and `num_host_blocks` host slots of `block_size`
    /// tokens each, one kv head, the fast prefix hash. Panics like [`BlockManager::with_options`].
    pub fn new(num_blocks: usize, block_size: usize, num_host_blocks: usize) -> Self {
        BlockManager::with_options(Options {
            num_blocks,
            block_size,
            num_host_blocks,
            kv_heads: 1,
            hash: PrefixHash::Fast,
        })
    }

    /// Panics if the block size or the kv heads are 0, or a pool has more than `u32::MAX` pages.
    pub fn with_options(o: Options) -> Self {
        assert!(o.block_size > 0, "block_size must be positive");
        assert!(o.kv_heads > 0, "kv_heads must be positive");
        // Reversed so that blocks are handed out in increasing order from a fresh manager.
        let ids = |n: usize| (0..n as u32).rev().collect::<Vec<_>>();
        BlockManager {
            device: Pages::new(o.num_blocks, o.block_size, o.kv_heads, o.hash),
            state: vec![BlockState::Free; o.num_blocks],
            free: ids(o.num_blocks),
            lru: BTreeMap::new(),
            next_tick: 0,
            by_hash: HashMap::new(),
            host: Pages::new(o.num_host_blocks, o.block_size, o.kv_heads, o.hash),
            host_slots: vec![HostSlot::default(); o.num_host_blocks],
            host_free: ids(o.num_host_blocks),
            seqs: HashMap::new(),
            pending: BTreeMap::new(),
            next_ticket: 0,
            stats: Stats::default(),
        }
    }

    pub fn block_size(&self) -> usize {
        self.device.block_size
    }

    pub fn kv_heads(&self) -> usize {
        self.device.kv_heads
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Allocates blocks for a prompt, reusing the blocks of its longest cached prefix of full
    /// blocks within its first `len - 1` tokens: the last token is computed in any case, for its
    /// logits, and so is the block it lies in (as in vLLM; writing its K/V into a shared block
    /// would make that block a write target).
    pub fn add_sequence(&mut self, id: SeqId, tokens: &[u32]) -> Result<Allocation, BlockError> {
        if self.seqs.contains_key(&id) {
            return Err(BlockError::SequenceExists(id));
        }
        let (table, num_cached_tokens) = self.allocate_prompt(tokens)?;
        self.seqs.insert(
            id,
            Sequence {
                num_tokens: tokens.len(),
                next_position: tokens.len(),
                place: Place::Device(table),
                compacted: false,
                pending: None,
            },
        );
        Ok(Allocation {
            num_tokens: tokens.len(),
            num_cached_tokens,
        })
    }

    /// Reserves the slot of one more token of a sequence on the device, copying its last block
    /// first if that block is partial and shared. A block that this fills is registered for
    /// prefix caching, unless the sequence is compacted.
    pub fn append_token(&mut self, id: SeqId, token: u32) -> Result<AppendOutcome, BlockError> {
        let (table, num_tokens) = self.device_table(id)?;
        let compacted = self.seqs[&id].compacted;
        let last = table.last().copied();
        let offset = num_tokens % self.block_size();
        let (block, copy) = match last {
            Some(last) if offset != 0 && self.refcount(last) > 1 => {
                self.ensure_blocks(1, 0)?;
                let dst = self.take_block();
                self.device.copy_within(last, dst);
                self.release(last);
                (dst, Some(CopyBlock { src: last, dst }))
            }
            Some(last) if offset != 0 => (last, None),
            _ => {
                self.ensure_blocks(1, 0)?;
                let block = self.take_block();
                let chain = match last {
                    Some(b) => self.device.meta(b).chain.next(self.device.meta(b).hash),
                    None => Chain::first(compacted),
                };
                self.device.fill(block, &[], chain);
                (block, None)
            }
        };
        self.device.push(block, token);
        self.register(block);
        let seq = self.seqs.get_mut(&id).expect("checked above");
        let position = seq.next_position;
        seq.num_tokens += 1;
        seq.next_position += 1;
        let Place::Device(table) = &mut seq.place else {
            unreachable!("checked above")
        };
        if offset == 0 {
            table.push(block);
        } else {
            *table.last_mut().expect("a partial block") = block;
        }
        Ok(AppendOutcome {
            block,
            offset,
            copy,
            position,
        })
    }

    /// Makes `child` share every block of `parent`, which must be on the device (beam search,
    /// parallel sampling). No copy: the first append to a shared partial block copies it.
    pub fn fork(&mut self, parent: SeqId, child: SeqId) -> Result<(), BlockError> {
        let (table, _) = self.device_table(parent)?;
        if self.seqs.contains_key(&child) {
            return Err(BlockError::SequenceExists(child));
        }
        let table = table.to_vec();
        for &block in &table {
            self.acquire(block);
        }
        let parent = &self.seqs[&parent];
        let child_seq = Sequence {
            place: Place::Device(table),
            pending: None,
            ..parent.clone()
        };
        self.seqs.insert(child, child_seq);
        Ok(())
    }

    /// Forgets a sequence wherever it is, releasing its blocks or host slots; a move still
    /// pending on them keeps them until it completes.
    pub fn free_sequence(&mut self, id: SeqId) -> Result<(), BlockError> {
        let seq = self
            .seqs
            .remove(&id)
            .ok_or(BlockError::UnknownSequence(id))?;
        match seq.place {
            Place::Device(table) => self.release_all(&table),
            Place::Host(slots) => self.disown_slots(&slots),
            Place::Dropped(_) => {}
        }
        Ok(())
    }

    /// The device blocks of a sequence on the device, in token order.
    pub fn block_table(&self, id: SeqId) -> Result<&[u32], BlockError> {
        match &self.seq(id)?.place {
            Place::Device(table) => Ok(table),
            _ => Err(BlockError::NotOnDevice(id, self.seqs[&id].residency())),
        }
    }

    /// The host slots of a swapped-out sequence, in token order.
    pub fn host_slots(&self, id: SeqId) -> Result<&[u32], BlockError> {
        match &self.seq(id)?.place {
            Place::Host(slots) => Ok(slots),
            _ => Err(BlockError::NotSwapped(id, self.seqs[&id].residency())),
        }
    }

    pub fn num_tokens(&self, id: SeqId) -> Result<usize, BlockError> {
        self.seq(id).map(|seq| seq.num_tokens)
    }

    /// The RoPE position the sequence's next token gets: its length before any compaction plus
    /// the tokens appended since, not the tokens it holds. A kept token keeps the rotation of its
    /// original position, so the next one must continue from there; a resumed sequence is a
    /// prompt again, computed from position 0.
    pub fn next_position(&self, id: SeqId) -> Result<usize, BlockError> {
        self.seq(id).map(|seq| seq.next_position)
    }

    pub fn residency(&self, id: SeqId) -> Result<Residency, BlockError> {
        self.seq(id).map(Sequence::residency)
    }

    /// A sequence's token ids, read back from wherever it is; refused if its kv heads keep
    /// different tokens ([`BlockManager::head_tokens`] has them).
    pub fn tokens(&self, id: SeqId) -> Result<Vec<u32>, BlockError> {
        match &self.seq(id)?.place {
            Place::Device(table) => self.device.gather(table),
            Place::Host(slots) => self.host.gather(slots),
            Place::Dropped(tokens) => Some(tokens.clone()),
        }
        .ok_or(BlockError::HeadsDiffer(id))
    }

    /// Each kv head's token ids of a sequence, wherever it is.
    pub fn head_tokens(&self, id: SeqId) -> Result<Vec<Vec<u32>>, BlockError> {
        Ok(match &self.seq(id)?.place {
            Place::Device(table) => self.device.gather_heads(table),
            Place::Host(slots) => self.host.gather_heads(slots),
            Place::Dropped(tokens) => vec![tokens.clone(); self.kv_heads()],
        })
    }

    /// The move a sequence waits for, if any.
    pub fn pending_move(&self, id: SeqId) -> Result<Option<Ticket>, BlockError> {
        self.seq(id).map(|seq| seq.pending)
    }

    /// Blocks on the free list (not counting cached blocks, which are evictable too).
    pub fn num_free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Blocks no sequence holds but kept for their prefix hash, evictable.
    pub fn num_cached_blocks(&self) -> usize {
        self.lru.len()
    }

    pub fn num_free_host_slots(&self) -> usize {
        self.host_free.len()
    }

    /// How many block-table entries point at `block` (0 if it is free or cached, or held only by
    /// pending moves). Panics if the block is out of range.
    pub fn refcount(&self, block: u32) -> u32 {
        match self.state[block as usize] {
            BlockState::Held { refs, .. } => refs,
            BlockState::Free | BlockState::Cached { .. } => 0,
        }
    }

    /// How many pending moves read or write `block`: while any does, it is neither free nor
    /// cached, whatever its refcount. Panics if the block is out of range.
    pub fn pins(&self, block: u32) -> u32 {
        match self.state[block as usize] {
            BlockState::Held { pins, .. } => pins,
            BlockState::Free | BlockState::Cached { .. } => 0,
        }
    }

    /// Whether `n_blocks` new blocks can be allocated now, by taking free or evicting cached ones.
    pub fn can_allocate(&self, n_blocks: usize) -> bool {
        n_blocks <= self.free.len() + self.lru.len()
    }

    fn seq(&self, id: SeqId) -> Result<&Sequence, BlockError> {
        self.seqs.get(&id).ok_or(BlockError::UnknownSequence(id))
    }

    /// The sequence, unless a move of its blocks is pending.
    fn ready(&self, id: SeqId) -> Result<&Sequence, BlockError> {
        let seq = self.seq(id)?;
        match seq.pending {
            Some(ticket) => Err(BlockError::MovePending(id, ticket)),
            None => Ok(seq),
        }
    }

    fn set_place(&mut self, id: SeqId, place: Place) {
        self.seqs
            .get_mut(&id)
            .expect("the caller checked the sequence")
            .place = place;
    }

    /// The block table and length of a sequence that is on the device and not waiting for a move.
    fn device_table(&self, id: SeqId) -> Result<(&[u32], usize), BlockError> {
        let seq = self.ready(id)?;
        match &seq.place {
            Place::Device(table) => Ok((table, seq.num_tokens)),
            _ => Err(BlockError::NotOnDevice(id, seq.residency())),
        }
    }

    /// Fails unless `needed` blocks can be allocated once `reserved` cached blocks are taken back
    /// by hash (those can no longer be evicted).
    fn ensure_blocks(&self, needed: usize, reserved: usize) -> Result<(), BlockError> {
        let available = self.free.len() + self.lru.len() - reserved;
        if needed > available {
            return Err(BlockError::OutOfBlocks { needed, available });
        }
        Ok(())
    }

    /// A block with refcount 1: a free one, else the least recently released cached one, whose hash
    /// is dropped. Callers check capacity first.
    fn take_block(&mut self) -> u32 {
        let block = self.free.pop().unwrap_or_else(|| {
            let (_, block) = self
                .lru
                .pop_first()
                .expect("capacity checked by the caller");
            let hash = self
                .device
                .meta(block)
                .hash
                .expect("cached blocks are hashed");
            self.by_hash.remove(&hash);
            self.stats.evicted_blocks += 1;
            block
        });
        self.state[block as usize] = BlockState::Held { refs: 1, pins: 0 };
        block
    }

    /// One more reference to a held or cached block.
    fn acquire(&mut self, block: u32) {
        let state = &mut self.state[block as usize];
        *state = match *state {
            BlockState::Held { refs, pins } => BlockState::Held {
                refs: refs + 1,
                pins,
            },
            BlockState::Cached { tick } => {
                self.lru.remove(&tick);
                BlockState::Held { refs: 1, pins: 0 }
            }
            BlockState::Free => {
                unreachable!("block {block} is free: no table or hash points at it")
            }
        };
    }

    /// One block-table reference less; see [`BlockManager::drop_hold`].
    fn release(&mut self, block: u32) {
        let BlockState::Held { refs, pins } = self.state[block as usize] else {
            unreachable!("released block {block} is not held")
        };
        assert!(refs > 0, "released block {block} has no reference");
        self.drop_hold(block, refs - 1, pins);
    }

    /// Sets a held block's counts; once both are zero the block is cached if it is the one
    /// registered under its hash (or can become it), and free otherwise.
    fn drop_hold(&mut self, block: u32, refs: u32, pins: u32) {
        if refs + pins > 0 {
            self.state[block as usize] = BlockState::Held { refs, pins };
            return;
        }
        let meta = &mut self.device.meta[block as usize];
        match meta.hash {
            Some(hash) if *self.by_hash.entry(hash).or_insert(block) == block => {
                self.state[block as usize] = BlockState::Cached {
                    tick: self.next_tick,
                };
                self.lru.insert(self.next_tick, block);
                self.next_tick += 1;
            }
            _ => {
                *meta = PageMeta::default();
                self.state[block as usize] = BlockState::Free;
                self.free.push(block);
            }
        }
    }

    /// Releases a block table last block first, so the LRU evicts a sequence's tail before its
    /// head.
    fn release_all(&mut self, table: &[u32]) {
        for &block in table.iter().rev() {
            self.release(block);
        }
    }
}
